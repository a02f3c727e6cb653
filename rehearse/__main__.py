"""`python -m rehearse`: see rehearse.cli and docs/deploy.md#before-your-first-deploy."""

from __future__ import annotations

import sys

from rehearse.cli import main

sys.exit(main())
