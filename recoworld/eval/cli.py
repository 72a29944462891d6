"""`recoworld eval ...` subcommands (registered by recoworld.cli; heavy imports stay inside the
handlers).

    recoworld eval fidelity --dataset ml-100k|ml-latest-small|lastfm|...
                            --brain parametric|hybrid|llm
                            --out DIR [--path DATA_DIR] [--seed N]
                            [--protocol recoworld|agent4rec|afl]
                            [--split auto|time|random|last-k|given:PATH] [--last-k K]
                            [--exposure mf,browse] [--no-ease]
                            [--config STUDY.toml] [--users N] [--llm-samples S] [--no-simulate]

``--brain llm`` needs ``--config``: a study file whose ``[llm]`` table names the model and whose
``[simulation] slate_size`` cuts each candidate list into slates (docs/fidelity.md).
"""

from __future__ import annotations

import argparse

from recoworld.eval.policy_cli import register as register_policy


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
        "--protocol",
        default="recoworld",
        choices=["recoworld", "agent4rec", "afl"],
        help="how the lists are built and scored (default recoworld; docs/fidelity.md)",
    )
    f.add_argument(
        "--split",
        default="auto",
        help="auto | time | random | last-k | given:PATH (a CSV or Parquet of held-out "
        "user_id, item_id pairs); auto: afl's last-k, else by time where the data has times",
    )
    f.add_argument(
        "--last-k",
        type=int,
        default=10,
        help="--split last-k: interactions held out per user (default 10)",
    )
    f.add_argument(
        "--exposure",
        default="",
        help="protocol c's exposures, comma-separated: mf (a study's recommender), browse (the "
        "model of the logs' exposure); default both (llm brain: mf)",
    )
    f.add_argument("--no-ease", action="store_true", help="do not fit EASE for comparison")
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

    register_policy(esub)


def cmd_fidelity(args: argparse.Namespace, console) -> int:  # noqa: ANN001
    import time
    from pathlib import Path

    from recoworld.config import WorldConfig
    from recoworld.errors import ConfigError
    from recoworld.eval.fidelity import BRAINS, FidelitySettings, evaluate
    from recoworld.eval.report import coverage_line, write_result
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
    order, given = parse_split(args.split)
    if args.last_k < 1:
        raise ConfigError(f"--last-k: expected an integer >= 1, got {args.last_k}")
    from recoworld.eval.fidelity import EXPOSURES

    exposures = tuple(x.strip() for x in args.exposure.split(",") if x.strip())
    bad = [x for x in exposures if x not in EXPOSURES]
    if bad:
        raise ConfigError(f"--exposure: expected a list of {', '.join(EXPOSURES)}, got {bad[0]!r}")
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
        protocol=args.protocol,
        split_order=order,
        given_path=given,
        last_k=args.last_k,
        exposures=exposures,
        ease=not args.no_ease,
        simulate=not args.no_simulate,
        users=args.users,
        llm_samples=args.llm_samples,
    )
    with console.status(f"evaluating {args.brain} on {world.name}…"):
        result = evaluate(world, settings, llm_config=args.config)
    out = Path(args.out)
    write_result(result, out)
    console.print(headline_table_text(result), highlight=False, markup=False, soft_wrap=True)
    if result.meta.get("llm"):
        from recoworld.eval.report import llm_summary

        console.print(llm_summary(result.meta["llm"]), highlight=False)
    console.print(
        f"{coverage_line(result.meta)}; "
        f"tables in {time.perf_counter() - t0:.1f}s -> [bold]{out}[/] (fidelity.md, *.parquet)",
        soft_wrap=True,
    )
    return 0


def parse_split(text: str) -> tuple[str, str]:
    """(order, given path) from ``--split``."""
    from recoworld.errors import ConfigError

    if text.startswith("given:"):
        path = text.removeprefix("given:")
        if not path:
            raise ConfigError("--split given:PATH: the path is empty")
        return "given", path
    if text not in ("auto", "time", "random", "last-k"):
        raise ConfigError(
            f"--split: expected auto, time, random, last-k or given:PATH, got {text!r}"
        )
    return text, ""


def headline_table_text(result) -> str:  # noqa: ANN001 (a FidelityResult; imports stay lazy)
    """The headline as fixed-width text: figure, exposure, users, ours, real, EASE, distance,
    goal, met."""
    m = result.meta
    hl = result.tables.get("headline")
    title = (
        f"{m['dataset']}, brain {m['brain']}, protocol {m.get('protocol')} "
        f"({m['split_order']} split)"
    )
    if hl is None or hl.height == 0:
        return title + ": no headline figures"

    def f(v: object) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "NO"
        if isinstance(v, float):
            return f"{v:.3f}"
        return str(v)

    cols = ["figure", "exposure", "users", "ours", "real", "ease", "distance", "goal", "met"]
    rows = [[f(r[c]) for c in cols] for r in hl.iter_rows(named=True)]
    rows = [[c if c != "ease" else "EASE" for c in cols], *rows]
    width = [max(len(r[k]) for r in rows) for k in range(len(cols))]
    lines = [title]
    for r in rows:
        lines.append(
            "  ".join(
                (x.ljust(w) if k in (0, 1, 7) else x.rjust(w))
                for k, (x, w) in enumerate(zip(r, width, strict=True))
            ).rstrip()
        )
    return "\n".join(lines)
