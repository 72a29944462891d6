"""The `recoworld` command. Only this module (and jobs/) reads flags and environment variables.

    recoworld run STUDY.toml [--run-id ID] [--out DIR|URI] [--overwrite] [--users N] [--replay RUN]
                             [--local | --ray auto|local|ADDRESS] [--shards N] [--resume RUN_ID]
                             [--staging DIR]
    recoworld summary RUN_DIR|RUN_URI [--segments]
    recoworld data fetch ml-100k
    recoworld data info DATASET [--path DIR]
    recoworld fit DATASET [--path DIR]
    recoworld schema [TABLE]

Environment: RECOWORLD_CACHE (data cache folder, default ~/.cache/recoworld; also holds the
staging folders and the read cache of runs on object storage). ``--out s3://BUCKET/PREFIX``
(``gs://``, ``file://``): :mod:`recoworld.io.remote`; its endpoint and credentials come from the
standard AWS (Google) environment variables, which pyarrow reads.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import msgspec
import polars as pl
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from recoworld.config import SEED_MAX
from recoworld.display import summary_table
from recoworld.errors import ConfigError, RecoWorldError, RunError

if TYPE_CHECKING:
    from recoworld.io.remote import RemoteRuns


def _cache_dir() -> Path | None:
    v = os.environ.get("RECOWORLD_CACHE")
    return Path(v) if v else None


def uri_scheme(text: str) -> str | None:
    """The scheme of ``text`` when it is a URI (``s3://…``), else None (a local path)."""
    from recoworld.io.remote import uri_scheme

    return uri_scheme(text)


def _cache_root() -> Path:
    from recoworld.world.fetch import default_cache_dir

    return _cache_dir() or default_cache_dir()


def _local_run(text: str, name: str) -> Path:
    """A run folder to read: ``text`` itself, or for a run's URI (``s3://…/RUN_ID``) a verified
    copy of the committed run in the read cache (:meth:`RemoteRuns.fetch`)."""
    if uri_scheme(text) is None:
        return Path(text)
    from recoworld.io.remote import RemoteRuns

    remote, run_id = RemoteRuns.parse_run(text, name=name)
    remote.check()
    return remote.fetch(run_id, _cache_root() / "remote" / remote.key)


def _remote_plan(
    remote: RemoteRuns, staging: Path, run_id: str, args: argparse.Namespace, cfg
) -> tuple[bool, Path | None]:
    """Before any work, for ``--out URI``: whether the publish replaces a committed run, and a
    complete run staged earlier that ``--resume`` only has to publish (else None). Refuses a
    committed run id without ``--overwrite``, and a staged run that was never published."""
    from recoworld.io.remote import (
        PublishIntent,
        already_committed,
        read_intent,
        staged_complete,
        write_intent,
    )
    from recoworld.io.runs import interrupted
    from recoworld.study.lifecycle import check_same_study

    staged = staged_complete(staging, run_id)
    if args.resume:
        intent = read_intent(staging, run_id)
        overwrite = intent is not None and intent.uri == remote.uri and intent.overwrite
        if staged is not None:
            check_same_study(staged, cfg)
            return overwrite, staged
        if not interrupted(staging, run_id):
            raise RunError(
                f"{remote.run_uri(run_id)}: no interrupted or unpublished run {run_id!r} staged "
                f"on this machine (looked in {staging}); run without --resume"
            )
    else:
        overwrite = args.overwrite
        if staged is not None and not overwrite:
            raise RunError(
                f"{remote.run_uri(run_id)}: a complete run {run_id!r} staged in {staged} was "
                f"never published; pass --resume {run_id} to publish it, or --overwrite to "
                "run it again"
            )
    if not overwrite and remote.commit_of(run_id) is not None:
        raise RunError(already_committed(remote.run_uri(run_id)))
    write_intent(staging, run_id, PublishIntent(uri=remote.uri, overwrite=overwrite))
    return overwrite, None


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from recoworld.config import check_run_id, load_study
    from recoworld.study.preflight import check_memory

    for flag in ("run_id", "resume"):
        if getattr(args, flag):
            _flag(f"--{flag.replace('_', '-')}", check_run_id, getattr(args, flag))
    if args.seed is not None and not 0 <= args.seed <= SEED_MAX:
        raise ConfigError(
            f"--seed: Expected a seed in [0, 2**32 - 1 = {SEED_MAX}], got {args.seed}"
        )
    for flag in ("users", "workers", "shards"):
        value = getattr(args, flag)
        if value is not None and value < (0 if flag == "users" else 1):
            floor = 0 if flag == "users" else 1
            raise ConfigError(f"--{flag}: Expected an integer >= {floor}, got {value}")
    cfg = load_study(args.study)
    if args.replay and uri_scheme(args.replay):
        args.replay = str(_local_run(args.replay, "--replay"))
    if args.users is not None:
        cfg = msgspec.structs.replace(
            cfg, population=msgspec.structs.replace(cfg.population, size=args.users)
        )
    if args.seed is not None:
        cfg = msgspec.structs.replace(cfg, seed=args.seed)
    if args.replay:
        if cfg.llm is None:
            raise RunError(
                f"--replay {args.replay}: {args.study} uses no language model; nothing to replay"
            )
        cfg = msgspec.structs.replace(
            cfg, llm=msgspec.structs.replace(cfg.llm, backend="replay", replay_from=args.replay)
        )
    if args.resume and args.run_id and args.resume != args.run_id:
        raise RunError(
            f"--resume {args.resume} and --run-id {args.run_id} name different runs; give one"
        )
    if args.resume and args.overwrite:
        raise RunError(
            "--resume continues an interrupted run; --overwrite replaces a complete one: give one"
        )
    run_id = args.resume or args.run_id or f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not (args.resume or args.run_id):
        _flag(f"{args.study}: the default run id (from `$.name`)", check_run_id, run_id)
    where = "--out" if args.out else f"{args.study}: `$.output.dir`"
    target = args.out or cfg.output.dir
    remote = None
    if uri_scheme(target):
        from recoworld.io.remote import RemoteRuns

        remote = RemoteRuns.parse(target, name=where)
    overwrite = args.overwrite
    if remote is None:
        if args.staging:
            raise ConfigError(f"--staging: applies to --out URI only, got --out {target}")
        out = Path(target)
        _check_out_dir(out, where)
    else:  # the run is written to a local staging folder, then published (io/remote.py)
        try:
            remote.check()
        except RunError as e:
            raise RunError(f"{where}: {e}") from None
        out = Path(args.staging) if args.staging else _cache_root() / "staging" / remote.key
        _check_out_dir(out, "--staging" if args.staging else f"the staging folder of {target}")
        overwrite, staged = _remote_plan(remote, out, run_id, args, cfg)
        if staged is not None:
            return _publish_staged(remote, out, run_id, overwrite, console)
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    check_memory(cfg, source=args.study, workers=1 if args.ray else workers)
    from recoworld.study.prepare import load_world_for
    from recoworld.study.runner import run_study

    t0 = time.perf_counter()
    with console.status(f"loading world {cfg.world.dataset}…"):
        world = load_world_for(
            cfg.world, cfg.seed, base_dir=Path(args.study).resolve().parent, cache_dir=_cache_dir()
        )
    console.print(
        f"world [bold]{world.name}[/]: {world.users.height:,} users, {world.items.height:,} items, "
        f"{world.interactions.height:,} interactions ({time.perf_counter() - t0:.1f}s)"
    )
    dims = (world.users.height, world.items.height, world.interactions.height)
    check_memory(
        cfg,
        source=args.study,
        workers=1 if args.ray else workers,
        world=(*dims, len(world.tag_vocabulary)),
    )
    columns = (
        SpinnerColumn(finished_text=" "),
        TextColumn("{task.description}"),
        BarColumn(),
        _Count(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=args.quiet) as bar:
        # a spinner while the study is prepared, then one bar per arm from 0 (users finished)
        fitting = bar.add_task("fitting the choice model, drawing the population…", total=None)
        tasks: dict[str, int] = {}

        def progress(arm: str, done: int) -> None:
            if arm not in tasks:  # not announced by on_ready: a bar without a total
                tasks[arm] = bar.add_task(f"arm {arm}", total=None)
            bar.advance(tasks[arm], done)

        def on_ready(n_users: int) -> None:
            bar.remove_task(fitting)
            for arm in cfg.arms:
                tasks[arm.name] = bar.add_task(f"arm {arm.name}", total=n_users)

        common = dict(
            run_id=run_id,
            out_dir=out,
            overwrite=overwrite,
            resume=bool(args.resume),
            progress=progress,
            on_ready=on_ready,
        )
        if cfg.social.enabled:  # rounds on a shared calendar (docs/social.md)
            if args.ray:
                from actors.social_shard import run_social_study_on_ray

                result = run_social_study_on_ray(
                    cfg, world, address=args.ray, shards=args.shards, **common
                )
            else:
                from recoworld.study.rounds import run_social_study

                result = run_social_study(cfg, world, workers=workers, **common)
        elif args.ray:
            run_on_ray = _ray_driver()
            result = run_on_ray(cfg, world, address=args.ray, shards=args.shards, **common)
        else:
            result = run_study(
                cfg,
                world,
                workers=workers,
                **common,
            )
    fit = msgspec.json.decode((result.path / "fit.json").read_bytes())
    manifest = msgspec.json.decode((result.path / "manifest.json").read_bytes())
    shown = str(result.path)
    if remote is not None:
        from recoworld.io.remote import publish_staged

        with console.status(f"publishing to {remote.run_uri(run_id)}…"):
            publish_staged(remote, out, run_id, overwrite=overwrite)
        shown = remote.run_uri(run_id)
    console.print(
        f"brain fitted on {fit['dataset']}: AUC {fit['auc']:.3f}, positive rate predicted "
        f"{fit['predicted_positive_rate']:.3f} vs observed {fit['observed_positive_rate']:.3f} "
        f"(ECE {fit['ece']:.4f})"
        + (
            f", rating distribution TV distance {fit['rating_tv_distance']:.3f}"
            if fit.get("rating_tv_distance") is not None
            else ""
        )
    )
    users = result.summary.filter(pl.col("segment") == "all")["n"].max()
    console.print(
        summary_table(
            result.summary,
            segments=args.segments,
            title=f"{cfg.name}: {users:,} users per arm",
            creator_items=cfg.creator is not None,
        )
    )
    if "llm" in manifest:
        console.print(llm_line(manifest["llm"]), soft_wrap=True)
    if "fallback" in manifest:
        console.print(fallback_line(manifest["fallback"]), soft_wrap=True)
    console.print(
        f"{result.events:,} events in {result.seconds:.1f}s -> [bold]{escape(shown)}[/]\n"
        f"read again with: recoworld summary {escape(shown)}",
        soft_wrap=True,
    )
    return 0


def _publish_staged(
    remote: RemoteRuns, staging: Path, run_id: str, overwrite: bool, console: Console
) -> int:
    """``--resume`` of a run that completed but was not published: publish it, run nothing."""
    from recoworld.io.remote import publish_staged

    with console.status(f"publishing to {remote.run_uri(run_id)}…"):
        commit = publish_staged(remote, staging, run_id, overwrite=overwrite)
    shown = escape(remote.run_uri(run_id))
    console.print(
        f"published the staged run {run_id} ({commit.files} files) -> [bold]{shown}[/]\n"
        f"read again with: recoworld summary {shown}",
        soft_wrap=True,
    )
    return 0


class _Count(MofNCompleteColumn):
    """``done/total`` beside a bar; nothing beside a spinner (a task without a total)."""

    def render(self, task: Task) -> Text:
        return Text("") if task.total is None else super().render(task)


def _flag(name: str, check, value: str) -> None:  # noqa: ANN001
    try:
        check(value)
    except ConfigError as e:
        raise ConfigError(f"{name}: {e}") from None


def _check_out_dir(out: Path, name: str) -> None:
    """The output root is a folder (or can be one) this process may write into; checked before
    any work so that a bad --out costs nothing."""
    try:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"{name}: Expected a folder for the runs, got {out} (not a folder)")
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK | os.X_OK):
            raise ConfigError(
                f"{name}: Expected a folder this user may write, got {out} (read-only)"
            )
    except OSError as e:
        raise ConfigError(
            f"{name}: Expected a folder for the runs, got {out} ({e.strerror or e})"
        ) from None


