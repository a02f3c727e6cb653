"""An HTTP proxy in front of a Kinesis endpoint that injects faults into PutRecords.

Per-record failures are real: failed records are *not* forwarded; only the survivors are written and
the per-record errors are spliced back into the response at their original positions, exactly as
Kinesis reports a partially failed PutRecords. DescribeStreamSummary answers can be made to say
what kinesalite does not know (RecordDistributionStrategy, MaxRecordSizeInKiB): `summary`, which
may change while the proxy runs. Every other call passes through unchanged.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import http.client
import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

from localloop.faults import (
    FaultDecider,
    FaultSpec,
    RecordFault,
    RequestFault,
    ShardRange,
    TokenBucket,
    partition_key_hash,
    record_identity,
    shard_for,
)
from localloop.kinesis_local import LOCAL_SIGNATURE_HEADERS
from localloop.procs import LOOPBACK
from msk_kinesis_sink.aws.transport import Answer  # an HTTP answer, as the function reads one
from msk_kinesis_sink.limits import MAX_RECORDS_PER_REQUEST, MAX_REQUEST_BYTES

_JSON_CONTENT_TYPE: Final = "application/x-amz-json-1.1"
_PUT_RECORDS_TARGET: Final = "Kinesis_20131202.PutRecords"
_LIST_SHARDS_TARGET: Final = "Kinesis_20131202.ListShards"
_DESCRIBE_SUMMARY_TARGET: Final = "Kinesis_20131202.DescribeStreamSummary"
_ACCOUNT: Final = "000000000000"
_HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
)


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """Counters since the proxy started (a snapshot)."""

    requests: int = 0
    put_records_requests: int = 0
    records_received: int = 0
    records_written: int = 0
    records_throttled: int = 0
    records_internal_failure: int = 0
    records_poisoned: int = 0  # of records_internal_failure: failed for a poisoned key
    requests_throttled: int = 0
    requests_5xx: int = 0
    responses_lost: int = 0
    responses_stalled: int = 0
    limit_violations: int = 0
    summary_requests: int = 0

    def summary(self) -> str:
        return (
            f"put_requests={self.put_records_requests} records_in={self.records_received}"
            f" written={self.records_written} rec_throttled={self.records_throttled}"
            f" rec_internal={self.records_internal_failure} poisoned={self.records_poisoned}"
            f" req_throttled={self.requests_throttled}"
            f" req_5xx={self.requests_5xx} lost_responses={self.responses_lost}"
            f" stalled_responses={self.responses_stalled}"
            f" limit_violations={self.limit_violations} summaries={self.summary_requests}"
        )


class _Counters:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._values: dict[str, int] = {}

    def add(self, name: str, amount: int = 1) -> None:
        with self._changed:
            self._values[name] = self._values.get(name, 0) + amount
            self._changed.notify_all()

    def snapshot(self) -> ProxyStats:
        with self._changed:
            return ProxyStats(**self._values)

    def wait_for(self, name: str, at_least: int, timeout_s: float) -> bool:
        """Block until counter `name` reaches `at_least` (False if `timeout_s` passes first)."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self._values.get(name, 0) >= at_least, timeout=timeout_s
            )


@dataclass(frozen=True, slots=True)
class SummaryRewrite:
    """What DescribeStreamSummary answers say through the proxy (None: as kinesalite says)."""

    distribution: str | None = None  # RecordDistributionStrategy, e.g. AUTO
    max_record_kib: int | None = None  # MaxRecordSizeInKiB

    def describe(self) -> str:
        parts = [f"RecordDistributionStrategy={self.distribution}"] if self.distribution else []
        if self.max_record_kib is not None:
            parts.append(f"MaxRecordSizeInKiB={self.max_record_kib}")
        return ",".join(parts) or "as kinesalite says"


# The answer the proxy gives a stalled request: a status line, then nothing.
_STALLED_HEAD: Final = b"HTTP/1.1 200 OK\r\n"


