"""Benchmark: simulated user-turns per second with the parametric brain on an ML-100K world.

For each population size it runs, in a fresh subprocess (so peak memory is the run's own):
one arm, 3 sessions x 5 turns, slates of 10, the mf recommender with instruction following,
events/sessions/user_metrics written to Parquet (zstd). The fitting and population drawing
are timed apart from the simulation.

Baselines in the same run:
- *2 processes*: the same run sharded over two forked workers (what `recoworld run` does
  on this 2-core machine); identical events;
- *no-write*: the same simulation with the Parquet observers replaced by a no-op -> the cost
  of writing, as a ratio;
- *per-user*: the same users simulated one at a time (batch of 1, what a per-user loop costs)
  on a subset -> the speed-up of vectorising over users.

Figures are medians over --repeats; the modes run alternated (write, 2 processes, no-write,
write, ...), so that machine drift does not enter their ratios. Usage:
    python benchmarks/bench_simulate.py [--users 10000 100000] [--repeats 3]
    python benchmarks/bench_simulate.py --baseline-ref REF --users 20000 --repeats 5
the second compares this code with git REF (e.g. the commit before a refactor), runs of the
two alternated in fresh processes: medians and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY = """
name = "bench"
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


def _world(dataset: str):  # noqa: ANN202
    from recoworld.config import decode_study
    from recoworld.study.prepare import load_world_for

    cfg = decode_study(STUDY.format(users=1, dataset=dataset))
    return load_world_for(cfg.world, cfg.seed)


def child(users: int, mode: str, dataset: str) -> dict:
    """One measurement in this process (called in a subprocess)."""
    import numpy as np

    from recoworld.config import decode_study
    from recoworld.io.runs import Parts
    from recoworld.study.lifecycle import Run
    from recoworld.study.prepare import prepare
    from recoworld.study.runner import local_shard_count, run_shards
    from recoworld.study.shard import simulate_to
    from recoworld.study.simulate import simulate_arm

    cfg = decode_study(STUDY.format(users=users, dataset=dataset))
    world = _world(dataset)
    t0 = time.perf_counter()
    prep = prepare(cfg, world)
    t_prep = time.perf_counter() - t0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    turns = {"n": 0, "events": 0}

    def count(rec) -> None:  # noqa: ANN001
        if hasattr(rec, "slates"):
            turns["n"] += rec.rows.size
            turns["events"] += rec.slates.size

    t0 = time.perf_counter()
    if mode in ("write", "write2"):
        with tempfile.TemporaryDirectory() as tmp:
            if mode == "write":
                parts = Parts(Path(tmp))
                events, _ = simulate_to(parts, prep)
                parts.close()
            else:  # what `recoworld run --workers 2` does
                shards = local_shard_count(users, prep.catalog.n_items, 2)
                with Run.open(prep, Path(tmp), "bench", shards=shards) as run:
                    events = sum(r.events for r in run_shards(run, 2))
        user_turns = events // cfg.simulation.slate_size
    elif mode == "nowrite":
        users_all = np.arange(len(prep.population))
        step = 16384
        for s in range(0, users_all.size, step):
            simulate_arm(prep, 0, users_all[s : s + step], count)
        user_turns, events = turns["n"], turns["events"]
    else:  # per-user: one user per batch
        for u in range(users):
            simulate_arm(prep, 0, np.array([u]), count)
        user_turns, events = turns["n"], turns["events"]
    dt = time.perf_counter() - t0
    return {
        "users": users,
        "mode": mode,
        "prepare_s": t_prep,
        "simulate_s": dt,
        "user_turns": user_turns,
        "events": events,
        "user_turns_per_s": user_turns / dt,
        "events_per_s": events / dt,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_sim_mb": rss_before / 1024,
    }


