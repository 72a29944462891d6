"""Benchmark: how the simulation scales with users, with the catalogue, and with workers.

Every measurement is one fresh process (so that peak memory is the run's own): prepare the
study (not timed), then run its shards as ``recoworld run --workers N`` does (the run folder
opened, every shard's Parquet written and hashed; the summary not merged) and
report user-turns per second of wall time, CPU microseconds per user-turn (less sensitive to a
busy machine) and peak RSS. The configurations of a table run **alternated**, A B C A B C ...,
never in blocks (whole-process timings drift on a shared machine; a block order turns drift into
a ratio), and the table reports medians and each configuration's ratio to the first row.

Tables (``--tables``, default all):
- ``users``: the ML-100K study (one arm, mf + instruction following, 3 sessions x 5 turns,
  slates of 10) at 10k / 100k / 1M users (``--users``); memory per user is the peak RSS over
  the users, and the marginal bytes per user between the smallest and largest size;
- ``items``: synthetic worlds of 1.7k .. 1M items (``--items``), ``--item-users`` users each,
  ``[recommender] retrieval = "auto"`` (an approximate index above 50,000 items; its build
  time is reported apart, not counted in the rate);
- ``workers``: 1 vs 2 forked workers (``recoworld run --workers``), ``--worker-users`` users;
- ``lean``: the ML-100K study with and without the mindset columns of events.

Usage:
    python benchmarks/bench_scale.py                       # everything, 3 repeats
    python benchmarks/bench_scale.py --tables items --items 1682 100000 --repeats 2
The RecSim NG comparison (the issue's peer figure: 22.3k user-steps/s on a comparable world) is
``benchmarks/bench_recsim.py`` (RecSim NG pulls TensorFlow; it runs in a venv of its own).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY = """
name = "scale"
seed = 11
[world]
dataset = "{dataset}"
synthetic_users = 943
synthetic_items = {items}
[population]
size = {users}
[simulation]
sessions = 3
turns = 5
slate_size = 10
[recommender]
kind = "mf"
[output]
mindset = {mindset}
"""


def study(dataset: str, items: int, users: int, mindset: bool = True):  # noqa: ANN201
    from recoworld.config import decode_study

    text = STUDY.format(dataset=dataset, items=items, users=users, mindset=str(mindset).lower())
    return decode_study(text)


def child(spec: dict) -> dict:
    """One measurement in this process (a subprocess of :func:`main`)."""
    from recoworld.study.lifecycle import Run
    from recoworld.study.prepare import STREAM_USERS, load_world_for, prepare_all
    from recoworld.study.runner import local_shard_count, run_shards, share_indexes

    cfg = study(spec["dataset"], spec["items"], spec["users"], spec.get("mindset", True))
    if spec.get("world_pickle"):
        world = pickle.loads(Path(spec["world_pickle"]).read_bytes())
    else:
        world = load_world_for(cfg.world, cfg.seed)
    t0 = time.perf_counter()
    (prep,) = prepare_all(cfg, world, stream_above=STREAM_USERS)  # as `recoworld run` does
    del world
    t_prep = time.perf_counter() - t0
    t0 = time.perf_counter()
    share_indexes((prep,))  # the retrieval index, if the catalogue needs one
    t_index = time.perf_counter() - t0
    rss_before = _hwm_kib()
    cpu0 = time.process_time()
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:  # what `recoworld run --workers N` does
        w = spec.get("workers", 1)
        shards = local_shard_count(spec["users"], prep.catalog.n_items, w, external=False)
        with Run.open((prep,), Path(tmp), "bench", shards=shards) as run:
            events = sum(r.events for r in run_shards(run, w))
    wall = time.perf_counter() - t0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu0 + (kids.ru_utime - kids0.ru_utime)
    cpu += kids.ru_stime - kids0.ru_stime
    user_turns = events // cfg.simulation.slate_size
    # This process's own high-water mark (VmHWM: ru_maxrss of a spawned process can carry its
    # parent's size from before exec); a forked worker's peak counts where larger.
    peak = max(_hwm_kib(), kids.ru_maxrss)
    return {
        **{k: v for k, v in spec.items() if k != "world_pickle"},
        "n_items": prep.catalog.n_items,
        "prepare_s": t_prep,
        "index_s": t_index,
        "simulate_s": wall,
        "user_turns": user_turns,
        "user_turns_per_s": user_turns / wall,
        "cpu_us_per_user_turn": cpu / user_turns * 1e6,
        "peak_rss_mb": peak / 1024,
        "rss_before_sim_mb": rss_before / 1024,
    }


def _hwm_kib() -> int:
    """Peak resident memory of this process in KiB (Linux: /proc; else ru_maxrss)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def make_world(items: int, path: str) -> None:
    """Generate the synthetic world of ``items`` items and pickle it to ``path`` (in a
    subprocess of :func:`main`, so that the parent stays small for the runs it starts)."""
    from recoworld.study.prepare import load_world_for

    cfg = study("synthetic", items, 1)
    Path(path).write_bytes(pickle.dumps(load_world_for(cfg.world, cfg.seed), protocol=5))


