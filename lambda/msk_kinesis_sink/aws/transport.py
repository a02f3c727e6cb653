"""HTTP/1.1 exchanges that end by a deadline, whatever the server does.

botocore's timeouts bound each socket operation, not a request: an answer that trickles one byte
every few seconds keeps a request (and the invocation waiting for it) alive far past any budget.
Here a watchdog thread shuts the socket of every exchange still running at its deadline, so the
blocked read returns at once, and the exchange ends with `DeadlineExceeded`.

An answer is returned only when it is whole: one read to the end of a connection the watchdog
shut is cut, whatever it holds. Host names are resolved by `aws.dns`, which gives up at the
deadline too.

Standard library only; `aws.http` plugs it under botocore, which still signs, resolves endpoints and
parses answers.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from msk_kinesis_sink.aws.dns import Resolver, connect

# A kept-alive connection idle longer than this is not reused. A Lambda container can be frozen
# for minutes between invocations, long past the idle timeouts of the NAT and load balancers on
# the way, which drop a connection without a word: reusing it would cost a whole request
# timeout. A new connection costs one handshake.
MAX_IDLE_S: Final = 30.0

# Headers the exchange never forwards: `Expect: 100-continue` would make the server wait for a
# go-ahead this client does not wait for (the body follows the headers at once; SigV4 does not
# sign `Expect`).
_DROPPED_HEADERS = frozenset({"expect"})


class TransportError(Exception):
    """An exchange failed before a whole answer arrived; `sent` says whether the request left."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class DeadlineExceeded(TransportError):
    """The exchange was cut at its deadline."""


class ConnectFailed(TransportError):
    """No connection could be opened (nothing was sent)."""


