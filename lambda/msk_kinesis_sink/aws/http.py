"""How botocore's requests travel: through the deadline-bounded transport, each with what its
worker thread set for it (its deadline; for PutRecords, its prepared body).

botocore still resolves the endpoint, signs, runs its hooks and parses the answer; only the HTTP
exchange is replaced, by swapping the endpoint's `http_session` for `_BoundedSession`.
"""

from __future__ import annotations

import functools
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, HTTPClientError
from botocore.httpsession import get_cert_path

from msk_kinesis_sink.aws.transport import (
    ConnectFailed,
    ConnectionLost,
    DeadlineExceeded,
    Transport,
)

# Why a thread-local: a client call passes only the operation's parameters down botocore's
# stack, so nothing of ours reaches its hooks or its HTTP session as an argument. Each worker
# thread makes one request at a time, on the same thread that then sends it; what the writer
# sets here around its call is what the session (the deadline) and the `before-call` hook
# (PutRecords' prepared body) of that very request read. `request_in_flight` is its only writer.
_REQUEST = threading.local()


@contextmanager
def request_in_flight(deadline: float, body: bytes | None = None) -> Iterator[None]:
    """Around one client call on this thread: the deadline its exchange ends by, and the body
    `use_prepared_body` puts in place of botocore's serialization."""
    _REQUEST.deadline, _REQUEST.body = deadline, body
    try:
        yield
    finally:
        _REQUEST.deadline = _REQUEST.body = None


def use_prepared_body(params: dict[str, Any], **_: Any) -> None:
    """A `before-call` hook: send the body the writer prepared for this request, if any."""
    body = getattr(_REQUEST, "body", None)
    if body is not None:
        params["body"] = body


class RequestDeadlineExceeded(HTTPClientError):
    """The request was cut at its deadline (the whole exchange, not one socket read)."""

    fmt = 'Request to "{endpoint_url}" cut at its deadline'


class _BoundedSession:
    """What botocore sends requests with, made to bound each whole exchange by a deadline.

    botocore still resolves the endpoint, signs, runs its `before-send` handlers (a handler
    that answers, as moto's does, means nothing is sent), and parses the answer; only the HTTP
    exchange is ours, so that a deadline covers all of it (botocore's read timeout covers one
    read). Anything the transport can't send as it is (a streamed body) goes through botocore's
    own session.
    """

    def __init__(self, transport: Transport, fallback: Any, default_timeout_s: float) -> None:
        self._transport = transport
        self._fallback = fallback
        self._default_timeout_s = default_timeout_s

    def send(self, request: AWSPreparedRequest) -> AWSResponse:
        body = request.body
        if body is None:
            body = b""
        elif isinstance(body, str):
            body = body.encode("utf-8")
        elif not isinstance(body, bytes | bytearray):
            return self._send_with_botocore(request)
        deadline = getattr(_REQUEST, "deadline", None)
        if deadline is None:
            deadline = time.monotonic() + self._default_timeout_s
        try:
            answer = self._transport.send(
                request.method, request.url, dict(request.headers.items()), bytes(body), deadline
            )
        except DeadlineExceeded as error:
            raise RequestDeadlineExceeded(endpoint_url=request.url, error=error) from None
        except ConnectFailed as error:
            raise EndpointConnectionError(endpoint_url=request.url, error=error) from None
        except ConnectionLost as error:
            raise ConnectionClosedError(endpoint_url=request.url, error=error) from None
        headers = HTTPHeaders()
        for name, value in answer.headers:
            headers[name] = value
        return AWSResponse(request.url, answer.status, headers, _Body(answer.body))

    def _send_with_botocore(self, request: AWSPreparedRequest) -> AWSResponse:
        response: AWSResponse = self._fallback.send(request)
        return response

    def close(self) -> None:
        self._fallback.close()


class _Body:
    """The raw body AWSResponse reads an answer from."""

    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def stream(self, **_: Any) -> Any:
        yield self._payload


def _proxied(endpoint_url: str | None) -> bool:
    """Whether the environment routes requests to this endpoint through an HTTP proxy."""
    proxies = urllib.request.getproxies_environment()
    if not proxies:
        return False
    parts = urlsplit(endpoint_url or "https://amazonaws.com")
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return False
    return (parts.scheme or "https") in proxies


def bound_every_request(client: Any, env: Mapping[str, str], default_timeout_s: float) -> bool:
    """Send the client's requests through the deadline-bounded transport; True when it does.

    Behind an HTTP proxy botocore keeps sending them (it speaks the proxy protocol); each read
    is then bounded by the timeout, and the publisher answers on time without waiting for them.
    """
    # The endpoint's session is what botocore sends with; a test pins that this still holds
    # for the pinned botocore (tests/integration/test_transport.py).
    endpoint: Any = getattr(client, "_endpoint", None)
    fallback = getattr(endpoint, "http_session", None)
    if fallback is None or not hasattr(fallback, "send") or _proxied(client.meta.endpoint_url):
        return False
    transport = _transport(env.get("AWS_CA_BUNDLE") or get_cert_path(True))
    endpoint.http_session = _BoundedSession(transport, fallback, default_timeout_s)
    return True


@functools.cache
def _transport(ca_bundle: str) -> Transport:
    """One transport for the container's clients: one TLS context (loading the CA bundle costs
    milliseconds), one watchdog thread, and each worker's connections in one pool."""
    return Transport(ca_bundle=ca_bundle)
