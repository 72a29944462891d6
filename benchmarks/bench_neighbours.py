"""Neighbours benchmark: what the neighbourhood feature (recoworld/users/neighbours.py) costs,
against the same work without it, in the same run:

1. building the item neighbours (once per catalog) against building the rest of the catalog;
2. the choice model's features with and without them: computed in the call (the fit's and
   the harness's path), and from a table built once per population (the brain's hot path);
3. one arm of a study simulated end to end (every user, the default study settings), with and
   without them.

    .venv/bin/python benchmarks/bench_neighbours.py [--dataset ml-100k] [--rows 20000] [--repeats 5]

A (without) and B (with) alternate; prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from recoworld.config import StudyConfig, WorldConfig
from recoworld.items.catalog import build_catalog
from recoworld.study.prepare import load_world_for, prepare
from recoworld.study.simulate import simulate_arm
from recoworld.users.choice import features
from recoworld.users.neighbours import NeighbourTable, item_neighbours
from recoworld.world.loaders import load_world


def _alternate(
    a: Callable[[], object], b: Callable[[], object], repeats: int
) -> tuple[float, float]:
    ta, tb = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        a()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        b()
        tb.append(time.perf_counter() - t)
    return 1e3 * statistics.median(ta), 1e3 * statistics.median(tb)


def _line(label: str, a_ms: float, b_ms: float) -> None:
    print(f"  {label:<44} A {a_ms:9.1f} ms   B {b_ms:9.1f} ms   B/A {b_ms / a_ms:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    world = load_world(a.dataset)
    u, i, *_ = world.coded_interactions()
    n_users, n_items = world.users.height, world.items.height
    print(f"{a.dataset}: {n_users} users, {n_items} items, {u.size} interactions")
    print(f"medians of {a.repeats}, A without the neighbours, B with them:")

    def catalog_only() -> object:
        return build_catalog(world, seed=0)

    def neighbours_only() -> object:
        return item_neighbours(u, i, n_users, n_items)

    _line(
        "building: the catalog (A) vs its neighbours (B)",
        *_alternate(catalog_only, neighbours_only, a.repeats),
    )

    cfg = StudyConfig(name="bench-neighbours", world=WorldConfig(dataset=a.dataset))
    prep = prepare(cfg, load_world_for(cfg.world, cfg.seed))
    personas = prep.population
    assert personas is not None
    plain = replace(prep, catalog=replace(prep.catalog, neighbours=None))
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(personas), a.rows)
    items = rng.integers(0, prep.catalog.n_items, (a.rows, 10))
    _line(
        f"features() of {a.rows} users x 10 items",
        *_alternate(
            lambda: features(personas, rows, items, plain.catalog),
            lambda: features(personas, rows, items, prep.catalog),
            a.repeats,
        ),
    )
    table = NeighbourTable(prep.catalog.neighbours, personas.history, personas.template)
    _line(
        f"features() of {a.rows} users x 10 items, a table",
        *_alternate(
            lambda: features(personas, rows, items, plain.catalog),
            lambda: features(personas, rows, items, prep.catalog, table),
            a.repeats,
        ),
    )
    users = np.arange(len(personas))
    _line(
        f"simulate_arm, {users.size} users",
        *_alternate(
            lambda: simulate_arm(plain, 0, users, lambda rec: None),
            lambda: simulate_arm(prep, 0, users, lambda rec: None),
            a.repeats,
        ),
    )


if __name__ == "__main__":
    main()
