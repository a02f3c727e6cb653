"""The function's way into the emulated account: an HTTP proxy in front of the moto server that
records every call, and checks on the way what moto can't.

- Each request goes to moto as it was signed (its Host header kept), so moto checks the
  signature and, with access control on, the role's policy for the action.
- The resource: where moto would compare "*" (rehearse.permissions), a call whose action the
  policy allows, but on other resources only, is refused here as IAM refuses it.
- What a service does on the caller's behalf: Kinesis and S3 ask KMS for a data key with the
  caller's permissions when the stream or bucket is encrypted with a customer managed key
  ("kms:GenerateDataKey" on that key); moto's Kinesis and S3 don't. The proxy asks moto's KMS
  as the caller, and answers a refusal as the service would.
- moto's Kinesis loses records written concurrently: its calls reach moto one at a time (the
  function keeps its own concurrency).
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from localloop.procs import LOOPBACK
from rehearse.aws import Identity, client
from rehearse.calls import Request, denial_answer, denied_action, describe
from rehearse.permissions import RESOURCE_CHECKED_BY_MOTO, Policy

_HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
)
DATA_KEY_ACTION: Final = "kms:GenerateDataKey"
_WRITES_NEEDING_DATA_KEYS: Final = frozenset(
    {"kinesis:PutRecords", "kinesis:PutRecord", "s3:PutObject"}
)


@dataclass(frozen=True, slots=True)
class Call:
    """One call as it went: who refused it, if anyone (`denied_by`)."""

    action: str
    resource: str | None
    status: int
    denied_by: str | None = None
    on_behalf_of: str | None = None  # the call a service made this one for


@dataclass(frozen=True, slots=True)
class EncryptionKeys:
    """Which customer managed key encrypts each stream (by ARN) and bucket (by name)."""

    streams: Mapping[str, str]
    buckets: Mapping[str, str]

    def key_for(self, request: Request) -> str | None:
        if request.resource is None or request.name not in _WRITES_NEEDING_DATA_KEYS:
            return None
        if request.service == "kinesis":
            return self.streams.get(request.resource)
        bucket = request.resource.removeprefix("arn:aws:s3:::").partition("/")[0]
        return self.buckets.get(bucket)


class Gateway:
    """The proxy (`with gateway.serving():` runs it)."""

    def __init__(
        self,
        upstream: str,
        *,
        policy: Policy,
        caller: Identity,
        account: str,
        keys: EncryptionKeys,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must look like http://host:port, got {upstream!r}")
        self._upstream = (parts.hostname, parts.port)
        self._upstream_url = upstream
        self._policy = policy
        self._caller = caller
        self._account = account
        self._keys = keys
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._kinesis = threading.Lock()
        self._data_keys: dict[str, Call] = {}  # the verdict per key, asked once (KMS caches)
        self._data_key_lock = threading.Lock()
        self._local = threading.local()
        self.denied = threading.Event()
        self._server = _Server((LOOPBACK, 0), _Handler, self)
        self.endpoint = f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    @contextmanager
    def serving(self) -> Iterator[Gateway]:
        """Serve from a background thread for the lifetime of the `with` block."""
        thread = threading.Thread(target=self._server.serve_forever, name="gateway", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()

    # -- one request ------------------------------------------------------------------------

    def answer(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        request = describe(method, target, dict(headers), body, self._account)
        refusal = self._refused_resource(request) or self._refused_data_key(request)
        if refusal is not None:
            action, resource = refusal
            status, document = denial_answer(request, self._caller.name, action, resource)
            content = "application/x-amz-json-1.1" if request.json_protocol else "application/xml"
            return status, [("Content-Type", content)], document
        if request.service == "kinesis":
            with self._kinesis:
                status, answer_headers, answer = self._forward(method, target, headers, body)
        else:
            status, answer_headers, answer = self._forward(method, target, headers, body)
        refused = denied_action(request, status, answer)
        self._record(
            Call(request.name, request.resource, status, "moto's IAM" if refused else None)
        )
        if refused and request.json_protocol:
            # moto words a refusal as IAM's XML; a JSON service answers it in JSON.
            status, answer = denial_answer(
                request, self._caller.name, refused, request.resource or "*"
            )
            answer_headers = [("Content-Type", "application/x-amz-json-1.1")]
        return status, answer_headers, answer

    def _refused_resource(self, request: Request) -> tuple[str, str] | None:
        """An allowed action on a resource no statement for it covers (moto saw "*")."""
        if request.resource is None or request.service in RESOURCE_CHECKED_BY_MOTO:
            return None
        if not self._policy.allows_action(request.name):
            return None  # no statement at all: moto refuses it itself
        if self._policy.covers(request.name, request.resource):
            return None
        self._record(Call(request.name, request.resource, 403, "the policy's Resource"))
        return request.name, request.resource

    def _refused_data_key(self, request: Request) -> tuple[str, str] | None:
        """The data key the service would ask KMS for as the caller, if it would be refused."""
        key = self._keys.key_for(request)
        if key is None or not self._policy.allows_action(request.name):
            return None  # IAM refuses the call itself first
        with self._data_key_lock:
            verdict = self._data_keys.get(key)
            if verdict is None:
                verdict = self._data_keys[key] = self._ask_for_data_key(key, request.name)
                self._record(verdict)
        return None if verdict.denied_by is None else (DATA_KEY_ACTION, key)

    def _ask_for_data_key(self, key: str, on_behalf_of: str) -> Call:
        if self._policy.allows_action(DATA_KEY_ACTION) and not self._policy.covers(
            DATA_KEY_ACTION, key
        ):
            return Call(DATA_KEY_ACTION, key, 403, "the policy's Resource", on_behalf_of)
        kms = client("kms", self._upstream_url, self._caller)
        try:
            kms.generate_data_key(KeyId=key, KeySpec="AES_256")
        except ClientError as error:
            status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            refused = status == 403 or "AccessDenied" in str(error)
            return Call(
                DATA_KEY_ACTION, key, status, "moto's IAM" if refused else None, on_behalf_of
            )
        return Call(DATA_KEY_ACTION, key, 200, None, on_behalf_of)

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)
        if call.denied_by is not None:
            self.denied.set()

    def _forward(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = http.client.HTTPConnection(
                *self._upstream, timeout=60
            )
        try:
            return _exchange(connection, method, target, headers, body)
        except (OSError, http.client.HTTPException):
            connection.close()  # a kept-alive connection moto closed: once more, afresh
            return _exchange(connection, method, target, headers, body)


def _exchange(
    connection: http.client.HTTPConnection,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
) -> tuple[int, list[tuple[str, str]], bytes]:
    # The Host header stays as signed: moto checks the signature against it.
    connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
    for name, value in headers:
        if name.lower() not in _HOP_BY_HOP:
            connection.putheader(name, value)
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    answer = response.read()
    kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
    if method == "HEAD":
        # No body comes, but the length of the one a GET would get does.
        kept += [(k, v) for k, v in response.getheaders() if k.lower() == "content-length"]
    if response.will_close:
        connection.close()
    return response.status, kept, answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], gateway: Gateway) -> None:
        super().__init__(address, handler)
        self.gateway = gateway

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A caller that went away mid-answer (the function's process, stopped at a refused
        # call) is no error of the gateway's.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = list(self.headers.items())
        try:
            status, answer_headers, answer = self.server.gateway.answer(
                self.command, self.path, headers, body
            )
        except (OSError, http.client.HTTPException) as error:
            status, answer_headers = 502, [("Content-Type", "application/json")]
            answer = json.dumps({"__type": "ServiceUnavailable", "message": str(error)}).encode()
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
        lines += [f"{name}: {value}" for name, value in answer_headers]
        if self.command != "HEAD":
            lines.append(f"Content-Length: {len(answer)}")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + answer)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: object) -> None:
        pass  # the calls are recorded, not logged
