"""How an invocation spends its time: when to stop reading and starting work, and each
request's deadline.

Everything is derived from the time the invocation has left (reading the event included), so
that the answer is always returned before Lambda's deadline and a short budget still makes
progress (docs/guarantee.md#time-budget has the smallest, by event size); and from how long a
round trip typically takes, which the container learns across invocations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Kept free at the end to build the partial-batch response, log the summary and flush metrics:
# a base plus a little per record (the response lists reported records one by one), at most
# a second, and never more than a quarter of what the invocation had.
ANSWER_RESERVE_BASE_S: Final = 0.1
ANSWER_RESERVE_PER_RECORD_S: Final = 5e-6
ANSWER_RESERVE_MAX_S: Final = 1.0
ANSWER_RESERVE_MAX_SHARE: Final = 0.25

# A request is started only with at least this long before the stop, and at least this many
# typical round trips: one cut at its deadline proves nothing and may still be written (a
# duplicate on redelivery), so starting it is worth less than answering on time.
MIN_REQUEST_WINDOW_S: Final = 0.05
ROUND_TRIPS_PER_WINDOW: Final = 1.5

# Reading the event ends this long before the last start (or a quarter of the way there,
# if that is sooner), so that what it read can still be sent: a piece may take a little longer
# than its estimate.
READ_MARGIN_S: Final = 0.02

# After the stop, how long to wait for requests that are past their deadline (only those sent
# without the deadline-bounded transport can be) before answering without them.
ABANDON_GRACE_S: Final = 0.05

# Weight of the newest round trip in the running estimate a run uses to decide whether a
# request still has time to complete.
ROUND_TRIP_SMOOTHING: Final = 0.2


@dataclass(frozen=True, slots=True)
class TimeBudget:
    """One invocation's clock: times are in the publisher's clock (time.monotonic())."""

    started: float
    deadline: float  # Lambda's deadline for this invocation
    stop_at: float  # no request runs past this; what follows is for the answer

    @classmethod
    def start(cls, now: float, remaining_s: float, record_count: int) -> TimeBudget:
        remaining_s = max(remaining_s, 0.0)
        reserve = min(
            ANSWER_RESERVE_BASE_S + record_count * ANSWER_RESERVE_PER_RECORD_S,
            ANSWER_RESERVE_MAX_S,
            remaining_s * ANSWER_RESERVE_MAX_SHARE,
        )
        return cls(started=now, deadline=now + remaining_s, stop_at=now + remaining_s - reserve)

    def last_start(self, typical_round_trip_s: float) -> float:
        """The last moment a new request may start.

        Never earlier than halfway to the stop: a stale or inflated estimate must not keep a
        short invocation from trying at all.
        """
        window = max(MIN_REQUEST_WINDOW_S, ROUND_TRIPS_PER_WINDOW * typical_round_trip_s)
        return self.stop_at - min(window, (self.stop_at - self.started) / 2)

    def last_read(self, typical_round_trip_s: float) -> float:
        """The moment reading the event must be done by: what it read can still be sent."""
        last_start = self.last_start(typical_round_trip_s)
        return last_start - min(READ_MARGIN_S, (last_start - self.started) / 4)

    def request_deadline(self, now: float, request_timeout_s: float) -> float:
        """A request started now ends by its timeout, and never after the stop."""
        return min(now + request_timeout_s, self.stop_at)

    @property
    def give_up_at(self) -> float:
        """When the run answers even if a request (outside the bounded transport) still runs."""
        return min(self.stop_at + ABANDON_GRACE_S, self.deadline)


class RoundTripEstimate:
    """How long a request typically takes to answer: an exponentially weighted average of the
    container's answered requests (0 until the first)."""

    def __init__(self) -> None:
        self.typical_s = 0.0

    def observe(self, seconds: float) -> None:
        previous = self.typical_s
        self.typical_s = (
            seconds if previous == 0.0 else previous + ROUND_TRIP_SMOOTHING * (seconds - previous)
        )