class FaultProxy:
    """The proxy server; run it in a `with` block (a background thread serves requests)."""

    def __init__(
        self,
        upstream: str,
        spec: FaultSpec,
        *,
        port: int = 0,
        summary: SummaryRewrite | None = None,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must look like http://host:port, got {upstream!r}")
        self._upstream = (parts.hostname, parts.port)
        self.spec = spec
        # Read per request: a test (or the demo) may replace it while the proxy runs.
        self.summary = summary or SummaryRewrite()
        self._decider = FaultDecider(spec)
        self._counters = _Counters()
        self._local = threading.local()
        self._shards: dict[str, list[ShardRange]] = {}
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._bucket_lock = threading.Lock()
        self._server = _Server((LOOPBACK, port), _Handler, self)
        self.port: int = self._server.server_address[1]
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        self._thread: threading.Thread | None = None

    @property
    def stats(self) -> ProxyStats:
        return dataclasses.replace(
            self._counters.snapshot(), records_poisoned=self._decider.poisoned_attempts
        )

    def wait_for_summaries(self, count: int, timeout_s: float) -> bool:
        """Block until `count` DescribeStreamSummary requests have been answered."""
        return self._counters.wait_for("summary_requests", count, timeout_s)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fault-proxy", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- request handling -------------------------------------------------------------------

    def handle(self, request: _Handler) -> None:
        self._counters.add("requests")
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        target = request.headers.get("X-Amz-Target", "")
        content_type = request.headers.get("Content-Type", "")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        try:
            if target == _PUT_RECORDS_TARGET and "json" in content_type:
                reply = self._put_records(headers, body)
            elif target == _DESCRIBE_SUMMARY_TARGET and "json" in content_type:
                reply = self._describe_summary(headers, body)
            else:
                # Other calls (and CBOR-encoded PutRecords) pass through untouched.
                reply = self._forward(request.command, request.path, headers, body)
        except (OSError, http.client.HTTPException) as exc:
            reply = _error(502, "ServiceUnavailable", f"upstream unavailable: {exc}")
        if reply is None:
            # The write happened; the caller never hears about it.
            request.close_connection = True
            return
        if reply is _STALLED:
            # The write happened; the answer starts, then stops until the caller hangs up.
            request.wfile.write(_STALLED_HEAD)
            request.wfile.flush()
            with contextlib.suppress(OSError):
                request.rfile.read(1)  # returns when the caller shuts its side
            request.close_connection = True
            return
        # Status line, headers and body in one write: separate small writes stall on delayed ACKs.
        lines = [f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}"]
        lines += [f"{name}: {value}" for name, value in reply.headers]
        lines.append(f"Content-Length: {len(reply.body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        request.wfile.write(head + reply.body)

    def _put_records(self, headers: list[tuple[str, str]], body: bytes) -> Answer | None:
        self._counters.add("put_records_requests")
        payload: dict[str, Any] = json.loads(body)
        records: list[dict[str, Any]] = payload.get("Records") or []
        stream = str(payload.get("StreamName") or payload.get("StreamARN") or "")
        self._counters.add("records_received", len(records))
        datas = [base64.b64decode(r.get("Data", "")) for r in records]
        keys = [str(r.get("PartitionKey", "")) for r in records]
        request_bytes = sum(len(d) + len(k.encode()) for d, k in zip(datas, keys, strict=True))
        # kinesalite does not check the request size: the proxy enforces PutRecords' limits.
        if len(records) > MAX_RECORDS_PER_REQUEST or request_bytes > MAX_REQUEST_BYTES:
            self._counters.add("limit_violations")
            return _error(
                400,
                "InvalidArgumentException",
                f"PutRecords request exceeds a limit: {len(records)} records, {request_bytes} bytes"
                f" (max {MAX_RECORDS_PER_REQUEST} records, {MAX_REQUEST_BYTES} bytes)",
            )

        identities = [record_identity(k, d) for k, d in zip(keys, datas, strict=True)]
        request_fault, latency_s = self._decider.request_fault(identities)
        if latency_s > 0:
            time.sleep(latency_s)  # the injected latency itself, not a synchronisation
        if request_fault is RequestFault.THROTTLED:
            self._counters.add("requests_throttled")
            return _error(400, "ProvisionedThroughputExceededException", _rate_message(stream))
        if request_fault is RequestFault.SERVER_ERROR:
            self._counters.add("requests_5xx")
            if identities and identities[0][0] % 2:
                return _error(503, "ServiceUnavailable", "Service Unavailable")
            return _error(500, "InternalFailure", "Internal service failure.")

        faults = [self._decider.record_fault(i, k) for i, k in zip(identities, keys, strict=True)]
        if self.spec.shard_limits:
            faults = self._apply_shard_limits(stream, keys, datas, records, faults)
        survivors = [r for r, f in zip(records, faults, strict=True) if f is None]

        upstream_results: list[dict[str, Any]] = []
        encryption: Any = None
        if survivors:
            forwarded = json.dumps({**payload, "Records": survivors}).encode()
            reply = self._forward("POST", "/", headers, forwarded)
            if reply.status != 200:
                return reply
            upstream = json.loads(reply.body)
            upstream_results = list(upstream.get("Records", []))
            encryption = upstream.get("EncryptionType")
        results: list[dict[str, Any]] = []
        written = iter(upstream_results)
        for fault in faults:
            if fault is None:
                results.append(next(written))
            elif fault is RecordFault.THROTTLED:
                self._counters.add("records_throttled")
                results.append({"ErrorCode": fault.value, "ErrorMessage": _rate_message(stream)})
            else:
                self._counters.add("records_internal_failure")
                results.append(
                    {"ErrorCode": fault.value, "ErrorMessage": "Internal service failure."}
                )
        failed = sum(1 for r in results if "ErrorCode" in r)
        self._counters.add("records_written", len(results) - failed)
        if request_fault in (RequestFault.RESPONSE_LOST, RequestFault.STALLED):
            return self._withheld(request_fault)
        response: dict[str, Any] = {"FailedRecordCount": failed, "Records": results}
        if encryption is not None:
            response["EncryptionType"] = encryption
        return Answer(200, _json_headers(), json.dumps(response).encode())

    def _withheld(self, fault: RequestFault) -> Answer | None:
        """The written request's answer never comes (None), or stalls after its status line."""
        if fault is RequestFault.STALLED:
            self._counters.add("responses_stalled")
            return _STALLED
        self._counters.add("responses_lost")
        return None

    def _describe_summary(self, headers: list[tuple[str, str]], body: bytes) -> Answer:
        """Forward DescribeStreamSummary, then make its answer say what `summary` says."""
        self._counters.add("summary_requests")
        reply = self._forward("POST", "/", headers, body)
        rewrite = self.summary
        if reply.status != 200 or rewrite == SummaryRewrite():
            return reply
        document: dict[str, Any] = json.loads(reply.body)
        summary = document["StreamDescriptionSummary"]
        if rewrite.distribution is not None:
            summary["RecordDistributionStrategy"] = rewrite.distribution
        if rewrite.max_record_kib is not None:
            summary["MaxRecordSizeInKiB"] = rewrite.max_record_kib
        return Answer(reply.status, reply.headers, json.dumps(document).encode())

    def _apply_shard_limits(
        self,
        stream: str,
        keys: list[str],
        datas: list[bytes],
        records: list[dict[str, Any]],
        faults: list[RecordFault | None],
    ) -> list[RecordFault | None]:
        shards = self._shard_map(stream)
        limited: list[RecordFault | None] = []
        with self._bucket_lock:
            for key, data, record, fault in zip(keys, datas, records, faults, strict=True):
                if fault is not None:
                    limited.append(fault)
                    continue
                explicit = record.get("ExplicitHashKey")
                hash_key = int(explicit) if explicit else partition_key_hash(key)
                shard = shard_for(hash_key, shards) or "unknown"
                bucket = self._buckets.setdefault((stream, shard), TokenBucket())
                ok = bucket.take(len(data) + len(key.encode()))
                limited.append(None if ok else RecordFault.THROTTLED)
        return limited

    def _shard_map(self, stream: str) -> list[ShardRange]:
        cached = self._shards.get(stream)
        if cached is not None:
            return cached
        field = "StreamARN" if stream.startswith("arn:") else "StreamName"
        headers = [
            ("Content-Type", _JSON_CONTENT_TYPE),
            ("X-Amz-Target", _LIST_SHARDS_TARGET),
            *LOCAL_SIGNATURE_HEADERS.items(),
        ]
        reply = self._forward("POST", "/", headers, json.dumps({field: stream}).encode())
        shards: list[ShardRange] = []
        if reply.status == 200:
            for shard in json.loads(reply.body).get("Shards", []):
                if "EndingSequenceNumber" in shard.get("SequenceNumberRange", {}):
                    continue  # closed shards take no writes
                rng = shard["HashKeyRange"]
                shards.append(
                    ShardRange(
                        shard["ShardId"], int(rng["StartingHashKey"]), int(rng["EndingHashKey"])
                    )
                )
        self._shards[stream] = shards
        return shards

    def _forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> Answer:
        for attempt in range(2):
            conn = self._connection(fresh=attempt > 0)
            try:
                conn.putrequest(method, path, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                response = conn.getresponse()
                data = response.read()
            except (http.client.HTTPException, ConnectionError):
                # A kept-alive upstream connection that went stale: reconnect once.
                if attempt:
                    raise
                continue
            out_headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            return Answer(response.status, out_headers, data)
        raise AssertionError("unreachable")  # pragma: no cover

    def _connection(self, *, fresh: bool) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection(*self._upstream, timeout=60)
            self._local.conn = conn
        return conn


# What `_put_records` returns for a stalled request (compared by identity).
_STALLED: Final = Answer(200, [], b"")


def _json_headers() -> list[tuple[str, str]]:
    return [("Content-Type", _JSON_CONTENT_TYPE), ("x-amzn-RequestId", str(uuid.uuid4()))]


def _error(status: int, code: str, message: str) -> Answer:
    headers = [*_json_headers(), ("x-amzn-ErrorType", f"{code}:")]
    return Answer(status, headers, json.dumps({"__type": code, "message": message}).encode())


def _rate_message(stream: str) -> str:
    return f"Rate exceeded for stream {stream} under account {_ACCOUNT}."


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], proxy: FaultProxy
    ) -> None:
        self.proxy = proxy
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def do_POST(self) -> None:
        self.server.proxy.handle(self)

    def do_GET(self) -> None:
        self.server.proxy.handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines would be noise; the stats say what happened


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localloop.proxy",
        description="Fault-injecting proxy in front of a Kinesis endpoint (kinesalite).",
    )
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:4567")
    parser.add_argument("--port", type=int, default=0, help="listen port (default: a free one)")
    parser.add_argument("--faults", default="default", help="spec, e.g. throttle=0.05,lost=0.01")
    parser.add_argument(
        "--record-distribution",
        choices=("AUTO", "USER_PARTITION_KEY"),
        help="the RecordDistributionStrategy DescribeStreamSummary answers report",
    )
    parser.add_argument(
        "--max-record-kib",
        type=int,
        help="the MaxRecordSizeInKiB DescribeStreamSummary answers report (1024-10240)",
    )
    args = parser.parse_args(argv)
    summary = SummaryRewrite(args.record_distribution, args.max_record_kib)
    with FaultProxy(
        args.upstream, FaultSpec.parse(args.faults), port=args.port, summary=summary
    ) as proxy:
        print(f"proxy listening on {proxy.endpoint} -> {args.upstream}", flush=True)
        print(f"faults: {proxy.spec.describe()}", flush=True)
        print(f"stream summaries: {summary.describe()}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
        print(proxy.stats.summary(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
