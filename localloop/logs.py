"""Log lines of the local loop: plain text plus the structured fields a record was logged with."""

from __future__ import annotations

import logging
from typing import Final

# Format of the function's and the emulator's lines in .demo/logs/function.log.
LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"
_STANDARD_ATTRS: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class ExtrasFormatter(logging.Formatter):
    """Plain lines plus the structured fields passed as `extra=` (counts, offsets, timings)."""

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}
        line = super().format(record)
        return f"{line} {extras}" if extras else line
