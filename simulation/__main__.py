"""`python -m simulation`: run seeds of the deterministic simulation (`make simulate`).

    python -m simulation --seeds 0:2000 --jobs 2      a search: a summary, and each failing seed
    python -m simulation --seed 1234                  one seed again, bit for bit, with its trace

Python randomises string hashing per process, which would reorder sets between a run and its replay:
the command runs itself again under PYTHONHASHSEED=0 when another value is set, so a seed's history is
the same in CI, in `make simulate` and on any machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from dataclasses import asdict
from typing import Any

from simulation.run import SeedResult, run_seed


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, "-m", "simulation", *(argv or sys.argv[1:])])
    args = _parser().parse_args(argv)
    if args.seed is not None:
        return _replay(args.seed)
    first, _, last = args.seeds.partition(":")
    seeds = range(int(first), int(last)) if last else range(int(first))
    started = time.perf_counter()
    results = _search(list(seeds), args.jobs)
    elapsed = time.perf_counter() - started
    failed = [r for r in results if not r.ok]
    summary = {
        "seeds": len(results),
        "failed_seeds": [r.seed for r in failed],
        "invariant_violations": sum(len(r.violations) for r in failed),
        "seconds": round(elapsed, 2),
        "seeds_per_s": round(len(results) / elapsed, 1) if elapsed else None,
        "zoho_calls": sum(r.zoho_calls for r in results),
        "records": sum(r.records for r in results),
        "virtual_hours": round(sum(r.virtual_seconds for r in results) / 3600, 1),
    }
    for result in failed:
        print(f"seed {result.seed} FAILED ({result.scenario})")
        for invariant, detail in result.violations:
            print(f"  {invariant}: {detail[:500]}")
        print(f"  replay: {result.replay_command()}")
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({**summary, "failures": [_failure(r) for r in failed]}, out, indent=1)
    return 1 if failed else 0


def _replay(seed: int) -> int:
    result = run_seed(seed, trace=True)
    for line in result.trace:
        print(line)
    print(result.scenario)
    for invariant, detail in result.violations:
        print(f"VIOLATED {invariant}: {detail}")
    print(f"digest {result.digest}; {result.zoho_calls} Zoho calls; {result.records} sync-log rows")
    return 0 if result.ok else 1


def _search(seeds: list[int], jobs: int) -> list[SeedResult]:
    if jobs <= 1:
        return [run_seed(seed) for seed in seeds]
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        return pool.map(run_seed, seeds, chunksize=16)


def _failure(result: SeedResult) -> dict[str, Any]:
    out = asdict(result)
    out.pop("trace")
    out["replay"] = result.replay_command()
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulation", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="200", help="N (seeds 0..N-1) or A:B (seeds A..B-1)")
    parser.add_argument("--seed", type=int, help="replay one seed with its trace")
    parser.add_argument("--jobs", type=int, default=1, help="processes to run seeds in")
    parser.add_argument("--json", help="write the summary and failures to this file")
    return parser


if __name__ == "__main__":
    sys.exit(main())
