"""What the fault proxy does to Kinesis requests: a compact spec, seeded decisions, shard limits."""

from __future__ import annotations

import difflib
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Final, TypeVar

from msk_kinesis_sink.limits import SHARD_WRITE_BYTES_PER_S, SHARD_WRITE_RECORDS_PER_S

# `make demo`'s default: every kind of fault on, at rates that keep the run short.
DEFAULT_DEMO_FAULTS: Final = (
    "throttle=0.05,internal=0.01,request_throttle=0.02,request5xx=0.02,lost=0.01,latency_ms=2"
)

_PROBABILITIES: Final = (
    "throttle",
    "internal",
    "request_throttle",
    "request5xx",
    "lost",
    "crash",
    "stall",
)


class FaultSpecError(ValueError):
    """A FAULTS spec string that cannot be parsed."""


class RecordFault(StrEnum):
    """Per-record error codes PutRecords returns (the record is not written)."""

    THROTTLED = "ProvisionedThroughputExceededException"
    INTERNAL = "InternalFailure"


class RequestFault(StrEnum):
    """What may happen to a whole PutRecords request."""

    THROTTLED = "throttled"  # 400 before anything is written
    SERVER_ERROR = "server_error"  # 500/503 before anything is written
    RESPONSE_LOST = "response_lost"  # written, then the connection drops without a response
    # Written, then a "200 OK" status line and silence until the client hangs up (a middlebox
    # that stalls mid-answer: only the client's deadline ends it).
    STALLED = "stalled"


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """Fault rates and knobs; parse one from `throttle=0.05,lost=0.01,latency_ms=5,...`."""

    throttle: float = 0.0  # per record: ProvisionedThroughputExceededException
    internal: float = 0.0  # per record: InternalFailure
    request_throttle: float = 0.0  # per request: 400 ProvisionedThroughputExceededException
    request5xx: float = 0.0  # per request: 500 InternalFailure / 503 ServiceUnavailable
    lost: float = 0.0  # per request: written, response never arrives
    stall: float = 0.0  # per request: written, then a 200 status line and silence
    latency_ms: int = 0  # added to every request
    latency_jitter_ms: int = 0  # plus a seeded uniform 0..jitter
    shard_limits: bool = False  # per-shard token buckets at Kinesis's 1 MiB/s, 1,000 records/s
    seed: int = 0
    # Partition keys whose records fail with InternalFailure (drives retry exhaustion).
    poison: tuple[str, ...] = field(default=())
    # How many attempts each poisoned key fails before its records are written; 0: every one.
    poison_failures: int = 0
    # Per invocation: the emulator SIGKILLs the function's process at a random point (the proxy
    # does not read it; localloop.function_process does).
    crash: float = 0.0

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """`""`/`none` = no faults; `default` = the demo's rates; else comma-separated k=v
        (later items win, so `default,lost=0` is the default without lost responses)."""
        text = text.strip()
        if text in ("", "none", "off"):
            return cls()
        # `default` may stand alone or be extended/overridden: `default,shard_limits=on`.
        text = ",".join(
            DEFAULT_DEMO_FAULTS if item.strip() == "default" else item for item in text.split(",")
        )
        known = {f.name for f in fields(cls)}
        values: dict[str, object] = {}
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, raw = item.partition("=")
            name = name.strip()
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                names = ", ".join(["default", "none", *sorted(known)])
                raise FaultSpecError(f"unknown fault {name!r}{hint}; known: {names}")
            if not sep:
                raise FaultSpecError(f"fault {name!r} needs a value: {name}=...")
            values[name] = _parse_value(name, raw.strip())
        return cls(**values)  # type: ignore[arg-type]

    def describe(self) -> str:
        """The spec back as a string (only the fields that differ from no-faults)."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value == f.default or (f.name == "poison" and not value):
                continue
            if isinstance(value, tuple):
                value = "|".join(value)
            elif isinstance(value, bool):
                value = "on" if value else "off"
            parts.append(f"{f.name}={value}")
        return ",".join(parts) or "none"


def _parse_value(name: str, raw: str) -> object:
    if name in _PROBABILITIES:
        value = _number(name, raw, float)
        if not 0.0 <= value <= 1.0:
            raise FaultSpecError(f"{name}={raw} must be a probability between 0 and 1")
        return value
    if name in ("latency_ms", "latency_jitter_ms", "seed", "poison_failures"):
        number = _number(name, raw, int)
        if number < 0:
            raise FaultSpecError(f"{name}={raw} must be >= 0")
        return number
    if name == "shard_limits":
        if raw.lower() not in ("on", "off", "true", "false", "1", "0"):
            raise FaultSpecError(f"shard_limits={raw} must be on or off")
        return raw.lower() in ("on", "true", "1")
    if name == "poison":
        return tuple(part for part in raw.split("|") if part)
    raise FaultSpecError(f"unknown fault {name}")  # pragma: no cover - guarded by parse()


_N = TypeVar("_N", int, float)


def _number(name: str, raw: str, kind: Callable[[str], _N]) -> _N:
    try:
        return kind(raw)
    except ValueError:
        raise FaultSpecError(f"{name}={raw!r} is not a number") from None


def _uniforms(*parts: bytes | str | int) -> tuple[float, float, float, float]:
    """Four uniform [0, 1) numbers derived from the inputs (a hash, not a shared RNG stream)."""
    digest = hashlib.blake2b(digest_size=32)
    for part in parts:
        chunk = part.encode() if isinstance(part, str) else part
        if isinstance(chunk, int):
            chunk = chunk.to_bytes(8, "big", signed=True)
        digest.update(len(chunk).to_bytes(4, "big"))
        digest.update(chunk)
    raw = digest.digest()
    scale = float(1 << 64)
    return (
        int.from_bytes(raw[0:8], "big") / scale,
        int.from_bytes(raw[8:16], "big") / scale,
        int.from_bytes(raw[16:24], "big") / scale,
        int.from_bytes(raw[24:32], "big") / scale,
    )


def record_identity(partition_key: str, data: bytes) -> bytes:
    """What identifies a record across retries: its partition key and a digest of its data."""
    return hashlib.blake2b(partition_key.encode() + b"\x00" + data, digest_size=16).digest()


class FaultDecider:
    """Seeded, reproducible fault decisions.

    Each decision is a hash of (seed, what is being sent, how many times it was sent before), not a
    draw from one shared random stream, so the outcome does not depend on how the sink's threads
    interleave their requests: the same seed and workload give the same faults.
    """

    def __init__(self, spec: FaultSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._record_attempts: Counter[bytes] = Counter()
        self._request_attempts: Counter[bytes] = Counter()
        self._poison_failures: Counter[str] = Counter()

    def request_fault(self, identities: list[bytes]) -> tuple[RequestFault | None, float]:
        """Whether the whole request fails, and the latency (seconds) to add before answering."""
        request_id = hashlib.blake2b(b"".join(identities), digest_size=16).digest()
        with self._lock:
            attempt = self._request_attempts[request_id]
            self._request_attempts[request_id] += 1
        u_throttle, u_5xx, u_lost, u_latency = _uniforms(
            self.spec.seed, b"req", request_id, attempt
        )
        latency_s = (self.spec.latency_ms + u_latency * self.spec.latency_jitter_ms) / 1000.0
        if u_throttle < self.spec.request_throttle:
            return RequestFault.THROTTLED, latency_s
        if u_5xx < self.spec.request5xx:
            return RequestFault.SERVER_ERROR, latency_s
        if u_lost < self.spec.lost:
            return RequestFault.RESPONSE_LOST, latency_s
        if self.spec.stall and _uniforms(self.spec.seed, b"stall", request_id, attempt)[0] < (
            self.spec.stall
        ):
            return RequestFault.STALLED, latency_s
        return None, latency_s

    def record_fault(self, identity: bytes, partition_key: str) -> RecordFault | None:
        """Whether this attempt at this record fails (it is then not written)."""
        if partition_key in self.spec.poison and self._poisoned(partition_key):
            return RecordFault.INTERNAL
        with self._lock:
            attempt = self._record_attempts[identity]
            self._record_attempts[identity] += 1
        u_throttle, u_internal, _, _ = _uniforms(self.spec.seed, b"rec", identity, attempt)
        if u_throttle < self.spec.throttle:
            return RecordFault.THROTTLED
        if u_internal < self.spec.internal:
            return RecordFault.INTERNAL
        return None

    @property
    def poisoned_attempts(self) -> int:
        """Attempts failed because their key is poisoned, so far."""
        with self._lock:
            return sum(self._poison_failures.values())

    def _poisoned(self, partition_key: str) -> bool:
        """Whether this attempt at a poisoned key fails: every one, or its first
        `poison_failures`. A poison that lifts stands for a fault that clears (an outage ends, a
        bug is fixed), which failureMode=block waits for. It is counted in failed attempts, not
        seconds, so a run is the same on a slow machine as on a fast one; the attempts come in
        the function's own rhythm (backoff within an invocation, the mapping's retries after)."""
        limit = self.spec.poison_failures
        with self._lock:
            if limit and self._poison_failures[partition_key] >= limit:
                return False
            self._poison_failures[partition_key] += 1
        return True


class TokenBucket:
    """A shard's write allowance: refills continuously, holds at most one second's worth."""

    def __init__(
        self,
        bytes_per_s: float = SHARD_WRITE_BYTES_PER_S,
        records_per_s: float = SHARD_WRITE_RECORDS_PER_S,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bytes_per_s = bytes_per_s
        self._records_per_s = records_per_s
        self._bytes = bytes_per_s
        self._records = records_per_s
        self._clock = clock
        self._at = clock()

    def take(self, size: int) -> bool:
        """Spend one record of `size` bytes if the allowance covers it."""
        now = self._clock()
        elapsed, self._at = now - self._at, now
        self._bytes = min(self._bytes_per_s, self._bytes + elapsed * self._bytes_per_s)
        self._records = min(self._records_per_s, self._records + elapsed * self._records_per_s)
        if self._records < 1 or self._bytes < size:
            return False
        self._records -= 1
        self._bytes -= size
        return True


@dataclass(frozen=True, slots=True)
class ShardRange:
    shard_id: str
    start: int
    end: int


def shard_for(hash_key: int, shards: list[ShardRange]) -> str | None:
    """The open shard whose hash-key range contains `hash_key`."""
    for shard in shards:
        if shard.start <= hash_key <= shard.end:
            return shard.shard_id
    return None


def partition_key_hash(partition_key: str) -> int:
    """Kinesis maps a partition key to a shard by the MD5 of its UTF-8 bytes as a 128-bit int."""
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")
