"""`python -m localloop`: the ESM emulator's command line (see localloop.cli)."""

from __future__ import annotations

import sys

from localloop.cli import main

sys.exit(main())
