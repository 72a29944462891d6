"""Benchmark: RecSim NG's user-steps per second against ours on a comparable world (optional).

The issue's peer figure (22.3k user-steps/s at 100k users, 4.8 GB) came from RecSim NG 0.1.2's
interest-evolution story. This script measures both **in the same run, alternated** (ours,
RecSim, ours, RecSim, ...; medians), each in a fresh process:

- RecSim NG: the interest-evolution story of ``recsim_ng.applications.
  recsys_partially_observable_rl`` with 1,682 documents (ML-100K's item count), 19 topics (its
  genres), slates of 10, ``--users`` users, ``--horizon`` steps, run by ``TFRuntime.execute``
  once to trace, then timed (one choice per slate, no per-item decisions, no event log);
- ours: ``bench_scale.py``'s ML-100K study (one arm, mf + instruction following, 3 sessions x
  5 turns, slates of 10, every event written to Parquet) at the same user count, one process;
  user-turns counted from the events.

RecSim NG needs TensorFlow and an old gym, so it runs under another interpreter
(``--recsim-python``; default ``/tmp/venv-recsim/bin/python``): ``python -m venv
/tmp/venv-recsim && /tmp/venv-recsim/bin/pip install recsim-ng "scipy<1.11" tf_keras &&
/tmp/venv-recsim/bin/pip uninstall -y jax jaxlib`` (recsim-ng 0.1.2's edward2 needs the old
scipy; jax would need numpy 2). Where that interpreter cannot import ``recsim_ng``, the script
prints why and skips the comparison.

Usage:
    python benchmarks/bench_recsim.py --users 100000 --horizon 10 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RECSIM = """
import functools, json, sys, time
import gym.spaces.box as _box

_init = _box.Box.__init__


def _box_init(self, low, high, shape=None, *a, **k):  # recsim_ng passes shapes as tensors
    _init(self, low, high, None if shape is None else tuple(int(x) for x in shape), *a, **k)


_box.Box.__init__ = _box_init
from recsim_ng.applications.recsys_partially_observable_rl import (
    corpus, metrics, recommender, user,
)
from recsim_ng.core import network as network_lib
from recsim_ng.lib.tensorflow import entity, runtime
from recsim_ng.stories import recommendation_simulation as simulation

n, horizon = int(sys.argv[1]), int(sys.argv[2])
config = {"num_users": n, "num_topics": 19, "num_docs": 1682, "slate_size": 10,
          "history_length": 15}


def corpus_ctor(c):
    return corpus.StaticCorpus(c, corpus.CorpusWithTopicAndQuality(c).initial_state())


def story():
    return simulation.recs_story(
        config, user.InterestEvolutionUser, corpus_ctor,
        functools.partial(recommender.CollabFilteringRecommender),
        metrics.ConsumedTimeAsRewardMetrics,
    )


variables, _ = entity.story_with_trainable_variables(story)
rt = runtime.TFRuntime(network=network_lib.Network(variables=variables))
t = time.perf_counter(); rt.execute(num_steps=horizon); trace = time.perf_counter() - t
t = time.perf_counter(); rt.execute(num_steps=horizon); dt = time.perf_counter() - t
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
print(json.dumps({"rate": n * horizon / dt, "seconds": dt, "trace_s": trace,
                  "peak_mb": hwm / 1024}))
"""


def recsim_missing(python: str) -> str | None:
    """Why RecSim NG cannot run under ``python``, or None when it can."""
    if not Path(python).exists():
        return f"{python} does not exist (see this script's docstring to install RecSim NG)"
    probe = "import recsim_ng"
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        return f"{python} cannot import recsim_ng ({last})"
    return None


def run_recsim(python: str, users: int, horizon: int) -> dict:
    out = subprocess.run(
        [python, "-c", RECSIM, str(users), str(horizon)], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"RecSim NG failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_ours(users: int) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_scale import run_child  # noqa: PLC0415 - the sibling benchmark's child runner

    r = run_child({"dataset": "ml-100k", "items": 1682, "users": users})
    return {"rate": r["user_turns_per_s"], "seconds": r["simulate_s"], "peak_mb": r["peak_rss_mb"]}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--horizon", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--recsim-python", default="/tmp/venv-recsim/bin/python")
    args = ap.parse_args()
    why = recsim_missing(args.recsim_python)
    if why:
        print(f"RecSim NG comparison skipped: {why}")
        return
    ours: list[dict] = []
    theirs: list[dict] = []
    for r in range(args.repeats):  # alternated: drift on a shared machine is not a ratio
        t0 = time.perf_counter()
        ours.append(run_ours(args.users))
        theirs.append(run_recsim(args.recsim_python, args.users, args.horizon))
        print(f"  [{r + 1}/{args.repeats}] {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    med = lambda rs, k: statistics.median(x[k] for x in rs)  # noqa: E731
    print(f"\n{args.users:,} users ({args.repeats} alternated runs each; medians)")
    print(f"{'':>12} {'user-steps/s':>13} {'peak MB':>8}")
    print(f"{'RecSim NG':>12} {med(theirs, 'rate'):>13,.0f} {med(theirs, 'peak_mb'):>8,.0f}")
    print(f"{'RecoWorld':>12} {med(ours, 'rate'):>13,.0f} {med(ours, 'peak_mb'):>8,.0f}")
    print(f"ratio (ours / RecSim NG): x{med(ours, 'rate') / med(theirs, 'rate'):.1f}")


if __name__ == "__main__":
    main()
