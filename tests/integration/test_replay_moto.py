"""The replay command end to end against moto's S3, Kinesis and Lambda (in-process)."""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest

from msk_kinesis_sink.aws.clients import s3_client
from msk_kinesis_sink.aws.s3 import S3DeadLetterWriter
from msk_kinesis_sink.consumer import Envelope
from msk_kinesis_sink.dead_letters import dead_letter_document
from msk_kinesis_sink.encoding import UnwritableRecord
from msk_kinesis_sink.events import KafkaRecord
from msk_kinesis_sink.replay.objects import REPLAYED_PREFIX
from msk_kinesis_sink.settings import Settings
from tests.factories import MSK_CLUSTER_ARN, b64, unwritable_record
from tests.integration.lambda_container import MOTO_SAFE_CONCURRENCY
from tests.replay_runs import run_replay

TOPIC = "orders.v1-eu"
BUCKET = "sink-dead-letters"
STREAM = "sink-stream"


def _env(**overrides: str) -> dict[str, str]:
    return {
        **os.environ,
        "STREAM_NAME": STREAM,
        # One worker: moto's Kinesis is not safe for concurrent writes (lambda_container.py).
        "MAX_CONCURRENCY": MOTO_SAFE_CONCURRENCY,
        "RECORD_FORMAT": "envelope",
        "DEAD_LETTER_BUCKET": BUCKET,
        "RETRY_BASE_MS": "1",
        "RETRY_MAX_MS": "5",
        **overrides,
    }


def _dead_letter(offset: int, key: bytes, value_bytes: int) -> None:
    """Write a dead letter with the function's own S3 writer (too large for 1,024 bytes)."""
    unit = unwritable_record(TOPIC, 0, offset, key=key, value_bytes=value_bytes, envelope=True)
    settings = Settings.from_env(_env())
    writer = S3DeadLetterWriter(s3_client(settings, os.environ), BUCKET, "records/")
    writer.write(unit, MSK_CLUSTER_ARN, time.monotonic() + 5)


def _stream_offsets() -> list[int]:
    kinesis = boto3.client("kinesis")
    offsets: list[int] = []
    for shard in kinesis.list_shards(StreamName=STREAM)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for record in kinesis.get_records(ShardIterator=iterator)["Records"]:
            offsets.append(Envelope.from_bytes(record["Data"]).offset)
    return sorted(offsets)


@pytest.fixture
def bucket_and_stream(mocked_aws: None) -> Any:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    # Versioned, like the stack's bucket: a move leaves the original as a noncurrent version.
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    boto3.client("kinesis").create_stream(StreamName=STREAM, ShardCount=1)
    return s3


def _keys(s3: Any, prefix: str = "") -> list[str]:
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_replay_command_publishes_dead_letters_and_moves_them_once(bucket_and_stream: Any) -> None:
    # GIVEN two dead letters written by the function's S3 writer
    s3 = bucket_and_stream
    _dead_letter(4, b"a", 2000)
    _dead_letter(9, b"b", 2000)
    # WHEN the command runs with --apply, settings (and the bucket) from the environment
    run = run_replay(["--apply"], _env())
    # THEN both records are in the stream, their objects moved under replayed/
    assert run.status == 0, run.err
    assert _stream_offsets() == [4, 9]
    assert _keys(s3, "records/") == []
    assert _keys(s3, REPLAYED_PREFIX) == [
        f"{REPLAYED_PREFIX}records/{TOPIC}/0/4.json",
        f"{REPLAYED_PREFIX}records/{TOPIC}/0/9.json",
    ]
    assert (run.summary["published"], run.summary["marked"]) == ("2", "2")
    # AND a second run finds nothing and sends nothing
    again = run_replay(["--apply"], _env())
    assert again.status == 0
    assert (again.summary["objects"], again.summary["published"]) == ("0", "0")
    assert _stream_offsets() == [4, 9]


def test_replay_command_missing_bucket_ends_in_one_line_naming_it(mocked_aws: None) -> None:
    # GIVEN no such bucket
    # WHEN the command runs
    run = run_replay(["--bucket", "no-such-bucket"], _env())
    # THEN it exits 2 with one line naming the bucket, the error and what to check
    assert run.status == 2
    [line] = run.err.strip().splitlines()
    assert line.startswith("replay: error: could not list s3://no-such-bucket/")
    assert "NoSuchBucket" in line and "check --bucket and the region" in line


def _deploy_function(name: str, variables: dict[str, str]) -> None:
    iam = boto3.client("iam")
    role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    boto3.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
        Environment={"Variables": variables},
    )


