"""Where docs/runbook.md's entries are: the anchor of each heading, as alarm descriptions link to
them and the doctor names them."""

from __future__ import annotations

import re
from typing import Final

# Where links point when the deployment names no runbook URL of its own (the repository's copy).
RUNBOOK_PATH: Final = "docs/runbook.md"


def runbook_anchor(entry: str) -> str:
    """The anchor GitHub gives the runbook heading "### `<entry>`"."""
    return re.sub(r"[^a-z0-9_ -]", "", entry.lower()).replace(" ", "-")
