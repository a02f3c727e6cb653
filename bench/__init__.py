"""Side-by-side throughput and cost benchmark of the sink (`make bench`); never a test."""

from __future__ import annotations

import sys
from pathlib import Path

# The function's package lives in lambda/ (a keyword, so not importable as a package path).
_LAMBDA = str(Path(__file__).resolve().parent.parent / "lambda")
if _LAMBDA not in sys.path:
    sys.path.insert(0, _LAMBDA)
