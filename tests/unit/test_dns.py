"""Host name lookups bound by the caller's deadline: one in flight per host, answers reused.

The resolver is injected: a lookup that blocks until the test releases it stands for a slow DNS
server; the clock that ages answers is the test's.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence

import pytest

from msk_kinesis_sink.aws.dns import ANSWER_TTL_S, AddressInfo, LookupTimedOut, Resolver
from tests.fakes import FakeClock

ADDRESS: AddressInfo = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.10", 443))
# A deadline this far away is never reached in a test; a short one is, on purpose.
NEVER_S = 60.0
SHORT_S = 0.05


class SlowDns:
    """A lookup that answers only once `release` is set; counts the lookups it was asked for."""

    def __init__(self, *, blocked: bool = False, failure: OSError | None = None) -> None:
        self.release = threading.Event()
        if not blocked:
            self.release.set()
        self.failure = failure
        self.hosts: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, host: str, port: int) -> Sequence[AddressInfo]:
        with self._lock:
            self.hosts.append(host)
        self.release.wait()
        if self.failure is not None:
            raise self.failure
        return [ADDRESS]


def test_resolver_reuses_an_answer_for_its_ttl() -> None:
    # GIVEN a resolver on a clock the test moves
    clock, dns = FakeClock(), SlowDns()
    resolver = Resolver(dns, clock=clock)
    # WHEN a host is resolved, again just before the answer's TTL, and again at it
    first = resolver.resolve("kinesis.example", 443, clock() + NEVER_S)
    clock.advance(ANSWER_TTL_S - 0.001)
    again = resolver.resolve("kinesis.example", 443, clock() + NEVER_S)
    clock.advance(0.001)
    later = resolver.resolve("kinesis.example", 443, clock() + NEVER_S)
    # THEN the system resolver was asked once within the TTL, and once more after it
    assert first == again == later == [ADDRESS]
    assert dns.hosts == ["kinesis.example", "kinesis.example"]


def test_resolver_keeps_one_lookup_in_flight_and_every_caller_gives_up_at_its_deadline() -> None:
    # GIVEN a DNS server that does not answer, and four workers that need the same host
    dns = SlowDns(blocked=True)
    resolver = Resolver(dns)
    outcomes: list[type[BaseException] | None] = []
    ended_late: list[float] = []

    def worker() -> None:
        deadline = time.monotonic() + SHORT_S
        try:
            resolver.resolve("kinesis.example", 443, deadline)
            outcomes.append(None)
        except LookupTimedOut:
            outcomes.append(LookupTimedOut)
        ended_late.append(time.monotonic() - deadline)

    # WHEN they resolve it at once
    workers = [threading.Thread(target=worker) for _ in range(4)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=NEVER_S)
    # THEN each gave up at its deadline (no thread is left waiting on the resolver), and the
    # DNS server was asked once while they waited
    assert outcomes == [LookupTimedOut] * 4
    assert max(ended_late) < 1.0  # a deadline's wake-up on a busy machine, never the lookup's
    assert dns.hosts == ["kinesis.example"]
    # AND once it answers, its answer serves the next caller without another lookup
    dns.release.set()
    assert resolver.resolve("kinesis.example", 443, time.monotonic() + NEVER_S) == [ADDRESS]
    assert dns.hosts == ["kinesis.example"]


def test_resolver_a_slow_host_does_not_hold_another() -> None:
    # GIVEN one host whose lookup hangs
    hung = SlowDns(blocked=True)

    def lookup(host: str, port: int) -> Sequence[AddressInfo]:
        return hung(host, port) if host == "hung.example" else [ADDRESS]

    resolver = Resolver(lookup)
    with pytest.raises(LookupTimedOut):
        resolver.resolve("hung.example", 443, time.monotonic() + SHORT_S)
    # WHEN another host is resolved meanwhile / THEN it answers at once
    assert resolver.resolve("s3.example", 443, time.monotonic() + NEVER_S) == [ADDRESS]
    hung.release.set()


def test_resolver_does_not_keep_a_failure() -> None:
    # GIVEN a host the DNS server does not know
    dns = SlowDns(failure=socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    resolver = Resolver(dns)
    # WHEN it is resolved twice / THEN each fails with the resolver's error, and each asks again
    for _ in range(2):
        with pytest.raises(socket.gaierror):
            resolver.resolve("nowhere.example", 443, time.monotonic() + NEVER_S)
    assert dns.hosts == ["nowhere.example", "nowhere.example"]


def test_resolver_takes_a_literal_address_as_it_is() -> None:
    # GIVEN an endpoint given by IP address (kinesalite, the fault proxy)
    dns = SlowDns()
    resolver = Resolver(dns)
    # WHEN it is resolved twice / THEN the lookup (which only parses it) runs in the caller's
    # thread each time, with nothing kept
    resolver.resolve("127.0.0.1", 4567, 0.0)
    resolver.resolve("127.0.0.1", 4567, 0.0)
    assert dns.hosts == ["127.0.0.1", "127.0.0.1"]
