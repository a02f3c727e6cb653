"""The replay's strict JSON reader: what two readers could read differently is refused."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from msk_kinesis_sink.errors import UnreadableObjectError
from msk_kinesis_sink.replay.documents import MAX_NESTING, read_json
from msk_kinesis_sink.replay.refusals import Unreadable
from tests.replay_objects import nesting_depth
from tests.strategies import FUZZ_EXAMPLES, json_values


def _refusal(body: bytes, **kwargs: Any) -> UnreadableObjectError:
    with pytest.raises(UnreadableObjectError) as raised:
        read_json(body, **kwargs)
    return raised.value


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"offset":7,"offset":8}', "member 'offset' given twice"),
        (b'{"records":{"orders-0":[{"topic":"orders"}],"orders-0":[]}}', "'orders-0' given"),
        (b'{"payload":{"records":{"t-0":[{"offset":1,"offset":1}]}}}', "'offset' given twice"),
        (b'{"headers":[{"secret-name":[1],"secret-name":[2]}]}', "its name not shown"),
    ],
)
def test_read_json_refuses_a_member_given_twice_at_any_depth(body: bytes, expected: str) -> None:
    # GIVEN an object naming a member twice, at the top or deep inside
    # WHEN it is read
    error = _refusal(body, schema_names={"offset"})
    # THEN it is refused as ambiguous, naming the member only when it is no customer data
    assert error.kind == Unreadable.DUPLICATE_MEMBER
    assert expected in str(error)
    assert "secret-name" not in str(error)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\xff\xfe{}", "not UTF-8 (byte 0)"),
        ('{"a":1}'.encode("utf-16"), "not UTF-8"),
        (b'\xef\xbb\xbf{"a":1}', "not JSON: Unexpected UTF-8 BOM"),
        (b'{"a":NaN}', "not JSON: NaN is no JSON number"),
        (b'{"a":-Infinity}', "not JSON: -Infinity is no JSON number"),
        (b'{"a":' + b"9" * 5000 + b"}", "a number too long to read"),
        (b'{"a":[1,2}]', "not JSON: Expecting ',' delimiter"),
        (b'{"a":"[[[["', "not JSON: its brackets do not balance"),
        (b"[" * 100_000, "not JSON: its brackets do not balance"),
        (b"", "not JSON: Expecting value at character 0"),
    ],
)
def test_read_json_refuses_what_is_not_plain_utf8_json(body: bytes, expected: str) -> None:
    # GIVEN bytes that are not UTF-8 JSON, or JSON with a value not every reader reads alike
    # WHEN they are read
    error = _refusal(body)
    # THEN they are refused, saying why
    assert error.kind == Unreadable.NOT_JSON
    assert expected in str(error)


def _nested(levels: int, opening: str = "[", closing: str = "]") -> bytes:
    return (opening * levels + "1" + closing * levels).encode()


@pytest.mark.parametrize("levels", [MAX_NESTING + 1, 1_000, 1_000_000])
def test_read_json_refuses_deep_nesting_before_any_recursion(levels: int) -> None:
    # GIVEN a document nested deeper than the replay reads (1,000 levels is about 2 KB), and a
    # stack that takes the reader's own calls but not MAX_NESTING recursive ones more
    body = _nested(levels, '{"n":', "}")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(_frames()) + MAX_NESTING // 2)
    try:
        # WHEN it is read
        error = _refusal(body)
    finally:
        sys.setrecursionlimit(limit)
    # THEN it is refused as too deep, without a RecursionError: nothing recursed into it
    assert error.kind == Unreadable.TOO_DEEP
    assert str(error) == f"nested deeper than {MAX_NESTING} levels"


def _frames() -> list[Any]:
    frames, frame = [], sys._getframe()
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back  # type: ignore[assignment]
    return frames


def test_read_json_reads_nesting_up_to_the_limit_and_ignores_brackets_in_strings() -> None:
    # GIVEN a document exactly MAX_NESTING deep, and one whose strings hold many brackets
    deepest = _nested(MAX_NESTING)
    bracketed = json.dumps({"v": "[" * 1000 + '\\"{' * 1000, "w": ["]]]}}}"]}).encode()
    # WHEN they are read
    # THEN both are read as the standard reader reads them
    assert read_json(deepest) == json.loads(deepest)
    assert read_json(bracketed) == json.loads(bracketed)


def test_read_json_names_where_the_text_came_from() -> None:
    # GIVEN an on-failure payload given as JSON text that is nested too deep
    # WHEN it is read as "its payload"
    error = _refusal(_nested(MAX_NESTING + 1), where="its payload")
    # THEN the refusal says so
    assert str(error) == f"its payload: nested deeper than {MAX_NESTING} levels"


@st.composite
def _deep_values(draw: st.DrawFn) -> Any:
    """A JSON value wrapped in a drawn number of arrays and objects, around the limit."""
    value = draw(json_values)
    for _ in range(draw(st.integers(0, MAX_NESTING + 3))):
        value = [value] if draw(st.booleans()) else {draw(st.text(max_size=3)): value}
    return value


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_deep_values())
def test_read_json_agrees_with_the_standard_reader_up_to_the_nesting_limit(value: Any) -> None:
    # GIVEN any JSON value (no name twice: json.dumps writes a dict), nested around the limit
    try:
        body = json.dumps(value, allow_nan=False).encode()
    except ValueError:  # an infinite float: no JSON number
        assume(False)
        raise
    depth = nesting_depth(body)
    # WHEN the replay reads it
    # THEN it reads what the standard reader reads, or refuses it exactly when it is too deep
    if depth > MAX_NESTING:
        assert _refusal(body).kind == Unreadable.TOO_DEEP
    else:
        assert read_json(body) == json.loads(body)


def _json_bytes() -> Iterator[st.SearchStrategy[bytes]]:
    yield st.binary(max_size=64)
    yield json_values.map(lambda v: json.dumps(v).encode())
    yield st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b"1", b",", b":"])).map(
        b"".join
    )


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.one_of(*_json_bytes()))
def test_read_json_on_any_bytes_reads_them_as_the_standard_reader_or_refuses_them(
    body: bytes,
) -> None:
    # GIVEN any bytes
    # WHEN the replay reads them
    try:
        value = read_json(body)
    except UnreadableObjectError as error:
        # THEN it refuses them with one of its reasons...
        assert error.kind in {
            Unreadable.NOT_JSON,
            Unreadable.TOO_DEEP,
            Unreadable.DUPLICATE_MEMBER,
        }
        return
    # ...or reads exactly what the standard reader reads
    assert value == json.loads(body.decode("utf-8"))
