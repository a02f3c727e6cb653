"""Turn a Kafka record into the Kinesis user record it becomes: data bytes and partition key."""

from __future__ import annotations

import binascii
import hashlib
import json
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Final, NamedTuple, assert_never

from msk_kinesis_sink.claim_checks import ClaimCheck, ClaimCheckTarget, pointer_bytes
from msk_kinesis_sink.errors import UnwritableRecordError
from msk_kinesis_sink.events import (
    KafkaRecord,
    PartitionBatch,
    record_members,
    schema_members,
)
from msk_kinesis_sink.kpl import has_kpl_framing, looks_aggregated, wrapped_size
from msk_kinesis_sink.limits import MAX_PARTITION_KEY_CHARS
from msk_kinesis_sink.settings import Aggregation, PartitionKeyMode, RecordFormat

EMPTY = b""
# The envelope member naming how the partition key was derived, written only when it is not
# the Kafka key's rule (envelopes without it read as before it existed).
PARTITION_KEY_FROM_FIELD = "partitionKeyFrom"


class EncodedRecord(NamedTuple):
    """A Kafka record ready for Kinesis, encoded exactly once (a NamedTuple: cheap to build)."""

    source: KafkaRecord
    data: bytes
    partition_key: str
    # Bytes Kinesis counts against its limits: data blob + UTF-8 partition key.
    size: int

    @property
    def offset(self) -> int:
        return self.source.offset


@dataclass(frozen=True, slots=True)
class UnwritableRecord:
    """A record Kinesis can never accept, with the reason; it goes to the dead-letter bucket."""

    source: KafkaRecord
    partition_key: str
    reason: str

    @property
    def offset(self) -> int:
        return self.source.offset


@dataclass(frozen=True, slots=True)
class ClaimCheckRecord:
    """A record too large for the stream (OVERSIZE_RECORDS=claim_check): `document`, the envelope
    it would have been, goes to S3 first, where `claim_check` says; then `pointer` takes its place
    in the stream, in the order of `source`'s partition key."""

    @property
    def offset(self) -> int:
        return self.source.offset

    document: bytes
    claim_check: ClaimCheck
    pointer: EncodedRecord
    source: KafkaRecord
    partition_key: str


def decode_base64(text: str | None, *, field: str) -> bytes | None:
    """Strict base64 decoding; raises UnwritableRecordError naming the field."""
    if text is None:
        return None
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise UnwritableRecordError(f"record {field} is not valid base64") from None


def partition_key_for(
    record: KafkaRecord, key: bytes | None, mode: PartitionKeyMode, header: str | None = None
) -> str:
    """Same Kafka key (or header value) -> same partition key -> same shard, always.

    Text of 1-256 characters is used as it is; other bytes are hashed (Kinesis accepts only
    1-256 Unicode characters). With `header`, the first value of that header is used; a record
    without it (or with an empty one) falls back to its key. Null and empty keys fall back to
    the topic-partition.
    """
    source: bytes | None
    match mode:
        case PartitionKeyMode.HEADER:
            value = next((data for name, data in record.headers if name == header), None)
            source = value or key
        case PartitionKeyMode.KEY:
            source = key
        case PartitionKeyMode.PARTITION:
            source = None
        case _:
            assert_never(mode)
    if source:
        return _text_or_digest(source)
    fallback = record.topic_partition
    # Kafka allows 249-character topic names, so "<topic>-<partition>" can outgrow the limit.
    if not _fits_partition_key(fallback):
        return _digest(fallback.encode("utf-8"))
    return fallback