class ConnectionLost(TransportError):
    """The connection broke during the exchange."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class Watchdog:
    """Shuts the socket of any exchange still running at its deadline (one thread for all)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, socket.socket] = {}
        self._fired: set[int] = set()
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, sock: socket.socket, deadline: float) -> int:
        with self._condition:
            token = next(self._tokens)
            self._armed[token] = sock
            heapq.heappush(self._heap, (deadline, token))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="request-watchdog", daemon=True
                )
                self._thread.start()
            self._condition.notify()
            return token

    def disarm(self, token: int) -> bool:
        """Stop watching; True when the deadline had already cut the exchange."""
        with self._condition:
            self._armed.pop(token, None)
            if token in self._fired:
                self._fired.discard(token)
                return True
            return False

    def _run(self) -> None:
        with self._condition:
            while True:
                # Forget entries whose exchange ended in time.
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._condition.wait()
                    continue
                deadline, token = self._heap[0]
                delay = deadline - self._clock()
                if delay > 0:
                    self._condition.wait(delay)
                    continue
                heapq.heappop(self._heap)
                sock = self._armed.pop(token)
                self._fired.add(token)
                # The plain socket's shutdown, also for TLS sockets: it wakes a thread blocked
                # in a read on the same descriptor without touching TLS state. OSError: it was
                # closed already (the exchange ended on its own).
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Connection:
    """One keep-alive connection to a host (used by one thread at a time)."""

    def __init__(
        self, scheme: str, host: str, port: int | None, tls: ssl.SSLContext | None
    ) -> None:
        self._http: http.client.HTTPConnection = (
            http.client.HTTPSConnection(host, port, context=tls)
            if scheme == "https"
            else http.client.HTTPConnection(host, port)
        )
        self._tls = tls
        self.last_used = 0.0

    def is_stale(self, now: float) -> bool:
        """Idle too long, or readable before we asked anything (the peer closed it)."""
        sock = self._http.sock
        if sock is None:
            return False
        if now - self.last_used > MAX_IDLE_S:
            return True
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        self._http.close()

    def exchange(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        deadline: float,
        watchdog: Watchdog,
        clock: Callable[[], float],
        resolver: Resolver,
    ) -> Answer:
        conn = self._http
        if deadline - clock() <= 0:
            raise DeadlineExceeded("no time left to start the request", sent=False)
        token: int | None = None
        sent = framed = False
        try:
            sock, unshaken = self._socket(deadline, clock, resolver)
            token = watchdog.arm(sock, deadline)
            if unshaken is not None:
                unshaken.do_handshake()
            sock.settimeout(max(deadline - clock(), 0.001))
            self._put_request(method, target, headers, body)
            sent = True  # from here on, the server may have the request
            conn.endheaders(body)
            response = conn.getresponse()
            # Framed: its end is known (a length, or chunks), and http.client raises when it
            # is cut short. Otherwise it ends where the connection does.
            framed = response.chunked or response.length is not None
            answer = Answer(response.status, response.getheaders(), response.read())
        except TransportError:
            raise
        except (OSError, http.client.HTTPException) as error:
            conn.close()
            cut = (token is not None and watchdog.disarm(token)) or clock() >= deadline
            token = None
            if cut:
                raise DeadlineExceeded("the request ran out of time", sent=sent) from None
            raise ConnectionLost(
                f"connection lost: {type(error).__name__}: {error}", sent=sent
            ) from None
        finally:
            self.last_used = clock()
        if token is not None and watchdog.disarm(token):
            conn.close()  # the deadline shut the socket as the answer was read
            if not framed:
                # The end of the answer was the watchdog's shutdown, not the server's: a status
                # line and then silence reads as a complete, empty answer.
                raise DeadlineExceeded("the answer was cut at its deadline", sent=True)
        return answer

    def _socket(
        self, deadline: float, clock: Callable[[], float], resolver: Resolver
    ) -> tuple[socket.socket, ssl.SSLSocket | None]:
        """The connection's socket, connected now (by `deadline`) when it has none; and, for a
        new TLS connection, the same socket as one whose handshake is still to do."""
        conn = self._http
        if conn.sock is not None:
            return conn.sock, None
        try:
            # TCP only: TLS follows under the watchdog. The lookup, too, ends by the deadline.
            addresses = resolver.resolve(conn.host, conn.port, deadline)
            conn.sock = connect(addresses, deadline, clock)
        except OSError as error:
            conn.close()
            raise ConnectFailed(f"could not connect: {error}", sent=False) from None
        sock = conn.sock
        if not isinstance(conn, http.client.HTTPSConnection):
            return sock, None
        assert self._tls is not None
        # Wrapping detaches the plain socket, so the watchdog must hold the TLS one; the caller
        # arms it before the handshake, which can trickle too.
        tls_sock = conn.sock = self._tls.wrap_socket(
            sock, server_hostname=conn.host, do_handshake_on_connect=False
        )
        return tls_sock, tls_sock

    def _put_request(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> None:
        """The request line and headers, buffered: nothing is sent until `endheaders`."""
        conn = self._http
        names = {name.lower() for name in headers}
        conn.putrequest(method, target, skip_host="host" in names, skip_accept_encoding=True)
        for name, value in headers.items():
            if name.lower() not in _DROPPED_HEADERS:
                conn.putheader(name, value)
        if "content-length" not in names:
            conn.putheader("Content-Length", str(len(body)))


class Transport:
    """Per-thread keep-alive connections; each exchange is bounded by its deadline."""

    def __init__(
        self,
        *,
        ca_bundle: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        watchdog: Watchdog | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self._clock = clock
        self._watchdog = watchdog or Watchdog(clock)
        self._resolver = resolver or Resolver(clock=clock)
        self._ca_bundle = ca_bundle
        self._tls: ssl.SSLContext | None = None
        self._local = threading.local()

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            # Certificate and host name verification on, TLS 1.2 or later.
            self._tls = ssl.create_default_context(cafile=self._ca_bundle)
        return self._tls

    def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, deadline: float
    ) -> Answer:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ConnectFailed(f"unsupported endpoint URL {url!r}", sent=False)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        connections: dict[tuple[str, str, int | None], _Connection] | None = getattr(
            self._local, "connections", None
        )
        if connections is None:
            connections = self._local.connections = {}
        key = (scheme, parts.hostname, parts.port)
        connection = connections.get(key)
        if connection is None or connection.is_stale(self._clock()):
            if connection is not None:
                connection.close()
            tls = self._tls_context() if scheme == "https" else None
            connection = connections[key] = _Connection(scheme, parts.hostname, parts.port, tls)
        return connection.exchange(
            method, target, headers, body, deadline, self._watchdog, self._clock, self._resolver
        )
