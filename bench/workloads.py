"""The benchmark's workloads: deterministic Kafka records, and the MSK event that carries them.

Pure code (no I/O): every system of a run sees byte-identical records and partition keys.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import string
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from msk_kinesis_sink.encoding import partition_key_for
from msk_kinesis_sink.events import KafkaRecord
from msk_kinesis_sink.limits import MAX_INVOCATION_BYTES, PUT_PAYLOAD_UNIT_BYTES
from msk_kinesis_sink.settings import PartitionKeyMode, RecordFormat

TOPIC: Final = "bench.orders-v1"
# Warm-up records go to another topic, so a stream audit can tell them from the workload's.
WARM_UP_TOPIC: Final = "bench.warm-up"
PARTITIONS: Final = 10
KIB: Final = 1024


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One Kafka record of a workload; `key` None is a null key."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    description: str
    records: tuple[SourceRecord, ...]
    partition_key_mode: PartitionKeyMode = PartitionKeyMode.KEY
    record_format: RecordFormat = RecordFormat.RAW
    # Records per invocation, as an ESM with this BatchSize sends them; None: one invocation.
    batch_size: int | None = None

    @property
    def payload_bytes(self) -> int:
        return sum(len(record.value) for record in self.records)

    def partition_keys(self) -> list[str]:
        """The Kinesis partition key of each record, exactly as the sink derives it."""
        return [
            partition_key_for(kafka_record(record), record.key, self.partition_key_mode)
            for record in self.records
        ]


def kafka_record(record: SourceRecord) -> KafkaRecord:
    """The record exactly as the sink parses it out of `msk_event` (for other systems' encoders)."""
    return KafkaRecord(
        topic=TOPIC,
        partition=record.partition,
        offset=record.offset,
        timestamp=_timestamp(record),
        timestamp_type="CREATE_TIME",
        key_b64=_b64(record.key),
        value_b64=_b64(record.value),
        headers=record.headers,
    )


def _timestamp(record: SourceRecord) -> int:
    return 1_767_225_600_000 + record.offset


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def kafka_partition(key: bytes) -> int:
    """A stable key -> partition mapping, like Kafka's default partitioner (a hash mod N)."""
    return zlib.crc32(key) % PARTITIONS


def _assign_offsets(
    keyed: Iterable[tuple[int, bytes | None, bytes]],
    headers: Iterable[tuple[tuple[str, bytes], ...]] | None = None,
) -> tuple[SourceRecord, ...]:
    next_offset: dict[int, int] = defaultdict(int)
    records = []
    for (partition, key, value), record_headers in zip(
        keyed, headers if headers is not None else itertools.repeat(()), strict=False
    ):
        offset = next_offset[partition]
        next_offset[partition] += 1
        records.append(SourceRecord(partition, offset, key, value, record_headers))
    return tuple(records)


def _values(rng: random.Random, count: int, size: int) -> list[bytes]:
    # Random bytes: incompressible, and no two values alike.
    return [rng.randbytes(size) for _ in range(count)]


def _distinct(count: int, value_size: int, seed: int) -> Iterable[tuple[int, bytes | None, bytes]]:
    rng = random.Random(seed)
    for i, value in enumerate(_values(rng, count, value_size)):
        key = f"user-{i:06d}".encode()
        yield kafka_partition(key), key, value


def w1() -> Workload:
    return Workload(
        "W1",
        "10,000 x 1 KiB, 10 partitions, every key distinct",
        _assign_offsets(_distinct(10_000, KIB, seed=1)),
    )


def w2() -> Workload:
    rng = random.Random(2)
    keyed = []
    for value in _values(rng, 10_000, KIB):
        key = f"user-{rng.randrange(2000):06d}".encode()
        keyed.append((kafka_partition(key), key, value))
    return Workload("W2", "10,000 x 1 KiB, 2,000 distinct keys (~5 each)", _assign_offsets(keyed))


def w3() -> Workload:
    rng = random.Random(3)
    hot = [b"hot-key-a", b"hot-key-b", b"hot-key-c"]
    keyed = []
    for i, value in enumerate(_values(rng, 10_000, KIB)):
        key = rng.choice(hot) if rng.random() < 0.8 else f"user-{i:06d}".encode()
        keyed.append((kafka_partition(key), key, value))
    return Workload("W3", "10,000 x 1 KiB, 3 hot keys carry 80%", _assign_offsets(keyed))


def w4() -> Workload:
    rng = random.Random(4)
    keyed: list[tuple[int, bytes | None, bytes]] = [
        (i % PARTITIONS, None, value) for i, value in enumerate(_values(rng, 10_000, KIB))
    ]
    return Workload(
        "W4", "10,000 x 1 KiB, null keys (one key per partition)", _assign_offsets(keyed)
    )


def w5() -> Workload:
    return Workload(
        "W5",
        "10,000 x 100 B, PARTITION_KEY=partition",
        _assign_offsets(_distinct(10_000, 100, seed=5)),
        partition_key_mode=PartitionKeyMode.PARTITION,
    )


def w6() -> Workload:
    """As many 1 KiB distinct-key records as one 6 MB invocation holds."""
    rng = random.Random(6)
    keyed = []
    size = len(json.dumps(_event_shell()))
    i = 0
    while True:
        key = f"user-{i:06d}".encode()
        value = rng.randbytes(KIB)
        record_json = json.dumps(_record_json(SourceRecord(0, 10**9, key, value)))
        if size + len(record_json) + 2 > MAX_INVOCATION_BYTES:  # the ESM sends no bigger batch
            break
        size += len(record_json) + 2
        keyed.append((kafka_partition(key), key, value))
        i += 1
    return Workload("W6", f"one 6 MB invocation ({len(keyed):,} x 1 KiB)", _assign_offsets(keyed))


# W7: the shape of the independent fault harness behind issue 8's "fast by default" goals.
W7_PARTITIONS: Final = 6
W7_RECORDS_PER_PARTITION: Final = 1_500
W7_HOT_KEYS: Final = (b"hot-key-a", b"hot-key-b", b"hot-key-c")
W7_HOT_SHARE: Final = 0.35
W7_NULL_SHARE: Final = 0.10
W7_BINARY_SHARE: Final = 0.05
W7_VALUE_SIZES: Final = (0, 20, 200, 2_000, 20_000)
W7_BATCH_SIZE: Final = 800
_W7_WARM_KEYS: Final = 5_000
_W7_BINARY_KEYS: Final = 300


def w7() -> Workload:
    """6 partitions x 1,500: 35 % on 3 hot keys, 10 % null, 5 % binary keys, the rest spread.

    Partitions are chosen by the producer (as the harness does), not by key hash, so each holds
    1,500 records and every hot key appears in every partition. Value sizes are drawn evenly from
    W7_VALUE_SIZES (0 is an empty value, not a tombstone).
    """
    rng = random.Random(7)
    # Binary keys that are never valid UTF-8 (0xff can not occur in UTF-8), so the sink hashes them.
    binary = [b"\xff" + rng.randbytes(15) for _ in range(_W7_BINARY_KEYS)]
    keyed: list[tuple[int, bytes | None, bytes]] = []
    for partition in range(W7_PARTITIONS):
        for _ in range(W7_RECORDS_PER_PARTITION):
            draw = rng.random()
            key: bytes | None
            if draw < W7_HOT_SHARE:
                key = rng.choice(W7_HOT_KEYS)
            elif draw < W7_HOT_SHARE + W7_NULL_SHARE:
                key = None
            elif draw < W7_HOT_SHARE + W7_NULL_SHARE + W7_BINARY_SHARE:
                key = rng.choice(binary)
            else:
                key = f"user-{rng.randrange(_W7_WARM_KEYS):05d}".encode()
            keyed.append((partition, key, rng.randbytes(rng.choice(W7_VALUE_SIZES))))
    return Workload(
        "W7",
        "harness shape: 6 x 1,500, 35 % hot / 10 % null / 5 % binary keys, 0-20 KB, envelope,"
        " 800 per invocation",
        _assign_offsets(keyed),
        record_format=RecordFormat.ENVELOPE,
        batch_size=W7_BATCH_SIZE,
    )


# W8: the headers-heavy event that took longer to parse and encode than a 1 s budget.
W8_RECORDS: Final = 10_000
W8_HEADERS: Final = (32, 40)
W8_HEADER_NAMES: Final = string.ascii_letters[:40]
W8_VALUE_BYTES: Final = 8


def w8() -> Workload:
    """10,000 records of 32-40 one-byte headers (single-letter names), 8 B values, distinct
    keys, `envelope`: about 5.9 MB of event JSON, one invocation."""
    rng = random.Random(8)
    keyed = list(_distinct(W8_RECORDS, W8_VALUE_BYTES, seed=8))
    headers = [
        tuple(
            (W8_HEADER_NAMES[n], bytes([rng.randrange(256)]))
            for n in range(rng.randint(*W8_HEADERS))
        )
        for _ in keyed
    ]
    return Workload(
        "W8",
        "10,000 x 32-40 one-byte headers, 8 B values, envelope (5.9 MB event)",
        _assign_offsets(keyed, headers),
        record_format=RecordFormat.ENVELOPE,
    )


WORKLOADS: Final[dict[str, Callable[[], Workload]]] = {
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "W5": w5,
    "W6": w6,
    "W7": w7,
    "W8": w8,
}


def _event_shell() -> dict[str, Any]:
    return {
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/bench/00000000-0000",
        "bootstrapServers": "b-1.bench.kafka.us-east-1.amazonaws.com:9098",
        "records": {},
    }


def _record_json(record: SourceRecord, topic: str = TOPIC) -> dict[str, Any]:
    out: dict[str, Any] = {
        "topic": topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": _timestamp(record),
        "timestampType": "CREATE_TIME",
        "value": _b64(record.value),
        "headers": [{name: list(value)} for name, value in record.headers],
    }
    if record.key is not None:
        out["key"] = _b64(record.key)
    return out


def msk_event(records: Sequence[SourceRecord], topic: str = TOPIC) -> dict[str, Any]:
    """The MSK event an ESM would send for these records (grouped by topic-partition)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[f"{topic}-{record.partition}"].append(_record_json(record, topic))
    return event_of(groups)


def event_of(groups: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """An MSK event holding these event records per "<topic>-<partition>"."""
    event = _event_shell()
    event["records"] = dict(groups)
    return event


def record_json(record: SourceRecord) -> dict[str, Any]:
    """The record as it appears in an event (built ahead, so an ESM can batch them cheaply)."""
    return _record_json(record)


def put_payload_units(record_bytes: int) -> int:
    """PUT payload units billed for one Kinesis record (provisioned: per 25 KB, rounded up)."""
    return max(1, -(-record_bytes // PUT_PAYLOAD_UNIT_BYTES))


def consumption_order(records: Sequence[SourceRecord]) -> list[SourceRecord]:
    """Records as a Kafka consumer would hand them over: partitions interleaved, each in order."""
    by_partition: dict[int, list[SourceRecord]] = defaultdict(list)
    for record in records:
        by_partition[record.partition].append(record)
    queues = [by_partition[p] for p in sorted(by_partition)]
    out: list[SourceRecord] = []
    index = 0
    while any(index < len(queue) for queue in queues):
        out.extend(queue[index] for queue in queues if index < len(queue))
        index += 1
    return out
