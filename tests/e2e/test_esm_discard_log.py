"""What the emulator logs when it gives up on records: where they are, how many, their size and
why, never their keys or values."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from localloop.context import LambdaContext
from localloop.esm import EsmConfig, Poller
from tests.e2e.test_esm_engine import TOPIC, ListSource

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def _raises(event: dict[str, Any], context: LambdaContext) -> object:
    raise RuntimeError("always")


def test_esm_discard_log_lines_name_partition_offsets_size_and_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN two partitions of three records each (key b"k", value b"v") and a function that
    # always raises, with no retries
    source = ListSource([3, 3])
    config = EsmConfig(
        bootstrap_servers="x:1",
        batching_window_s=0.0,
        retry_backoff_s=0.0,
        maximum_retry_attempts=0,
    )
    poller = Poller(config, source, _raises)

    # WHEN the batch fails and is given up on
    with caplog.at_level(logging.WARNING, logger="localloop.esm"):
        poller.run_once()

    # THEN one line per partition says what was discarded, and why
    lines = [r for r in caplog.records if r.getMessage().startswith("discarding records")]
    described = sorted(
        (r.topic, r.partition, r.offsets, r.records, r.size, r.reason)  # type: ignore[attr-defined]
        for r in lines
    )
    assert described == [
        (TOPIC, 0, "0..2", 3, 6, "RetryAttemptsExhausted"),
        (TOPIC, 1, "0..2", 3, 6, "RetryAttemptsExhausted"),
    ]
    assert "no on-failure destination configured" in lines[0].getMessage()