def fallback_line(fallback: dict) -> str:
    """One line of a bring-your-own recommender's fallback slates per arm (never silent)."""
    parts = [
        f"{arm} {v['fallback']:,} of {v['slates']:,} ({v['fallback'] / max(v['slates'], 1):.1%})"
        for arm, v in fallback.items()
    ]
    return (
        "recommender: slates the declared fallback served (users not covered, or slates that "
        "failed the contract check): " + ", ".join(parts)
    )


def llm_line(llm: dict) -> str:
    """One line of a run's language-model totals: calls, parse statuses (fallbacks and rejected
    ids are never silent), tokens, prefix-cache hit rate."""
    if not llm.get("calls"):
        return "language model: no calls"
    status = ", ".join(f"{k} {v:,}" for k, v in sorted(llm["by_status"].items()))
    purpose = ", ".join(f"{k} {v:,}" for k, v in sorted(llm["by_purpose"].items()))
    hit = llm.get("prefix_cache_hit_rate")
    return (
        f"language model: {llm['calls']:,} calls ({purpose}); parse status: {status}; "
        f"tokens in {llm['tokens_in']:,}, "
        f"out {llm['tokens_out']:,}"
        + (f"; prefix cache served {hit:.1%} of prompt tokens" if hit is not None else "")
    )


