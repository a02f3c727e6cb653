"""How long a partition waits after a failed attempt: capped exponential, full jitter."""

from __future__ import annotations

import random

# Doubling stops here: 2**30 x any base is past every cap anyway, and bigger powers only cost.
_MAX_EXPONENT = 30


def full_jitter_seconds(failures: int, *, base_ms: int, max_ms: int, rng: random.Random) -> float:
    """The delay before the next attempt after `failures` failed attempts in a row (>= 1).

    Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): uniform between zero
    and the capped exponential ceiling, so retrying partitions spread out instead of colliding.
    """
    ceiling_ms = min(max_ms, base_ms * 2 ** min(max(failures, 1) - 1, _MAX_EXPONENT))
    return rng.uniform(0, ceiling_ms) / 1000
