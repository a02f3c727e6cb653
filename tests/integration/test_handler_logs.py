"""No key, value or header reaches the logs, at any log level: the handler run as Lambda runs it.

With `logLevel=DEBUG` the Lambda Python runtime puts the root logger at DEBUG. These tests do the
same (root at DEBUG, Powertools at DEBUG), drive the real handler module over real HTTP (moto's
server, the fault proxy, a stub that echoes request content in its errors like Kinesis's
validation messages do), capture everything that is logged or printed, and look for a marker
carried in the records' keys, values, header names and header values.
"""

from __future__ import annotations

import base64
import json
import logging
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from types import ModuleType
from typing import Any

import boto3
import pytest

from localloop.faults import FaultSpec
from localloop.local_s3 import MotoServer
from localloop.procs import LOOPBACK
from localloop.proxy import FaultProxy
from msk_kinesis_sink.aggregation import deaggregate
from tests.factories import kafka_record, msk_event
from tests.fakes import FakeContext
from tests.integration.conftest import REGION
from tests.integration.lambda_container import load_handler

pytestmark = pytest.mark.timeout(120)

MARKER = b"Zq7-CUSTOMER-SECRET-4f1e9a"
MARKER_TEXT = MARKER.decode("ascii")
TOPIC = "orders.v1-eu"


