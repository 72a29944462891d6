"""Benchmark: fitting how long sittings last (``recoworld.study.sittings.fit_leaving``).

Every study's preparation and the fidelity harness now fit one level of leaving by simulation
(a bisection of 14 steps, each simulating a sample of 300 users for 2 sessions under the
default recommender) after fitting the choice model. The baseline, measured in the same run,
is what preparation did before: the choice model's fit and the personas alone. The two are
alternated; printed: median wall seconds of each, the ratio, and the fitted sitting length
against the one simulated at the fitted level (on the sample, then on every user under
another seed's draws).

    python benchmarks/bench_sittings.py [--world ml-100k] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recoworld.config import BrainConfig, WorldConfig  # noqa: E402
from recoworld.items.catalog import build_catalog  # noqa: E402
from recoworld.study.prepare import load_world_for  # noqa: E402
from recoworld.study.sittings import fit_leaving, simulated_sitting_items  # noqa: E402
from recoworld.users.fit import Fitted, fit_choice_model  # noqa: E402
from recoworld.users.persona import Personas, personas_from_history  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", default="ml-100k")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    world = load_world_for(WorldConfig(dataset=args.world), 0)
    catalog = build_catalog(world, dim=32, seed=0)
    print(f"{args.world}: {world.interactions.height:,} interactions")

    def fit_only() -> tuple[Fitted, Personas]:
        fitted = fit_choice_model(world, catalog, seed=0)
        return fitted, personas_from_history(
            world, catalog, half_life=fitted.model.recent_half_life
        )

    def with_leaving() -> tuple[Fitted, Personas]:
        fitted, personas = fit_only()
        return fit_leaving(fitted, catalog, personas, BrainConfig(), 0), personas

    runs = {"fit (before)": fit_only, "fit + leaving": with_leaving}
    times: dict[str, list[float]] = {name: [] for name in runs}
    last: tuple[Fitted, Personas] | None = None
    for _ in range(args.repeats):
        for name, run in runs.items():  # alternated
            t0 = time.perf_counter()
            out = run()
            times[name].append(time.perf_counter() - t0)
            if name == "fit + leaving":
                last = out
    base = float(np.median(times["fit (before)"]))
    for name, t in times.items():
        med = float(np.median(t))
        print(f"  {name:14s} median {med:6.2f} s over {len(t)} runs  x{med / base:.2f} the time")
    assert last is not None
    fitted, personas = last
    r = fitted.report
    everyone = simulated_sitting_items(fitted.model, catalog, personas, BrainConfig(), 1)
    print(
        f"  sitting length: logs {r.sitting_items:.2f}; simulated {r.simulated_sitting_items:.2f}"
        f" (the fit's sample), {everyone:.2f} (every user, another seed);"
        f" leave_offset {r.leave_offset:+.2f}, enough {r.enough:.2f}"
    )


if __name__ == "__main__":
    main()
