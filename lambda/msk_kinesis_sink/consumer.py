"""Consumer-side rule for `envelope` records: exactly once, in Kafka order, per key.

The sink delivers at least once and never reorders a key, so a consumer that drops every record
whose offset is at or below the highest offset it has already seen for that
(topic, partition, key) receives every record exactly once and in Kafka order. The key is the
one the partition key was derived from: the Kafka key by default; with
PARTITION_KEY=header:<name>, pass the Kinesis record's partition key to `accept`.
Keep `OffsetDeduplicator` state per consumer (e.g. per shard processor); persist it alongside
your checkpoints if duplicates across restarts matter.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

# The envelope names a schema registry's metadata as the invocation event does.
from msk_kinesis_sink.events import KEY_SCHEMA_FIELD as KEY_SCHEMA
from msk_kinesis_sink.events import VALUE_SCHEMA_FIELD as VALUE_SCHEMA


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded `envelope` record; key and value stay base64 (None for null)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: str
    key: str | None
    value: str | None
    headers: tuple[tuple[str, str], ...]
    # (dataFormat, schemaId) of the registry schema that validated the key / the value, when a
    # schema registry on the mapping did (docs/schema-registry.md).
    key_schema: tuple[str, str] | None = None
    value_schema: tuple[str, str] | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        document: Any = json.loads(data)
        key_schema, value_schema = document.get(KEY_SCHEMA), document.get(VALUE_SCHEMA)
        return cls(
            topic=document["topic"],
            partition=int(document["partition"]),
            offset=int(document["offset"]),
            timestamp=int(document["timestamp"]),
            timestamp_type=document["timestampType"],
            key=document["key"],
            value=document["value"],
            headers=tuple((h["name"], h["value"]) for h in document["headers"]),
            key_schema=_schema(key_schema),
            value_schema=_schema(value_schema),
        )

    @property
    def ordering_key(self) -> tuple[str, int, str | None]:
        return (self.topic, self.partition, self.key)


def _schema(metadata: Any) -> tuple[str, str] | None:
    return None if metadata is None else (metadata["dataFormat"], metadata["schemaId"])


class OffsetDeduplicator:
    """Drops repeats: a record is new only if its offset is above the highest seen for its key."""

    def __init__(self) -> None:
        self._highest: dict[tuple[str, int, str | None], int] = {}

    def accept(self, envelope: Envelope, partition_key: str | None = None) -> bool:
        """True when the record is new for its (topic, partition, key) and should be processed.

        `partition_key`: the Kinesis record's partition key, when the order is kept per derived
        key (PARTITION_KEY=header:<name>) rather than per Kafka key.
        """
        key = (
            envelope.ordering_key
            if partition_key is None
            else (envelope.topic, envelope.partition, partition_key)
        )
        highest = self._highest.get(key)
        if highest is not None and envelope.offset <= highest:
            return False
        self._highest[key] = envelope.offset
        return True

    def filter(self, envelopes: Iterable[Envelope]) -> Iterator[Envelope]:
        return (envelope for envelope in envelopes if self.accept(envelope))
