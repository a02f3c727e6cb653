"""`python -m rehearse`: see rehearse.cli and docs/deploy.md#before-your-first-deploy."""

from __future__ import annotations

import sys

from rehearse.cli import main

try:
    sys.exit(main())
except KeyboardInterrupt:
    print("interrupted: the moto server and the function's process were stopped", file=sys.stderr)
    sys.exit(130)
