"""KPL aggregation: pack a run of same-key user records into one atomic Kinesis record.

Format (amazon-kinesis-producer, aggregation-format.md): the magic bytes F3 89 9A C2, a protobuf
`AggregatedRecord`, then the MD5 digest of those protobuf bytes. KCL, Firehose and the
aws-kinesis-agg libraries read it back into the original user records. The protobuf is written
by hand (three fields) so the function carries no protobuf runtime and cold starts stay short.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Iterable, Iterator
from typing import Final

from msk_kinesis_sink.encoding import EncodedRecord
from msk_kinesis_sink.planning import Entry

# Every aggregated record starts with these four bytes; deaggregators check them first.
KPL_MAGIC: Final = b"\xf3\x89\x9a\xc2"
# ...and ends with the 16-byte MD5 of the protobuf message; a mismatch means "not aggregated".
KPL_DIGEST_BYTES: Final = 16

# Protobuf tags (field number << 3 | wire type) of the fields we write.
# AggregatedRecord: 1 = repeated string partition_key_table, 3 = repeated Record records.
_TAG_PARTITION_KEY_TABLE: Final = b"\x0a"
_TAG_RECORDS: Final = b"\x1a"
# Record: 1 = uint64 partition_key_index (always 0: one key per aggregate), 3 = bytes data.
_RECORD_KEY_INDEX_ZERO: Final = b"\x08\x00"
_TAG_RECORD_DATA: Final = b"\x1a"
# Bytes of a Record besides its data and the data's length varint: key index field + data tag.
_RECORD_FIXED_BYTES: Final = len(_RECORD_KEY_INDEX_ZERO) + len(_TAG_RECORD_DATA)


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_size(value: int) -> int:
    """Bytes `varint(value)` takes, without building it."""
    return max(1, (value.bit_length() + 6) // 7)


@functools.lru_cache(maxsize=4096)
def _record_header(data_length: int) -> bytes:
    """Everything of one `records` field before the user data: tag, lengths, key index, tag.

    Cached by length: records of a topic tend to repeat sizes, and this is per-record work.
    """
    inner = _RECORD_FIXED_BYTES + varint_size(data_length) + data_length
    return b"".join(
        (_TAG_RECORDS, varint(inner), _RECORD_KEY_INDEX_ZERO, _TAG_RECORD_DATA, varint(data_length))
    )


def record_frame_size(data_length: int) -> int:
    """Bytes one user record adds to the aggregate: its `records` field, framed."""
    return len(_record_header(data_length)) + data_length


def aggregate_overhead(partition_key_bytes: int) -> int:
    """Bytes of an aggregate besides its records: magic, key table entry, digest."""
    table_entry = (
        len(_TAG_PARTITION_KEY_TABLE) + varint_size(partition_key_bytes) + partition_key_bytes
    )
    return len(KPL_MAGIC) + table_entry + KPL_DIGEST_BYTES


def _outer_overhead(partition_key: str) -> int:
    """Bytes Kinesis counts for an aggregate besides its records: the aggregate's own overhead
    plus the outer record's partition key, which counts against the record limit too."""
    key_bytes = len(partition_key.encode("utf-8"))
    return aggregate_overhead(key_bytes) + key_bytes


def encode_aggregate(partition_key: str, payloads: Iterable[bytes]) -> bytes:
    """One KPL aggregated record holding `payloads` in order, all under `partition_key`."""
    key = partition_key.encode("utf-8")
    parts = [_TAG_PARTITION_KEY_TABLE, varint(len(key)), key]
    for data in payloads:
        parts += (_record_header(len(data)), data)
    body = b"".join(parts)
    # MD5 here is a checksum of the format, not security: allowed on FIPS-mode hosts too.
    digest = hashlib.md5(body, usedforsecurity=False).digest()
    return b"".join((KPL_MAGIC, body, digest))


def looks_aggregated(data: bytes) -> bool:
    """Whether a deaggregator would even try to read `data` as an aggregate (magic prefix)."""
    return data.startswith(KPL_MAGIC)


def deaggregate(data: bytes) -> list[bytes]:
    """The user records of a Kinesis record: the aggregate's records in order, or `[data]`.

    Like KCL, a record that lacks the magic or whose MD5 does not match is a plain record.
    """
    if not data.startswith(KPL_MAGIC) or len(data) < len(KPL_MAGIC) + KPL_DIGEST_BYTES:
        return [data]
    body = data[len(KPL_MAGIC) : -KPL_DIGEST_BYTES]
    if hashlib.md5(body, usedforsecurity=False).digest() != data[-KPL_DIGEST_BYTES:]:
        return [data]
    try:
        return [
            inner
            for number, value in _protobuf_fields(body)
            if number == 3 and isinstance(value, bytes)  # AggregatedRecord.records
            for inner_number, inner in _protobuf_fields(value)
            if inner_number == 3 and isinstance(inner, bytes)  # Record.data
        ]
    except (IndexError, ValueError):
        return [data]  # a digest that matches by chance over bytes that are no aggregate


def _protobuf_fields(buffer: bytes) -> Iterator[tuple[int, int | bytes]]:
    position = 0
    while position < len(buffer):
        tag, position = _read_varint(buffer, position)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, position = _read_varint(buffer, position)
            yield number, value
        elif wire_type == 2:
            length, position = _read_varint(buffer, position)
            if position + length > len(buffer):
                raise ValueError("protobuf field runs past the end")
            yield number, buffer[position : position + length]
            position += length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")


def _read_varint(buffer: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


class AggregatingPacker:
    """Packs the longest same-key prefix of a run that fits the budget into one Kinesis record.

    A run of one goes out as the plain record (what the KPL does too; deaggregators pass
    non-aggregated records through unchanged), so lone records cost no extra bytes. The one
    exception: plain data that itself starts with the KPL magic is wrapped in an aggregate when
    that fits, so a deaggregator can not mistake a producer's bytes for an aggregate.

    Sizes are computed as records are added (O(1) each); the aggregate is encoded once.
    """

    def pack(self, run: Iterable[EncodedRecord], budget: int) -> Entry | None:
        records = iter(run)
        head = next(records, None)
        if head is None:
            return None
        key = head.partition_key
        second = next(records, None)
        if second is None or second.partition_key != key:
            # The common case with distinct keys: no aggregate to size or build.
            return self._single(head, budget)
        size = _outer_overhead(key) + record_frame_size(len(head.data))
        taken = [head]
        if size <= budget:
            for record in itertools.chain((second,), records):
                if record.partition_key != key:
                    break  # the planner's queues hold one key; never mix keys (shard routing)
                grown = size + record_frame_size(len(record.data))
                if grown > budget:
                    break
                size = grown
                taken.append(record)
        if len(taken) == 1:
            return self._single(head, budget)
        data = encode_aggregate(key, [record.data for record in taken])
        return Entry.of(key, data, tuple(taken))

    @staticmethod
    def _single(record: EncodedRecord, budget: int) -> Entry | None:
        key = record.partition_key
        if looks_aggregated(record.data):
            overhead = _outer_overhead(key)
            if overhead + record_frame_size(len(record.data)) <= budget:
                return Entry.of(key, encode_aggregate(key, [record.data]), (record,))
        if record.size > budget:
            return None
        return Entry(key, record.data, (record,), record.size)
