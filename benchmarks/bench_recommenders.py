"""Benchmark: what bringing one's own recommender costs, against the built-in ``mf``.

The same study (ML-100K, one arm, 3 sessions x 5 turns, slates of 10) is simulated with:
- *mf*: the built-in matrix factorisation with instruction following;
- *plugin*: the same recommender (the built-in MF pool and re-ranker, :class:`BuiltinMF`) loaded
  as a Python plug-in (``kind = "python"``): the same work behind the plug-in path (loading, the
  contract check on every slate, the fallback kept bound and fed). Its events must be the mf
  run's, bit for bit (checked: a digest of every slate);
- *service*: the reference service (examples/service: EASE over the same world) as a separate
  process on 127.0.0.1, through ``kind = "http"`` (batches of 256 users, 4 in flight). Its own
  compute time (``GET /stats``: the model's seconds, request decoding and encoding excluded) is
  reported apart: the rest is the protocol's cost (encoding, HTTP, decoding, checking).

Only the simulation is timed (the world, the fit, the population and the modules' imports come
first, in each run's own fresh process); no Parquet is written. Runs alternate mf, plugin,
service, mf, ... (timings drift on a shared machine): medians, the ratio of medians to mf and
the median of the paired ratios, for wall time and for CPU seconds (the simulating process's,
plus the service process's for the service: less sensitive to a busy machine).

    python benchmarks/bench_recommenders.py [--users 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STUDY = """
