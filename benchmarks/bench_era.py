"""Era benchmark: what the timeliness feature (recoworld/users/era.py) costs in the choice
model's features, the brain's hot path, against the same call without it, in the same run.

    .venv/bin/python benchmarks/bench_era.py [--dataset ml-100k] [--rows 20000] [--repeats 7]

A and B alternate; prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import numpy as np

from recoworld.items.catalog import build_catalog
from recoworld.users.choice import features
from recoworld.users.fit import fit_choice_model
from recoworld.users.persona import personas_from_history
from recoworld.world.loaders import load_world


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    world = load_world(a.dataset)
    catalog = build_catalog(world, seed=0)
    model = fit_choice_model(world, catalog, seed=0).model
    width = model.era_width or 2  # measure the path even where the fit declined the era
    with_era = personas_from_history(
        world, catalog, half_life=model.recent_half_life, era_width=width
    )
    without = replace(with_era, era=None)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(with_era), a.rows)
    items = rng.integers(0, catalog.n_items, (a.rows, 10))
    ta, tb = [], []
    for _ in range(a.repeats):
        t = time.perf_counter()
        features(without, rows, items, catalog)
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        features(with_era, rows, items, catalog)
        tb.append(time.perf_counter() - t)
    a_ms, b_ms = 1e3 * statistics.median(ta), 1e3 * statistics.median(tb)
    print(f"{a.dataset}: fitted era width {model.era_width} (measured at {width})")
    print(f"features() of {a.rows} users x 10 items, median of {a.repeats}:")
    print(f"  A without timeliness {a_ms:8.1f} ms")
    print(f"  B with timeliness    {b_ms:8.1f} ms   B/A {b_ms / a_ms:.2f}")


if __name__ == "__main__":
    main()
