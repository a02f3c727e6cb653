"""The deadline-bounded HTTP transport against real sockets: keep-alive, TLS, trickling answers.

The servers here are scripted on raw sockets so they can misbehave the way real networks do: an
answer that trickles one byte at a time, a kept-alive connection closed while idle.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trustme

from msk_kinesis_sink.aws.clients import kinesis_client
from msk_kinesis_sink.aws.dns import Resolver
from msk_kinesis_sink.aws.kinesis import KinesisRecordWriter
from msk_kinesis_sink.aws.transport import (
    MAX_IDLE_S,
    ConnectFailed,
    ConnectionLost,
    DeadlineExceeded,
    Transport,
)
from msk_kinesis_sink.errors import KinesisPublishError
from msk_kinesis_sink.planning import Entry
from msk_kinesis_sink.settings import Settings

ANSWER = (
    b'{"FailedRecordCount":0,"Records":[{"SequenceNumber":"1","ShardId":"shardId-000000000000"}]}'
)
# A trickling server would go on for this long; every cut must come long before.
TRICKLE_FOR_S = 30.0
# How late after its deadline an exchange may end (thread wake-ups on a busy 2-core machine).
SLACK_S = 2.0

Script = Callable[[socket.socket], None]


def _read_request(conn: socket.socket) -> bytes:
    """Read one HTTP request (headers + Content-Length body); b'' when the peer closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)
    return head


def _answer(conn: socket.socket, body: bytes = ANSWER, *, close: bool = False) -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
        b"Content-Length: %d\r\n%s\r\n" % (len(body), b"Connection: close\r\n" if close else b"")
    )
    conn.sendall(head + body)


def _serve_keep_alive(conn: socket.socket) -> None:
    while _read_request(conn):
        _answer(conn)


def _serve_once_then_close(conn: socket.socket) -> None:
    """Answer one request, then close the kept-alive connection while it is idle."""
    if _read_request(conn):
        _answer(conn)


def _trickle(payload: bytes) -> Script:
    def serve(conn: socket.socket) -> None:
        if not _read_request(conn):
            return
        give_up = time.monotonic() + TRICKLE_FOR_S
        for byte in payload:
            if time.monotonic() > give_up:
                return
            conn.sendall(bytes([byte]))
            time.sleep(0.2)  # the stimulus: one byte every 200 ms, never a timeout's worth

    return serve


TRICKLING_BODY = _trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b" " * 1000)
TRICKLING_HEADERS = _trickle(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 1000)