def _base64_cores(data: bytes) -> set[str]:
    """The base64 text `data` becomes at each of the three byte alignments it can start at.

    Only the characters fully determined by `data` are kept, so each form is found whatever
    bytes surround the marker in a key, a value or an envelope.
    """
    cores = set()
    for shift in range(3):
        text = base64.b64encode(b"\0" * shift + data).decode("ascii").rstrip("=")
        first = -(-shift * 8 // 6)  # the first 6-bit group that starts inside `data`
        last = (shift + len(data)) * 8 // 6  # one past the last group that ends inside it
        cores.add(text[first:last])
    return cores


def _forbidden_forms(marker: bytes) -> frozenset[str]:
    forms = {marker.decode("ascii")}
    once = _base64_cores(marker)
    forms |= once  # a key or value in a PutRecords body, a header value in an envelope
    for text in once:  # a key or value inside an envelope, itself base64 in a request body
        forms |= _base64_cores(text.encode("ascii"))
    # Header bytes as the dead-letter document (JSON) and Python's repr write them.
    forms.add(",".join(str(byte) for byte in marker))
    forms.add(", ".join(str(byte) for byte in marker))
    return frozenset(forms)


FORBIDDEN = _forbidden_forms(MARKER)


def _records(partition: int, first_offset: int) -> list[dict[str, Any]]:
    """Records carrying the marker at several byte alignments in every customer field."""
    return [
        kafka_record(
            TOPIC,
            partition,
            first_offset,
            key=MARKER,
            value=b"<" + MARKER + b">",
            headers=[(MARKER_TEXT, MARKER)],
        ),
        kafka_record(
            TOPIC,
            partition,
            first_offset + 1,
            key=b"k-" + MARKER,
            value=MARKER,
            headers=[("trace", b"id:" + MARKER)],
        ),
        kafka_record(TOPIC, partition, first_offset + 2, key=MARKER, value=None),
    ]


def _event(*records: dict[str, Any]) -> dict[str, Any]:
    return msk_event(records or [*_records(0, 100), *_records(1, 7)])


# -- what Lambda would show: every log record, stdout, stderr, unhandled errors -------------


class _EveryRecord(logging.Handler):
    """Keeps everything about every log record: message, arguments, extra fields, exception."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the arguments
            message = f"{record.msg!r} % {record.args!r}"
        exception = "".join(traceback.format_exception(*record.exc_info)) if record.exc_info else ""
        self.texts.append(f"{record.name} {record.levelname} {message} {record.__dict__!r}")
        self.texts.append(exception)


@dataclass
class LambdaLogs:
    """Everything a Lambda function's log stream would receive during one test."""

    records: _EveryRecord
    capfd: pytest.CaptureFixture[str]
    errors: list[str] = field(default_factory=list)

    def add_unhandled(self, error: BaseException) -> None:
        # The runtime logs an unhandled error's type, message and stack trace.
        self.errors.append("".join(traceback.format_exception(error)))

    def text(self) -> str:
        out, err = self.capfd.readouterr()
        return "\n".join([*self.records.texts, out, err, *self.errors])


@pytest.fixture
def lambda_logs(capfd: pytest.CaptureFixture[str]) -> Iterator[LambdaLogs]:
    """The root logger at DEBUG with a handler that keeps everything, as with logLevel=DEBUG."""
    root = logging.getLogger()
    handler = _EveryRecord()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # The capture sees DEBUG records of any library logger that does not set its own level.
    logging.getLogger("some.library").debug("probe")
    assert any("probe" in text for text in handler.texts)
    handler.texts.clear()
    capfd.readouterr()  # start from an empty capture
    try:
        yield LambdaLogs(handler, capfd)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _assert_no_customer_data(text: str) -> None:
    leaks = sorted(form for form in FORBIDDEN if form in text)
    assert not leaks, f"{len(leaks)} forms of the marker were logged, e.g. {leaks[0]!r}"


# -- servers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


class _EchoingValidationError(BaseHTTPRequestHandler):
    """Answers every PutRecords as Kinesis answers an invalid one: echoing the partition key,
    quoted as Kinesis's validation messages quote it, or bare (`server.unquoted`); describes
    every stream as a keyed one."""

    server: _EchoingServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.headers["X-Amz-Target"].endswith(".DescribeStreamSummary"):
            summary = {"StreamName": body["StreamName"], "StreamStatus": "ACTIVE"}
            self._answer(200, {"StreamDescriptionSummary": summary})
            return
        key = body["Records"][0]["PartitionKey"]
        message = (
            f"Invalid partition key {key} for records.1.member.partitionKey"
            if self.server.unquoted
            else f"1 validation error detected: Value '{key}' at 'records.1.member.partitionKey'"
            " failed to satisfy constraint: Member must have length less than or equal to 256"
        )
        self._answer(400, {"__type": "ValidationException", "message": message})

    def _answer(self, status: int, document: dict[str, Any]) -> None:
        answer = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the stub's own request lines are not the function's logs


class _EchoingServer(ThreadingHTTPServer):
    def __init__(self, unquoted: bool) -> None:
        self.unquoted = unquoted
        super().__init__((LOOPBACK, 0), _EchoingValidationError)


@pytest.fixture
def echoing_endpoints() -> Iterator[dict[str, str]]:
    """The echoing stub's endpoint, by how it echoes: `quoted`, `unquoted`."""
    servers = {"quoted": _EchoingServer(False), "unquoted": _EchoingServer(True)}
    threads = [Thread(target=server.serve_forever, daemon=True) for server in servers.values()]
    for thread in threads:
        thread.start()
    try:
        yield {
            how: f"http://{LOOPBACK}:{server.server_address[1]}" for how, server in servers.items()
        }
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join()


@dataclass(frozen=True)
class Aws:
    """A fresh stream and bucket on the moto server, and the function's environment for them."""

    endpoint: str
    stream: str
    bucket: str

    def env(self, **overrides: str) -> dict[str, str]:
        return {
            "STREAM_NAME": self.stream,
            "AWS_ENDPOINT_URL_KINESIS": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            # The function at DEBUG, the way logLevel=DEBUG (advanced logging controls) sets it.
            "AWS_LAMBDA_LOG_LEVEL": "DEBUG",
            "POWERTOOLS_LOG_LEVEL": "DEBUG",
            # Asks Powertools to log whole events; the function must not let it.
            "POWERTOOLS_LOGGER_LOG_EVENT": "true",
            "RETRY_BASE_MS": "1",
            "RETRY_MAX_MS": "5",
            **overrides,
        }

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stored(self) -> list[bytes]:
        kinesis = self.client("kinesis")
        data: list[bytes] = []
        for shard in kinesis.list_shards(StreamName=self.stream)["Shards"]:
            iterator = kinesis.get_shard_iterator(
                StreamName=self.stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            data.extend(r["Data"] for r in kinesis.get_records(ShardIterator=iterator)["Records"])
        return data


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Aws:
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    suffix = uuid.uuid4().hex[:8]
    made = Aws(moto_server.endpoint, f"logs-{suffix}", f"dead-letters-{suffix}")
    made.client("kinesis").create_stream(StreamName=made.stream, ShardCount=2)
    made.client("s3").create_bucket(Bucket=made.bucket)
    return made


def _invoke(module: ModuleType, event: dict[str, Any], logs: LambdaLogs) -> Any:
    try:
        return module.handler(event, FakeContext())
    except Exception as error:
        logs.add_unhandled(error)
        return None


# -- the paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"RECORD_FORMAT": "raw", "PARTITION_KEY": "key"},
        {"RECORD_FORMAT": "envelope", "PARTITION_KEY": "key", "AGGREGATION": "on"},
    ],
    ids=["raw", "envelope-aggregated"],
)
def test_handler_logs_success_without_customer_data(
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
    lambda_logs: LambdaLogs,
    overrides: dict[str, str],
) -> None:
    # GIVEN the function at DEBUG and records carrying the marker
    module = load_handler(monkeypatch, **aws.env(**overrides))
    # WHEN every record is published
    response = _invoke(module, _event(), lambda_logs)
    logged = lambda_logs.text()
    # THEN they are delivered, the summary is logged, and the marker is nowhere in the logs
    assert response == {"batchItemFailures": []}
    assert '"records_published":6' in logged.replace(" ", "")
    assert any(MARKER in data for data in aws.stored())  # it was there to be leaked
    _assert_no_customer_data(logged)


