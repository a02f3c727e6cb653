"""Text from the bucket, made safe for the operator's terminal: an object key, a topic or a
header name may hold escape sequences, and none reaches the terminal as it is."""

from __future__ import annotations

from typing import TextIO

_QUOTES = ("'", '"')


def shown(text: str) -> str:
    """`text` as it is when every character is printable and it can not be taken for a quoted
    form; otherwise quoted, with escapes (`'\\x1b[31mkey'`): printable, and unambiguous."""
    if text.isprintable() and "\\" not in text and not text.startswith(_QUOTES):
        return text
    return repr(text)


def printable(line: str) -> str:
    """Every character a terminal would act on (control, format and bidi characters, lone
    surrogates) escaped: the last guard on each line the replay prints."""
    if line.isprintable():
        return line
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in line)


def say(stream: TextIO, line: str) -> None:
    """Print one line of the replay's output."""
    print(printable(line), file=stream)