def _ray_driver():
    """``actors.driver.run_study_on_ray``, or a RunError saying how to get Ray."""
    try:
        from actors.driver import run_study_on_ray
    except ImportError as e:
        raise RunError(
            f"--ray needs Ray ({e}); install it with pip install -e '.[ray]', or run with --local"
        ) from None
    return run_study_on_ray


def cmd_summary(args: argparse.Namespace, console: Console) -> int:
    from recoworld.io.runs import check_run_dir, scan_table

    run_dir = _local_run(args.run_dir, "summary")
    manifest = check_run_dir(run_dir, verify=True)
    summary = scan_table(run_dir, "summary").collect()
    console.print(
        summary_table(
            summary,
            segments=args.segments,
            title=(
                f"{manifest['study']} ({manifest['run_id']}): "
                f"{manifest['users_per_arm']:,} users per arm"
            ),
        )
    )
    if "llm" in manifest:
        console.print(llm_line(manifest["llm"]), soft_wrap=True)
    if "fallback" in manifest:
        console.print(fallback_line(manifest["fallback"]), soft_wrap=True)
    return 0


def cmd_data(args: argparse.Namespace, console: Console) -> int:
    from recoworld.world.fetch import default_cache_dir, fetch_dataset
    from recoworld.world.loaders import load_world

    if args.action == "fetch":
        cache = _cache_dir() or default_cache_dir()
        with console.status(f"fetching {args.name} into {cache}…"):
            folder = fetch_dataset(args.name, cache)
        console.print(f"{args.name} is in {folder}")
        return 0
    world = load_world(args.name, args.path)
    console.print(
        f"{world.name} from {world.source}: {world.users.height:,} users, "
        f"{world.items.height:,} items, "
        f"{world.interactions.height:,} interactions; ratings: {world.has_ratings}; "
        f"{len(world.tag_vocabulary):,} tags (top: {', '.join(world.tag_vocabulary[:8])}); "
        f"{world.friends.height:,} friend links"
    )
    return 0


