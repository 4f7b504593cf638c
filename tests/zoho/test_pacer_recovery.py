"""After a burst of 429s the pacer slows down at once, and climbs back within minutes, not hours."""

from __future__ import annotations

import random

from connectors.zoho.limits.call_pacer import CallPacer


async def test_rate_recovers_to_most_of_the_configured_rate_within_about_ten_windows_of_clean_calls() -> None:
    pacer = CallPacer(100, window_seconds=60.0, rng=random.Random(1))
    now = pacer._now()  # noqa: SLF001 - the pacer's own clock
    for n in range(10):  # ten 429 episodes in a row (an injected burst, few calls of ours in the window)
        pacer.on_rate_limited(sent_at=now + n + 1)
    assert pacer.rate <= 2  # multiplicative decrease
    later = now + 1000
    successes = 0
    window_sum = 0.0
    while pacer.rate < 90:
        pacer.on_success(sent_at=later)
        successes += 1
        window_sum += 1 / pacer.rate  # each window holds `rate` calls
    assert window_sum <= 12  # about ten windows, i.e. about ten minutes at Zoho's 60 s window
    assert successes < 1000  # the former +1-call-per-window step needed about 4,000
