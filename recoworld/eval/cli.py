"""`recoworld eval ...` subcommands (registered by recoworld.cli; heavy imports stay inside the
handlers).

    recoworld eval fidelity --dataset ml-100k|ml-latest-small|lastfm|...
                            --brain parametric|hybrid|llm
                            --out DIR [--path DATA_DIR] [--seed N] [--split auto|time|random]
                            [--config STUDY.toml] [--users N] [--llm-samples S] [--no-simulate]

``--brain llm`` needs ``--config``: a study file whose ``[llm]`` table names the model and whose
``[simulation] slate_size`` cuts each candidate list into slates (docs/fidelity.md).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `eval` command to the top-level parser's subcommands."""
    e = sub.add_parser(
        "eval", help="evaluate the simulator (fidelity against held-out real behaviour)"
    )
    esub = e.add_subparsers(dest="eval_command", required=True)
    f = esub.add_parser(
        "fidelity",
        help="hold out each user's latest interactions, fit on the rest, and measure how closely "
        "simulated users match",
    )
    f.add_argument(
        "--dataset",
        required=True,
        help="ml-100k | ml-latest-small | lastfm (any loader name, or synthetic)",
    )
    f.add_argument(
        "--brain", default="parametric", help="parametric | hybrid | llm (default: parametric)"
    )
    f.add_argument(
        "--out", required=True, help="output folder (Parquet tables, meta.json, fidelity.md)"
    )
    f.add_argument("--path", help="dataset folder (default: the data cache, then ../shared/data)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument(
        "--split",
        default="auto",
        choices=["auto", "time", "random"],
        help="held-out order (default: by time where the data has times)",
    )
    f.add_argument(
        "--config",
        help="a study TOML whose [llm] table (and [simulation] slate_size) configures --brain llm",
    )
    f.add_argument(
        "--users",
        type=int,
        default=0,
        help="evaluate a seeded sample of N users (default: all with a held-out interaction)",
    )
    f.add_argument(
        "--llm-samples",
        type=int,
        default=1,
        help="--brain llm: answers per slate; > 1 gives watch probabilities (default 1)",
    )
    f.add_argument(
        "--no-simulate", action="store_true", help="skip protocol c (the simulated sessions)"
    )
    f.set_defaults(func=cmd_fidelity)


def cmd_fidelity(args: argparse.Namespace, console) -> int:  # noqa: ANN001
    import time
    from pathlib import Path

    from recoworld.config import WorldConfig
    from recoworld.errors import ConfigError
    from recoworld.eval.fidelity import BRAINS, FidelitySettings, evaluate
    from recoworld.eval.report import headline, write_result
    from recoworld.study.prepare import load_world_for

    if args.brain not in BRAINS:
        raise ConfigError(f"--brain: expected one of {', '.join(BRAINS)}, got {args.brain!r}")
    if args.brain == "llm" and not args.config:
        raise ConfigError(
            "--brain llm needs an [llm] config: pass --config STUDY.toml whose [llm] table names "
            "the model "
            "(see recoworld/config.py, LLMConfig, and docs/fidelity.md)"
        )
    if args.users < 0:
        raise ConfigError(f"--users: expected an integer >= 0 (0 = every user), got {args.users}")
    t0 = time.perf_counter()
    try:
        wc = WorldConfig(dataset=args.dataset, path=args.path or "")
    except TypeError as e:
        raise ConfigError(f"--dataset: {e}") from None
    with console.status(f"loading {args.dataset}…"):
        world = load_world_for(wc, args.seed)
    settings = FidelitySettings(
        brain=args.brain,
        seed=args.seed,
        split_order=args.split,
        simulate=not args.no_simulate,
        users=args.users,
        llm_samples=args.llm_samples,
    )
    with console.status(f"evaluating {args.brain} on {world.name}…"):
        result = evaluate(world, settings, llm_config=args.config)
    out = Path(args.out)
    write_result(result, out)
    h = headline(result)

    def both(name: str) -> str:  # a decider without probabilities has no ranked decisions
        ranked = h.get(f"{name}_ranked")
        return f"{h.get(f'{name}_sampled', float('nan')):.3f} sampled" + (
            "" if ranked is None else f" / {ranked:.3f} ranked"
        )

    console.print(
        f"{world.name}, brain {args.brain} ({result.meta['split_order']} split): accuracy at 1:1 "
        f"{both('accuracy_1_1')}; F1 at 1:9 {both('f1_1_9')}; "
        f"positive rate at 1:9 {h.get('positive_rate_1_9_sampled', float('nan')):.3f} vs real "
        f"{h.get('real_positive_rate_1_9', float('nan')):.3f}"
    )
    if result.meta.get("llm"):
        from recoworld.eval.report import llm_summary

        console.print(llm_summary(result.meta["llm"]), highlight=False)
    console.print(
        f"{result.meta['evaluated_users']:,} of {result.meta['eligible_users']:,} users evaluated; "
        f"tables in {time.perf_counter() - t0:.1f}s -> [bold]{out}[/] (fidelity.md, *.parquet)"
    )
    return 0
