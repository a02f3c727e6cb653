"""How a variable of the function's environment reads into a value and writes back: the kinds of
its settings, each with the rule it checks and the one-line refusal that names the variable (or
the context key that sets it)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

from msk_kinesis_sink.errors import ConfigurationError

# Every pattern is ASCII-only and matched in full: `\d` and `$` would also take other
# scripts' digits and a trailing newline.

# S3 "General purpose bucket naming rules": 3-63 characters of lowercase letters, digits, '.'
# and '-', beginning and ending with a letter or digit; no two adjacent periods; not formatted
# as an IP address; no reserved prefix or suffix.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", re.ASCII)
_IP_ADDRESS = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}", re.ASCII)
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_INTEGER = re.compile(r"[-+]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", re.ASCII)
# Level names Powertools passes to logging.Logger.setLevel (it upper-cases them first).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL")


class Kind(Protocol):
    """How a variable's text becomes a field's value and back.

    `read` gets the text as set (perhaps blank) and the field's default, and raises
    ConfigurationError naming `name`: the variable, or the context key that sets it. `write`
    returns None to leave the variable unset.
    """

    def read(self, raw: str, name: str, default: Any) -> Any: ...

    def write(self, value: Any) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Variable:
    """The environment variable a field is read from and written to.

    `key` is the cdk.json context key that sets it (None: the stack derives the value from other
    keys or from what it builds); `legacy`, an older variable read while this one is unset or
    blank; `also`, the further fields one variable sets (STREAM_NAME's ARN).
    """

    name: str
    kind: Kind
    key: str | None = None
    legacy: str | None = None
    also: tuple[str, ...] = ()


# The key of a Settings field's metadata that holds its Variable.
VARIABLE: Final = "variable"


def reads(
    name: str,
    kind: Kind,
    *,
    key: str | None = None,
    legacy: str | None = None,
    also: tuple[str, ...] = (),
) -> dict[str, Variable]:
    """A field's metadata: the variable it is read from (see Variable)."""
    return {VARIABLE: Variable(name, kind, key, legacy, also)}


@dataclass(frozen=True, slots=True)
class Choice:
    """One value of a StrEnum, in any case; blank is the default. With `unwritten`, that value
    is left out of the environment (it reads back as the default)."""

    enum: type[StrEnum]
    unwritten: StrEnum | None = None

    def read(self, raw: str, name: str, default: Any) -> Any:
        value = raw.strip().lower()
        if not value:
            return default
        try:
            return self.enum(value)
        except ValueError:
            allowed = ", ".join(member.value for member in self.enum)
            raise ConfigurationError(f"{name}={raw!r} is not one of: {allowed}") from None

    def write(self, value: StrEnum) -> str | None:
        return None if value is self.unwritten else value.value


@dataclass(frozen=True, slots=True)
class Integer:
    """A whole number in ASCII digits, within `low`-`high`; blank is the default."""

    low: int
    high: int

    def read(self, raw: str, name: str, default: int) -> int:
        return int(_number(raw, name, default, self.low, self.high, int, "an integer"))

    def write(self, value: int) -> str:
        return str(value)


@dataclass(frozen=True, slots=True)
class Number:
    """A decimal number in ASCII digits, within `low`-`high`; blank is the default."""

    low: float
    high: float

    def read(self, raw: str, name: str, default: float) -> float:
        return _number(raw, name, default, self.low, self.high, float, "a number")

    def write(self, value: float) -> str:
        # The shortest text that reads back as the same number: "5" for 5.0, "2.5" for 2.5.
        return str(int(value)) if float(value).is_integer() else repr(float(value))


class BucketName:
    """An S3 general purpose bucket name; blank is the default (no bucket)."""

    def read(self, raw: str, name: str, default: str | None) -> str | None:
        bucket = raw.strip()
        if not bucket:
            return default
        problem = bucket_name_problem(bucket)
        if problem:
            raise ConfigurationError(f"{name}={bucket!r} is not a valid S3 bucket name: {problem}")
        return bucket

    def write(self, value: str | None) -> str | None:
        return value


class Prefix:
    """An S3 key prefix used as a folder: a '/' is appended, unless it is set to nothing."""

    def read(self, raw: str, name: str, default: str) -> str:
        prefix = raw.strip()
        return prefix if not prefix or prefix.endswith("/") else prefix + "/"

    def write(self, value: str) -> str:
        return value


class LogLevelName:
    """A level name Powertools takes, in any case and as given (Powertools does not strip it)."""

    def read(self, raw: str, name: str, default: str) -> str:
        if raw and raw.upper() not in LOG_LEVELS:
            raise ConfigurationError(
                f"{name}={raw!r} is not a log level"
                " (allowed: DEBUG, INFO, WARNING, ERROR, CRITICAL)"
            )
        return raw.upper() or default

    def write(self, value: str) -> str:
        return value


def _number(
    raw: str,
    name: str,
    default: float,
    low: float,
    high: float,
    parse: Callable[[str], float],
    kind: str,
) -> float:
    text = raw.strip()
    if not text:
        return default
    # int() and float() also take other scripts' digits, '_' separators, 'nan' and 'inf'.
    value: float | None = None
    if (_INTEGER if parse is int else _DECIMAL).fullmatch(text):
        with contextlib.suppress(ValueError):  # int() refuses more than 4,300 digits
            value = parse(text)
    if value is None:
        raise ConfigurationError(f"{name}={text!r} is not {kind} (allowed: {low}-{high})")
    if not low <= value <= high:
        raise ConfigurationError(f"{name}={text} is out of range (allowed: {low}-{high})")
    return value


def bucket_name_problem(name: str) -> str | None:
    """Which general purpose bucket naming rule `name` breaks, or None."""
    if not _BUCKET_NAME.fullmatch(name):
        return (
            "3-63 characters of lowercase letters, digits, '.' and '-', beginning and ending"
            " with a letter or digit"
        )
    if ".." in name:
        return "two adjacent periods"
    if _IP_ADDRESS.fullmatch(name):
        return "formatted as an IP address"
    for prefix in _BUCKET_RESERVED_PREFIXES:
        if name.startswith(prefix):
            return f"the prefix {prefix!r} is reserved"
    for suffix in _BUCKET_RESERVED_SUFFIXES:
        if name.endswith(suffix):
            return f"the suffix {suffix!r} is reserved"
    return None
