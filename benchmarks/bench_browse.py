"""Browse benchmark: the logs' exposure (recoworld/recommenders/browse.py) drawing slates by
successive draws, against Gumbel top-k over the whole catalogue (the same distribution, and its
fallback), in the same run. The sitting-length fit runs under this exposure, so its cost is the
fit's.

    .venv/bin/python benchmarks/bench_browse.py [--dataset ml-100k] [--users 1000] \
        [--turns 20] [--repeats 5]

A and B alternate, each on a fresh recommender; prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from recoworld.items.catalog import build_catalog
from recoworld.recommenders.base import Audience
from recoworld.recommenders.browse import CatalogueBrowsing
from recoworld.users.persona import personas_from_history
from recoworld.world.loaders import load_world


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    world = load_world(a.dataset)
    catalog = build_catalog(world, seed=0)
    pers = personas_from_history(world, catalog)
    pers = pers.take(np.arange(min(a.users, len(pers))))
    aud = Audience(personas=pers, catalog=catalog, seed=0, treated=np.zeros(len(pers), bool))
    idx = np.arange(len(pers))

    def run(gumbel: bool) -> float:
        rec = CatalogueBrowsing()
        rec.bind(aud)
        t0 = time.perf_counter()
        for t in range(a.turns):
            if gumbel:
                s = rec._gumbel(idx, 0, t, 10)
                rec.shown.add(idx, s)
            else:
                rec.recommend(idx, 0, t, 10)
        return time.perf_counter() - t0

    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(a.repeats):
        for g in (True, False):
            times[g].append(run(g))
    g, s = statistics.median(times[True]), statistics.median(times[False])
    print(
        f"{a.dataset}: {catalog.n_items} items, {len(pers)} users x {a.turns} slates of 10 "
        f"(median of {a.repeats})"
    )
    print(f"  gumbel top-k over the catalogue  {g * 1e3:9.1f} ms")
    print(f"  successive draws                 {s * 1e3:9.1f} ms")
    print(f"  ratio                            x{g / s:8.1f} faster")


if __name__ == "__main__":
    main()
