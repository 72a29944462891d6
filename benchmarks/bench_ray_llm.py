"""Benchmark: an LLM-brain study in one process vs. through Ray LLM replica actors, with the
scripted model (recoworld.testing.scripted_llm) as the engine, so that what is measured is the
transport: router, actor calls, batching, recording.

Study: a synthetic world (200 users, 300 items), one arm, LLM brain, 2 sessions x 3 turns,
slates of 5, N users (default 2,048: two block-aligned shards). Figures (medians over --repeats):
- wall time in one process (``run_study(model=ScriptedModel())``) and on Ray with 2 shard actors
  and R replica actors (``run_study_on_ray(shards=2, replica_factory=...)``), excluding the
  cluster start; the ratio Ray / 1 process, and the overhead per model call
  ((Ray - in-process) / calls), also net of the fixed cost of a run on Ray (actor start-ups:
  coordinator, replicas, shards), measured by the same study with 8 users;
- requests per replica actor call (the router's batching);
- the share of requests that went to the user's home replica (router counts, and checked
  against the replica column of ``llm_calls``), at each ``--slack``.
The in-process and Ray runs must give the same events and completions (checked).

Usage: python benchmarks/bench_ray_llm.py [--users 2048] [--replicas 2] [--repeats 3]
    [--slack 16 1000]
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
name = "bench_ray_llm"
seed = 5
[world]
dataset = "synthetic"
synthetic_users = 200
synthetic_items = 300
embedding_dim = 8
[population]
size = {users}
[simulation]
sessions = 2
turns = 3
slate_size = 5
[brain]
kind = "llm"
[llm]
backend = "vllm"
model = "scripted"
replicas = {replicas}
replica_num_gpus = 0
replica_num_cpus = 0
affinity_slack = {slack}
"""


def scripted_replica(index: int):  # noqa: ANN201 - travels by value into the replica actors
    from recoworld.testing.scripted_llm import ScriptedModel

    return ScriptedModel()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--users", type=int, default=2048)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--slack",
        type=int,
        nargs="+",
        default=[16, 1000],
        help="llm.affinity_slack values (the first is timed)",
    )
    args = ap.parse_args()

    import msgspec
    import polars as pl

    from actors.driver import LLM_FIGURES, connect, run_study_on_ray
    from actors.router import home_replica
    from recoworld.config import decode_study
    from recoworld.study.prepare import load_world_for
    from recoworld.study.runner import run_study
    from recoworld.testing.scripted_llm import ScriptedModel

    def cfg_for(slack: int):
        return decode_study(STUDY.format(users=args.users, replicas=args.replicas, slack=slack))

    cfg = cfg_for(args.slack[0])
    world = load_world_for(cfg.world, cfg.seed)
    t0 = time.perf_counter()
    connect("local", num_cpus=2)
    print(
        f"{args.users:,} users, 1 arm, LLM brain (scripted model), 2 sessions x 3 turns, slates of "
        "5; "
        f"{args.replicas} replicas, 2 shards; embedded Ray (2 CPUs) started in "
        f"{time.perf_counter() - t0:.1f}s (not counted)"
    )

    def frame(run: Path, name: str, keys: list[str]) -> pl.DataFrame:
        df = pl.read_parquet(run / name / "arm=*" / "*.parquet")
        return df.with_columns(
            pl.col(c).cast(pl.String)
            for c, t in df.schema.items()
            if isinstance(t, pl.Categorical | pl.Enum)
        ).sort(keys)

    local, on_ray, calls, per_call, fixed, net = [], [], 0, [], [], []
    small = msgspec.structs.replace(cfg, population=msgspec.structs.replace(cfg.population, size=8))
    routing: dict[int, list[tuple[float, float, float]]] = {s: [] for s in args.slack}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            a = run_study(
                small, world, run_id=f"small-local{k}", out_dir=Path(tmp), model=ScriptedModel()
            ).seconds
            b = run_study_on_ray(
                small,
                world,
                run_id=f"small-ray{k}",
                out_dir=Path(tmp),
                replica_factory=scripted_replica,
            ).seconds
            fixed.append(b - a)
            r = run_study(cfg, world, run_id=f"local{k}", out_dir=Path(tmp), model=ScriptedModel())
            local.append(r.seconds)
            for slack in args.slack:
                r2 = run_study_on_ray(
                    cfg_for(slack),
                    world,
                    run_id=f"ray{k}-{slack}",
                    out_dir=Path(tmp),
                    shards=2,
                    replica_factory=scripted_replica,
                )
                made = frame(r2.path, "llm_calls", ["call_id"]).filter(
                    pl.col("finish_reason") != "none"
                )
                ref = frame(r.path, "llm_calls", ["call_id"]).filter(
                    pl.col("finish_reason") != "none"
                )
                assert made.select("call_id", "completion").equals(
                    ref.select("call_id", "completion")
                ), "Ray and in-process completions differ"
                assert frame(r2.path, "events", ["user", "session", "turn", "position"]).equals(
                    frame(r.path, "events", ["user", "session", "turn", "position"])
                )
                fig = msgspec.json.decode((r2.path / LLM_FIGURES).read_bytes())
                c = fig["routing"]
                keyed = c["home"] + c["least_loaded"] + c["rehomed"]
                homes = pl.Series([home_replica(u, args.replicas) for u in made["user"].to_list()])
                from_calls = float((made["replica"] == homes).mean())
                batch = sum(s["served"] for s in fig["replicas"]) / max(
                    1, sum(s["batches"] for s in fig["replicas"])
                )
                routing[slack].append((c["home"] / keyed if keyed else 1.0, from_calls, batch))
                if slack == args.slack[0]:
                    on_ray.append(r2.seconds)
                    calls = made.height
                    per_call.append((r2.seconds - r.seconds) / calls)
                    net.append((r2.seconds - fixed[-1] - r.seconds) / calls)

    med = statistics.median
    print(f"model calls per run: {calls:,}")
    print(f"in-process       {med(local):7.2f} s  (runs: {', '.join(f'{x:.2f}' for x in local)})")
    print(f"Ray, 2 shards    {med(on_ray):7.2f} s  (runs: {', '.join(f'{x:.2f}' for x in on_ray)})")
    ratios = [b / a for a, b in zip(local, on_ray)]  # paired per repeat: the machine's load drifts
    print(
        f"ratio Ray / in-process (median of paired runs): {med(ratios):.2f}; overhead per call "
        f"{1e3 * med(per_call):+.3f} ms"
    )
    print(
        f"fixed cost of a run on Ray (8 users, minus in-process): {med(fixed):.2f} s; overhead per "
        f"call net of it {1e3 * med(net):+.3f} ms"
    )
    for slack, rows in routing.items():
        print(
            f"affinity_slack {slack:>5}: routed home {med([h for h, _, _ in rows]):.1%} "
            f"(from llm_calls: {med([f for _, f, _ in rows]):.1%}); "
            f"{med([b for _, _, b in rows]):.0f} requests per replica call"
        )


if __name__ == "__main__":
    main()
