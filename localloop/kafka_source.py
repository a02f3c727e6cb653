"""The ESM's Kafka side: a consumer assigned to some partitions, committing as the ESM decides."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    TopicPartition,
)

from localloop.broker import client_config
from localloop.events import KafkaRecord
from localloop.events import TopicPartition as TP

log = logging.getLogger("localloop.kafka")

STARTING_POSITIONS: Final = ("TRIM_HORIZON", "LATEST")
_COMMIT_TIMEOUT_S: Final = 10.0


class KafkaSource:
    """Reads the given partitions in offset order, resuming from the group's committed offsets.

    Partitions are assigned, not subscribed: the mapping owns them (as Lambda's pollers do) and a
    group join would only add a rebalance delay. Offsets are committed to `group_id`, Lambda's
    default being the mapping's UUID, so a restarted emulator resumes where it left off.
    """

    def __init__(
        self,
        *,
        bootstrap: str,
        partitions: list[TP],
        group_id: str,
        starting_position: str = "TRIM_HORIZON",
    ) -> None:
        if starting_position not in STARTING_POSITIONS:
            raise ValueError(f"starting_position must be one of {STARTING_POSITIONS}")
        reset = "earliest" if starting_position == "TRIM_HORIZON" else "latest"
        self._consumer = Consumer(
            client_config(
                bootstrap,
                **{
                    "group.id": group_id,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": True,
                    "auto.offset.reset": reset,
                },
            )
        )
        default = OFFSET_BEGINNING if starting_position == "TRIM_HORIZON" else OFFSET_END
        wanted = [TopicPartition(topic, partition) for topic, partition in partitions]
        committed = self._consumer.committed(wanted, timeout=_COMMIT_TIMEOUT_S)
        assignment = [
            TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else default)
            for tp in committed
        ]
        self._consumer.assign(assignment)
        self._at_end: dict[TP, bool] = dict.fromkeys(partitions, False)

    def poll(self, max_records: int, timeout_s: float) -> list[KafkaRecord]:
        out: list[KafkaRecord] = []
        for message in self._consumer.consume(max(1, max_records), timeout_s):
            error = message.error()
            topic, partition = message.topic(), message.partition()
            if topic is None or partition is None:
                continue
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._at_end[(topic, partition)] = True
                else:
                    log.warning("consumer error on %s-%s: %s", topic, partition, error)
                continue
            offset = message.offset()
            if offset is None:
                continue
            kind, timestamp = message.timestamp()
            self._at_end[(topic, partition)] = False
            out.append(
                KafkaRecord(
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    timestamp_ms=timestamp,
                    key=_as_bytes(message.key()),
                    value=_as_bytes(message.value()),
                    headers=message_headers(message.headers()),
                    timestamp_type=(
                        "LOG_APPEND_TIME" if kind == TIMESTAMP_LOG_APPEND_TIME else "CREATE_TIME"
                    ),
                )
            )
        return out

    def commit(self, next_offsets: Mapping[TP, int]) -> None:
        self._consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in next_offsets.items()],
            asynchronous=False,
        )

    def caught_up(self) -> bool:
        return all(self._at_end.values())

    def close(self) -> None:
        self._consumer.close()


def _as_bytes(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"unexpected Kafka field type {type(value).__name__}")


def message_headers(raw: object) -> tuple[tuple[str, bytes | None], ...]:
    """Headers as an ordered tuple of (name, value); duplicate names are kept."""
    if not raw:
        return ()
    pairs = raw.items() if isinstance(raw, dict) else raw
    out: list[tuple[str, bytes | None]] = []
    for pair in pairs:  # type: ignore[attr-defined]
        name, value = pair
        out.append((str(name), _as_bytes(value)))
    return tuple(out)
