"""deaggregate against aws-kinesis-agg: the same user records for any bytes, in linear time.

The reference is aws-kinesis-agg 1.2.3's deaggregator (protobuf's upb runtime underneath). For
any bytes, either both read the same user records, or the library fails (it prints an error and
drops the rest of the aggregate, or raises) and deaggregate raises MalformedAggregateError
(docs/aggregation.md: the one deliberate difference). The property runs FUZZ_EXAMPLES examples
(300; FUZZ_EXAMPLES=20000 in the environment for a long search).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import io
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

# The deaggregator module puts its own folder on sys.path, which its messages_pb2 needs.
from aws_kinesis_agg.deaggregator import iter_deaggregate_records, messages_pb2
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bench.deaggregate import SHAPES
from msk_kinesis_sink import kpl
from msk_kinesis_sink.errors import MalformedAggregateError
from msk_kinesis_sink.kpl import KPL_MAGIC, deaggregate, encode_aggregate
from tests.strategies import FUZZ_EXAMPLES

# One user record "a" under partition key "k": the body of the smallest real aggregate.
KEY_TABLE = b"\x0a\x01k"
RECORD_A = b"\x1a\x05\x08\x00\x1a\x01a"


def _framed(body: bytes) -> bytes:
    return KPL_MAGIC + body + hashlib.md5(body).digest()


def _varint(value: int, width: int = 1) -> bytes:
    """`value` as a varint of at least `width` bytes (padded with continuation bytes)."""
    out = bytearray()
    while value > 0x7F or len(out) + 1 < width:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _library_reading(data: bytes) -> list[bytes] | None:
    """The user records aws-kinesis-agg reads from one Kinesis record; None when it fails.

    It fails in two ways: it prints "ERROR: ..." and stops yielding (a key index past its
    table), or an exception escapes while it builds that report.
    """
    record = {
        "Data": data,
        "PartitionKey": "k",
        "SequenceNumber": "1",
        "ApproximateArrivalTimestamp": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    }
    errors = io.StringIO()
    users: list[bytes] = []
    try:
        with contextlib.redirect_stderr(errors):
            for user in iter_deaggregate_records([record], data_format="Boto3"):
                kinesis = user["kinesis"]
                aggregated = kinesis.get("aggregated")
                # Aggregated user records come back base64-encoded (Lambda's shape).
                users.append(base64.b64decode(kinesis["data"]) if aggregated else kinesis["data"])
    except Exception:
        return None
    return None if errors.getvalue() else users


# -- bytes that look more or less like an aggregate ------------------------------------------

_WIDTHS = st.sampled_from([1, 1, 1, 1, 2, 5, 6, 10, 11])
_NUMBERS = st.sampled_from([0, 1, 2, 3, 4, 5, 15, 16, 2**29 - 1, 2**29]) | st.integers(1, 2**29)
_VALUES = st.sampled_from([0, 1, 5, 127, 128, 2**63, 2**64 - 1]) | st.integers(0, 2**70)


@st.composite
def _field(draw: st.DrawFn, depth: int) -> bytes:
    """One protobuf field of any number and wire type, sometimes broken (unmatched group ends,
    wire types 6 and 7, over-long varints, lengths past the end once mutated)."""
    number, wire_type = draw(_NUMBERS), draw(st.integers(0, 7))
    tag = _varint(number << 3 | wire_type, draw(_WIDTHS))
    if wire_type == 0:
        return tag + _varint(draw(_VALUES), draw(_WIDTHS))
    if wire_type in (1, 5):
        return tag + draw(st.binary(min_size=8 if wire_type == 1 else 4, max_size=8))
    if wire_type == 2:
        nested = depth < 3 and draw(st.booleans())
        payload = draw(_message(depth + 1)) if nested else draw(st.binary(max_size=6))
        return tag + _varint(len(payload), draw(_WIDTHS)) + payload
    if wire_type == 3:
        inner = draw(_message(depth + 1)) if depth < 3 else b""
        end = draw(st.sampled_from([number, number, number, 0, number + 1]))
        return tag + inner + _varint(end << 3 | 4, draw(_WIDTHS))
    return tag


def _message(depth: int = 0) -> st.SearchStrategy[bytes]:
    return st.lists(_field(depth), max_size=4).map(b"".join)


@st.composite
def _reference_body(draw: st.DrawFn) -> bytes:
    """An AggregatedRecord as protobuf writes it: tables, key indexes in and out of range, tags."""
    message = messages_pb2.AggregatedRecord()
    message.partition_key_table.extend(draw(st.lists(st.sampled_from(["k", "ключ"]), max_size=3)))
    message.explicit_hash_key_table.extend(draw(st.lists(st.just("123"), max_size=2)))
    for _ in range(draw(st.integers(0, 4))):
        record = message.records.add()
        record.partition_key_index = draw(st.sampled_from([0, 0, 1, 2, 2**63]))
        if draw(st.booleans()):
            record.explicit_hash_key_index = draw(st.sampled_from([0, 1, 3]))
        record.data = draw(st.binary(max_size=8))
        for _ in range(draw(st.integers(0, 1))):
            record.tags.add(key="t", value="v")
    return bytes(message.SerializeToString())


@st.composite
def _mutated(draw: st.DrawFn, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(draw(st.integers(0, 3))):
        kind, at = draw(st.integers(0, 4)), draw(st.integers(0, len(data)))
        if kind == 0 and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == 1:
            data[at:at] = draw(_field(0))
        elif kind == 2:
            del data[at : at + draw(st.integers(1, 3))]
        elif kind == 3:
            del data[at:]
        else:
            data += draw(_field(0))
    return bytes(data)


@st.composite
def _deep_groups(draw: st.DrawFn) -> bytes:
    """Groups nested around upb's limit of 100 (messages count too), in each message."""
    depth = draw(st.integers(97, 101))
    groups = b"\x23" * depth + b"\x24" * depth
    where = draw(st.sampled_from(["aggregate", "record", "tag"]))
    if where == "aggregate":
        return KEY_TABLE + RECORD_A + groups
    if where == "record":
        inner = b"\x08\x00\x1a\x01a" + groups
    else:
        inner = b"\x08\x00\x1a\x01a\x22" + _varint(len(groups)) + groups
    return KEY_TABLE + b"\x1a" + _varint(len(inner)) + inner