def run_child(spec: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def alternate(specs: list[dict], repeats: int, label) -> list[list[dict]]:  # noqa: ANN001
    """Run ``specs`` round-robin ``repeats`` times (A B C A B C ...); results per spec."""
    runs: list[list[dict]] = [[] for _ in specs]
    for r in range(repeats):
        for i, spec in enumerate(specs):
            runs[i].append(run_child(spec))
            print(f"  [{r + 1}/{repeats}] {label(spec)}: done", file=sys.stderr, flush=True)
    return runs


def table(title: str, specs: list[dict], runs: list[list[dict]], label) -> None:  # noqa: ANN001
    med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
    base = med(runs[0], "user_turns_per_s")
    base_cpu = med(runs[0], "cpu_us_per_user_turn")
    print(f"\n{title} ({len(runs[0])} alternated runs each; medians; ratio to the first row)")
    print(
        f"{'':>26} {'user-turns/s':>13} {'ratio':>6} {'CPU us/ut':>10} {'ratio':>6} "
        f"{'peak MB':>8} {'B/user':>7} {'index s':>8}"
    )
    for spec, rs in zip(specs, runs):
        rate, cpu = med(rs, "user_turns_per_s"), med(rs, "cpu_us_per_user_turn")
        peak = med(rs, "peak_rss_mb")
        print(
            f"{label(spec):>26} {rate:>13,.0f} {rate / base:>6.2f} {cpu:>10.2f} "
            f"{base_cpu / cpu:>6.2f} {peak:>8,.0f} {peak * 2**20 / spec['users']:>7,.0f} "
            f"{med(rs, 'index_s'):>8.1f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tables", nargs="+", default=["users", "items", "workers", "lean"])
    ap.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--items", type=int, nargs="+", default=[1682, 10_000, 100_000, 1_000_000])
    ap.add_argument("--item-users", type=int, default=20_000)
    ap.add_argument("--worker-users", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--make-world", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make_world:
        make_world(int(args.make_world[0]), args.make_world[1])
        return
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    try:
        from recoworld.study.prepare import load_world_for

        cfg = study("ml-100k", 1682, 1)
        load_world_for(cfg.world, cfg.seed)
        ml = "ml-100k"
    except Exception as e:  # noqa: BLE001 - a generated world of the same size instead
        print(f"ML-100K not available ({e}); using a synthetic world of its size")
        ml = "synthetic"
    print(f"{sys.platform}, {os.cpu_count()} CPUs; study: 1 arm, mf + instructions, 3x5x10")
    try:
        import recsim_ng  # noqa: F401
    except ImportError:
        print("RecSim NG comparison skipped: recsim_ng is not installed (it pulls TensorFlow)")
    else:
        print("RecSim NG is installed: benchmarks/bench_recsim.py compares with it")
    ml_spec = {"dataset": ml, "items": 1682}
    if "users" in args.tables:
        specs = [{**ml_spec, "users": n} for n in args.users]
        lab = lambda s: f"{s['users']:,} users"  # noqa: E731
        runs = alternate(specs, args.repeats, lab)
        table(f"users ({ml}, 1 process, Parquet)", specs, runs, lab)
        if len(specs) >= 2:
            lo, hi = runs[0], runs[-1]
            d_mb = statistics.median(r["peak_rss_mb"] for r in hi) - statistics.median(
                r["peak_rss_mb"] for r in lo
            )
            per = d_mb * 2**20 / (specs[-1]["users"] - specs[0]["users"])
            print(
                f"marginal peak memory per user ({specs[0]['users']:,} -> "
                f"{specs[-1]['users']:,}): {per:,.0f} bytes"
            )
    if "items" in args.tables:
        with tempfile.TemporaryDirectory() as tmp:
            specs = []
            for n in args.items:  # generate each world once; every run unpickles it
                path = Path(tmp) / f"world-{n}.pickle"
                subprocess.run(
                    [sys.executable, __file__, "--make-world", str(n), str(path)], check=True
                )
                specs.append(
                    {
                        "dataset": "synthetic",
                        "items": n,
                        "users": args.item_users,
                        "world_pickle": str(path),
                    }
                )
            lab = lambda s: f"{s['items']:,} items"  # noqa: E731
            runs = alternate(specs, args.repeats, lab)
        table(f"catalogue size (synthetic, {args.item_users:,} users)", specs, runs, lab)
    if "workers" in args.tables:
        specs = [{**ml_spec, "users": args.worker_users, "workers": w} for w in (1, 2)]
        lab = lambda s: f"{s['workers']} worker(s)"  # noqa: E731
        runs = alternate(specs, args.repeats, lab)
        table(f"workers ({ml}, {args.worker_users:,} users, Parquet)", specs, runs, lab)
    if "lean" in args.tables:
        specs = [
            {**ml_spec, "users": args.worker_users, "workers": 2, "mindset": m}
            for m in (True, False)
        ]
        lab = lambda s: "mindset columns" if s["mindset"] else "lean events"  # noqa: E731
        runs = alternate(specs, args.repeats, lab)
        table(f"events layout ({ml}, {args.worker_users:,} users, 2 workers)", specs, runs, lab)


if __name__ == "__main__":
    main()
