"""Benchmark: the same study in one process vs. on an embedded Ray cluster with 2 shards.

Study: an ML-100K world (synthetic of the same size when the data is absent), one arm,
3 sessions x 5 turns, slates of 10, mf + instruction following, N users (default 100,000),
Parquet written. Figures (medians over --repeats):
- wall time in one process (``run_study(workers=1)``) and on Ray with 2 shard actors
  (``run_study_on_ray(shards=2)``), excluding cluster start; target ratio Ray / 1 process <= 1.3;
- the coordinator's cost: Ray wall time minus the slowest shard's own simulation time
  (actor start, dispatch, merging aggregates, the summary), in total and per user-turn;
- Ray calls per simulated user-turn (actor creations, calls, puts; target far below 1).

Usage: python benchmarks/bench_ray.py [--users 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STUDY = """
name = "bench_ray"
seed = 11
[world]
dataset = "{dataset}"
synthetic_users = 943
synthetic_items = 1682
[population]
size = {users}
[simulation]
sessions = 3
turns = 5
slate_size = 10
[recommender]
kind = "mf"
"""


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import polars as pl
    import ray

    from actors.driver import connect, run_study_on_ray
    from recoworld.config import decode_study
    from recoworld.study.prepare import load_world_for
    from recoworld.study.runner import run_study

    dataset = "ml-100k"
    try:
        cfg = decode_study(STUDY.format(users=args.users, dataset=dataset))
        world = load_world_for(cfg.world, cfg.seed)
    except Exception as e:  # noqa: BLE001 - fall back to a generated world of the same size
        print(f"ML-100K not available ({e}); using a synthetic world of the same size")
        dataset = "synthetic"
        cfg = decode_study(STUDY.format(users=args.users, dataset=dataset))
        world = load_world_for(cfg.world, cfg.seed)
    t0 = time.perf_counter()
    connect("local", num_cpus=2)
    t_start = time.perf_counter() - t0
    print(
        f"world {dataset}; {args.users:,} users, 1 arm, 3 sessions x 5 turns, slates of 10; "
        f"embedded Ray started in {t_start:.1f}s (not counted)"
    )

    local, on_ray, coord, calls, turns = [], [], [], [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            r = run_study(cfg, world, run_id=f"local{k}", out_dir=Path(tmp), workers=1)
            local.append(r.seconds)
            turns = int(
                pl.read_parquet(r.path / "user_metrics" / "arm=*" / "*.parquet")["turns"].sum()
            )
            r2 = run_study_on_ray(cfg, world, run_id=f"ray{k}", out_dir=Path(tmp), shards=2)
            on_ray.append(r2.seconds)
            assert r2.summary.equals(r.summary), "Ray and in-process summaries differ"
            # the run's own clock includes preparing (fit, population): take that and the
            # slowest shard's own time away
            coord.append(r2.seconds - max(_shard_seconds(r2.path)) - _prepare_seconds(cfg, world))
            # Ray calls: put(prep), coordinator create + run + kill; per shard actor create,
            # ready and kill; per shard one run
            shards = len(_shard_seconds(r2.path))
            calls.append(1 + 3 + 3 * shards + shards)
    med = statistics.median
    ratio = med(on_ray) / med(local)
    print(
        f"  one process   : {med(local):6.2f}s  ({turns / med(local):,.0f} user-turns/s, {turns:,} "
        "user-turns)"
    )
    print(
        f"  Ray, 2 shards : {med(on_ray):6.2f}s  ({turns / med(on_ray):,.0f} user-turns/s)  ratio "
        f"Ray / one process x{ratio:.2f} (target <= 1.3)"
    )
    print(
        f"  coordinator   : {med(coord):6.2f}s over the slowest shard = "
        f"{med(coord) / turns * 1e6:.2f} us per user-turn"
    )
    print(
        f"  Ray calls     : {med(calls):.0f} for {turns:,} user-turns = {med(calls) / turns:.2e} "
        "per user-turn (target << 1)"
    )
    ray.shutdown()


_PREP: dict = {}


def _prepare_seconds(cfg, world) -> float:  # noqa: ANN001
    """Time to fit the brain and draw the population (part of both runs' clocks)."""
    if "s" not in _PREP:
        from recoworld.study.prepare import prepare

        t0 = time.perf_counter()
        prepare(cfg, world)
        _PREP["s"] = time.perf_counter() - t0
    return _PREP["s"]


def _shard_seconds(run: Path) -> list[float]:
    import msgspec

    return msgspec.json.decode((run / "manifest.json").read_bytes()).get("shard_seconds", [])


if __name__ == "__main__":
    main()
