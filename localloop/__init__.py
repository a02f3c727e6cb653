"""The local loop: an MSK event-source-mapping emulator, a fault-injecting Kinesis proxy, local
servers (a Kafka-protocol broker and kinesalite), a workload generator and a stream auditor."""

from __future__ import annotations

import sys
from pathlib import Path

# The function's package lives in `lambda/` (its asset root; `lambda` is a keyword, so it is not a
# package itself). `python -m localloop.*` runs from the repo root, so make it importable here.
_FUNCTION_ROOT = Path(__file__).resolve().parent.parent / "lambda"
if _FUNCTION_ROOT.is_dir() and str(_FUNCTION_ROOT) not in sys.path:
    sys.path.append(str(_FUNCTION_ROOT))
