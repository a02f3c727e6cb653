"""An answer that isn't one is a lost answer, never an exception.

Real botocore clients (no network: a `before-send` hook answers each request with the status and
body a test chooses) under the real writers and the real Sink. Whatever comes back, the handler
returns a partial-batch response; a record counts as written only when a complete, well-formed
answer says so.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msk_kinesis_sink.aws.claim_checks import S3ClaimCheckWriter
from msk_kinesis_sink.aws.kinesis import KinesisRecordWriter, KinesisSummaryReader, KinesisWriters
from msk_kinesis_sink.aws.s3 import S3DeadLetterWriter
from msk_kinesis_sink.claim_checks import ClaimCheckTarget
from msk_kinesis_sink.encoding import ClaimCheckRecord, UnwritableRecord, claim_check_oversize
from msk_kinesis_sink.errors import (
    ClaimCheckWriteError,
    DeadLetterError,
    KinesisPublishError,
    StreamSummaryError,
)
from msk_kinesis_sink.planning import Entry
from msk_kinesis_sink.runtime import Sink
from msk_kinesis_sink.settings import PartitionKeyMode, Settings
from tests.factories import b64, kafka_record, msk_event, unwritable_record
from tests.fakes import FakeContext

TOPIC = "orders"
WRITTEN_ENTRY = {"SequenceNumber": "4959033827149025660855969253836", "ShardId": "shardId-0"}

# -- a client whose answers a test scripts ----------------------------------------------------


class _Raw:
    """The raw body AWSResponse reads an answer from."""

    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._payload


def _client(service: str) -> Any:
    """A real client making one attempt per call, as the function's do (never the network:
    each test answers its requests in a `before-send` hook)."""
    return boto3.client(
        service,  # type: ignore[call-overload]
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


_CLIENTS = {service: _client(service) for service in ("kinesis", "s3")}

Answer = tuple[int, bytes]
# Builds an answer for a PutRecords request of `n` records.
Answering = Callable[[int], Answer]


def whole_answer(count: int) -> Answer:
    """What Kinesis answers when every record of the request was written."""
    document = {"FailedRecordCount": 0, "Records": [WRITTEN_ENTRY] * count}
    return 200, json.dumps(document).encode()


@dataclass
class ScriptedKinesis:
    """Answers PutRecords with the scripted answers in turn, then with whole answers.

    It keeps a record only when its answer's entry says it was written: a record the sink counts
    as written on the strength of anything else is missing from `stored`.
    """

    script: deque[Answering] = field(default_factory=deque)
    stored: list[bytes] = field(default_factory=list)
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> Any:
        """A client answered by this script (made once per test module: making one costs)."""
        client = _CLIENTS["kinesis"]
        client.meta.events.unregister("before-send.kinesis.PutRecords", unique_id="script")
        client.meta.events.register(
            "before-send.kinesis.PutRecords", self._answer, unique_id="script"
        )
        return client

    def _answer(self, request: Any, **_: Any) -> AWSResponse:
        records = json.loads(bytes(request.body))["Records"]
        with self._lock:
            self.requests += 1
            scripted = self.script.popleft() if self.script else whole_answer
            status, body = scripted(len(records))
            self.stored.extend(
                base64.b64decode(record["Data"])
                for record, entry in zip(records, _entries(status, body), strict=False)
                if _looks_written(entry)
            )
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, status, headers, _Raw(body))


def _entries(status: int, body: bytes) -> list[Any]:
    """The entries of a 2xx answer, however damaged the rest of it is."""
    try:
        document = json.loads(body)
    except ValueError:
        return []
    entries = document.get("Records") if isinstance(document, dict) else None
    return entries if 200 <= status < 300 and isinstance(entries, list) else []


def _looks_written(entry: Any) -> bool:
    """The server wrote the record its answer entry describes as written (whatever else the
    answer holds): the fake keeps it, so that no record a sink takes as written can be missing."""
    return (
        isinstance(entry, dict)
        and not entry.get("ErrorCode")
        and isinstance(entry.get("SequenceNumber"), str)
        and bool(entry["SequenceNumber"])
        and isinstance(entry.get("ShardId"), str)
        and bool(entry["ShardId"])
    )


def _answering(status: int, body: bytes) -> Answering:
    return lambda _count: (status, body)


def _sink(kinesis: ScriptedKinesis, **env: str) -> Sink:
    settings = Settings.from_env(
        {
            "STREAM_NAME": "orders-stream",
            "AGGREGATION": "off",
            "RETRY_BASE_MS": "1",
            "RETRY_MAX_MS": "2",
            **env,
        }
    )
    return Sink(settings, writers=KinesisWriters(kinesis.client()))


def _event(count: int) -> dict[str, Any]:
    return msk_event(
        [
            kafka_record(TOPIC, 0, offset, b"k%d" % offset, b"v%d" % offset)
            for offset in range(count)
        ]
    )


def _handle(sink: Sink, event: dict[str, Any]) -> Any:
    try:
        return sink.handle(event, FakeContext(lambda: 60_000))
    finally:
        sink.close()


# -- the answers the issue measured ------------------------------------------------------------

# Each made the handler raise KeyError or AttributeError out of the whole invocation.
ISSUE_ANSWERS: dict[str, Answering] = {
    "{}": _answering(200, b"{}"),
    "[]": _answering(200, b"[]"),
    "not json": _answering(200, b"not json"),
    '{"Records":"x"}': _answering(200, b'{"Records":"x"}'),
    # One null entry per record sent: the count is right, the entries are not.
    '{"Records":[null]}': lambda count: (200, json.dumps({"Records": [None] * count}).encode()),
}


@pytest.mark.parametrize("answer", ISSUE_ANSWERS.values(), ids=ISSUE_ANSWERS.keys())
def test_handler_takes_a_200_that_is_no_answer_as_a_lost_answer(answer: Answering) -> None:
    # GIVEN Kinesis answers the first request with a 200 whose body is no PutRecords answer
    kinesis = ScriptedKinesis(deque([answer]))
    # WHEN a batch is handled
    response = _handle(_sink(kinesis), _event(3))
    # THEN the invocation answers (no exception), having retried the request: every record
    # was written by a whole answer, none was taken as written on the strength of that body
    assert response == {"batchItemFailures": []}
    assert kinesis.requests >= 2
    assert sorted(kinesis.stored) == [b"v0", b"v1", b"v2"]


# -- any answer at all -------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 600) | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=20), children, max_size=3)
    ),
    max_leaves=8,
)
_STATUSES = st.sampled_from([200, 200, 200, 201, 204, 400, 403, 404, 429, 500, 503])


@st.composite
def near_answers(draw: st.DrawFn) -> Answering:
    """A whole answer to the request, then damaged in one place (or not at all)."""
    damage = draw(
        st.sampled_from(
            [
                "none",
                "drop-count",
                "count",
                "records",
                "entry",
                "extra-entry",
                "missing-entry",
                "cut",
                "key",
            ]
        )
    )
    value = draw(_JSON)
    key = draw(st.sampled_from(["ErrorCode", "SequenceNumber", "ShardId", "ErrorMessage"]))
    cut_at = draw(st.integers(0, 200))
    status = draw(_STATUSES)

    def answer(count: int) -> Answer:
        document: dict[str, Any] = {
            "FailedRecordCount": 0,
            "Records": [dict(WRITTEN_ENTRY) for _ in range(count)],
        }
        entries = document["Records"]
        match damage:
            case "drop-count":
                del document["FailedRecordCount"]
            case "count":
                document["FailedRecordCount"] = value
            case "records":
                document["Records"] = value
            case "entry":
                entries[0] = value
            case "extra-entry":
                entries.append(value)
            case "missing-entry":
                entries.pop()
            case "key":
                entries[-1][key] = value
        body = json.dumps(document).encode()
        return status, body[:cut_at] if damage == "cut" else body

    return answer


ANY_ANSWERS = st.one_of(
    near_answers(),
    st.tuples(_STATUSES, st.binary(max_size=60)).map(lambda answer: _answering(*answer)),
    st.tuples(_STATUSES, _JSON.map(lambda value: json.dumps(value).encode())).map(
        lambda answer: _answering(*answer)
    ),
)


def _is_whole_success(status: int, body: bytes, count: int) -> bool:
    """What may count as an answer that wrote something: a 2xx whose body is a JSON object
    with an integer FailedRecordCount and one entry per record."""
    try:
        document = json.loads(body)
    except ValueError:
        return False
    return (
        200 <= status < 300
        and isinstance(document, dict)
        and type(document.get("FailedRecordCount")) is int
        and isinstance(document.get("Records"), list)
        and len(document["Records"]) == count
    )


@settings(max_examples=200, deadline=None)
@given(answering=ANY_ANSWERS, count=st.integers(1, 4))
def test_put_records_any_answer_is_results_or_a_publish_error(
    answering: Answering, count: int
) -> None:
    # GIVEN PutRecords answered with any status and body
    status, body = answering(count)
    kinesis = ScriptedKinesis(deque([lambda _: (status, body)]))
    writer = KinesisRecordWriter(kinesis.client(), "orders-stream")
    entries = [Entry.of(f"k{n}", b"v", ()) for n in range(count)]
    # WHEN a request is sent
    try:
        results = writer.put_records(entries, deadline=float("inf"))
    except KinesisPublishError:
        return  # the request failed as a whole: nothing counts as written
    # THEN results come only from a whole answer, one per record
    assert _is_whole_success(status, body, count)
    assert len(results) == count


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers=st.lists(ANY_ANSWERS, max_size=6), count=st.integers(1, 12))
def test_handler_never_raises_from_an_answer(answers: list[Answering], count: int) -> None:
    # GIVEN Kinesis answering the first requests with anything at all, then whole answers
    kinesis = ScriptedKinesis(deque(answers))
    # WHEN a batch is handled
    response = _handle(_sink(kinesis), _event(count))
    # THEN it answers without raising; every record was written by a whole answer (the
    # ones before were lost answers or refusals, retried), or its partition is reported
    written = set(kinesis.stored)
    failures = response["batchItemFailures"]
    if not failures:
        assert written == {b"v%d" % offset for offset in range(count)}
    else:
        first = min(failure["itemIdentifier"]["offset"] for failure in failures)
        assert {b"v%d" % offset for offset in range(first)} <= written


# -- DescribeStreamSummary ---------------------------------------------------------------------


def _summary_client(status: int, body: bytes) -> Any:
    client = _CLIENTS["kinesis"]

    def answer(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, status, {}, _Raw(body))

    event = "before-send.kinesis.DescribeStreamSummary"
    client.meta.events.unregister(event, unique_id="script")
    client.meta.events.register(event, answer, unique_id="script")
    return client


def _summary_body(**summary: Any) -> bytes:
    whole = {
        "StreamName": "orders-stream",
        "StreamARN": "arn:aws:kinesis:us-east-1:123456789012:stream/orders-stream",
        "StreamStatus": "ACTIVE",
        "RetentionPeriodHours": 24,
        "StreamCreationTimestamp": 1700000000,
        "EnhancedMonitoring": [],
        "OpenShardCount": 4,
    }
    return json.dumps({"StreamDescriptionSummary": {**whole, **summary}}).encode()


@settings(max_examples=150, deadline=None)
@given(
    status=_STATUSES,
    body=st.one_of(
        st.binary(max_size=60),
        _JSON.map(lambda value: json.dumps(value).encode()),
        st.dictionaries(
            st.sampled_from(["RecordDistributionStrategy", "MaxRecordSizeInKiB", "StreamName"]),
            _JSON,
        ).map(lambda fields: _summary_body(**fields)),
    ),
)
def test_describe_stream_summary_any_answer_is_a_summary_or_a_summary_error(
    status: int, body: bytes
) -> None:
    # GIVEN DescribeStreamSummary answered with any status and body
    reader = KinesisSummaryReader(_summary_client(status, body))
    # WHEN the stream is described
    try:
        summary = reader.describe("orders-stream", deadline=float("inf"))
    except StreamSummaryError:
        return
    # THEN a summary comes only from a 2xx answer that holds one
    assert 200 <= status < 300
    assert isinstance(json.loads(body)["StreamDescriptionSummary"], dict)
    assert summary.max_record_bytes is None or summary.max_record_bytes > 0


# -- S3 dead letters ---------------------------------------------------------------------------


def _s3_client(answers: Iterable[tuple[int, dict[str, str], bytes]]) -> Any:
    queue = deque(answers)
    client = _CLIENTS["s3"]

    def answer(request: Any, **_: Any) -> AWSResponse:
        status, headers, body = queue.popleft()
        return AWSResponse(request.url, status, headers, _Raw(body))

    client.meta.events.unregister("before-send.s3.PutObject", unique_id="script")
    client.meta.events.register("before-send.s3.PutObject", answer, unique_id="script")
    return client


# What a PutObject answer may carry: the ETag proves the object stored, the others do not.
_PUT_OBJECT_HEADERS = st.dictionaries(
    st.sampled_from(["ETag", "x-amz-version-id", "Content-Length"]), st.text(max_size=10)
)


@settings(max_examples=100, deadline=None)
@given(status=_STATUSES, headers=_PUT_OBJECT_HEADERS, body=st.binary(max_size=40))
def test_dead_letter_write_counts_only_when_s3_proves_it(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    # GIVEN S3 answers PutObject with any status, headers and body
    writer = S3DeadLetterWriter(_s3_client([(status, headers, body)]), "dlq", "records/")
    # WHEN a dead letter is written
    try:
        writer.write(unwritable_record(TOPIC, 0, 5), None, deadline=float("inf"))
    except DeadLetterError:
        return
    # THEN it counts as kept only with a 2xx that names the stored object's ETag
    assert 200 <= status < 300
    assert headers.get("ETag")


@settings(max_examples=100, deadline=None)
@given(status=_STATUSES, headers=_PUT_OBJECT_HEADERS, body=st.binary(max_size=40))
def test_claim_check_write_counts_only_when_s3_proves_it(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    # GIVEN S3 answers a claim check's PutObject with any status, headers and body
    source = unwritable_record(TOPIC, 0, 5).source._replace(value_b64=b64(b"x" * 3000))
    record = claim_check_oversize(
        UnwritableRecord(source, "k", "too large"),
        ClaimCheckTarget("claims"),
        partition_key_mode=PartitionKeyMode.KEY,
        max_record_bytes=2048,
    )
    assert isinstance(record, ClaimCheckRecord)
    writer = S3ClaimCheckWriter(_s3_client([(status, headers, body)]))
    # WHEN the object is written
    try:
        writer.write(record, deadline=float("inf"))
    except ClaimCheckWriteError:
        return
    # THEN it counts as kept (and its pointer may follow) only with a 2xx naming its ETag
    assert 200 <= status < 300
    assert headers.get("ETag")


def test_handler_reports_a_dead_letter_whose_write_s3_did_not_prove() -> None:
    # GIVEN a record too large for MAX_RECORD_BYTES, and S3 answering its write with a bare 200
    # (what a status line followed by silence reads as)
    kinesis = ScriptedKinesis()
    settings_ = Settings.from_env(
        {"STREAM_NAME": "s", "MAX_RECORD_BYTES": "1024", "DEAD_LETTER_BUCKET": "dlq"}
    )
    dead_letters = S3DeadLetterWriter(_s3_client([(200, {}, b"")]), "dlq", "records/")
    sink = Sink(settings_, writers=KinesisWriters(kinesis.client()), dead_letters=dead_letters)
    event = msk_event(
        [kafka_record(TOPIC, 0, 5, b"k", b"x" * 2000), kafka_record(TOPIC, 0, 6, b"k", b"y")]
    )
    # WHEN the batch is handled
    response = _handle(sink, event)
    # THEN the record is not counted as kept: its partition is reported from it
    assert response == {
        "batchItemFailures": [
            {"itemIdentifier": {"partition": f"{TOPIC}-0", "offset": 5}},
            {"itemIdentifier": {"partition": f"{TOPIC}-0", "offset": 6}},
        ]
    }
    assert kinesis.stored == []
