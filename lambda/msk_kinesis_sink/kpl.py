"""The KPL aggregated-record format: writing one, and reading one back as aws-kinesis-agg does.

Format (amazon-kinesis-producer, aggregation-format.md): the magic bytes F3 89 9A C2, a protobuf
`AggregatedRecord`, then the MD5 digest of those protobuf bytes. KCL, Firehose and the
aws-kinesis-agg libraries read it back into the original user records. The protobuf is written
and read by hand (three small messages) so the function carries no protobuf runtime and cold
starts stay short. Reading takes time linear in the record's size, whatever its bytes.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator
from typing import Final

from msk_kinesis_sink.errors import MalformedAggregateError

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

# Wire types.
_VARINT, _FIXED64, _DELIMITED, _GROUP_START, _GROUP_END, _FIXED32 = 0, 1, 2, 3, 4, 5
# Tags read back (messages.proto of the KPL). AggregatedRecord: the partition key and explicit
# hash key tables (1, 2: strings) and the records (3). Record: the key indexes (1, 2: uint64),
# data (3: bytes) and tags (4: Tag messages, checked and dropped).
_KEY_TABLE_TAG, _HASH_KEY_TABLE_TAG = 1 << 3 | _DELIMITED, 2 << 3 | _DELIMITED
_RECORDS_TAG = 3 << 3 | _DELIMITED
_KEY_INDEX_TAG, _HASH_KEY_INDEX_TAG = 1 << 3 | _VARINT, 2 << 3 | _VARINT
_DATA_TAG, _TAGS_TAG = 3 << 3 | _DELIMITED, 4 << 3 | _DELIMITED
_AGGREGATE_TAGS: Final = frozenset({_KEY_TABLE_TAG, _HASH_KEY_TABLE_TAG, _RECORDS_TAG})
_RECORD_TAGS: Final = frozenset({_KEY_INDEX_TAG, _HASH_KEY_INDEX_TAG, _DATA_TAG, _TAGS_TAG})
_NO_TAGS: Final = frozenset[int]()

# The reader takes what upb (protobuf's Python runtime, which aws-kinesis-agg parses with)
# takes, and refuses what it refuses, so both read any bytes the same way. upb's limits:
# a varint is at most 10 bytes, its value kept modulo 2**64; a tag at most 5 bytes and 32 bits;
# a length at most 5 bytes and below 2**31 - 1; messages and groups nest at most 100 deep.
_VARINT_BYTES: Final = 10
_TAG_BYTES: Final = 5
_LENGTH_BYTES: Final = 5
_MAX_TAG: Final = 2**32 - 1
_MAX_LENGTH: Final = 2**31 - 2
_UINT64: Final = 2**64 - 1
_MAX_DEPTH: Final = 100


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


def wrapped_size(partition_key_bytes: int, data_length: int) -> int:
    """Bytes Kinesis counts for an aggregate of one record of `data_length` bytes: the
    aggregate, plus the outer record's partition key (it counts against the record limit too).
    Each further record adds its `record_frame_size`."""
    return (
        aggregate_overhead(partition_key_bytes)
        + partition_key_bytes
        + record_frame_size(data_length)
    )


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


def has_kpl_framing(data: bytes) -> bool:
    """Magic, a body of at least one byte, and that body's MD5: what KCL and aws-kinesis-agg
    check before they read a record as an aggregate (and unpack it when it parses)."""
    framing = len(KPL_MAGIC) + KPL_DIGEST_BYTES
    if not data.startswith(KPL_MAGIC) or len(data) <= framing:
        return False
    body = memoryview(data)[len(KPL_MAGIC) : -KPL_DIGEST_BYTES]
    return hashlib.md5(body, usedforsecurity=False).digest() == data[-KPL_DIGEST_BYTES:]


def deaggregate(data: bytes) -> list[bytes]:
    """The user records of a Kinesis record: the aggregate's records in order, or `[data]`.

    As aws-kinesis-agg reads it: data without the magic, without a body, with a wrong
    MD5 or whose body is no protobuf `AggregatedRecord` is one plain record. Raises
    MalformedAggregateError for an aggregate whose records point past its key tables (the
    library and KCL log an error and drop the rest of the aggregate).
    """
    if not has_kpl_framing(data):
        return [data]
    try:
        keys, hash_keys, records = _read_aggregate(
            data, len(KPL_MAGIC), len(data) - KPL_DIGEST_BYTES
        )
    except _NotProtobuf:
        return [data]
    users: list[bytes] = []
    for position, (key_index, hash_key_index, start, stop) in enumerate(records):
        # The library's order: the explicit hash key table (only when it has entries), then the
        # partition key table.
        if hash_keys and hash_key_index >= hash_keys:
            raise MalformedAggregateError(
                f"aggregated record {position} of {len(records)} points at explicit hash key"
                f" {hash_key_index} of a table of {hash_keys}"
            )
        if key_index >= keys:
            raise MalformedAggregateError(
                f"aggregated record {position} of {len(records)} points at partition key"
                f" {key_index} of a table of {keys}"
            )
        users.append(data[start:stop])
    return users


class _NotProtobuf(Exception):
    """The body is not a protobuf message upb would parse: the record is read as plain data."""


# (partition key index, explicit hash key index, data start, data stop) of one Record.
_Record = tuple[int, int, int, int]


def _read_aggregate(buffer: bytes, start: int, end: int) -> tuple[int, int, list[_Record]]:
    """Sizes of both key tables and every Record of the AggregatedRecord in buffer[start:end]."""
    keys = hash_keys = 0
    records: list[_Record] = []
    for tag, first, second in _fields(buffer, start, end, _MAX_DEPTH, _AGGREGATE_TAGS):
        if tag == _KEY_TABLE_TAG:
            keys += 1
        elif tag == _HASH_KEY_TABLE_TAG:
            hash_keys += 1
        else:
            records.append(_read_record(buffer, first, second, _MAX_DEPTH - 1))
    return keys, hash_keys, records


def _read_record(buffer: bytes, start: int, end: int, depth: int) -> _Record:
    # Absent fields read as 0 and b"" (proto2 defaults; the library never checks presence);
    # a field given twice keeps its last value.
    key_index = hash_key_index = 0
    data_start = data_stop = start
    for tag, first, second in _fields(buffer, start, end, depth, _RECORD_TAGS):
        if tag == _DATA_TAG:
            data_start, data_stop = first, second
        elif tag == _KEY_INDEX_TAG:
            key_index = first
        elif tag == _HASH_KEY_INDEX_TAG:
            hash_key_index = first
        else:
            # A Tag {key, value}: parsed (a malformed one makes the body no protobuf), not kept.
            for _ in _fields(buffer, first, second, depth - 1, _NO_TAGS):
                pass
    return key_index, hash_key_index, data_start, data_stop


def _fields(
    buffer: bytes, start: int, end: int, depth: int, wanted: frozenset[int]
) -> Iterator[tuple[int, int, int]]:
    """(tag, a, b) of each field of the message in buffer[start:end] whose tag is `wanted`: a
    varint's value (a), or a length-delimited field's bytes (a:b). The others are skipped (an
    unknown field, or a known number with another wire type, as upb treats it).

    `depth`: how many more groups may nest inside this message. Raises _NotProtobuf where upb
    fails the parse. One-byte varints, the usual case, are read inline.
    """
    position = start
    while position < end:
        tag, position = _read_tag(buffer, position, end)
        wire_type = tag & 7
        if tag >> 3 == 0 or wire_type == _GROUP_END:
            raise _NotProtobuf  # field number 0, or a group's end outside a group
        if wire_type == _VARINT:
            value = buffer[position] if position < end else 0x80
            if value < 0x80:
                position += 1
            else:
                value, position = _read_varint(buffer, position, end, _VARINT_BYTES)
            if tag in wanted:
                yield tag, value, position
        elif wire_type == _DELIMITED:
            length, position = _read_length(buffer, position, end)
            if tag in wanted:
                yield tag, position, position + length
            position += length
        elif wire_type == _GROUP_START:
            position = _skip_group(buffer, position, end, tag >> 3, depth - 1)
        else:
            position = _skip(buffer, position, end, tag, depth)


def _skip(buffer: bytes, position: int, end: int, tag: int, depth: int) -> int:
    """Where the value of a field of any wire type but end-group ends."""
    wire_type = tag & 7
    if wire_type == _VARINT:
        if position < end and buffer[position] < 0x80:
            position += 1
        else:
            position = _read_varint(buffer, position, end, _VARINT_BYTES)[1]
    elif wire_type == _DELIMITED:
        length, position = _read_length(buffer, position, end)
        position += length
    elif wire_type == _FIXED64:
        position += 8
    elif wire_type == _FIXED32:
        position += 4
    elif wire_type == _GROUP_START:
        position = _skip_group(buffer, position, end, tag >> 3, depth - 1)
    else:
        raise _NotProtobuf  # wire types 6 and 7 do not exist
    if position > end:
        raise _NotProtobuf
    return position


def _skip_group(buffer: bytes, position: int, end: int, number: int, depth: int) -> int:
    """Where the group of field `number` ends: just past its matching end-group tag.

    Inside a group upb takes field number 0, which it refuses at the level of a message.
    """
    if depth < 0:
        raise _NotProtobuf
    while position < end:
        tag, position = _read_tag(buffer, position, end)
        wire_type = tag & 7
        if wire_type == _GROUP_END:
            if tag >> 3 != number:
                raise _NotProtobuf
            return position
        if wire_type == _GROUP_START:  # directly: a flood of empty groups is the costly case
            position = _skip_group(buffer, position, end, tag >> 3, depth - 1)
        else:
            position = _skip(buffer, position, end, tag, depth)
    raise _NotProtobuf  # the group never ends


def _read_tag(buffer: bytes, position: int, end: int) -> tuple[int, int]:
    tag = buffer[position]  # the caller's loop checked position < end
    if tag < 0x80:
        return tag, position + 1
    tag, position = _read_varint(buffer, position, end, _TAG_BYTES)
    if tag > _MAX_TAG:
        raise _NotProtobuf
    return tag, position


def _read_length(buffer: bytes, position: int, end: int) -> tuple[int, int]:
    length, position = _read_varint(buffer, position, end, _LENGTH_BYTES)
    if length > _MAX_LENGTH or position + length > end:
        raise _NotProtobuf
    return length, position


def _read_varint(buffer: bytes, position: int, end: int, most_bytes: int) -> tuple[int, int]:
    """(value modulo 2**64, position after it) of the varint at `position`.

    At most `most_bytes` are read, so each varint costs a bounded amount of work: a run of
    continuation bytes is refused after a few bytes instead of growing one huge integer.
    """
    if position >= end:
        raise _NotProtobuf
    byte = buffer[position]
    if byte < 0x80:
        return byte, position + 1
    value = byte & 0x7F
    shift = 7
    stop = min(end, position + most_bytes)
    position += 1
    while position < stop:
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & _UINT64, position
        shift += 7
    raise _NotProtobuf