def cmd_fit(args: argparse.Namespace, console: Console) -> int:
    from recoworld.config import BrainConfig, WorldConfig
    from recoworld.items.catalog import build_catalog
    from recoworld.study.prepare import load_world_for
    from recoworld.study.sittings import fit_leaving
    from recoworld.users.fit import fit_choice_model
    from recoworld.users.persona import personas_from_history

    wc = WorldConfig(dataset=args.name, path=args.path or "")
    world = load_world_for(wc, args.seed, cache_dir=_cache_dir())
    catalog = build_catalog(world, seed=args.seed)
    fitted = fit_choice_model(world, catalog, seed=args.seed)
    base = personas_from_history(
        world, catalog, half_life=fitted.model.recent_half_life, era_width=fitted.model.era_width
    )
    fitted = fit_leaving(fitted, catalog, base, BrainConfig(), args.seed)
    sys.stdout.write(
        msgspec.json.format(msgspec.json.encode(fitted.report), indent=2).decode() + "\n"
    )
    return 0


def _type_name(t: object) -> str:
    import pyarrow as pa

    if isinstance(t, pa.DictionaryType):
        return f"{t.value_type} (dictionary)"
    if pa.types.is_floating(t):
        return f"float{t.bit_width}"
    if isinstance(t, pa.ListType):
        return f"list<{t.value_type}>"
    return str(t)


