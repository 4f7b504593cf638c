"""The adaptive rate rule shared by the one-process `CallPacer` and the organisation's shared window.

Additive increase: each clean call adds a share of the configured rate, faster while the rate is below the
learned ceiling; the ceiling itself fades back to the configured rate. Multiplicative decrease, once per
429 episode: the rate drops to just under what the server refused, or halves, and everyone pauses with
jitter. Plain functions over numbers: no clock, no I/O.
"""

from __future__ import annotations

import random

MIN_RATE = 1.0
DECREASE_FACTOR = 0.5
# After a burst of 429s the rate climbs back by at least this share of the configured rate per window of
# clean calls, and doubles per window while it is below the learned ceiling (the last level the server
# accepted), so a transient burst costs a window or two, not minutes.
RATE_RECOVERY_PER_WINDOW = 0.10
# The learned ceiling -- what the server allowed in the window of a refused call -- fades back to the
# configured rate by this share per window of clean calls: full within five windows. One refusal cannot
# tell a real limit from a transient one (an outage, a burst of 429s that has nothing to do with our
# count), and a ceiling that never came back (formerly +1 call per 50 windows) turned every transient
# burst into a permanent cut. A real limit N simply teaches it again: the next window that goes past N
# is refused at N, and the ceiling drops back to it, so the rate stays near N (at the price of about one
# refused call per window and member, whatever the fade speed: the refusal ends the probe at once).
CEILING_RECOVERY_PER_WINDOW = 0.20


def recover(rate: float, ceiling: float, max_rate: float) -> tuple[float, float]:
    """(rate, ceiling) after one clean call: `rate` successes make one window, so each adds 1/rate of
    the per-window step (below the ceiling at least one call per call: the rate doubles per window)."""
    ceiling = min(max_rate, ceiling + max_rate * CEILING_RECOVERY_PER_WINDOW / rate)
    step = max_rate * RATE_RECOVERY_PER_WINDOW / rate
    if rate < ceiling:
        step = max(step, 1.0)
    rate = max(MIN_RATE, min(ceiling, rate + step))
    return rate, ceiling


def next_episode(episodes: int, since_last_decrease: float, window: float) -> int:
    """The number of the episode a new 429 opens. Episodes are consecutive refusals with no clean call
    between them; a refusal more than a window after the last decrease starts afresh (episode 1), since
    the server's count of that window is gone and the gap may only mean we sent nothing (burst pacing
    waits for the window to roll), not that every call was refused."""
    return 1 if since_last_decrease > window else episodes + 1


def decrease(rate: float, ceiling: float, inferred: float, episode: int) -> tuple[float, float]:
    """(rate, ceiling) after the 429 of episode `episode`, refusing what we infer was the server's
    (`inferred` + 1)-th call of its window; the caller clamps the rate to its bounds."""
    # Only the first refusal after clean calls says something about the server's count: the server
    # refused the c-th call we counted in its window, so it allows at most c - 1 -- unless we counted few
    # calls (someone else shares the organisation), when only the decrease applies. Later refusals of
    # the same run come after our pause, with the window already cut by the first: learning a ceiling
    # from them ratcheted it down to whatever was left in the window, episode after episode.
    if episode == 1 and inferred >= rate * DECREASE_FACTOR:
        ceiling = max(MIN_RATE, min(ceiling, inferred))
        rate = ceiling
    else:
        rate = rate * DECREASE_FACTOR
    return rate, ceiling


def pause_seconds(window: float, episode: int, rng: random.Random) -> float:
    """How long everyone pauses after a 429 without Retry-After: doubling per episode, at most a window."""
    backoff = min(window, window / 20 * 2 ** (episode - 1))
    return rng.uniform(backoff / 2, backoff)