def test_handler_logs_throttling_without_customer_data(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, lambda_logs: LambdaLogs
) -> None:
    # GIVEN a fault proxy throttling about half the records and a tenth of the requests
    spec = FaultSpec(throttle=0.5, request_throttle=0.1, seed=11)
    with FaultProxy(aws.endpoint, spec) as proxy:
        module = load_handler(monkeypatch, **aws.env(AWS_ENDPOINT_URL_KINESIS=proxy.endpoint))
        # WHEN the batch is published through it
        response = _invoke(module, _event(), lambda_logs)
        throttled = proxy.stats.records_throttled
    logged = lambda_logs.text()
    # THEN throttling happened and was retried, and the marker is nowhere in the logs
    assert throttled > 0
    assert response == {"batchItemFailures": []}
    _assert_no_customer_data(logged)


@pytest.mark.parametrize("bucket_exists", [True, False], ids=["written", "write-fails"])
def test_handler_logs_dead_letters_without_customer_data(
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
    lambda_logs: LambdaLogs,
    bucket_exists: bool,
) -> None:
    # GIVEN records too large for MAX_RECORD_BYTES, and a bucket that exists or not
    bucket = aws.bucket if bucket_exists else f"{aws.bucket}-missing"
    module = load_handler(
        monkeypatch, **aws.env(DEAD_LETTER_BUCKET=bucket, MAX_RECORD_BYTES="1024")
    )
    big = kafka_record(
        TOPIC, 0, 5, MARKER, MARKER * 100, [(MARKER_TEXT, MARKER)], timestamp=1_700_000_000_000
    )
    # WHEN the batch is handled
    response = _invoke(module, _event(big), lambda_logs)
    logged = lambda_logs.text()
    # THEN the record is dead-lettered (or reported when it can not be), without the marker
    if bucket_exists:
        assert response == {"batchItemFailures": []}
        assert "record dead-lettered" in logged
    else:
        assert response == {
            "batchItemFailures": [{"itemIdentifier": {"partition": f"{TOPIC}-0", "offset": 5}}]
        }
        assert "NoSuchBucket" in logged
    _assert_no_customer_data(logged)