def cmd_schema(args: argparse.Namespace, console: Console) -> int:
    """Each table's columns, types and descriptions, one line per column (from the schemas in
    recoworld/io/schema.py, the same that every written file carries in its field metadata)."""
    from recoworld.io.schema import DESCRIBED, SCHEMA_VERSION, WHERE, description

    names = list(DESCRIBED) if args.table is None else [args.table]
    if args.table is not None and args.table not in DESCRIBED:
        _error(f"unknown table {args.table!r}; expected one of {', '.join(DESCRIBED)}")
        return 2
    lines = [f"schema version {SCHEMA_VERSION}; user, session, turn and position are 0-based"]
    for name in names:
        schema = DESCRIBED[name]
        lines.append(f"\n{name}: {WHERE[name]}")
        width = max(len(f.name) for f in schema)
        types = [_type_name(f.type) for f in schema]
        tw = max(len(t) for t in types)
        for f, t in zip(schema, types):
            lines.append(f"  {f.name:<{width}}  {t:<{tw}}  {description(f)}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line (exit code 2, as argparse's own)."""

    def error(self, message: str) -> NoReturn:
        _error(f"{self.prog}: {message} (see {self.prog} --help)")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="recoworld", description="Simulate users meeting recommenders.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a study file")
    r.add_argument("study", help="study TOML file")
    r.add_argument("--run-id", help="run id (default: <study name>-<date>-<time>)")
    r.add_argument(
        "--out",
        metavar="DIR|URI",
        help=(
            "output root (default: the study's output.dir): a folder, or s3://BUCKET/PREFIX, "
            "gs://BUCKET/PREFIX, file:///PATH (staged locally, then published with a commit "
            "object; endpoint and credentials from the AWS_* environment variables)"
        ),
    )
    r.add_argument(
        "--overwrite", action="store_true", help="replace a complete run with the same id"
    )
    r.add_argument("--users", type=int, help="override population.size")
    r.add_argument("--seed", type=int, help="override the root seed")
    r.add_argument("--segments", action="store_true", help="print every segment, not only 'all'")
    r.add_argument(
        "--workers",
        type=int,
        help="local: processes to simulate in (default: CPU count; 1 = this process)",
    )
    where = r.add_mutually_exclusive_group()
    where.add_argument(
        "--local",
        dest="ray",
        action="store_const",
        const=None,
        help="run without Ray, on this machine (the default)",
    )
    where.add_argument(
        "--ray",
        metavar="ADDRESS",
        help=(
            "run on Ray: auto (the running cluster, else an embedded one), local (embedded), "
            "or HOST:PORT"
        ),
    )
    r.add_argument(
        "--shards",
        type=int,
        help="Ray: user shards (default: [ray] shards, else one per cluster CPU)",
    )
    r.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="finish the interrupted run RUN_ID without redoing its finished shards",
    )
    r.add_argument(
        "--replay",
        metavar="RUN_DIR",
        help=(
            "language-model studies: answer every call from RUN_DIR's recorded llm_calls (no "
            "model); RUN_DIR may be a committed run's URI"
        ),
    )
    r.add_argument(
        "--staging",
        metavar="DIR",
        help=(
            "--out URI: the folder the run is written to before it is published (default: "
            "$RECOWORLD_CACHE/staging/<hash of the URI>; on a multi-node Ray cluster, storage "
            "every node mounts)"
        ),
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)
    s = sub.add_parser("summary", help="print a run's summary from its Parquet files")
    s.add_argument("run_dir", help="a run folder, or a committed run's URI (s3://…/RUN_ID)")
    s.add_argument("--segments", action="store_true", help="print every segment, not only 'all'")
    s.set_defaults(func=cmd_summary)
    d = sub.add_parser("data", help="obtain or inspect datasets")
    d.add_argument("action", choices=["fetch", "info"])
    d.add_argument("name", help="dataset: ml-100k (fetch); any loader name (info)")
    d.add_argument("--path", help="dataset folder (info)")
    d.set_defaults(func=cmd_data)
    f = sub.add_parser(
        "fit", help="fit the parametric brain to a dataset and print its calibration"
    )
    f.add_argument("name")
    f.add_argument("--path")
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(func=cmd_fit)
    sc = sub.add_parser("schema", help="print the output tables' columns, types and descriptions")
    sc.add_argument("table", nargs="?", help="one table (default: every table)")
    sc.set_defaults(func=cmd_schema)
    from recoworld.eval.cli import register as register_eval
    from recoworld.report.cli import register as register_report

    register_eval(sub)
    register_report(sub)
    for name, attr in (("report", "path"), ("view", "run_dir")):  # runs on object storage too
        cmd = sub.choices[name]
        cmd.set_defaults(func=_reading_uri(cmd.get_default("func"), attr))
        report = "; the report then goes to ./RUN_ID-report.html unless -o says"
        cmd.epilog = (
            f"{attr.upper()} may also be a committed run's URI (s3://BUCKET/PREFIX/RUN_ID, "
            "gs://…, file://…): it is read from a verified copy in the read cache"
            + (report if attr == "path" else "")
        )
    return p


