"""A realistic, seeded Kafka workload and the source log the auditor checks the stream against.

Hot keys, many warm keys, null keys, binary keys, keys too long to be partition keys, headers
(duplicate names included), tombstones, empty values, and sizes from a few bytes to hundreds of KB.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)

from localloop.broker import client_config, create_topic, topic_partitions
from localloop.events import TopicPartition as TP
from localloop.kafka_source import message_headers
from localloop.procs import wait_until

_PRODUCE_FLUSH_TIMEOUT_S: Final = 120.0
_READ_TIMEOUT_S: Final = 120.0
# Producer message size ceiling: the largest generated value plus room for key and headers.
_MAX_MESSAGE_BYTES: Final = 2 * 1024 * 1024
# CREATE_TIME of the generated workload's first record (2026-01-01T00:00:00Z), then 1 ms apart.
WORKLOAD_EPOCH_MS: Final = 1_767_225_600_000


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """How many records, over how many partitions, and the mix (shares of all records)."""

    records: int = 20_000
    partitions: int = 6
    seed: int = 1
    hot_keys: int = 3
    hot_share: float = 0.25
    warm_keys: int = 5_000
    null_key_share: float = 0.07
    binary_key_share: float = 0.07
    long_key_share: float = 0.03  # 300-character keys: longer than a partition key may be
    tombstone_share: float = 0.03  # of keyed records
    empty_value_share: float = 0.01
    header_share: float = 0.5
    large_share: float = 0.002  # 100-400 KB values
    medium_share: float = 0.04  # 8-64 KB
    small_share: float = 0.25  # 500 B - 8 KB; the rest are 1-500 B


@dataclass(frozen=True, slots=True)
class PlannedRecord:
    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int | None = None  # None = the producer's clock (CREATE_TIME now)


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """What the auditor needs of a produced record: where it is, its key, a digest of content."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    digest: bytes


@dataclass(slots=True)
class SourceLog:
    """The source side of an audit: every record per topic-partition, in offset order."""

    by_tp: dict[TP, list[SourceRecord]] = field(default_factory=dict)
    value_bytes: int = 0

    def add(self, record: SourceRecord) -> None:
        self.by_tp.setdefault((record.topic, record.partition), []).append(record)

    @property
    def total(self) -> int:
        return sum(len(records) for records in self.by_tp.values())

    def end_offsets(self) -> dict[TP, int]:
        """Next offset after the last record of each partition."""
        return {tp: records[-1].offset + 1 for tp, records in self.by_tp.items() if records}

    def sort(self) -> None:
        for records in self.by_tp.values():
            records.sort(key=lambda r: r.offset)