def _text_or_digest(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _digest(raw)
    return text if _fits_partition_key(text) else _digest(raw)


def _fits_partition_key(text: str) -> bool:
    # Kinesis counts UTF-16 code units (as Java and JavaScript do): a character outside the
    # Basic Multilingual Plane, such as an emoji, counts twice.
    if len(text) <= MAX_PARTITION_KEY_CHARS // 2:
        return True  # even all-astral text fits
    return len(text.encode("utf-16-le")) // 2 <= MAX_PARTITION_KEY_CHARS


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_record(
    record: KafkaRecord,
    *,
    record_format: RecordFormat,
    partition_key_mode: PartitionKeyMode,
    max_record_bytes: int,
    partition_key_header: str | None = None,
    aggregation: Aggregation = Aggregation.OFF,
) -> EncodedRecord | UnwritableRecord:
    """Encode one record, or say why it can never be written (never raises for bad data)."""
    try:
        key = decode_base64(record.key_b64, field="key")
    except UnwritableRecordError as error:
        # Its key is unreadable, but its place in the order is known: the header's key, or
        # the topic-partition's.
        fallback = partition_key_for(record, None, partition_key_mode, partition_key_header)
        return UnwritableRecord(record, fallback, str(error))
    partition_key = partition_key_for(record, key, partition_key_mode, partition_key_header)
    try:
        value = decode_base64(record.value_b64, field="value")
    except UnwritableRecordError as error:
        return UnwritableRecord(record, partition_key, str(error))

    match record_format:
        case RecordFormat.RAW:
            # A tombstone (null value) is an empty record: it keeps its key and its place.
            data = value if value is not None else EMPTY
        case RecordFormat.ENVELOPE:
            data = envelope_bytes(record, partition_key_mode)
        case _:
            assert_never(record_format)

    size = len(data) + len(partition_key.encode("utf-8"))
    if size > max_record_bytes:
        return UnwritableRecord(
            record,
            partition_key,
            f"encoded record is {size} bytes (data + partition key), over MAX_RECORD_BYTES="
            f"{max_record_bytes}",
        )
    if aggregation is Aggregation.ON and looks_aggregated(data):
        reason = _unwrappable(data, size - len(data), max_record_bytes)
        if reason is not None:
            return UnwritableRecord(record, partition_key, reason)
    return EncodedRecord(record, data, partition_key, size)


def _unwrappable(data: bytes, key_bytes: int, max_record_bytes: int) -> str | None:
    """Why a raw value that deaggregators read as a KPL aggregate can not be written with
    AGGREGATION=on, or None. Such a value is only sent wrapped in an aggregate of one (sent as
    it is, consumers would get its contents instead of it); None too when it is no aggregate
    to them (wrong MD5: they pass it through as it is)."""
    wrapped = wrapped_size(key_bytes, len(data))
    if wrapped <= max_record_bytes or not has_kpl_framing(data):
        return None
    return (
        f"value is a KPL aggregated record (magic and MD5 match) that deaggregating consumers"
        f" would unpack; wrapped to keep it whole it is {wrapped} bytes, over MAX_RECORD_BYTES="
        f"{max_record_bytes}"
    )


_COMPACT: Final = (",", ":")
# What the envelope's headers are built from is kept for reuse: records repeat the same few
# header names, and the same few small values (a content type, a schema version, a one-byte
# flag), and encoding each costs more than finding it. Bounded: each is cleared when it holds
# HEADER_CACHE_ENTRIES; only values of up to HEADER_CACHE_VALUE_BYTES are kept.
HEADER_CACHE_VALUE_BYTES: Final = 64
HEADER_CACHE_ENTRIES: Final = 4096
_header_starts: dict[str, str] = {}  # name -> '{"name":<JSON string>,"value":"'
_header_values: dict[bytes, str] = {}  # value -> its base64


def envelope_bytes(
    record: KafkaRecord, partition_key_mode: PartitionKeyMode = PartitionKeyMode.KEY
) -> bytes:
    """The `envelope` format: UTF-8 JSON with every field of the Kafka record, bytes as base64.

    Key and value were validated as base64 already, so the event's own strings are reused.
    With a schema registry on the mapping, key and value are what it delivered (JSON text, or
    the source bytes without the registry's framing) and `keySchemaMetadata` /
    `valueSchemaMetadata` name the schema that validated them; without one, neither member
    appears (docs/schema-registry.md). With PARTITION_KEY=header:<name>, `partitionKeyFrom`
    says so: the Kafka key alone no longer orders the record (consumer.OffsetDeduplicator).
    """
    head = json.dumps(record_members(record), separators=_COMPACT)
    tail: dict[str, object] = dict(schema_members(record))
    if partition_key_mode is PartitionKeyMode.HEADER:
        tail[PARTITION_KEY_FROM_FIELD] = partition_key_mode.value
    # One JSON object, written in three parts (the same bytes json.dumps writes for the whole
    # document): headers are spliced in as text, each built once per distinct small header.
    end = "," + json.dumps(tail, separators=_COMPACT)[1:] if tail else "}"
    return f'{head[:-1]},"headers":[{_headers_json(record.headers)}]{end}'.encode()


def _headers_json(headers: tuple[tuple[str, bytes], ...]) -> str:
    """The envelope's headers, `{"name":...,"value":"<base64>"}` each, comma-separated, as
    json.dumps writes them (ASCII, compact)."""
    if not headers:
        return ""
    starts, values = _header_starts, _header_values
    parts: list[str] = []
    append = parts.append
    for name, value in headers:
        start = starts.get(name)
        if start is None:
            if len(starts) >= HEADER_CACHE_ENTRIES:
                starts.clear()
            start = starts[name] = f'{{"name":{encode_basestring_ascii(name)},"value":"'
        text = values.get(value)
        if text is None:
            text = binascii.b2a_base64(value, newline=False).decode("ascii")
            if len(value) <= HEADER_CACHE_VALUE_BYTES:
                if len(values) >= HEADER_CACHE_ENTRIES:
                    values.clear()
                values[value] = text
        append(start + text + '"}')
    return ",".join(parts)


def claim_check_oversize(
    unit: EncodedRecord | UnwritableRecord | ClaimCheckRecord,
    target: ClaimCheckTarget,
    *,
    partition_key_mode: PartitionKeyMode,
    max_record_bytes: int,
) -> EncodedRecord | UnwritableRecord | ClaimCheckRecord:
    """An `envelope` record too large for the stream, claim-checked (OVERSIZE_RECORDS=
    claim_check); any other unit as it is. The object is the envelope itself; a record that is
    unwritable for another reason (undecodable base64) stays a dead letter, and so does one
    whose pointer would not fit either."""
    if not isinstance(unit, UnwritableRecord):
        return unit
    record, partition_key = unit.source, unit.partition_key
    try:
        decode_base64(record.key_b64, field="key")
        decode_base64(record.value_b64, field="value")
    except UnwritableRecordError:
        return unit
    data = envelope_bytes(record, partition_key_mode)
    key_bytes = len(partition_key.encode("utf-8"))
    if len(data) + key_bytes <= max_record_bytes:
        return unit  # unwritable, but not for its size
    claim_check = target.claim_check(record, data)
    more = (
        {PARTITION_KEY_FROM_FIELD: partition_key_mode.value}
        if partition_key_mode is PartitionKeyMode.HEADER
        else {}
    )
    pointer = pointer_bytes(record, claim_check, more)
    if len(pointer) + key_bytes > max_record_bytes:
        return UnwritableRecord(
            record,
            partition_key,
            f"claim-check pointer is {len(pointer) + key_bytes} bytes (data + partition key),"
            f" over MAX_RECORD_BYTES={max_record_bytes}",
        )
    encoded = EncodedRecord(record, pointer, partition_key, len(pointer) + key_bytes)
    return ClaimCheckRecord(data, claim_check, encoded, record, partition_key)


class EncodedPartition(NamedTuple):
    """One partition's records, encoded in offset order, ready for the publisher."""

    batch: PartitionBatch
    units: list[EncodedRecord | UnwritableRecord | ClaimCheckRecord]
    # Bytes of the writable records (data + partition keys): how much this partition will send.
    encoded_bytes: int
    # Offsets an earlier invocation wrote already (redelivery memory): not sent again.
    delivered_before: frozenset[int] = frozenset()


def encode_partition(
    batch: PartitionBatch,
    *,
    record_format: RecordFormat,
    partition_key_mode: PartitionKeyMode,
    max_record_bytes: int,
    partition_key_header: str | None = None,
    delivered_before: frozenset[int] = frozenset(),
    aggregation: Aggregation = Aggregation.OFF,
    claim_checks: ClaimCheckTarget | None = None,
) -> EncodedPartition:
    """With `claim_checks` (and the envelope format), oversize records are claim-checked."""
    units: list[EncodedRecord | UnwritableRecord | ClaimCheckRecord] = [
        encode_record(
            record,
            record_format=record_format,
            partition_key_mode=partition_key_mode,
            max_record_bytes=max_record_bytes,
            partition_key_header=partition_key_header,
            aggregation=aggregation,
        )
        for record in batch.records
    ]
    if claim_checks is not None and record_format is RecordFormat.ENVELOPE:
        units = [
            claim_check_oversize(
                unit,
                claim_checks,
                partition_key_mode=partition_key_mode,
                max_record_bytes=max_record_bytes,
            )
            for unit in units
        ]
    encoded_bytes = sum(unit.size for unit in units if isinstance(unit, EncodedRecord))
    return EncodedPartition(batch, units, encoded_bytes, delivered_before)
