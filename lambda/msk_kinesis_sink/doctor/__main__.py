"""`python -m msk_kinesis_sink.doctor`: see msk_kinesis_sink.doctor.cli and docs/runbook.md."""

from __future__ import annotations

import sys

from msk_kinesis_sink.doctor.cli import main

sys.exit(main())