@st.composite
def kinesis_data(draw: st.DrawFn) -> bytes:
    """A Kinesis record's data: mostly a body framed as an aggregate (magic, MD5), sometimes
    the digest of nothing, a wrong digest or no magic."""
    body = draw(
        st.one_of(
            _reference_body().flatmap(_mutated),
            _reference_body().flatmap(_mutated),
            _message(),
            _deep_groups(),
        )
    )
    framing = draw(st.sampled_from(["kpl"] * 6 + ["digest of nothing", "wrong digest", "plain"]))
    if framing == "digest of nothing":
        return KPL_MAGIC + hashlib.md5(b"").digest()
    if framing == "wrong digest":
        framed = bytearray(_framed(body))
        framed[-1] ^= 0x01
        return bytes(framed)
    return body if framing == "plain" else _framed(body)


# Bytes earlier versions read differently from the library, tried on every run.
FOUND_BY_FUZZING: tuple[bytes, ...] = (
    KPL_MAGIC + hashlib.md5(b"").digest(),  # no body: a plain record, not an empty aggregate
    _framed(KEY_TABLE + b"\x1a\x02\x08\x00"),  # a record without data: b""
    _framed(KEY_TABLE + b"\x1a\x08\x08\x00\x1a\x01a\x1a\x01b"),  # data twice: the last
    _framed(KEY_TABLE + RECORD_A + b"\x25abcd"),  # unknown fixed32 field
    _framed(KEY_TABLE + b"\x1a\x0e\x08\x00\x1a\x01a\x29abcdefgh"),  # unknown fixed64 field
    _framed(KEY_TABLE + RECORD_A + b"\x1a\x05\x08\x01\x1a\x01b"),  # key index past the table
    _framed(RECORD_A),  # no key table at all
    _framed(b"\x12\x01h" + KEY_TABLE + b"\x1a\x07\x08\x00\x10\x03\x1a\x01b"),  # hash key index
    _framed(KEY_TABLE + b"\x1a\x07\x08\x00\x10\x03\x1a\x01b"),  # ...with no hash key table
    _framed(b"\xff" * 1000),  # a run of continuation bytes
    _framed(KEY_TABLE + b"\x1a\x0e\x08" + b"\x80" * 9 + b"\x02\x1a\x01a"),  # index 2**64: 0
    _framed(KEY_TABLE + RECORD_A + b"\x23\x00\x00\x24"),  # field 0 inside a group: taken
    _framed(KEY_TABLE + RECORD_A + b"\x00\x00"),  # field 0 in a message: no protobuf
    _framed(b"\x0a" + _varint(1, 6) + b"k" + RECORD_A),  # a length of six bytes: too long
    _framed(KEY_TABLE + b"\x1a\x06\x08\x00\x1a\x01a\x24"),  # a group's end in a record
)