def test_replay_command_takes_the_deployed_functions_settings(bucket_and_stream: Any) -> None:
    # GIVEN a deployed function whose settings differ from the operator's environment, and a
    # dead letter too large for the environment's limit but not for the function's
    _deploy_function(
        "sink-fn",
        {
            "STREAM_NAME": f"arn:aws:kinesis:us-east-1:123456789012:stream/{STREAM}",
            "RECORD_FORMAT": "envelope",
            "PARTITION_KEY": "partition",
            "MAX_RECORD_BYTES": "1048576",
            "DEAD_LETTER_BUCKET": BUCKET,
            "DEAD_LETTER_PREFIX": "records/",
            "MAX_CONCURRENCY": MOTO_SAFE_CONCURRENCY,
        },
    )
    _dead_letter(4, b"a", 2000)
    environment = _env(STREAM_NAME="elsewhere", MAX_RECORD_BYTES="1024", DEAD_LETTER_BUCKET="")
    # WHEN the command runs with --function
    run = run_replay(["--function", "sink-fn", "--apply"], environment)
    # THEN it read the bucket and the settings from the function and encoded as it does
    assert run.status == 0, run.err
    assert "settings from function sink-fn" in run.out
    assert "PARTITION_KEY=partition" in run.out
    assert _stream_offsets() == [4]


def test_replay_command_missing_function_ends_in_one_line(mocked_aws: None) -> None:
    # GIVEN no such function
    # WHEN the command runs with --function
    run = run_replay(["--function", "nope"], _env())
    # THEN one line names the function and the problem
    assert run.status == 2
    [line] = run.err.strip().splitlines()
    assert "could not read function nope's configuration: ResourceNotFoundException" in line
    assert "no such function" in line