name = "bench-recommenders"
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
replicates = 1
[recommender]
{recommender}
"""

RECOMMENDERS = {
    "mf": 'kind = "mf"',
    "plugin": 'kind = "python"\ntarget = "benchmarks.bench_recommenders:BuiltinMF"',
    "service": (
        'kind = "http"\n[recommender.service]\nurl = "{url}"\nbatch_size = 256\nconcurrency = 4'
    ),
}


class BuiltinMF:
    """The built-in ``mf`` recommender (MF source, instruction re-ranker, 100 candidates, the
    defaults of ``[recommender]``) as a plug-in: the same slates through the plug-in path."""

    def __init__(self, instruction_weight: float = 1.5, candidates: int = 100) -> None:
        from recoworld.recommenders.base import PoolRecommender
        from recoworld.recommenders.baselines import MFSource
        from recoworld.recommenders.treatments import InstructionReranker

        self.pool = PoolRecommender(
            MFSource(), (InstructionReranker(instruction_weight),), candidates=candidates
        )

    def bind(self, audience) -> None:  # noqa: ANN001
        self.pool.bind(audience)

    def recommend(self, idx, session: int, turn: int, k: int):  # noqa: ANN001, ANN201
        return self.pool.recommend(idx, session, turn, k)

    async def recommend_async(self, idx, session: int, turn: int, k: int):  # noqa: ANN001, ANN201
        return self.pool.recommend(idx, session, turn, k)

    def observe(self, idx, slates, feedback) -> None:  # noqa: ANN001
        self.pool.observe(idx, slates, feedback)

    def instruct(self, idx, more_of, less_of, texts: Sequence[str]) -> None:  # noqa: ANN001
        self.pool.instruct(idx, more_of, less_of, texts)


def child(users: int, mode: str, dataset: str, url: str) -> dict:
    """One measurement in this process (called in a subprocess)."""
    import numpy as np

    from recoworld.config import decode_study
    from recoworld.records import TurnRecord
    from recoworld.study.prepare import load_world_for, prepare
    from recoworld.study.simulate import simulate_arm

    rec = RECOMMENDERS[mode].replace("{url}", url)
    cfg = decode_study(STUDY.format(users=users, dataset=dataset, recommender=rec))
    prep = prepare(cfg, load_world_for(cfg.world, cfg.seed))
    digest = hashlib.sha256()
    count = {"user_turns": 0}

    def observe(r) -> None:  # noqa: ANN001
        if isinstance(r, TurnRecord):
            count["user_turns"] += r.rows.size
            digest.update(r.rows.tobytes())
            digest.update(r.slates.tobytes())

    everyone = np.arange(len(prep.population))
    # one-time imports (httpx alone is ~0.3 s) are not per-slate costs: before the clock
    import recoworld.recommenders.http  # noqa: F401
    import recoworld.recommenders.plugin  # noqa: F401

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    metrics = [
        simulate_arm(prep, 0, everyone[s : s + 16384], observe) for s in range(0, users, 16384)
    ]
    dt, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "mode": mode,
        "simulate_s": dt,
        "cpu_s": cpu,
        "user_turns": count["user_turns"],
        "fallbacks": float(sum(m.fallback_slates.sum() for m in metrics)),
        "digest": digest.hexdigest(),
    }


def run_child(users: int, mode: str, dataset: str, url: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(Path(__file__)), "--child", str(users), mode, dataset, url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode:
        raise SystemExit(f"the {mode} run failed (exit {out.returncode}): {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_service(dataset: str, log: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "examples.service.app", "--dataset", dataset, "--port", "0"]
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    hit = re.search(r"on (http://\S+/v1/recommend)", line)
    if not hit:
        proc.kill()
        raise SystemExit(f"the reference service did not start: {log.read_text()[-2000:]}")
    return proc, hit.group(1)


def service_stats(url: str) -> dict:
    import httpx

    return httpx.get(url.rsplit("/v1/", 1)[0] + "/stats", timeout=30).json()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        users, mode, dataset, url = args.child
        print(json.dumps(child(int(users), mode, dataset, url)))
        return
    dataset = "ml-100k"
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_service(dataset, Path(tmp) / "service.log")
        try:
            runs: dict[str, list[dict]] = {m: [] for m in RECOMMENDERS}
            for _ in range(args.repeats):
                for mode in RECOMMENDERS:
                    before = service_stats(url)
                    r = run_child(args.users, mode, dataset, url)
                    after = service_stats(url)
                    r["service_compute_s"] = after["compute_s"] - before["compute_s"]
                    r["service_requests"] = after["requests"] - before["requests"]
                    r["service_cpu_s"] = after["cpu_s"] - before["cpu_s"]
                    runs[mode].append(r)
        finally:
            proc.terminate()
            proc.wait(10)
    med = lambda mode, key: statistics.median(r[key] for r in runs[mode])  # noqa: E731
    paired = lambda mode, key: statistics.median(  # noqa: E731
        b[key] / a[key] for a, b in zip(runs["mf"], runs[mode])
    )
    same = {r["digest"] for r in runs["mf"] + runs["plugin"]}
    assert len(same) == 1, "the plug-in's slates differ from the built-in mf's"
    for mode in RECOMMENDERS:
        assert all(r["fallbacks"] == 0 for r in runs[mode]), f"{mode}: fallback slates served"
    for r in runs["service"]:
        r["total_cpu_s"] = r["cpu_s"] + r["service_cpu_s"]
    for r in runs["mf"] + runs["plugin"]:
        r["total_cpu_s"] = r["cpu_s"]
    print(
        f"world {dataset}, {args.users:,} users, 1 arm, 3 sessions x 5 turns, slates of 10 "
        f"({runs['mf'][0]['user_turns']:,} user-turns); {args.repeats} alternated runs of each in "
        "fresh processes; the simulation only (no Parquet). Medians; ratios to mf: of the "
        "medians [median of the paired ratios]. CPU: the simulating process's, plus the "
        "service process's for the service (less sensitive to a busy machine than wall time)."
    )
    mf_wall, mf_cpu = med("mf", "simulate_s"), med("mf", "total_cpu_s")
    for mode in RECOMMENDERS:
        wall, cpu = med(mode, "simulate_s"), med(mode, "total_cpu_s")
        pw, pc = paired(mode, "simulate_s"), paired(mode, "total_cpu_s")
        print(
            f"  {mode:<8} wall {wall:6.2f} s  x{wall / mf_wall:5.2f} [x{pw:.2f}]"
            f"   CPU {cpu:6.2f} s  x{cpu / mf_cpu:5.2f} [x{pc:.2f}]"
            f"   {runs[mode][0]['user_turns'] / wall:>8,.0f} user-turns/s"
        )
    sim_cpu, svc_cpu, model = (
        med("service", "cpu_s"),
        med("service", "service_cpu_s"),
        med("service", "service_compute_s"),
    )
    print(
        f"  plugin: slates identical to mf's in every run\n"
        f"  service: {med('service', 'service_requests'):,.0f} requests a run; CPU of the "
        f"simulating process {sim_cpu:.2f} s (mf {med('mf', 'cpu_s'):.2f} s: the difference is "
        f"the client's protocol work, encoding, HTTP, decoding, checks, and the fallback kept "
        f"fed), of the service process {svc_cpu:.2f} s, of which the model's own compute "
        f"{model:.2f} s (the rest: its web stack, HTTP and JSON)"
    )


if __name__ == "__main__":
    main()
