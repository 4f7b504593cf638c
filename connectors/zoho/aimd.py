"""The adaptive rate rule shared by the one-process `CallPacer` and the organisation's shared window.

Additive increase: each clean call adds a share of the configured rate (and probes the learned ceiling
slowly). Multiplicative decrease, once per 429 episode: the rate drops to just under what the server
refused, or halves, and everyone pauses with jitter. Plain functions over numbers: no clock, no I/O.
"""

from __future__ import annotations

import random

MIN_RATE = 1.0
DECREASE_FACTOR = 0.5
# After a burst of 429s the rate climbs back by this share of the configured rate per window of
# clean calls: back to full within about ten windows (minutes, not hours). The learned ceiling --
# what the server really allows when the budget is shared with other apps -- is probed far more
# cautiously, one call per CEILING_PROBE_WINDOWS clean windows.
RATE_RECOVERY_PER_WINDOW = 0.10
CEILING_PROBE_WINDOWS = 50


def recover(rate: float, ceiling: float, max_rate: float) -> tuple[float, float]:
    """(rate, ceiling) after one clean call: `rate` successes make one window, so each adds 1/rate of
    the per-window step."""
    ceiling = min(max_rate, ceiling + 1.0 / (rate * CEILING_PROBE_WINDOWS))
    rate = max(MIN_RATE, min(ceiling, rate + max_rate * RATE_RECOVERY_PER_WINDOW / rate))
    return rate, ceiling


def decrease(rate: float, ceiling: float, inferred: float, episode: int) -> tuple[float, float]:
    """(rate, ceiling) after the 429 of episode `episode`, refusing what we infer was the server's
    (`inferred` + 1)-th call of its window; the caller clamps the rate to its bounds."""
    # The server refused the c-th call we counted in its window, so it allows at most c - 1 -- unless
    # we counted few calls (someone else shares the organisation), when only the decrease applies.
    if inferred >= rate * DECREASE_FACTOR:
        ceiling = max(MIN_RATE, min(ceiling, inferred))
        rate = ceiling if episode == 1 else min(ceiling, rate * DECREASE_FACTOR)
    else:
        rate = rate * DECREASE_FACTOR
    return rate, ceiling


def pause_seconds(window: float, episode: int, rng: random.Random) -> float:
    """How long everyone pauses after a 429 without Retry-After: doubling per episode, at most a window."""
    backoff = min(window, window / 20 * 2 ** (episode - 1))
    return rng.uniform(backoff / 2, backoff)