def test_replay_command_without_a_region_ends_in_one_line_before_sending(
    bucket_and_stream: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a dead letter, and no region anywhere: not in the environment, not in a config file
    _dead_letter(4, b"a", 2000)
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    environment = {k: v for k, v in _env().items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    # WHEN the command runs with --apply
    run = run_replay(["--apply"], environment)
    # THEN it stops with one line naming the problem, and nothing is sent
    assert run.status == 2
    assert (
        run.err.strip()
        .splitlines()[-1]
        .startswith("replay: error: could not make the Kinesis client: NoRegionError")
    )


def test_replay_command_never_dead_letters_again(bucket_and_stream: Any) -> None:
    # GIVEN a dead letter still too large for the settings, which name a dead-letter bucket
    s3 = bucket_and_stream
    _dead_letter(4, b"a", 2000)
    # WHEN the command runs with --apply
    run = run_replay(["--apply"], _env(MAX_RECORD_BYTES="1024"))
    # THEN the record fails and its object stays as it was: not written again, not moved
    assert run.status == 1
    assert (run.summary["failed"], run.summary["marked"]) == ("1", "0")
    versions = s3.list_object_versions(Bucket=BUCKET)
    assert [v["Key"] for v in versions.get("Versions", [])] == [f"records/{TOPIC}/0/4.json"]
    assert "DeleteMarkers" not in versions
    assert _stream_offsets() == []


# -- hostile keys and names, refusals, kept copies ---------------------------------------------


def _put(s3: Any, key: str, body: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def _dead_letter_body(offset: int, value: bytes, topic: str = TOPIC) -> bytes:
    record = KafkaRecord(topic, 0, offset, 1, "CREATE_TIME", b64(b"k"), b64(value))
    unwritable = UnwritableRecord(record, "k", "encoded record is too large")
    return dead_letter_document(unwritable, MSK_CLUSTER_ARN)


def test_replay_command_escapes_terminal_sequences_in_keys_and_topics(
    bucket_and_stream: Any,
) -> None:
    # GIVEN objects whose keys hold terminal escapes (a colour, a window title, a screen clear,
    # a bidi override), one of them a folder marker, and a dead letter of a topic named so
    s3 = bucket_and_stream
    hostile = [
        "records/\x1b[31mred/0/1.json",
        "records/\x1b]0;owned\x07/",
        "records/\u202eevil/0/2.json",
    ]
    _put(s3, hostile[0], b"\x1b[2J not json")
    _put(s3, hostile[1], b"")
    _put(s3, hostile[2], b"{}")
    _put(s3, f"records/{TOPIC}/0/3.json", _dead_letter_body(3, b"v", topic="t\x1b[5m"))
    # WHEN the replay runs
    run = run_replay([], _env())
    # THEN nothing the terminal would act on is printed: each key is shown quoted and escaped
    printed = run.out + run.err
    assert not [char for char in printed if not (char.isprintable() or char == "\n")]
    assert f"unreadable: s3://{BUCKET}/'records/\\x1b[31mred/0/1.json': not JSON" in run.err
    assert f"skipped: s3://{BUCKET}/'records/\\x1b]0;owned\\x07/': its key ends in '/'" in run.err
    assert f"unreadable: s3://{BUCKET}/'records/\\u202eevil/0/2.json': neither" in run.err
    assert "'t\\x1b[5m-0'" in run.out
    assert (run.summary["skipped_kinds"], run.summary["unreadable_kinds"]) == (
        "folder-marker:1",
        "not-json:1,unknown-shape:1",
    )
    assert run.status == 1


def test_replay_command_counts_a_folder_marker_as_skipped_and_still_succeeds(
    bucket_and_stream: Any,
) -> None:
    # GIVEN a dead letter and the folder markers a console leaves behind
    s3 = bucket_and_stream
    _dead_letter(4, b"a", 2000)
    _put(s3, "records/", b"")
    _put(s3, f"records/{TOPIC}/", b"")
    # WHEN the replay runs with --apply
    run = run_replay(["--apply"], _env())
    # THEN the markers are counted and named, one line each, and the run succeeds
    assert run.status == 0, run.err
    assert run.summary["skipped"] == "2"
    assert run.summary["skipped_kinds"] == "folder-marker:2"
    assert run.err.splitlines() == [
        f"skipped: s3://{BUCKET}/records/: its key ends in '/' (a folder marker of 0 bytes): the"
        " sink and Lambda never write one",
        f"skipped: s3://{BUCKET}/records/{TOPIC}/: its key ends in '/' (a folder marker of 0"
        " bytes): the sink and Lambda never write one",
    ]
    assert _stream_offsets() == [4]


@pytest.mark.parametrize("versioned", [False, True])
def test_replay_command_keeps_an_existing_replayed_copy_and_the_new_one_beside_it(
    mocked_aws: None, versioned: bool
) -> None:
    # GIVEN a bucket (versioned or not) where a dead letter was replayed once, and a new dead
    # letter under the same key (a topic re-created with its name: offsets start again)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    if versioned:
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    boto3.client("kinesis").create_stream(StreamName=STREAM, ShardCount=1)
    key = f"records/{TOPIC}/0/4.json"
    first, second = _dead_letter_body(4, b"first"), _dead_letter_body(4, b"second")
    _put(s3, key, first)
    assert run_replay(["--apply"], _env()).status == 0
    _put(s3, key, second)
    # WHEN the replay runs again
    run = run_replay(["--apply"], _env())
    # THEN the earlier copy is untouched (no new version written over it) and the new object
    # is kept beside it, as the output says
    assert run.status == 0, run.err
    copy = f"{REPLAYED_PREFIX}{key}"
    assert s3.get_object(Bucket=BUCKET, Key=copy)["Body"].read() == first
    assert s3.get_object(Bucket=BUCKET, Key=f"{copy}~2")["Body"].read() == second
    if versioned:
        versions = s3.list_object_versions(Bucket=BUCKET, Prefix=copy)["Versions"]
        assert sorted(v["Key"] for v in versions) == [copy, f"{copy}~2"]
    assert f"kept both: s3://{BUCKET}/{key} moved to {copy}~2" in run.out
    assert _keys(s3, "records/") == []
    # AND a third object of that key goes to ~3
    _put(s3, key, _dead_letter_body(4, b"third"))
    assert run_replay(["--apply"], _env()).status == 0
    assert _keys(s3, REPLAYED_PREFIX) == [copy, f"{copy}~2", f"{copy}~3"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--stream", "no-such-stream"], "check --stream and the region"),
        ([], "check STREAM_NAME / STREAM_ROUTES of the environment and the region"),
    ],
)
def test_replay_command_missing_stream_names_the_option_that_named_it(
    bucket_and_stream: Any, argv: list[str], expected: str
) -> None:
    # GIVEN a dead letter, and a stream that does not exist (given by --stream, or the settings)
    s3 = bucket_and_stream
    _dead_letter(4, b"a", 2000)
    env = _env() if argv else _env(STREAM_NAME="no-such-stream")
    # WHEN the replay runs with --apply
    run = run_replay([*argv, "--apply"], env)
    # THEN the cause names what to check, the record failed and its object stays
    assert run.status == 1
    causes = [line for line in run.err.splitlines() if line.startswith("cause: ")]
    assert causes == [
        "cause: stream no-such-stream: DescribeStreamSummary refused: ResourceNotFoundException:"
        f" the stream does not exist: {expected}"
    ]
    assert "check STREAM_NAME and the region" not in run.err or not argv
    assert _keys(s3, "records/") == [f"records/{TOPIC}/0/4.json"]