class ScriptedServer:
    """Accepts connections on loopback and runs `script` on each, in its own thread."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self._script = script
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://localhost:{self.port}/"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        self._open.append(conn)
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            self._script(conn)
        except OSError:
            pass  # the client cut the exchange: that is what most tests here are about
        finally:
            conn.close()

    def close(self) -> None:
        self._listener.close()
        for conn in self._open:
            conn.close()


@contextmanager
def _server(script: Script, tls: ssl.SSLContext | None = None) -> Iterator[ScriptedServer]:
    server = ScriptedServer(script, tls)
    try:
        yield server
    finally:
        server.close()


def _post(transport: Transport, url: str, deadline_s: float) -> Any:
    return transport.send(
        "POST", url, {"Content-Type": "application/json"}, b"{}", time.monotonic() + deadline_s
    )


# -- plain HTTP --------------------------------------------------------------------------------


def test_transport_answers_and_keeps_the_connection_alive() -> None:
    # GIVEN a keep-alive server
    with _server(_serve_keep_alive) as server:
        transport = Transport()
        # WHEN two requests are sent from one thread
        answers = [_post(transport, server.url, 5) for _ in range(2)]
    # THEN both are answered over one connection
    assert [(a.status, a.body) for a in answers] == [(200, ANSWER)] * 2
    assert server.connections == 1


def test_transport_reconnects_when_an_idle_connection_was_closed() -> None:
    # GIVEN a server that closes each connection once it has answered one request
    with _server(_serve_once_then_close) as server:
        transport = Transport()
        first = _post(transport, server.url, 5)
        # WHEN the next request comes after the server closed the idle connection
        deadline = time.monotonic() + 5
        while server.connections == 1 and time.monotonic() < deadline:
            try:
                second = _post(transport, server.url, 5)
                break
            except ConnectionLost:  # the close raced the request: the only allowed miss
                continue
    # THEN it is answered over a new connection
    assert first.body == second.body == ANSWER
    assert server.connections == 2


def test_transport_does_not_reuse_a_connection_idle_past_the_limit() -> None:
    # GIVEN a keep-alive server, and a clock the test moves
    now = [1_000.0]
    with _server(_serve_keep_alive) as server:
        transport = Transport(clock=lambda: now[0])
        first = transport.send("POST", server.url, {}, b"{}", now[0] + 5)
        # WHEN the next request comes after more than MAX_IDLE_S (a frozen Lambda container)
        now[0] += MAX_IDLE_S + 1
        second = transport.send("POST", server.url, {}, b"{}", now[0] + 5)
        # AND another right after it
        third = transport.send("POST", server.url, {}, b"{}", now[0] + 5)
    # THEN the idle connection was replaced, and the fresh one reused
    assert first.body == second.body == third.body == ANSWER
    assert server.connections == 2


@pytest.mark.parametrize("script", [TRICKLING_BODY, TRICKLING_HEADERS], ids=["body", "headers"])
def test_transport_trickling_answer_is_cut_at_the_deadline(script: Script) -> None:
    # GIVEN a server that answers one byte every 200 ms (no read ever times out)
    with _server(script) as server:
        transport = Transport()
        started = time.monotonic()
        # WHEN a request with a one-second deadline is sent
        with pytest.raises(DeadlineExceeded) as raised:
            _post(transport, server.url, 1.0)
        elapsed = time.monotonic() - started
    # THEN it ends at its deadline, not when the server is done, and says it was sent
    assert elapsed < 1.0 + SLACK_S < TRICKLE_FOR_S
    assert raised.value.sent


def _status_line_then_silence(head: bytes) -> Script:
    """Answer with `head` (a status line, perhaps headers without a length), then say nothing
    until the client hangs up: a middlebox that stalls after the status line."""

    def serve(conn: socket.socket) -> None:
        if not _read_request(conn):
            return
        conn.sendall(head)
        while conn.recv(65536):  # until the client's side is shut
            pass

    return serve


STALLED_ANSWERS = {
    "status-line": b"HTTP/1.1 200 OK\r\n",
    "headers-without-length": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n",
    "part-of-a-framed-body": b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"Records"',
}


@pytest.mark.parametrize("head", STALLED_ANSWERS.values(), ids=STALLED_ANSWERS.keys())
def test_transport_answer_stalled_after_the_status_line_is_cut_not_complete(head: bytes) -> None:
    # GIVEN a server that stalls after the status line (and perhaps some headers or body)
    with _server(_status_line_then_silence(head)) as server:
        transport = Transport()
        started = time.monotonic()
        # WHEN a request with a one-second deadline is sent
        with pytest.raises(DeadlineExceeded) as raised:
            _post(transport, server.url, 1.0)
        elapsed = time.monotonic() - started
    # THEN it ends at the deadline as a cut exchange that was sent, never as a (short) answer
    assert elapsed < 1.0 + SLACK_S
    assert raised.value.sent


def test_kinesis_writer_stalled_answer_is_a_retryable_deadline_error() -> None:
    # GIVEN a Kinesis endpoint that sends "200 OK" and then nothing
    with _server(_status_line_then_silence(STALLED_ANSWERS["status-line"])) as server:
        writer = KinesisRecordWriter(kinesis_client(_settings(), _env(server.url)), "orders")
        # WHEN a record is written with a one-second deadline
        with pytest.raises(KinesisPublishError) as raised:
            writer.put_records([Entry.of("k", b"v", ())], time.monotonic() + 1.0)
    # THEN its outcome is unknown and it is retried, as a lost answer is
    assert raised.value.code == "RequestDeadlineExceeded"
    assert raised.value.retryable


def test_transport_slow_resolver_holds_no_worker_past_its_deadline() -> None:
    # GIVEN a resolver that does not answer, and four workers sending to one host at once
    release, lookups = threading.Event(), []

    def slow_dns(host: str, port: int) -> Any:
        lookups.append(host)
        release.wait()
        return socket.getaddrinfo("127.0.0.1", port, 0, socket.SOCK_STREAM)

    with _server(_serve_keep_alive) as server:
        transport = Transport(resolver=Resolver(slow_dns))
        errors: list[BaseException] = []

        def send() -> None:
            try:
                _post(transport, server.url, 0.3)
            except ConnectFailed as error:
                errors.append(error)

        started = time.monotonic()
        workers = [threading.Thread(target=send) for _ in range(4)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(timeout=TRICKLE_FOR_S)
        elapsed = time.monotonic() - started
        # THEN every worker is back by its deadline, having sent nothing, and one lookup ran
        assert len(errors) == 4 and not any(error.sent for error in errors)
        assert elapsed < 0.3 + SLACK_S
        assert lookups == ["localhost"]
        # AND once the resolver answers, requests go through on its answer
        release.set()
        assert _post(transport, server.url, 5).body == ANSWER


def test_transport_refused_connection_sent_nothing() -> None:
    # GIVEN a port nobody listens on
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    # WHEN a request is sent there
    with pytest.raises(ConnectFailed) as raised:
        _post(Transport(), f"http://127.0.0.1:{port}/", 5)
    # THEN nothing was sent
    assert not raised.value.sent


def test_transport_deadline_already_passed_sends_nothing() -> None:
    with _server(_serve_keep_alive) as server:
        with pytest.raises(DeadlineExceeded) as raised:
            _post(Transport(), server.url, -0.1)
        assert server.connections == 0
    assert not raised.value.sent


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


def _tls_server_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(context)
    return context


def test_transport_tls_verifies_the_server_and_answers(
    authority: trustme.CA, tmp_path: Any
) -> None:
    # GIVEN a TLS server whose certificate a known authority issued
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    with _server(_serve_keep_alive, _tls_server_context(authority)) as server:
        # WHEN requests are sent trusting that authority
        transport = Transport(ca_bundle=str(bundle))
        answers = [_post(transport, server.url, 5) for _ in range(2)]
    # THEN they are answered, over one connection
    assert [a.body for a in answers] == [ANSWER, ANSWER]
    assert server.connections == 1


def test_transport_tls_refuses_an_unknown_authority(authority: trustme.CA, tmp_path: Any) -> None:
    # GIVEN a TLS server, and a client that trusts another authority
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    # WHEN a request is sent
    with (
        _server(_serve_keep_alive, _tls_server_context(authority)) as server,
        pytest.raises(ConnectionLost) as raised,
    ):
        _post(Transport(ca_bundle=str(other)), server.url, 5)
    # THEN the handshake fails before anything is sent
    assert "CERTIFICATE_VERIFY_FAILED" in str(raised.value)
    assert not raised.value.sent


def test_transport_tls_trickling_answer_is_cut_at_the_deadline(
    authority: trustme.CA, tmp_path: Any
) -> None:
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    with _server(TRICKLING_BODY, _tls_server_context(authority)) as server:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            _post(Transport(ca_bundle=str(bundle)), server.url, 1.0)
        assert time.monotonic() - started < 1.0 + SLACK_S


def _silent(conn: socket.socket) -> None:
    """Accept the TCP connection, then say nothing (a TLS handshake that never completes)."""
    conn.recv(65536)
    time.sleep(TRICKLE_FOR_S)


def test_transport_stalled_tls_handshake_is_cut_at_the_deadline(tmp_path: Any) -> None:
    # GIVEN a server that accepts connections but never answers the TLS handshake
    bundle = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    with _server(_silent) as server:
        started = time.monotonic()
        # WHEN an HTTPS request with a one-second deadline is sent
        with pytest.raises(DeadlineExceeded) as raised:
            _post(Transport(ca_bundle=str(bundle)), f"https://localhost:{server.port}/", 1.0)
        # THEN it ends at the deadline, and nothing was sent
        assert time.monotonic() - started < 1.0 + SLACK_S
    assert not raised.value.sent


# -- through botocore ------------------------------------------------------------------------


def _settings() -> Settings:
    return Settings.from_env({"STREAM_NAME": "orders", "KINESIS_TIMEOUT_SECONDS": "5"})


def _env(url: str) -> dict[str, str]:
    return {
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL_KINESIS": url,
    }


def test_kinesis_writer_sends_through_the_bounded_transport() -> None:
    # GIVEN the function's Kinesis client, pointed at a local server
    with _server(_serve_keep_alive) as server:
        client = kinesis_client(_settings(), _env(server.url))
        writer = KinesisRecordWriter(client, "orders")
        # WHEN a record is written
        results = writer.put_records([Entry.of("k", b"v", ())], time.monotonic() + 5)
    # THEN the answer is read (botocore parsed what the transport received)
    assert [result.value for result in results] == ["written"]
    # and it is the transport that sent it: botocore still sends through the endpoint's
    # session in this version, which the bounded transport replaces
    assert type(client._endpoint.http_session).__name__ == "_BoundedSession"


def test_kinesis_writer_trickling_answer_is_a_retryable_deadline_error() -> None:
    # GIVEN a Kinesis endpoint that trickles its answer, and a 5 s KINESIS_TIMEOUT_SECONDS
    with _server(TRICKLING_BODY) as server:
        writer = KinesisRecordWriter(kinesis_client(_settings(), _env(server.url)), "orders")
        started = time.monotonic()
        # WHEN a request is given a one-second deadline
        with pytest.raises(KinesisPublishError) as raised:
            writer.put_records([Entry.of("k", b"v", ())], started + 1.0)
        elapsed = time.monotonic() - started
    # THEN it ends at that deadline, as a retryable error that says so
    assert raised.value.code == "RequestDeadlineExceeded"
    assert raised.value.retryable
    assert elapsed < 1.0 + SLACK_S