def _reading_uri(func, attr: str):  # noqa: ANN001, ANN202
    """``func`` (a command reading the run at ``args.<attr>``), also for a committed run's URI:
    the run is fetched into the read cache and read there."""

    def run(args: argparse.Namespace, console: Console) -> int:
        text = getattr(args, attr)
        if uri_scheme(text) is not None:
            local = _local_run(text, name)
            setattr(args, attr, str(local))
            if getattr(args, "output", "") is None:  # a report: not into the read cache
                args.output = f"{local.name}-report.html"
        return func(args, console)

    name = "report" if attr == "path" else "view"
    return run


_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")


def _error(text: str) -> None:
    """One line on stderr, whatever ``text`` holds (line breaks and control characters are
    shown escaped)."""
    line = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    for var in _SECRETS:  # never echo a credential, whatever a library put in its message
        secret = os.environ.get(var, "")
        if len(secret) >= 4:
            line = line.replace(secret, "***")
    Console(stderr=True, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(line)}", highlight=False
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command; every failure is one line on stderr: 2 for bad input (RecoWorldError,
    or an OSError naming its file), 130 when interrupted, 1 for anything unexpected (with the
    traceback only under RECOWORLD_DEBUG=1)."""
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    console = Console(stderr=False)
    try:
        return args.func(args, console)
    except RecoWorldError as e:
        _error(str(e))
        return 2
    except KeyboardInterrupt:
        _error("interrupted: nothing half-written is left in the run folder")
        return 130
    except RecursionError:
        _error("Expected input nested a few levels deep, got nesting too deep to process")
        return 2
    except MemoryError:
        _error("out of memory: lower population.size or the world's size")
        return 2
    except OSError as e:
        where = e.filename if e.filename is not None else "a file"
        _error(f"{where}: {e.strerror or e}")
        return 2
    except Exception as e:
        if os.environ.get("RECOWORLD_DEBUG") == "1":
            raise
        _error(f"internal error: {type(e).__name__}: {e} (set RECOWORLD_DEBUG=1 for the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
