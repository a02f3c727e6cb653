"""Hypothesis strategies for invocation events: mostly well formed, with every kind of damage.

Each field is usually valid (including unusual valid values: decimal strings, non-ASCII text,
range bounds, odd timestamp types) and sometimes replaced by what fuzzing found: lone
surrogates, numbers out of range, integer strings of thousands of digits, other scripts'
digits, wrongly shaped headers or schema registry metadata, or any JSON value at all.

The properties over them run FUZZ_EXAMPLES examples each (300; FUZZ_EXAMPLES=10000 in the
environment fuzzes as long as the search that found the parsing bugs).
"""

from __future__ import annotations

import base64
import functools
import os
from typing import Any, TypeVar

from hypothesis import strategies as st

from msk_kinesis_sink.events import MAX_OFFSET, MAX_PARTITION, MAX_TIMESTAMP, MIN_TIMESTAMP

T = TypeVar("T")

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))

# Hypothesis favours the bounds of small ranges (so sampled_from favours the first and last
# values) and one_of's choice between branches is far from proportional; a wide integer's
# remainder is close to uniform, which keeps every kind of damage about as likely as another.
_WIDE = st.integers(0, 2**32 - 1)


def _pick(*values: Any) -> st.SearchStrategy[Any]:
    """One of `values`, each about equally likely."""
    return _WIDE.map(lambda n: values[n % len(values)])


@st.composite
def _uniform(draw: st.DrawFn, *strategies: st.SearchStrategy[Any]) -> Any:
    """A draw from one of `strategies`, each about equally likely."""
    return draw(strategies[draw(_WIDE) % len(strategies)])


# Characters that make text odd without making it invalid, and lone surrogates, which do.
_ODD_TEXT = st.text(st.sampled_from(["a", "-", ".", "é", "日", "🙂", " ", "\n"]), max_size=6)
_SURROGATE_TEXT = st.builds(
    lambda head, surrogate, tail: head + surrogate + tail,
    _ODD_TEXT,
    _pick("\ud800", "\udbff", "\udc00", "\udfff"),
    _ODD_TEXT,
)
_HUGE_DIGITS = _pick("1" * 4301, "9" * 5000, "0" * 30 + "1", "1" + "0" * 19)
_FOREIGN_DIGITS = _pick("\u0663", "\uff11", "\u09eb", "²", "1_0", "+1", "--1", "", " ")

json_values = st.recursive(
    _uniform(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(-(2**80), 2**80),
        st.floats(allow_nan=False),
        _ODD_TEXT,
        _SURROGATE_TEXT,
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_ODD_TEXT, inner, max_size=3),
    max_leaves=6,
)


def _mostly(valid: st.SearchStrategy[T], damaged: st.SearchStrategy[Any], damage_rate: int) -> Any:
    """`valid`, or (one time in `damage_rate`, never when 0) `damaged`."""
    if damage_rate == 0:
        return valid
    return _one_in(damage_rate, damaged, valid)


@st.composite
def _one_in(
    draw: st.DrawFn, rate: int, rare: st.SearchStrategy[Any], usual: st.SearchStrategy[T]
) -> Any:
    # Shrinks toward `usual` (a remainder of 0).
    return draw(rare) if draw(_WIDE) % rate == rate - 1 else draw(usual)


