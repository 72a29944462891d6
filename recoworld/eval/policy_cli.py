"""``recoworld eval policy``: the command line of :mod:`recoworld.eval.policy` (registered by
``recoworld.eval.cli``; the evaluation's imports stay inside the handler)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(esub: argparse._SubParsersAction) -> None:
    """Add ``eval policy`` to the ``eval`` subcommands."""
    p = esub.add_parser(
        "policy",
        help="evaluate recommenders (built-in, plug-in, trained checkpoint) on held-out simulated "
        "users: retention, engagement, NDCG, diversity, instruction following, with intervals",
    )
    p.add_argument(
        "--recommender",
        action="append",
        required=True,
        help="mf | popular | random (add -plain: no instruction re-ranker) | python:mod:Factory "
        "| checkpoint:PATH.npz | checkpoint+follow:PATH.npz (with the instruction re-ranker); "
        "repeat to compare",
    )
    p.add_argument("--dataset", default="ml-100k", help="any loader name (default ml-100k)")
    p.add_argument("--path", help="dataset folder (default: the data cache, then ../shared/data)")
    p.add_argument("--config", help="a study TOML (its world, population, simulation, brain)")
    p.add_argument("--seeds", type=int, default=3, help="seeds to pool (default 3)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--users", type=int, default=4000, help="population size (default 4000)")
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--turns", type=int, default=5)
    p.add_argument("--slate-size", type=int, default=10)
    p.add_argument("--out", help="write policy.json here")
    p.set_defaults(func=cmd_policy)


def cmd_policy(args: argparse.Namespace, console) -> int:  # noqa: ANN001
    import msgspec

    from recoworld.config import (
        PopulationConfig,
        SimulationConfig,
        StudyConfig,
        WorldConfig,
        load_study,
    )
    from recoworld.eval.policy import build_bench, evaluate, recommender_of
    from recoworld.study.prepare import load_world_for

    recs = {spec: recommender_of(spec) for spec in args.recommender}
    if args.config:
        cfg = load_study(args.config)
    else:
        cfg = StudyConfig(
            name="eval-policy",
            seed=args.seed,
            world=WorldConfig(dataset=args.dataset, path=args.path or ""),
            population=PopulationConfig(size=args.users),
            simulation=SimulationConfig(
                sessions=args.sessions, turns=args.turns, slate_size=args.slate_size
            ),
        )
    with console.status(f"preparing {cfg.world.dataset}…"):
        bench = build_bench(cfg, load_world_for(cfg.world, cfg.seed))
    seeds = list(range(cfg.seed, cfg.seed + args.seeds))
    with console.status(f"evaluating {len(recs)} recommenders x {len(seeds)} seeds…"):
        result = evaluate(bench, recs, seeds)
    console.print(
        f"{result.world}: {result.users:,} held-out users, {len(seeds)} seeds, up to "
        f"{result.sessions} sessions of {result.turns} slates of {result.slate_size}; "
        "mean [95% interval over seeds]",
        highlight=False,
    )
    sys.stdout.write(result.table() + "\n")
    sys.stdout.flush()
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "policy.json").write_bytes(msgspec.json.format(msgspec.json.encode(result)))
        console.print(f"-> {out / 'policy.json'}", highlight=False)
    return 0
