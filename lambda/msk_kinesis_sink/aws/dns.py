"""Host name lookups that end by a deadline: one lookup in flight per host, recent answers reused.

`getaddrinfo` blocks its thread for as long as the resolver takes, and no socket timeout or
watchdog can cut it short. Each worker thread opening a connection would wait on its own lookup:
with a slow resolver, every worker of an invocation sat there past its deadline. Here a lookup
runs on a thread of its own, at most one per host at a time; every caller waits for it only
until its own deadline, and its answer serves the next callers for a few seconds.

Standard library only.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

# How long an answer is reused. A cold start opens one connection per worker within
# milliseconds, and a container thawed after its connections went idle reopens them together:
# one lookup serves each such burst. AWS asks long-lived clients not to keep an endpoint's
# addresses much longer than a minute (its guidance for the JVM's DNS cache: at most 60 s),
# so that traffic follows its DNS changes; 5 s stays far inside that, so the function follows
# them as fast as a resolver that honours the records' own short TTLs.
ANSWER_TTL_S: Final = 5.0

Address = tuple[Any, ...]  # a socket address, as getaddrinfo gives it
AddressInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, Address]
Lookup = Callable[[str, int], Sequence[AddressInfo]]


class LookupTimedOut(TimeoutError):
    """No answer for the host arrived by the caller's deadline (the lookup goes on)."""


def system_lookup(host: str, port: int) -> Sequence[AddressInfo]:
    """The system resolver's TCP addresses for host:port (what socket.create_connection uses)."""
    return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)


@dataclass(frozen=True, slots=True)
class _Answer:
    addresses: Sequence[AddressInfo]
    at: float


@dataclass(slots=True)
class _Pending:
    """A lookup in flight, and what it found once `done` is set."""

    done: threading.Event = field(default_factory=threading.Event)
    addresses: Sequence[AddressInfo] | None = None
    error: OSError | None = None


class Resolver:
    """Resolves host names for the transport; thread-safe, one per container."""

    def __init__(
        self,
        lookup: Lookup | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        ttl_s: float = ANSWER_TTL_S,
    ) -> None:
        self._lookup = lookup or system_lookup
        self._clock = clock
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, int], _Answer] = {}
        self._pending: dict[tuple[str, int], _Pending] = {}

    def resolve(self, host: str, port: int, deadline: float) -> Sequence[AddressInfo]:
        """The host's addresses; raises LookupTimedOut at `deadline`, or the lookup's OSError."""
        if _is_address(host):
            return self._lookup(host, port)  # a literal address needs no resolver
        key = (host, port)
        with self._lock:
            answer = self._answers.get(key)
            if answer is not None and self._clock() - answer.at < self._ttl_s:
                return answer.addresses
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = _Pending()
                threading.Thread(
                    target=self._run, args=(key, pending), name=f"dns-{host}", daemon=True
                ).start()
        if not pending.done.wait(max(0.0, deadline - self._clock())):
            raise LookupTimedOut(f"no address for {host} by the request's deadline")
        if pending.error is not None:
            raise pending.error
        assert pending.addresses is not None  # set before `done`, unless the error was
        return pending.addresses

    def _run(self, key: tuple[str, int], pending: _Pending) -> None:
        try:
            pending.addresses = self._lookup(*key)
        except OSError as error:  # not kept: the next caller asks again
            pending.error = error
        except Exception as error:  # e.g. UnicodeError for a name IDNA refuses
            pending.error = OSError(f"{type(error).__name__}: {error}")
        with self._lock:
            del self._pending[key]
            if pending.addresses is not None:
                self._answers[key] = _Answer(pending.addresses, self._clock())
        pending.done.set()


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def connect(
    addresses: Sequence[AddressInfo], deadline: float, clock: Callable[[], float]
) -> socket.socket:
    """A TCP connection to the first of `addresses` that accepts one by `deadline` (as
    socket.create_connection tries them)."""
    failure: OSError | None = None
    for family, kind, protocol, _, address in addresses:
        left = deadline - clock()
        if left <= 0:
            raise TimeoutError("no time left to connect") from failure
        sock = socket.socket(family, kind, protocol)
        try:
            sock.settimeout(left)
            sock.connect(address)
        except OSError as error:
            sock.close()
            failure = error
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise failure or OSError("the host name resolved to no address")