@pytest.mark.parametrize("problem", ["header-value", "header-name", "key-type"])
def test_handler_logs_malformed_record_without_customer_data(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, lambda_logs: LambdaLogs, problem: str
) -> None:
    # GIVEN an event whose last record is malformed in a field next to customer data (its
    # position readable)
    module = load_handler(monkeypatch, **aws.env())
    bad = kafka_record(TOPIC, 1, 9, MARKER, MARKER, [(MARKER_TEXT, MARKER)])
    if problem == "header-value":
        bad["headers"] = [{MARKER_TEXT: [*MARKER, 999]}]
    elif problem == "header-name":
        bad["headers"] = [{MARKER_TEXT + "\ud800": list(MARKER)}]
    else:
        bad["key"] = {"bytes": MARKER_TEXT}
    # WHEN it is handled
    response = _invoke(module, _event(*_records(1, 1), bad), lambda_logs)
    logged = lambda_logs.text()
    # THEN the records before it are published, it is reported, the error log names the
    # problem and where it is, and the marker is not in the logs
    assert response == {
        "batchItemFailures": [{"itemIdentifier": {"partition": f"{TOPIC}-1", "offset": 9}}]
    }
    assert "a record is malformed" in logged and f"records['{TOPIC}-1'][3]" in logged
    assert sum(len(deaggregate(data)) for data in aws.stored()) == 3
    _assert_no_customer_data(logged)


# A refused event publishes no metrics, which Powertools warns about.
@pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
def test_handler_logs_malformed_event_without_customer_data(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, lambda_logs: LambdaLogs
) -> None:
    # GIVEN an event whose last record's offset can not be read, beside customer data
    module = load_handler(monkeypatch, **aws.env())
    bad = kafka_record(TOPIC, 1, 9, MARKER, MARKER, [(MARKER_TEXT, MARKER)])
    bad["offset"] = "nine"
    # WHEN it is handled, the error escaping to the runtime as Lambda would log it
    response = _invoke(module, _event(*_records(1, 1), bad), lambda_logs)
    logged = lambda_logs.text()
    # THEN the error names the problem, nothing was sent, and the marker is not in the logs
    assert response is None
    assert "MalformedEventError" in logged and "field 'offset'" in logged
    assert aws.stored() == []
    _assert_no_customer_data(logged)


@pytest.mark.parametrize("cause", ["quoted", "unquoted", "missing-stream"])
def test_handler_logs_non_retryable_error_without_customer_data(
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
    lambda_logs: LambdaLogs,
    echoing_endpoints: dict[str, str],
    cause: str,
) -> None:
    # GIVEN a Kinesis that rejects the request, its message echoing the partition key (quoted
    # as Kinesis quotes it, or bare: no cleaning by pattern could find where that one ends),
    # or a stream that does not exist
    env = (
        aws.env(AWS_ENDPOINT_URL_KINESIS=echoing_endpoints[cause])
        if cause in echoing_endpoints
        else aws.env(STREAM_NAME=f"{aws.stream}-missing")
    )
    module = load_handler(monkeypatch, **env)
    # WHEN the batch is handled
    response = _invoke(module, _event(), lambda_logs)
    logged = lambda_logs.text()
    # THEN every partition is reported, the error code is logged, but not the marker
    assert response is not None
    assert {f["itemIdentifier"]["partition"] for f in response["batchItemFailures"]} == {
        f"{TOPIC}-0",
        f"{TOPIC}-1",
    }
    expected_code = (
        "ValidationException" if cause in echoing_endpoints else "ResourceNotFoundException"
    )
    assert expected_code in logged
    _assert_no_customer_data(logged)


@pytest.mark.parametrize(
    "overrides",
    [
        {"RECORD_FORMAT": "xml"},
        {"POWERTOOLS_LOG_LEVEL": "verbose"},
        {"AWS_ENDPOINT_URL_KINESIS": "localhost:4567"},
        {"DEAD_LETTER_BUCKET": "a..b"},
    ],
    ids=["record-format", "log-level", "endpoint", "bucket"],
)
def test_handler_logs_configuration_error_without_customer_data(
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
    lambda_logs: LambdaLogs,
    overrides: dict[str, str],
) -> None:
    # GIVEN a bad setting: the cold start fails, and Lambda retries it on the invocation
    env = aws.env(**overrides)
    for _attempt in ("init", "invoke"):
        try:
            module = load_handler(monkeypatch, **env)
        except Exception as error:
            lambda_logs.add_unhandled(error)
        else:
            _invoke(module, _event(), lambda_logs)
    logged = lambda_logs.text()
    # THEN the error names the variable, nothing was sent, and the marker is not in the logs
    (variable,) = overrides
    assert f"ConfigurationError: {variable}=" in logged
    assert aws.stored() == []
    _assert_no_customer_data(logged)
