"""The stream guard against moto with IAM enforced: a role without kinesis:DescribeStreamSummary
is a deploy error the function names, and nothing is written meanwhile."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import set_initial_no_auth_action_count

from tests.factories import kafka_record, msk_event
from tests.fakes import FakeContext
from tests.integration.conftest import REGION
from tests.integration.lambda_container import load_handler

STREAM = "orders-mirror"
# Calls made before IAM is enforced: the stream, the function's user, its policy and its key.
SETUP_CALLS = 4


def _handled_with_role(
    actions: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, ModuleType]:
    """Handle EVENT as a function whose role allows `actions` on the stream, moto enforcing
    IAM after the setup; returns the answer and the handler module."""

    @mock_aws
    @set_initial_no_auth_action_count(SETUP_CALLS)
    def handled() -> tuple[Any, ModuleType]:
        boto3.client("kinesis", region_name=REGION).create_stream(StreamName=STREAM, ShardCount=1)
        iam = boto3.client("iam", region_name=REGION)
        iam.create_user(UserName="function")
        statement = {"Effect": "Allow", "Action": list(actions), "Resource": "*"}
        iam.put_user_policy(
            UserName="function",
            PolicyName="sink",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
        )
        key = iam.create_access_key(UserName="function")["AccessKey"]
        credentials = {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        }
        module = load_handler(monkeypatch, **_env(credentials))
        return module.handler(EVENT, FakeContext()), module

    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "admin")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "admin")
    return handled()


def _env(credentials: dict[str, str]) -> dict[str, str]:
    return {
        "STREAM_NAME": STREAM,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "RETRY_BASE_MS": "1",
        "RETRY_MAX_MS": "5",
        **credentials,
    }


EVENT = msk_event([kafka_record("orders", 0, offset, b"k", b"v%d" % offset) for offset in (7, 8)])


def test_stream_guard_role_without_describe_summary_writes_nothing_and_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the function's role may put records but not describe the stream
    # WHEN a batch is handled
    response, module = _handled_with_role(("kinesis:PutRecords",), monkeypatch)
    logged = capsys.readouterr().out
    # THEN nothing is written, the partition is reported from its first record, and an error
    # line names the missing permission (what a deploy rehearsal reads)
    assert response == {
        "batchItemFailures": [
            {"itemIdentifier": {"partition": "orders-0", "offset": 7}},
            {"itemIdentifier": {"partition": "orders-0", "offset": 8}},
        ]
    }
    stats = module.sink.last_report.stats
    assert (stats.put_records_calls, stats.partitions_held_by_stream_guard) == (1, 1)
    assert stats.records_published == 0
    errors = [json.loads(line) for line in logged.splitlines() if '"level":"ERROR"' in line]
    assert any(
        "kinesis:DescribeStreamSummary" in line["message"] and STREAM in line["message"]
        for line in errors
    )


def test_stream_guard_role_with_describe_summary_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the role the stack grants: put and describe
    # WHEN a batch is handled
    actions = ("kinesis:PutRecords", "kinesis:DescribeStreamSummary")
    response, module = _handled_with_role(actions, monkeypatch)
    # THEN it is written (moto's summary names no strategy: records are placed by key)
    assert response == {"batchItemFailures": []}
    assert module.sink.last_report.stats.records_published == 2
