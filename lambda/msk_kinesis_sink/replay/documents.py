"""Strict reading of the bucket's JSON: UTF-8, bounded nesting, each member named once.

The replay must send exactly the records an object holds, so it reads nothing two readers could
read differently: `json.loads` keeps the last of two same-named members (an on-failure object
naming `orders-0` twice, a record with two offsets), nests as deep as the text does (a 2 KB
object nested 1,000 levels deep ends in a RecursionError) and takes NaN for a number. Each of
those makes the object unreadable here, with a reason, and nothing of it is sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from functools import partial
from typing import Any, Final, NoReturn

from msk_kinesis_sink.errors import UnreadableObjectError
from msk_kinesis_sink.replay.refusals import Unreadable

# The deepest document the sink or Lambda writes nests 8 levels: an on-failure object, its
# payload, the records map, a partition's list, a record, its headers, a header, its bytes. Four
# times that leaves room for members Lambda may add, and is far below where a recursive reader
# (json's own, or a comparison of two parsed values) could run out of stack.
MAX_NESTING: Final = 32

# A JSON string, skipped whole so that brackets inside it do not count: possessive, so it never
# backtracks (linear on any input), and it ends at the end of the text when it is never closed.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.?)*+"?', re.DOTALL)
# Every bracket as a parenthesis, everything else dropped: what is left is the nesting alone.
_AS_PARENTHESES = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_LEAF = b"()"


def read_json(body: bytes, where: str = "", *, schema_names: Collection[str] = ()) -> Any:
    """The JSON value of `body`; raises UnreadableObjectError (saying what is wrong, after
    `where` when given, never quoting data) for anything but UTF-8 JSON nested at most
    MAX_NESTING levels, with each object's member names distinct and no NaN or Infinity.

    A member given twice is named when it is one of `schema_names` or a records key (a
    topic-partition); any other name (a header's, say) may be customer data and is not."""
    what = f"{where}: " if where else ""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        _refuse(Unreadable.NOT_JSON, f"{what}not UTF-8 (byte {error.start})")
    _check_nesting(body, what)
    try:
        return json.loads(
            text,
            object_pairs_hook=partial(_distinct_members, schema_names),
            parse_constant=_no_constant,
        )
    except UnreadableObjectError:
        raise  # from the hooks
    except json.JSONDecodeError as error:
        _refuse(Unreadable.NOT_JSON, f"{what}not JSON: {error.msg} at character {error.pos}")
    except ValueError:  # int() refuses more than 4,300 digits
        _refuse(Unreadable.NOT_JSON, f"{what}a number too long to read")


def _check_nesting(body: bytes, what: str) -> None:
    """Refuses `body` when its brackets, outside strings, nest deeper than MAX_NESTING or do
    not balance, before any recursive reader sees it.

    Each pass removes every innermost pair: a balanced text of depth d is empty after exactly d
    passes, and a pass that removes nothing leaves brackets that can not balance. At most
    MAX_NESTING + 1 passes, each linear and in C: a 16 MiB object takes a fraction of a second.
    """
    brackets = _STRING.sub(b"", body).translate(_AS_PARENTHESES, _NOT_BRACKETS)
    for _ in range(MAX_NESTING):
        if not brackets:
            return
        inner_removed = brackets.replace(_LEAF, b"")
        if len(inner_removed) == len(brackets):
            _refuse(Unreadable.NOT_JSON, f"{what}not JSON: its brackets do not balance")
        brackets = inner_removed
    if brackets:
        # A pair left after MAX_NESTING passes encloses MAX_NESTING others, or never closes.
        _refuse(Unreadable.TOO_DEEP, f"{what}nested deeper than {MAX_NESTING} levels")


def _distinct_members(
    schema_names: Collection[str], pairs: Sequence[tuple[str, Any]]
) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) == len(pairs):
        return members
    first: dict[str, Any] = {}
    for name, value in pairs:
        if name in first:
            member = _member(name, (first[name], value), schema_names)
            _refuse(Unreadable.DUPLICATE_MEMBER, f"{member} given twice")
        first[name] = value
    raise AssertionError("a duplicate name was counted but not found")  # pragma: no cover


def _member(name: str, values: tuple[Any, Any], schema_names: Collection[str]) -> str:
    """A duplicated member as a refusal names it: a schema name or a records key (a
    topic-partition, whose value is a list of records) as it is, anything else unnamed."""
    is_records_key = any(
        isinstance(value, list)
        and any(isinstance(item, dict) and "topic" in item for item in value)
        for value in values
    )
    if name in schema_names or is_records_key:
        return f"member {name!r}"
    return "a member (its name not shown: it may be customer data)"


def _no_constant(name: str) -> NoReturn:
    _refuse(Unreadable.NOT_JSON, f"not JSON: {name} is no JSON number")


def _refuse(kind: Unreadable, why: str) -> NoReturn:
    raise UnreadableObjectError(why, kind=kind)
