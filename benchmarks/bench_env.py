"""Benchmark: environment steps per second, the native batched environment against Gymnasium's
``SyncVectorEnv`` of single environments, on an ML-100K world (synthetic of the same shape when
the data is not there).

Both are the retention environment with the same options (candidate-set actions from ``mf``,
N = 100 candidates, slates of 10, 8 sessions x 5 turns, autoreset) and the same random actions
(drawn before the clock starts). One *environment step* is one user shown one slate, so a
vector step of ``num_envs`` users counts ``num_envs`` steps. Runs of A (native) and B (sync)
alternate in the same process (the machine is shared: drift would otherwise read as a ratio);
the figures are medians over ``--rounds``, and the ratio is of the medians.

    python benchmarks/bench_env.py [--envs 1024] [--steps 20] [--rounds 5] [--candidates 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def prepared(dataset: str):  # noqa: ANN201
    from recoworld.config import PopulationConfig, SimulationConfig, StudyConfig, WorldConfig
    from recoworld.errors import RecoWorldError
    from recoworld.study.prepare import load_world_for, prepare

    sim = SimulationConfig(sessions=8, turns=5, slate_size=10)
    cfg = StudyConfig(
        name="bench-env",
        seed=1,
        world=WorldConfig(dataset=dataset, synthetic_users=943, synthetic_items=1682),
        population=PopulationConfig(size=4000),
        simulation=sim,
    )
    try:
        world = load_world_for(cfg.world, cfg.seed)
    except (RecoWorldError, OSError):
        cfg = StudyConfig(
            name="bench-env",
            seed=1,
            world=WorldConfig(dataset="synthetic", synthetic_users=943, synthetic_items=1682),
            population=PopulationConfig(size=4000),
            simulation=sim,
        )
        world = load_world_for(cfg.world, cfg.seed)
    return prepare(cfg, world)


def run(env, actions: np.ndarray) -> float:  # noqa: ANN001
    """Seconds for ``len(actions)`` vector steps."""
    t = time.perf_counter()
    for a in actions:
        env.step(a)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--envs", type=int, default=1024, help="users per vector step")
    ap.add_argument("--steps", type=int, default=20, help="vector steps per timed run")
    ap.add_argument("--rounds", type=int, default=5, help="alternated A/B rounds")
    ap.add_argument("--candidates", type=int, default=100)
    args = ap.parse_args()

    from gymnasium.vector import SyncVectorEnv

    from recoworld.env import RetentionEnv, RetentionVectorEnv

    t0 = time.perf_counter()
    prep = prepared(args.dataset)
    opts = {"candidates": args.candidates}
    native = RetentionVectorEnv(prep, num_envs=args.envs, **opts)
    sync = SyncVectorEnv([lambda: RetentionEnv(prep, **opts) for _ in range(args.envs)])
    seeds = [int(s) for s in np.random.SeedSequence(0).generate_state(args.envs)]
    native.reset(seed=seeds)
    sync.reset(seed=seeds)
    rng = np.random.default_rng(0)
    k = native.single_action_space.shape[0]
    high = args.candidates or prep.catalog.n_items
    setup = time.perf_counter() - t0
    a_rate, b_rate = [], []
    for _ in range(args.rounds):
        actions = rng.integers(high, size=(args.steps, args.envs, k))
        a_rate.append(args.envs * args.steps / run(native, actions))
        b_rate.append(args.envs * args.steps / run(sync, actions))
    a, b = statistics.median(a_rate), statistics.median(b_rate)
    result = {
        "world": prep.world_name,
        "num_envs": args.envs,
        "candidates": args.candidates,
        "steps_per_run": args.steps,
        "rounds": args.rounds,
        "native_steps_per_s": round(a),
        "sync_steps_per_s": round(b),
        "ratio": round(a / b, 1),
        "native_runs": [round(x) for x in a_rate],
        "sync_runs": [round(x) for x in b_rate],
        "setup_s": round(setup, 1),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
