"""`python -m msk_kinesis_sink.replay`: see msk_kinesis_sink.replay.cli and docs/replay.md."""

from __future__ import annotations

import sys

from msk_kinesis_sink.replay.cli import main

sys.exit(main())
