"""Build Kafka invocation events for tests: record dicts, MSK and self-managed events, samples."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).parent / "events"

MSK_CLUSTER_ARN = (
    "arn:aws:kafka:us-east-1:123456789012:cluster/vpc-2priv-2pub/"
    "751d2973-a626-431c-9d4e-d7975eb44dd7-2"
)
BOOTSTRAP_SERVERS = (
    "b-2.demo-cluster-1.a1bcde.c1.kafka.us-east-1.amazonaws.com:9092,"
    "b-1.demo-cluster-1.a1bcde.c1.kafka.us-east-1.amazonaws.com:9092"
)
DEFAULT_TIMESTAMP = 1545084650987


def b64(data: bytes | None) -> str | None:
    """Base64 text as the ESM sends it; None stays None."""
    return None if data is None else base64.b64encode(data).decode("ascii")


def kafka_record(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None = None,
    value: bytes | None = b"",
    headers: Sequence[tuple[str, bytes]] = (),
    *,
    timestamp: int = DEFAULT_TIMESTAMP,
    timestamp_type: str = "CREATE_TIME",
    key_schema: tuple[str, str] | None = None,
    value_schema: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """One record as it appears in the event; None key/value become JSON null (tombstone).

    `key_schema` / `value_schema`: (dataFormat, schemaId) as a schema registry on the mapping
    adds them for the attributes it validated.
    """
    record: dict[str, Any] = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp,
        "timestampType": timestamp_type,
        "key": b64(key),
        "value": b64(value),
        "headers": [{name: list(data)} for name, data in headers],
    }
    if key_schema is not None:
        record["keySchemaMetadata"] = schema_metadata(*key_schema)
    if value_schema is not None:
        record["valueSchemaMetadata"] = schema_metadata(*value_schema)
    return record


def schema_metadata(data_format: str, schema_id: str) -> dict[str, str]:
    """A record's schema metadata object as a schema registry on the mapping adds it."""
    return {"dataFormat": data_format, "schemaId": schema_id}


def group_records(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group record dicts under "<topic>-<partition>" keys, keeping their order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(f"{record['topic']}-{record['partition']}", []).append(record)
    return groups


def msk_event(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """An Amazon MSK ("aws:kafka") invocation event holding `records`."""
    return {
        "eventSource": "aws:kafka",
        "eventSourceArn": MSK_CLUSTER_ARN,
        "bootstrapServers": BOOTSTRAP_SERVERS,
        "records": group_records(records),
    }


def sources_event(
    sources: Iterable[tuple[int, int, bytes | None, bytes | None]], topic: str
) -> dict[str, Any]:
    """An MSK event from (partition, offset, key, value) rows of one topic."""
    return msk_event(
        kafka_record(topic, partition, offset, key, value, timestamp=1_700_000_000_000 + offset)
        for partition, offset, key, value in sources
    )


def self_managed_event(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A self-managed Kafka ("SelfManagedKafka") invocation event holding `records`."""
    return {
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": BOOTSTRAP_SERVERS,
        "records": group_records(records),
    }


def load_event(name: str) -> dict[str, Any]:
    """A sample event from tests/events/, e.g. load_event("msk_event.json")."""
    document: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))
    return document


def unwritable_record(
    topic: str,
    partition: int,
    offset: int,
    *,
    key: bytes = b"k",
    value_bytes: int = 2000,
    envelope: bool = False,
) -> Any:
    """An UnwritableRecord at that place: a record too large for MAX_RECORD_BYTES=1024, encoded
    `raw` (or `envelope`)."""
    from msk_kinesis_sink.encoding import UnwritableRecord, encode_record
    from msk_kinesis_sink.events import parse_event
    from msk_kinesis_sink.settings import PartitionKeyMode, RecordFormat

    record = kafka_record(topic, partition, offset, key, b"x" * value_bytes)
    [batch] = parse_event(msk_event([record])).partitions
    unit = encode_record(
        batch.records[0],
        record_format=RecordFormat.ENVELOPE if envelope else RecordFormat.RAW,
        partition_key_mode=PartitionKeyMode.KEY,
        max_record_bytes=1024,
    )
    assert isinstance(unit, UnwritableRecord)
    return unit
