"""Train a recommender policy in RecoWorld and compare it with the baselines on held-out users.

The policy scores the candidate set of the retention environment (each session, the ``mf``
recommender's best 100 unshown items with their features: ``RecoWorld/RetentionCandidates-v0``)
and shows the k best it has not shown this session: a :class:`recoworld.env.scorer.CandidateScorer`
(19 features -> 2-layer MLP -> score, plus a learned multiple of the base score).

It is learned as a contextual bandit over items, in torch, on the native batched environment
(:class:`recoworld.env.vector.RetentionVectorEnv`: thousands of lives per step, autoreset): each
iteration shows every life ``steps`` slates sampled from the current scores (Plackett-Luce, by
Gumbel top-k at ``temperature``: the exploration), then fits the scorer to what the users did
with every item shown (its watch fraction, cross-entropy on the logit, with a per-position bias
for the slot's own effect). Engagement is the target; retention follows from it in this world,
since satisfaction, and with it P(return), moves with every item the user enjoys.

Why not Stable-Baselines3 / TorchRL, nor plain PPO: a slate of k distinct candidates out of a
per-step candidate set is a Plackett-Luce action that neither library's distributions provide
(SB3 would need a custom policy and distribution, and its own VecEnv in place of Gymnasium's
vector API); PPO on the slate's log-probability (tried) moved nothing measurable in 65k slates
on this machine: one slate's reward is mostly click noise, while the item-level fit gets ten
labelled examples from every slate.

Honest by construction (``recoworld.eval.policy.build_bench``): every real user's latest
interactions are held out (for NDCG) and 20% of the real users are held out whole; training
simulates only personas of the other 80%. The evaluation runs the study's own loop
(``simulate_arm``) on the held-out users for the policy (its checkpoint as a plug-in) and the
baselines, at the seed of each trained policy, pooled over seeds.

    python examples/rl/train.py [--seeds 3] [--iterations 30] [--envs 512] [--out runs/rl]

Needs the ``rl`` extra (CPU PyTorch): ``pip install torch==2.13.0`` (the CPU wheel), then
``pip install -e '.[rl]'``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from recoworld.config import (
    BrainConfig,
    PopulationConfig,
    RecommenderConfig,
    SimulationConfig,
    StudyConfig,
    WorldConfig,
)
from recoworld.env.scorer import FEATURES, CandidateScorer, candidate_features
from recoworld.env.vector import RetentionVectorEnv
from recoworld.eval.policy import Bench, build_bench, checkpoint_recommender, evaluate
from recoworld.study.prepare import load_world_for


class Scorer(nn.Module):
    """The torch twin of :class:`CandidateScorer` (same arrays, same formula)."""

    def __init__(self, hidden: int = 32, prior: float = 3.0) -> None:
        super().__init__()
        f = len(FEATURES)
        self.l1, self.l2, self.l3 = (
            nn.Linear(f, hidden),
            nn.Linear(hidden, hidden),
            nn.Linear(hidden, 1),
        )
        nn.init.zeros_(self.l3.weight)  # start as the base recommender's order, softened
        nn.init.zeros_(self.l3.bias)
        self.prior = nn.Parameter(torch.tensor([prior]))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.l2(torch.relu(self.l1(f))))
        return self.l3(h).squeeze(-1) + self.prior * f[..., 0]

    def export(self, settings: dict) -> CandidateScorer:
        t = lambda x: x.detach().numpy().astype(np.float32)  # noqa: E731
        arrays = {
            "w1": t(self.l1.weight.T), "b1": t(self.l1.bias),
            "w2": t(self.l2.weight.T), "b2": t(self.l2.bias),
            "w3": t(self.l3.weight.T), "b3": t(self.l3.bias),
            "prior": t(self.prior),
        }  # fmt: skip
        return CandidateScorer(arrays, settings)


def sample_slates(scores: torch.Tensor, shown: torch.Tensor, k: int, gen: torch.Generator):
    """Plackett-Luce samples of ``k`` candidates by Gumbel top-k (shown ones excluded)."""
    u = torch.rand(scores.shape, generator=gen).clamp_(1e-9, 1 - 1e-9)
    g = scores - torch.log(-torch.log(u))
    return torch.topk(g.masked_fill(shown, float("-inf")), k, dim=1).indices


@dataclass
class Settings:
    envs: int = 512
    steps: int = 16  # vector steps per iteration
    iterations: int = 10
    candidates: int = 100
    temperature: float = 0.5  # exploration: slates sampled from softmax(score / temperature)
    window: int = 4  # iterations of data kept for training
    epochs: int = 2
    minibatch: int = 8192
    lr: float = 3e-3


def train(bench: Bench, seed: int, s: Settings, log=print) -> tuple[CandidateScorer, dict]:  # noqa: ANN001
    """The contextual-bandit learner on the training users' lives; returns the scorer and its
    learning curve. Each iteration: ``steps`` slates for each of ``envs`` lives, sampled from
    the scores; then the scorer is fitted to what the users did with every item shown (its
    watch fraction, by cross-entropy on the logit, with a learned bias per slate position that
    the exported scorer leaves out: it ranks as if every item were first)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    env = RetentionVectorEnv(
        bench.prep,
        num_envs=s.envs,
        candidates=s.candidates,
        users=bench.train_uids,
        reward="both",
        instruction_text=False,
    )
    k = env.settings.k
    scorer = Scorer(prior=1.0)
    position = nn.Parameter(torch.zeros(k))
    opt = torch.optim.Adam([*scorer.parameters(), position], lr=s.lr)
    obs, _ = env.reset(seed=seed)
    window: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    curve = []
    t0 = time.perf_counter()
    life_return, life_sessions = np.zeros(s.envs), np.zeros(s.envs)
    for it in range(s.iterations):
        data_f, data_p, data_y = [], [], []
        rewards, lives, sessions = [], [], []
        for _ in range(s.steps):
            f = torch.from_numpy(candidate_features(obs))
            shown = torch.from_numpy(np.asarray(obs["cand_shown"]) > 0)
            with torch.no_grad():
                picks = sample_slates(scorer(f) / s.temperature, shown, k, gen)
            obs, reward, term, trunc, info = env.step(picks.numpy())
            real = torch.from_numpy(~info["reset"])  # an autoreset step showed nothing
            rows = torch.nonzero(real).squeeze(1)
            data_f.append(f[rows[:, None], picks[rows]].reshape(-1, f.shape[-1]))
            data_p.append(torch.arange(k).repeat(rows.numel()))
            data_y.append(torch.from_numpy(info["slate_watch"][rows.numpy()]).reshape(-1))
            rewards.append(reward[~info["reset"]])
            done = term | trunc
            life_return += reward
            life_sessions += info["session_end"]
            lives += life_return[done].tolist()
            sessions += life_sessions[done].tolist()
            life_return[done], life_sessions[done] = 0.0, 0.0
        window = [
            *window[-(s.window - 1) :],
            (torch.cat(data_f), torch.cat(data_p), torch.cat(data_y)),
        ]
        F, P, Y = (torch.cat(x) for x in zip(*window))
        losses = []
        for _ in range(s.epochs):
            order = torch.randperm(F.shape[0], generator=gen)
            for b in range(0, F.shape[0], s.minibatch):
                i = order[b : b + s.minibatch]
                logit = scorer(F[i]) + position[P[i]]
                loss = nn.functional.binary_cross_entropy_with_logits(logit, Y[i])
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
        row = {
            "iteration": it,
            "seconds": round(time.perf_counter() - t0, 1),
            "slates": (it + 1) * s.steps * s.envs,
            "reward_per_slate": round(float(np.concatenate(rewards).mean()), 4),
            "life_return": round(float(np.mean(lives)), 3) if lives else None,
            "life_sessions": round(float(np.mean(sessions)), 3) if sessions else None,
            "loss": round(float(np.mean(losses)), 5),
        }
        curve.append(row)
        log(json.dumps(row))
    settings = {
        "candidates": s.candidates,
        "base": "mf",
        "slate_size": k,
        "seed": seed,
        "trained_on": bench.prep.world_name,
        "learner": "contextual bandit (item watch, Plackett-Luce exploration)",
        "slates": s.iterations * s.steps * s.envs,
    }
    return scorer.export(settings), {"curve": curve, "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--population", type=int, default=30000, help="users (train + held out)")
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=Settings.iterations)
    ap.add_argument("--envs", type=int, default=Settings.envs)
    ap.add_argument("--steps", type=int, default=Settings.steps)
    ap.add_argument("--eval-users", type=int, default=0, help="held-out users (0: all)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: the fastest on a busy 2-core machine)",
    )
    ap.add_argument(
        "--logged-exposure",
        type=float,
        default=BrainConfig().logged_exposure,
        help="[brain] logged_exposure of the simulated users (docs/fidelity.md, 'Exposure')",
    )
    ap.add_argument("--out", default="runs/rl")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cfg = StudyConfig(
        name="rl",
        seed=0,
        world=WorldConfig(dataset=args.dataset),
        population=PopulationConfig(size=args.population),
        simulation=SimulationConfig(sessions=args.sessions, turns=5, slate_size=10),
        brain=BrainConfig(logged_exposure=args.logged_exposure),
    )
    bench = build_bench(cfg, load_world_for(cfg.world, cfg.seed))
    print(
        f"bench: {bench.prep.world_name}, {bench.train_users.size} training users, "
        f"{bench.test_users.size} held-out users ({time.perf_counter() - t0:.0f}s)",
        flush=True,
    )
    s = Settings(iterations=args.iterations, envs=args.envs, steps=args.steps)
    seeds = list(range(1, args.seeds + 1))
    checkpoints, follow, logs, train_seconds = [], [], {}, []
    for seed in seeds:
        scorer, log = train(bench, seed, s, log=lambda r: print(r, flush=True))
        path = out / f"policy-seed{seed}.npz"
        scorer.save(path)
        checkpoints.append(checkpoint_recommender(path))
        # the same scorer with the built-in instruction re-ranker on its scores
        follow.append(checkpoint_recommender(path, follow_instructions=True))
        logs[seed] = log
        train_seconds.append(round(log["seconds"], 1))
        print(f"seed {seed}: trained in {log['seconds']:.0f}s -> {path}", flush=True)
    users = bench.test_users
    if args.eval_users:
        users = users[: args.eval_users]
    t1 = time.perf_counter()
    result = evaluate(
        bench,
        {
            "policy": checkpoints,
            "policy+follow": follow,
            "mf": RecommenderConfig(kind="mf"),
            "popular": RecommenderConfig(kind="popular"),
        },
        seeds,
        users=users,
    )
    print(result.table(), flush=True)
    summary = {
        "train_seconds": train_seconds,
        "eval_seconds": round(time.perf_counter() - t1, 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "settings": s.__dict__,
        "logged_exposure": args.logged_exposure,
        "train_users": int(bench.train_users.size),
        "heldout_users": int(users.size),
    }
    print(json.dumps(summary), flush=True)
    (out / "result.json").write_text(
        json.dumps(
            {
                "summary": summary,
                "estimates": [
                    {f: getattr(e, f) for f in e.__struct_fields__} for e in result.estimates
                ],
                "curves": logs,
            },
            indent=1,
        )
    )
    (out / "table.txt").write_text(result.table() + "\n")


if __name__ == "__main__":
    main()
