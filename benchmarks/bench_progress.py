"""Benchmark: what progress reporting costs a run.

The study of ``bench_simulate.py`` (ML-100K, or a synthetic world of its size; 1 arm, 3 sessions
x 5 turns, slates of 10, mf) is written by ``run_shards`` in this process (``--workers 1``:
progress after each batch, straight from the shard) and in 2 forked workers (progress files
polled by the parent), each without and with a progress callback. Runs alternate off, on, off,
on, ... in fresh processes; printed: median seconds and the median of paired ratios on / off.

    python benchmarks/bench_progress.py [--users 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_simulate import STUDY  # noqa: E402


def child(users: int, workers: int, report: bool, dataset: str) -> dict:
    from recoworld.config import decode_study
    from recoworld.study.lifecycle import Run
    from recoworld.study.prepare import load_world_for, prepare
    from recoworld.study.runner import local_shard_count, run_shards

    cfg = decode_study(STUDY.format(users=users, dataset=dataset))
    prep = prepare(cfg, load_world_for(cfg.world, cfg.seed))
    calls = {"n": 0, "users": 0}

    def progress(arm: str, n: int) -> None:
        calls["n"] += 1
        calls["users"] += n

    shards = local_shard_count(users, prep.catalog.n_items, workers)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with Run.open(prep, Path(tmp), "bench", shards=shards) as run:
            run_shards(run, workers, progress=progress if report else None)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "calls": calls["n"], "users": calls["users"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        users, workers, report, dataset = args.child
        print(json.dumps(child(int(users), int(workers), report == "on", dataset)))
        return
    for workers in (1, 2):
        runs: dict[str, list[dict]] = {"off": [], "on": []}
        for _ in range(args.repeats):
            for report in ("off", "on"):
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        str(args.users),
                        str(workers),
                        report,
                        args.dataset,
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                runs[report].append(json.loads(out.stdout.strip().splitlines()[-1]))
        med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
        paired = statistics.median(
            b["seconds"] / a["seconds"] for a, b in zip(runs["off"], runs["on"])
        )
        print(
            f"{args.users:,} users, {workers} worker(s), {args.repeats} alternated runs: "
            f"off {med['off']:.2f}s, on {med['on']:.2f}s ({runs['on'][0]['calls']} progress calls"
            f" for {runs['on'][0]['users']:,} users) -> median paired ratio on/off {paired:.3f}"
        )


if __name__ == "__main__":
    main()
