"""Kafka records and the MSK event Lambda's event source mapping builds from them (AWS's shape)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Final

EVENT_SOURCE_MSK: Final = "aws:kafka"
EVENT_SOURCE_SELF_MANAGED: Final = "SelfManagedKafka"
# Bytes the event's envelope adds around the records (field names, ARN, braces); generous.
EVENT_OVERHEAD_BYTES: Final = 1024

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One record as polled from the broker."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_type: str = "CREATE_TIME"

    @property
    def tp(self) -> TopicPartition:
        return (self.topic, self.partition)


def partition_id(topic: str, partition: int) -> str:
    """The `records` key and `itemIdentifier.partition` value: `<topic>-<partition>`."""
    return f"{topic}-{partition}"


def event_record(record: KafkaRecord) -> dict[str, Any]:
    """One record in the event: base64 key/value, headers as `{name: [byte ints]}` objects."""
    out: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp_ms,
        "timestampType": record.timestamp_type,
    }
    if record.key is not None:  # a null key has no `key` field at all
        out["key"] = base64.b64encode(record.key).decode()
    out["value"] = None if record.value is None else base64.b64encode(record.value).decode()
    out["headers"] = [{name: list(value or b"")} for name, value in record.headers]
    return out


def json_size(obj: object) -> int:
    """Bytes of `obj` serialised as compact JSON (how the payload limit is measured here)."""
    return len(json.dumps(obj, separators=(",", ":")).encode())


def build_event(
    records: list[KafkaRecord],
    *,
    event_source: str,
    event_source_arn: str | None,
    bootstrap_servers: str,
) -> dict[str, Any]:
    """The invocation event for `records` (grouped by topic-partition, each group in order)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(partition_id(record.topic, record.partition), []).append(
            event_record(record)
        )
    event: dict[str, Any] = {"eventSource": event_source}
    if event_source_arn is not None:
        event["eventSourceArn"] = event_source_arn
    event["bootstrapServers"] = bootstrap_servers
    event["records"] = grouped
    return event