def _with_found_inputs(test: Callable[[bytes], None]) -> Callable[[bytes], None]:
    for data in FOUND_BY_FUZZING:
        test = example(data=data)(test)
    return test


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(data=kinesis_data())
@_with_found_inputs
def test_deaggregate_reads_what_aws_kinesis_agg_reads(data: bytes) -> None:
    # GIVEN any bytes as a Kinesis record's data
    # WHEN both deaggregators read them
    expected = _library_reading(data)

    # THEN they give the same user records, or ours raises where the library fails
    if expected is None:
        with pytest.raises(MalformedAggregateError):
            deaggregate(data)
    else:
        assert deaggregate(data) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (KPL_MAGIC + hashlib.md5(b"").digest(), [KPL_MAGIC + hashlib.md5(b"").digest()]),
        (_framed(KEY_TABLE + b"\x1a\x02\x08\x00"), [b""]),
        (_framed(KEY_TABLE + b"\x1a\x08\x08\x00\x1a\x01a\x1a\x01b"), [b"b"]),
        (_framed(KEY_TABLE + RECORD_A + b"\x25abcd"), [b"a"]),
        (_framed(KEY_TABLE + b"\x1a\x0e\x08\x00\x1a\x01a\x29abcdefgh"), [b"a"]),
        (_framed(KEY_TABLE), []),
    ],
    ids=[
        "digest-of-nothing-is-plain",
        "record-without-data",
        "data-twice-last-wins",
        "unknown-fixed32",
        "unknown-fixed64",
        "no-records",
    ],
)
def test_deaggregate_reads_the_edges_of_the_format_as_the_library(
    data: bytes, expected: list[bytes]
) -> None:
    # GIVEN an edge of the format / WHEN read / THEN as aws-kinesis-agg reads it
    assert deaggregate(data) == expected == _library_reading(data)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (
            KEY_TABLE + RECORD_A + b"\x1a\x05\x08\x01\x1a\x01b",
            "record 1 of 2 points at partition key 1",
        ),
        (RECORD_A, "record 0 of 1 points at partition key 0 of a table of 0"),
        (
            b"\x12\x01h" + KEY_TABLE + b"\x1a\x07\x08\x00\x10\x03\x1a\x01b",
            "points at explicit hash key 3 of a table of 1",
        ),
    ],
    ids=["key-index", "no-key-table", "hash-key-index"],
)
def test_deaggregate_refuses_an_index_past_its_table_naming_it(body: bytes, named: str) -> None:
    # GIVEN an aggregate whose record points past a key table (the library fails on it too)
    data = _framed(body)
    assert _library_reading(data) is None

    # WHEN read / THEN one documented error says which record and which table, and nothing of
    # the aggregate is returned (the library would print and drop the rest)
    with pytest.raises(MalformedAggregateError, match=named):
        deaggregate(data)


def test_deaggregate_takes_an_empty_hash_key_table_as_no_hash_keys() -> None:
    # GIVEN a record naming explicit hash key 3 of an aggregate without hash keys
    data = _framed(KEY_TABLE + b"\x1a\x07\x08\x00\x10\x03\x1a\x01b")
    # WHEN read / THEN the index is not looked at, as the library does not look at it
    assert deaggregate(data) == [b"b"] == _library_reading(data)


# -- aggregates as writers make them -------------------------------------------------------


