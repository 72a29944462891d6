"""Benchmark: what the social layer costs (docs/social.md, "Speed and memory").

Three measurements, each run in a fresh subprocess (peak memory is the run's own):

1. **A/B, social off vs on**: the same study with ``[social]`` and ``[search]`` off (the batch
   loop, ``recoworld.study.runner.run_study``) and on (``recoworld.study.rounds.
   run_social_study``), one process each, alternated (off, on, off, on, ...) so that the
   machine's drift does not enter the ratio; medians of the whole run's wall time, of the
   simulation alone (prepare excluded) and of the peak RSS, and the events each wrote (the
   social run has more sessions: friends bring users back).
2. **Rounds and traffic**: the study on, with 1, 2 and 4 forked hosts and the population in
   community order vs its own order: deliveries, the share that crosses hosts (travels through
   the coordinator) and shards, and the round overhead (transport, barrier and routing beyond
   the slowest host's own work), per round.
3. **Memory of the social state**: bytes of the graph, awareness, diffusion and per-user
   arrays for growing generated populations: a fit of bytes = a x users + b x friendships
   shows it is linear in users plus edges.

Usage:
    python benchmarks/bench_social.py                      # synthetic, 4,000 users, quick
    python benchmarks/bench_social.py --study studies/creator_lastfm_social.toml \\
        --replicates 1 --repeats 3                         # the Last.fm creator study
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SYNTHETIC = """
name = "bench_social"
seed = 5
[world]
dataset = "synthetic"
synthetic_users = 1000
synthetic_items = 2000
[population]
size = {users}
[simulation]
sessions = 3
turns = 4
slate_size = 10
replicates = 1
[recommender]
kind = "mf"
candidates = 60
[creator]
id = "c"
[[creator.items]]
title = "Lantern Song"
tags = ["t0"]
[[arms]]
name = "control"
[[arms]]
name = "seeded"
treatment = "inject"
rate = 1.0
[social]
enabled = true
days = 30
graph = "generated"
mean_degree = 10
[[social.seeding]]
arm = "seeded"
strategy = "most_connected"
share = 0.05
[search]
enabled = true
"""


def _config(args: argparse.Namespace, *, social: bool, partition: str = "community"):  # noqa: ANN202
    import msgspec

    from recoworld.config import decode_study, load_study

    if args.study:
        cfg = load_study(args.study)
    else:
        cfg = decode_study(SYNTHETIC.format(users=args.users), source="bench_social")
    sim = cfg.simulation
    if args.replicates:
        sim = msgspec.structs.replace(sim, replicates=args.replicates)
    so = msgspec.structs.replace(cfg.social, enabled=social, partition=partition)
    se = msgspec.structs.replace(cfg.search, enabled=social and cfg.search.enabled)
    return msgspec.structs.replace(cfg, simulation=sim, social=so, search=se)


def one_run(args: argparse.Namespace) -> None:
    """A child: one run, its figures as one JSON line on stdout."""
    from recoworld.study.prepare import load_world_for

    cfg = _config(args, social=args.mode != "off", partition=args.partition)
    world = load_world_for(cfg.world, cfg.seed)
    out = Path(tempfile.mkdtemp(prefix="bench_social_"))
    t0 = time.perf_counter()
    if args.mode == "off":
        from recoworld.study.runner import run_study

        run = run_study(cfg, world, run_id="off", out_dir=out, workers=1)
        manifest = json.loads((run.path / "manifest.json").read_text())
        sim_s = sum(manifest["shard_seconds"])
        rounds = None
    else:
        from recoworld.study.rounds import run_social_study

        run = run_social_study(cfg, world, run_id="on", out_dir=out, workers=args.hosts)
        rounds = json.loads((run.path / "social.json").read_text())["rounds"]
        sim_s = rounds["step_seconds"] + rounds["route_seconds"] + rounds["finish_seconds"]
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.mode != "off":  # forked hosts hold their own memory
        rss = max(rss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    print(
        json.dumps(
            {"wall_s": wall, "sim_s": sim_s, "events": run.events, "rss_mb": rss, "rounds": rounds}
        )
    )


def _child(args: argparse.Namespace, mode: str, *, hosts: int = 1, partition: str = "community"):  # noqa: ANN202
    cmd = [sys.executable, __file__, "--child", mode, "--hosts", str(hosts)]
    cmd += ["--partition", partition, "--users", str(args.users)]
    if args.study:
        cmd += ["--study", args.study]
    if args.replicates:
        cmd += ["--replicates", str(args.replicates)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ab(args: argparse.Namespace) -> dict:
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for r in range(args.repeats):
        for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
            runs[mode].append(_child(args, mode))
            print(f"  {mode}: {runs[mode][-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
    med = {m: {k: statistics.median(x[k] for x in v) for k in ("wall_s", "sim_s", "rss_mb")}
           for m, v in runs.items()}  # fmt: skip
    events = {m: v[0]["events"] for m, v in runs.items()}
    per_event = {m: med[m]["sim_s"] / max(events[m], 1) for m in med}
    return {
        "medians": med,
        "events": events,
        "wall_ratio": med["on"]["wall_s"] / med["off"]["wall_s"],
        "sim_ratio": med["on"]["sim_s"] / med["off"]["sim_s"],
        "per_event_ratio": per_event["on"] / per_event["off"],
        "rss_ratio": med["on"]["rss_mb"] / med["off"]["rss_mb"],
    }


def traffic(args: argparse.Namespace) -> list[dict]:
    out = []
    for partition in ("community", "contiguous"):
        for hosts in (1, 2, 4):
            r = _child(args, "on", hosts=hosts, partition=partition)["rounds"]
            n = max(r["rounds"], 1)
            out.append(
                {
                    "partition": partition,
                    "hosts": hosts,
                    "shards": r["shards"],
                    "deliveries": r["deliveries"],
                    "cross_host_share": r["cross_host"] / max(r["deliveries"], 1),
                    "cross_shard_share": r["cross_shard"] / max(r["deliveries"], 1),
                    "overhead_ms_per_round": 1000 * (
                        max(r["step_seconds"] - r["compute_seconds"], 0) + r["route_seconds"]
                    ) / n,
                    "compute_ms_per_round": 1000 * r["compute_seconds"] / n,
                }
            )  # fmt: skip
            print(f"  traffic {out[-1]}", file=sys.stderr, flush=True)
    return out


def memory() -> dict:
    """Bytes of the social state for generated populations of growing size."""
    import numpy as np

    from recoworld.config import SocialConfig
    from recoworld.social.awareness import Awareness
    from recoworld.social.diffusion import Diffusion
    from recoworld.social.graph import generate_graph

    rows = []
    cfg = SocialConfig(mean_degree=10.0)
    for n in (5_000, 10_000, 20_000, 40_000):
        rng = np.random.default_rng(0)
        pref = rng.normal(size=(n, 16)).astype(np.float32)
        pref /= np.linalg.norm(pref, axis=1, keepdims=True)
        graph, stats = generate_graph(pref, cfg, seed=1)
        aw = Awareness(n, cfg.memory, cfg.fade_days)
        diff = Diffusion(n, np.arange(3), 1000)
        per_user = 8 * 2 * 2 + 8 + 8 + 8 * 3  # fresh, best (2 each), fresh_day, last, counters
        state = sum(a.nbytes for a in (graph.indptr, graph.friends))
        state += sum(getattr(aw, k).nbytes for k in ("item", "strength", "since", "first_from"))
        state += sum(
            getattr(diff, k).nbytes
            for k in ("heard_round", "heard_from", "shown_round", "shown_by", "adopted_round",
                      "parent", "mentions")
        ) + per_user * n  # fmt: skip
        rows.append({"users": n, "friendships": stats.friendships, "bytes": int(state)})
    a = np.array([[r["users"], r["friendships"]] for r in rows], float)
    y = np.array([r["bytes"] for r in rows], float)
    coef, res, *_ = np.linalg.lstsq(a, y, rcond=None)
    fit = a @ coef
    return {
        "rows": rows,
        "bytes_per_user": coef[0],
        "bytes_per_friendship": coef[1],
        "max_relative_residual": float(np.max(np.abs(fit - y) / y)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--study", default="", help="a study file (default: a synthetic one)")
    p.add_argument("--users", type=int, default=4000, help="synthetic: population size")
    p.add_argument("--replicates", type=int, default=0, help="override simulation.replicates")
    p.add_argument("--repeats", type=int, default=3, help="A/B pairs")
    p.add_argument("--skip", nargs="*", default=[], choices=["ab", "traffic", "memory"])
    p.add_argument("--child", dest="mode", default="", help=argparse.SUPPRESS)
    p.add_argument("--hosts", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--partition", default="community", help=argparse.SUPPRESS)
    p.add_argument("--out", default="", help="write the figures as JSON here too")
    args = p.parse_args()
    if args.mode:
        one_run(args)
        return
    figures: dict = {"study": args.study or f"synthetic, {args.users} users"}
    if "ab" not in args.skip:
        figures["ab"] = ab(args)
    if "traffic" not in args.skip:
        figures["traffic"] = traffic(args)
    if "memory" not in args.skip:
        figures["memory"] = memory()
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