def _number(low: int, high: int, usual: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    """A valid number: usual, a bound, or as decimal text (as self-managed Kafka may send)."""
    number = _one_in(8, _pick(low, high), usual)
    as_text = _uniform(number.map(str), number.map(lambda n: f" {n}\t"), number.map(_leading_zeros))
    return _uniform(number, as_text)


def _leading_zeros(number: int) -> str:
    return f"000{number}" if number >= 0 else str(number)


def _bad_number(low: int, high: int) -> st.SearchStrategy[Any]:
    out_of_range = _pick(low - 1, high + 1, -(2**63), 2**64, -1)
    return _uniform(
        out_of_range,
        out_of_range.map(str),
        _HUGE_DIGITS,
        _FOREIGN_DIGITS,
        st.floats(allow_nan=False),
        json_values,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# Key and value text: base64 or null as parsing accepts it (bad base64 included: encoding turns
# it into an unwritable record, parsing does not look inside).
_BASE64 = _uniform(st.none(), st.binary(max_size=40).map(_b64), _pick("not base64!", "QQ"))
_HEADER_NAMES = _uniform(_pick("trace", "", "日本", "content-type"), _ODD_TEXT)
_HEADER_BYTES = st.lists(st.integers(-128, 255), max_size=5)
_VALID_HEADERS = _uniform(
    st.none(),
    st.lists(st.dictionaries(_HEADER_NAMES, _HEADER_BYTES, min_size=1, max_size=2), max_size=3),
)
_BAD_HEADERS = _uniform(
    _pick({}, "", 0, False, "h", {"h": [1]}, [1], [[]], [{"h": "abc"}]),
    st.builds(lambda name: [{name: [1, 2]}], _SURROGATE_TEXT),
    st.builds(lambda value: [{"h": [value]}], _pick(256, -129, 1.5, None, True)),
    json_values,
)
_TIMESTAMP_TYPES = _pick("CREATE_TIME", "LOG_APPEND_TIME", "NO_TIMESTAMP_TYPE")
# A schema registry's metadata: usually one of a few objects (a registry repeats the same one on
# every record of a partition: the parser's fast path reuses what it checked), sometimes a new
# one, with odd text or a member the parser ignores.
_NEW_SCHEMA_METADATA = _uniform(
    _pick(
        {"dataFormat": "AVRO", "schemaId": "1234"},
        {"dataFormat": "PROTOBUF", "schemaId": "a1b2c3d4-5678-90ab-cdef-000000000001"},
        {"dataFormat": "JSON", "schemaId": "7", "schemaVersion": 2},
    ),
    st.builds(
        lambda data_format, schema_id: {"dataFormat": data_format, "schemaId": schema_id},
        _uniform(_pick("AVRO", "PROTOBUF", "JSON"), _ODD_TEXT),
        _uniform(_pick("1", "1234"), _ODD_TEXT),
    ),
)
_BAD_SCHEMA_METADATA = _uniform(
    _pick(
        {},
        {"dataFormat": "AVRO"},
        {"schemaId": "1"},
        {"dataFormat": 1, "schemaId": "1"},
        {"dataFormat": "AVRO", "schemaId": 1234},
        {"dataFormat": "AVRO", "schemaId": None},
        "AVRO",
        [],
        0,
        False,
    ),
    st.builds(lambda text: {"dataFormat": "AVRO", "schemaId": text}, _SURROGATE_TEXT),
    st.builds(lambda text: {"dataFormat": text, "schemaId": "1"}, _SURROGATE_TEXT),
    json_values,
)


# Stands for the group's own topic or partition in a drawn record (filled in after drawing, so
# the record strategy is built once: building strategies per draw costs more than drawing).
_GROUPS_OWN = object()
# Stand for the group's schema metadata (a registry sends the same on every record of a
# partition: drawn once per group, absent, null or an object, each record getting an equal
# copy) and for an absent field.
_GROUPS_SCHEMA = object()
_ABSENT = object()
_SCHEMA_METADATA = _uniform(
    st.just(_GROUPS_SCHEMA),
    st.just(_GROUPS_SCHEMA),
    st.just(_GROUPS_SCHEMA),
    _pick(None, _ABSENT),
    _NEW_SCHEMA_METADATA,
)
_GROUP_SCHEMA_METADATA = _uniform(_pick(None, _ABSENT), _NEW_SCHEMA_METADATA)


@functools.cache
def _record_dicts(damage_rate: int) -> st.SearchStrategy[Any]:
    """One record of a group: every field usually valid, each damaged one time in `damage_rate`."""

    def field(valid: st.SearchStrategy[Any], damaged: st.SearchStrategy[Any]) -> Any:
        return _mostly(valid, damaged, damage_rate)

    record = st.fixed_dictionaries(
        {
            "topic": field(st.just(_GROUPS_OWN), _uniform(_SURROGATE_TEXT, json_values)),
            "partition": field(st.just(_GROUPS_OWN), _bad_number(0, MAX_PARTITION)),
            "offset": field(_number(0, MAX_OFFSET, _WIDE), _bad_number(0, MAX_OFFSET)),
            "keySchemaMetadata": field(_SCHEMA_METADATA, _BAD_SCHEMA_METADATA),
            "valueSchemaMetadata": field(_SCHEMA_METADATA, _BAD_SCHEMA_METADATA),
        },
        optional={
            "timestamp": field(
                _uniform(_number(MIN_TIMESTAMP, MAX_TIMESTAMP, _WIDE), st.just(-1), st.none()),
                _bad_number(MIN_TIMESTAMP, MAX_TIMESTAMP),
            ),
            "timestampType": field(
                _uniform(_TIMESTAMP_TYPES, _ODD_TEXT), _uniform(_SURROGATE_TEXT, json_values)
            ),
            "key": field(_BASE64, json_values),
            "value": field(_BASE64, json_values),
            "headers": field(_VALID_HEADERS, _BAD_HEADERS),
        },
    )
    return field(record, json_values)


@functools.cache
def _event_parts(damage_rate: int) -> dict[str, st.SearchStrategy[Any]]:
    def mostly(valid: st.SearchStrategy[Any], damaged: st.SearchStrategy[Any]) -> Any:
        return _mostly(valid, damaged, damage_rate)

    return {
        "topic": mostly(_pick("t", "orders.v1-eu", "a-1", "日本-0"), _SURROGATE_TEXT),
        "partition": _pick(0, 1, 2, 3, MAX_PARTITION),
        "group_key_damage": mostly(st.none(), _ODD_TEXT),
        "records": mostly(
            st.lists(_record_dicts(damage_rate), min_size=1, max_size=5), json_values
        ),
        "source": mostly(_pick("aws:kafka", "SelfManagedKafka"), json_values),
        "records_damage": mostly(st.none(), json_values),
        "arn": mostly(_pick(None, "arn:aws:kafka:us-east-1:1:cluster/c/1"), json_values),
        "schema": _GROUP_SCHEMA_METADATA,
        "no_source": mostly(st.just(False), st.just(True)),
    }


@st.composite
def kafka_events(draw: st.DrawFn, *, damage_rate: int = 8) -> Any:
    """An invocation event, usually well formed; damaged (at any level) when damage_rate > 0."""
    parts = _event_parts(damage_rate)
    records: dict[Any, Any] = {}
    for _ in range(draw(_WIDE) % 4):
        topic, partition = draw(parts["topic"]), draw(parts["partition"])
        group_key = draw(parts["group_key_damage"])
        group = draw(parts["records"])
        schemas = {
            "keySchemaMetadata": draw(parts["schema"]),
            "valueSchemaMetadata": draw(parts["schema"]),
        }
        for record in group if isinstance(group, list) else ():
            if not isinstance(record, dict):
                continue
            if record.get("topic") is _GROUPS_OWN:
                record["topic"] = topic
            if record.get("partition") is _GROUPS_OWN:
                record["partition"] = partition
            for field, schema in schemas.items():
                if record.get(field) is _GROUPS_SCHEMA:
                    record[field] = dict(schema) if isinstance(schema, dict) else schema
                if record.get(field) is _ABSENT:
                    del record[field]
        records[f"{topic}-{partition}" if group_key is None else group_key] = group
    records_damage = draw(parts["records_damage"])
    event: dict[str, Any] = {
        "eventSource": draw(parts["source"]),
        "records": records if records_damage is None else records_damage,
    }
    arn = draw(parts["arn"])
    if arn is not None:
        event["eventSourceArn"] = arn
    if draw(parts["no_source"]):
        del event["eventSource"]
    return event


def _event(group_key: str, *records: dict[str, Any]) -> dict[str, Any]:
    return {"eventSource": "aws:kafka", "records": {group_key: list(records)}}


def _record(**fields: Any) -> dict[str, Any]:
    return {"topic": "t", "partition": 0, "offset": 1, **fields}


# Inputs that earlier versions got wrong, and edges of the fast path, tried by the properties on
# every run.
FOUND_BY_FUZZING: tuple[Any, ...] = (
    _event("t\ud800-0", _record(topic="t\ud800")),  # topic UTF-8 can not encode
    _event("t-0", _record(), _record(offset=2, headers=[{"h\udc00": [1]}])),  # header name
    _event("t-0", _record(offset="1" * 4301)),  # int() refuses more than 4,300 digits
    _event("t-0", _record(), _record(offset=2, headers={})),  # bad headers past the first
    _event("t-0", _record(), _record(offset=2, headers="")),
    _event("a-1--2", _record(topic="a-1", partition=-2)),  # negative partition
    _event("t-0", _record(offset=-1)),
    _event("t-0", _record(offset=2**63)),
    {"records": {"t-0": [_record()]}},  # no eventSource
    # Headers past a group's first record (the fast path reads them): values that bytes()
    # would take but parsing refuses (True is 1), signed bytes, bounds, odd names and shapes.
    _event("t-0", _record(), _record(offset=2, headers=[{"h": [True]}])),
    _event("t-0", _record(), _record(offset=2, headers=[{"h": [1, False]}])),
    _event("t-0", _record(), _record(offset=2, headers=[{"h": [-128, -1, 0, 255]}])),
    _event("t-0", _record(), _record(offset=2, headers=[{"h": [256]}])),
    _event("t-0", _record(), _record(offset=2, headers=[{"h": [-129]}])),
    _event("t-0", _record(), _record(offset=2, headers=[{"h": [1.0]}])),
    _event("t-0", _record(), _record(offset=2, headers=[{"h": []}, {"é": [1], "h": [2]}])),
    _event("t-0", _record(), _record(offset=2, headers=[{"h": [1]}, {"\udc00": [1]}])),
    _event("t-0", _record(), _record(offset=2, headers=[{"h": [1]}, [("h", [1])]])),
    # Schema metadata the fast path must not take for the one checked before it.
    _event(
        "t-0",
        _record(valueSchemaMetadata={"dataFormat": "AVRO", "schemaId": "1"}),
        _record(offset=2, valueSchemaMetadata={"dataFormat": "AVRO", "schemaId": "1\udc00"}),
    ),
    _event(
        "t-0",
        _record(keySchemaMetadata={"dataFormat": "AVRO", "schemaId": "1"}),
        _record(offset=2, keySchemaMetadata={"dataFormat": "AVRO", "schemaId": 1}),
    ),
)