def test_deaggregate_reads_a_reference_aggregate_with_several_keys_and_tags() -> None:
    # GIVEN an aggregate built with the reference protobuf schema: two keys, a hash key, tags
    message = messages_pb2.AggregatedRecord()
    message.partition_key_table.extend(["a", "b"])
    message.explicit_hash_key_table.append("12345")
    for index, data in enumerate([b"one", b"", b"three" * 100]):
        record = message.records.add()
        record.partition_key_index = index % 2
        record.explicit_hash_key_index = 0
        record.data = data
        tag = record.tags.add()
        tag.key, tag.value = "t", "v"
    # WHEN deaggregated
    users = deaggregate(_framed(message.SerializeToString()))
    # THEN every user record comes back, in order
    assert users == [b"one", b"", b"three" * 100]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=20))
def test_deaggregate_inverts_encode_aggregate(payloads: list[bytes]) -> None:
    assert deaggregate(encode_aggregate("key", payloads)) == payloads


@pytest.mark.parametrize(
    "data",
    [
        b"plain bytes",
        b"",
        KPL_MAGIC + b"too short",
        _framed(b"\x1a\x05abc"),  # a field runs past the end
    ],
)
def test_deaggregate_passes_non_aggregates_through(data: bytes) -> None:
    assert deaggregate(data) == [data]


def test_deaggregate_treats_a_digest_mismatch_as_a_plain_record() -> None:
    # GIVEN an aggregate whose last byte was changed
    aggregate = bytearray(encode_aggregate("key", [b"a", b"b"]))
    aggregate[-1] ^= 0xFF
    # WHEN deaggregated: THEN it is one plain record, as KCL would read it
    assert deaggregate(bytes(aggregate)) == [bytes(aggregate)]


# -- linear work ---------------------------------------------------------------------------


def _lines_run(function: Callable[[], object]) -> int:
    """How many lines of the kpl module `function` executes: work counted without a clock."""
    count = 0
    module = kpl.__file__

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count
        if frame.f_code.co_filename != module:
            return None
        if event == "line":
            count += 1
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        function()
    finally:
        sys.settrace(previous)
    return count


def test_deaggregate_reads_a_run_of_continuation_bytes_in_constant_steps() -> None:
    # GIVEN aggregates whose body is one endless varint (0xFF...), 1 KB and 1 MiB long: the
    # shape that took earlier versions 71 s at 1 MiB
    small, large = _framed(b"\xff" * 1_000), _framed(b"\xff" * (1 << 20))

    # WHEN each is read
    small_lines = _lines_run(lambda: deaggregate(small))
    large_lines = _lines_run(lambda: deaggregate(large))

    # THEN both are one plain record, refused after the same few steps (a varint is 10 bytes
    # at most), whatever the length
    assert deaggregate(large) == [large]
    assert large_lines == small_lines < 60


@pytest.mark.parametrize(
    "unit",
    [b"\x1a\x00", b"\x20\x00", b"\x23\x24", b"\x25abcd", b"\x1a\x04\x22\x02\x0a\x00"],
    ids=["empty-records", "unknown-varints", "empty-groups", "fixed32", "tags"],
)
def test_deaggregate_work_grows_linearly_with_the_record(unit: bytes) -> None:
    # GIVEN a flood of one small field, 1,000 and 8,000 times over
    def body(count: int) -> bytes:
        return KEY_TABLE + unit * count

    # WHEN each is read, counting executed lines
    lines = [_lines_run(lambda c=count: deaggregate(_framed(body(c)))) for count in (1000, 8000)]

    # THEN eight times the bytes take eight times the steps (a small constant apart)
    assert lines[1] <= 8 * lines[0] + 100


def test_deaggregate_of_a_real_aggregate_returns_every_record() -> None:
    # GIVEN an aggregate of 10,000 records as the sink writes it
    payloads = [bytes([i % 251]) * (i % 50) for i in range(10_000)]
    # WHEN read / THEN every record comes back in order, as the library reads it
    data = encode_aggregate("key", payloads)
    assert deaggregate(data) == payloads == _library_reading(data)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_deaggregate_bench_shapes_are_their_size_and_read_as_the_library_reads_them(shape: str):
    # GIVEN a shape `make bench`'s deaggregate entry times, at 4,000 bytes
    data = SHAPES[shape](4_000)

    # WHEN read / THEN it is the size asked (within one record) and read as the library reads it
    assert 4_000 - 110 < len(data) <= 4_000
    assert deaggregate(data) == _library_reading(data)