def run_child(users: int, mode: str, dataset: str, tree: Path | None = None) -> dict:
    """One measurement in a fresh process; ``tree``: a checkout of other code (its own copy of
    this script and its ``recoworld``) instead of this one."""
    script = Path(__file__) if tree is None else tree / "benchmarks" / Path(__file__).name
    out = subprocess.run(
        [sys.executable, str(script), "--child", str(users), mode, dataset],
        check=True,
        capture_output=True,
        text=True,
        cwd=script.parent.parent,
        env={**os.environ, "PYTHONPATH": str(script.parent.parent)},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(ref: str, users: int, repeats: int, dataset: str) -> None:
    """This code (B) against git ``ref`` (A), alternated A, B, A, B, ... in fresh processes
    (whole-process timings drift on a shared machine): medians and the ratio B / A."""
    root = Path(__file__).resolve().parent.parent
    # beside this checkout, so that the baseline finds the same ../shared/data
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".bench-baseline-") as tmp:
        tree = Path(tmp)  # an empty folder: git worktree add fills it
        subprocess.run(
            ["git", "-C", str(root), "worktree", "add", "--detach", str(tree), ref],
            check=True,
            capture_output=True,
        )
        try:
            for mode in ("nowrite", "write"):
                runs: dict[str, list[tuple[float, float]]] = {"a": [], "b": []}
                for _ in range(repeats):
                    for side, where in (("a", tree), ("b", None)):
                        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
                        rate = run_child(users, mode, dataset, where)["user_turns_per_s"]
                        cpu = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - cpu0
                        runs[side].append((rate, cpu))
                med = lambda side, k, runs=runs: statistics.median(r[k] for r in runs[side])
                pairs = statistics.median(b[0] / a[0] for a, b in zip(runs["a"], runs["b"]))
                print(
                    f"{mode:>8}, {users:,} users, {repeats} alternated runs each:\n"
                    f"  wall: {ref} {med('a', 0):,.0f} user-turns/s, this code "
                    f"{med('b', 0):,.0f} -> ratio of medians {med('b', 0) / med('a', 0):.3f}, "
                    f"median of paired ratios {pairs:.3f}\n"
                    f"  CPU seconds per whole process (prepare included; less sensitive to a "
                    f"busy machine): {ref} {med('a', 1):.2f}, this code {med('b', 1):.2f} -> "
                    f"ratio {med('b', 1) / med('a', 1):.3f}"
                )
        finally:
            subprocess.run(
                ["git", "-C", str(root), "worktree", "remove", "--force", str(tree)],
                check=False,
                capture_output=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--per-user-sample", type=int, default=300)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument(
        "--baseline-ref",
        help="git ref to compare against: A/B alternated runs of both codes (first --users size)",
    )
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1], args.child[2])))
        return
    try:
        _world("ml-100k")
        dataset = "ml-100k"
    except Exception as e:  # noqa: BLE001 - fall back to a generated world of the same size
        print(f"ML-100K not available ({e}); using a synthetic world of the same size")
        dataset = "synthetic"
    print(
        f"world: {dataset}; 1 arm, 3 sessions x 5 turns, slates of 10, mf + instruction following"
    )
    if args.baseline_ref:
        compare(args.baseline_ref, args.users[0], args.repeats, dataset)
        return
    rows = []
    for n in args.users:
        # The modes alternate (write, write2, nowrite, write, ...), never in blocks: on a shared
        # machine a block order reports the drift between blocks as a ratio.
        got: dict[str, list[dict]] = {"write": [], "write2": [], "nowrite": []}
        for _ in range(args.repeats):
            for mode in got:
                got[mode].append(run_child(n, mode, dataset))
        write, write2, nowrite = got["write"], got["write2"], got["nowrite"]
        med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
        rows.append((n, write, nowrite))
        print(
            f"\n{n:>7,} users: {med(write, 'user_turns'):,.0f} user-turns, "
            f"{med(write, 'events'):,.0f} events "
            f"(prepare {med(write, 'prepare_s'):.2f}s, not counted)\n"
            f"   with Parquet : {med(write, 'simulate_s'):6.2f}s  "
            f"{med(write, 'user_turns_per_s'):>9,.0f} user-turns/s  "
            f"{med(write, 'events_per_s'):>11,.0f} event rows/s\n"
            f"   2 processes  : {med(write2, 'simulate_s'):6.2f}s  "
            f"{med(write2, 'user_turns_per_s'):>9,.0f} user-turns/s  "
            f"{med(write2, 'events_per_s'):>11,.0f} event rows/s  "
            f"(x{med(write2, 'user_turns_per_s') / med(write, 'user_turns_per_s'):.2f} vs 1 "
            "process; Parquet included)\n"
            f"   no writing   : {med(nowrite, 'simulate_s'):6.2f}s  "
            f"{med(nowrite, 'user_turns_per_s'):>9,.0f} user-turns/s  "
            f"-> writing costs x{med(write, 'simulate_s') / med(nowrite, 'simulate_s'):.2f} of the "
            "simulation time\n"
            f"   peak RSS {med(write, 'peak_rss_mb'):,.0f} MB (before simulating "
            f"{med(write, 'rss_before_sim_mb'):,.0f} MB)"
        )
    if len(rows) >= 2:
        (n1, w1, _), (n2, w2, _) = rows[0], rows[-1]
        per = (
            (
                statistics.median(r["peak_rss_mb"] for r in w2)
                - statistics.median(r["peak_rss_mb"] for r in w1)
            )
            / (n2 - n1)
            * 100_000
        )
        print(f"\npeak memory per 100k users (marginal, {n1:,} -> {n2:,}): {per:,.0f} MB")
    k = args.per_user_sample
    per_user: list[dict] = []
    batched: list[dict] = []
    for _ in range(max(1, args.repeats // 2)):  # alternated too
        per_user.append(run_child(k, "per-user", dataset))
        batched.append(run_child(k, "nowrite", dataset))
    pu = statistics.median(r["user_turns_per_s"] for r in per_user)
    bt = statistics.median(r["user_turns_per_s"] for r in batched)
    big = statistics.median(r["user_turns_per_s"] for r in rows[-1][2])
    print(
        f"\nbaseline, one user per batch ({k} users): {pu:,.0f} user-turns/s; "
        f"batched {k} users: {bt:,.0f} ({bt / pu:.1f}x); batched {rows[-1][0]:,} users: {big:,.0f} "
        f"({big / pu:.0f}x)"
    )


if __name__ == "__main__":
    main()