def content_digest(value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> bytes:
    """A digest of value and headers (order and duplicates matter), to detect corruption."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(b"\x00" if value is None else b"\x01" + value)
    for name, header_value in headers:
        digest.update(len(name).to_bytes(4, "big") + name.encode())
        digest.update(b"\x00" if header_value is None else b"\x01" + header_value)
        digest.update(len(header_value or b"").to_bytes(4, "big"))
    return digest.digest()


def generate(spec: WorkloadSpec) -> Iterator[PlannedRecord]:
    """The workload, deterministic for a given spec (seed included)."""
    rng = random.Random(spec.seed)
    hot = [f"hot-{i}".encode() for i in range(spec.hot_keys)]
    hot_weights = [1.0 / (i + 1) for i in range(spec.hot_keys)]  # Zipf-like among hot keys
    binary_pool = [rng.randbytes(16) for _ in range(300)]
    long_pool = [(f"long-{i:03d}-" + "x" * 300)[:300].encode() for i in range(50)]
    header_names = ("trace-id", "content-type", "source", "trace-id")  # a duplicate name
    null_round_robin = 0
    for index in range(spec.records):
        draw = rng.random()
        key: bytes | None
        if draw < spec.hot_share:
            key = rng.choices(hot, hot_weights)[0]
        elif draw < spec.hot_share + spec.null_key_share:
            key = None
        elif draw < spec.hot_share + spec.null_key_share + spec.binary_key_share:
            key = rng.choice(binary_pool)
        elif draw < (
            spec.hot_share + spec.null_key_share + spec.binary_key_share + spec.long_key_share
        ):
            key = rng.choice(long_pool)
        else:
            key = f"user-{rng.randrange(spec.warm_keys):05d}".encode()

        if key is None:
            partition = null_round_robin % spec.partitions
            null_round_robin += 1
        else:
            partition = zlib.crc32(key) % spec.partitions

        value: bytes | None
        size_draw = rng.random()
        if key is not None and rng.random() < spec.tombstone_share:
            value = None
        elif rng.random() < spec.empty_value_share:
            value = b""
        elif size_draw < spec.large_share:
            value = rng.randbytes(rng.randint(100_000, 400_000))
        elif size_draw < spec.large_share + spec.medium_share:
            value = rng.randbytes(rng.randint(8_000, 64_000))
        elif size_draw < spec.large_share + spec.medium_share + spec.small_share:
            value = rng.randbytes(rng.randint(500, 8_000))
        else:
            value = rng.randbytes(rng.randint(1, 500))

        headers: tuple[tuple[str, bytes], ...] = ()
        if rng.random() < spec.header_share:
            headers = tuple(
                (rng.choice(header_names), rng.randbytes(rng.randint(0, 32)))
                for _ in range(rng.randint(1, 3))
            )
        # Fixed timestamps (they are inside every envelope): the same seed gives the same bytes,
        # so the fault proxy's per-record decisions repeat from run to run.
        yield PlannedRecord(partition, key, value, headers, WORKLOAD_EPOCH_MS + index)


def produce(
    bootstrap: str,
    topic: str,
    spec: WorkloadSpec,
    *,
    on_progress: Callable[[int], object] | None = None,
) -> SourceLog:
    """Produce the generated workload and log it."""
    return produce_records(bootstrap, topic, generate(spec), on_progress=on_progress)


def produce_records(
    bootstrap: str,
    topic: str,
    planned_records: Iterable[PlannedRecord],
    *,
    on_progress: Callable[[int], object] | None = None,
) -> SourceLog:
    """Produce records (idempotent producer: per-partition order holds) and log them."""
    producer = Producer(
        client_config(
            bootstrap,
            **{
                "enable.idempotence": True,
                "linger.ms": 5,
                "message.max.bytes": _MAX_MESSAGE_BYTES,
            },
        )
    )
    log = SourceLog()
    failures: list[str] = []

    def delivered(key: bytes | None, digest: bytes) -> Callable[[KafkaError | None, Message], None]:
        def callback(error: KafkaError | None, message: Message) -> None:
            partition, offset = message.partition(), message.offset()
            if error is not None or partition is None or offset is None:
                failures.append(str(error))
                return
            log.add(SourceRecord(topic, partition, offset, key, digest))
            if on_progress is not None:
                on_progress(1)

        return callback

    for planned in planned_records:
        log.value_bytes += len(planned.value or b"")
        digest = content_digest(planned.value, planned.headers)
        while True:
            try:
                producer.produce(
                    topic,
                    key=planned.key,
                    value=planned.value,
                    partition=planned.partition,
                    headers=list(planned.headers),
                    timestamp=planned.timestamp_ms or 0,
                    on_delivery=delivered(planned.key, digest),
                )
                break
            except BufferError:
                producer.poll(0.05)  # local queue full: let deliveries drain, then go on
        producer.poll(0)
    remaining = producer.flush(_PRODUCE_FLUSH_TIMEOUT_S)
    if remaining or failures:
        raise RuntimeError(
            f"producing failed: {remaining} undelivered, {len(failures)} errors ({failures[:3]})"
        )
    log.sort()
    return log


def read_topic(bootstrap: str, topic: str, *, group_id: str = "localloop-audit") -> SourceLog:
    """Read a whole topic (every partition, from the beginning to its current end)."""
    partitions = topic_partitions(bootstrap, topic)
    consumer = Consumer(
        client_config(
            bootstrap,
            **{"group.id": group_id, "enable.auto.commit": False, "enable.partition.eof": True},
        )
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    log = SourceLog()
    at_end = dict.fromkeys(partitions, False)
    deadline = time.monotonic() + _READ_TIMEOUT_S

    def drained() -> bool:
        for message in consumer.consume(1000, 0.2):
            partition, offset, error = message.partition(), message.offset(), message.error()
            if partition is None:
                continue
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end[partition] = True
                continue
            if offset is None:
                continue
            at_end[partition] = False
            value = message.value()
            key = message.key()
            headers = message_headers(message.headers())
            value_bytes = value if isinstance(value, bytes) or value is None else value.encode()
            key_bytes = key if isinstance(key, bytes) or key is None else key.encode()
            log.value_bytes += len(value_bytes or b"")
            log.add(
                SourceRecord(
                    topic, partition, offset, key_bytes, content_digest(value_bytes, headers)
                )
            )
        return all(at_end.values())

    try:
        wait_until(drained, timeout_s=max(0.0, deadline - time.monotonic()), what=f"topic {topic}")
    finally:
        consumer.close()
    log.sort()
    return log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localloop.workload",
        description="Produce the seeded demo workload into a topic of your own Kafka.",
    )
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--records", type=int, default=WorkloadSpec().records)
    parser.add_argument("--seed", type=int, default=WorkloadSpec().seed)
    parser.add_argument(
        "--create", type=int, default=None, metavar="PARTITIONS", help="create the topic first"
    )
    args = parser.parse_args(argv)
    if args.create is not None:
        create_topic(args.bootstrap, args.topic, args.create)
    partitions = len(topic_partitions(args.bootstrap, args.topic))
    spec = WorkloadSpec(records=args.records, partitions=partitions, seed=args.seed)
    log = produce(args.bootstrap, args.topic, spec)
    print(
        f"records={log.total} partitions={partitions} value_bytes={log.value_bytes}"
        f" end_offsets={ {f'{t}-{p}': o for (t, p), o in sorted(log.end_offsets().items())} }"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
