"""Seeds of findings that are open: understood, reported, not fixed yet (docs/SIMULATION.md, "What it found").

CI expects exactly these seeds (of its range) to fail: a fix shows up as a seed to take off this list, a new
failure as a failing test. Each entry says what the seed shows.
"""

from __future__ import annotations

from typing import Final

KNOWN_FINDINGS: Final[dict[int, str]] = {}
