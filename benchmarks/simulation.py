"""Benchmark 12: the deterministic simulation's CI search (`docs/SIMULATION.md`).

Runs what `tests/simulation/test_seeds.py` runs in CI (`python -m simulation` over `CI_SEEDS` seeds in two
processes) and reports how many seeds CI covers, how many it runs a second, and how many invariant
violations they found (0 on main, but for the seeds listed as known findings).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from simulation.run import CI_JOBS, CI_SEEDS

ROOT = Path(__file__).resolve().parents[1]


def bench_simulation() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "summary.json"
        command = [sys.executable, "-m", "simulation", "--seeds", f"0:{CI_SEEDS}", "--jobs", str(CI_JOBS)]
        subprocess.run([*command, "--json", str(out)], cwd=ROOT, capture_output=True, text=True, check=False)
        summary = json.loads(out.read_text())
    return {
        "simulation_seeds_in_ci": summary["seeds"],
        "simulation_seeds_per_s": summary["seeds_per_s"],
        "simulation_invariant_violations": summary["invariant_violations"],
        "simulation_failed_seeds": summary["failed_seeds"],
        "simulation_virtual_hours": summary["virtual_hours"],
        "simulation_zoho_calls": summary["zoho_calls"],
    }
