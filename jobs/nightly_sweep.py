"""Nightly sweep entry point: run every cell of a sweep file, then print and write its summary
and its seeds pooled (variants ranked).

    python jobs/nightly_sweep.py SWEEP.toml [--date YYYY-MM-DD]
        [--local [--workers N] | --ray ADDRESS] [--out DIR] [--overwrite]

    ray job submit --working-dir . -- python jobs/nightly_sweep.py sweeps/nightly.toml

By default each cell runs on the Ray cluster at ``--ray`` (default ``auto``) through
``actors.driver.run_study_on_ray``; ``--local`` runs cells in this process with
``recoworld.study.runner.run_study`` (``--workers`` processes, default every CPU). Re-running
the same sweep and date skips complete cells and redoes interrupted ones. The sweep format and
the outputs: docs/sweeps.md.

Exit status: 0 done; 2 a RecoWorld error (bad sweep or study file, a cell that exists with
another config, a failed cell), printed on one line; 130 interrupted.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from recoworld.errors import RecoWorldError, RunError
from recoworld.io.remote import refuse_uri


def _date(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nightly_sweep", description="Run a RecoWorld sweep (docs/sweeps.md)."
    )
    p.add_argument("sweep", help="sweep TOML file")
    p.add_argument(
        "--date",
        type=_date,
        help="date partition YYYY-MM-DD (default: the file's date, else today in UTC)",
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument("--local", action="store_true", help="run cells in this process, not on Ray")
    how.add_argument(
        "--ray", metavar="ADDRESS", default="auto", help="Ray cluster address (default: auto)"
    )
    p.add_argument("--out", help="output root (default: the sweep's output.dir)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace complete cells whose config changed"
    )
    p.add_argument(
        "--workers", type=int, help="--local only: processes per cell (default: CPU count)"
    )
    return p


def pick_runner(args: argparse.Namespace):  # -> recoworld.sweep.CellRunner
    """run_study for --local; the Ray driver, imported only now, for --ray."""
    if args.local:
        from recoworld.study.runner import run_study

        return functools.partial(
            run_study, workers=args.workers if args.workers is not None else (os.cpu_count() or 1)
        )
    if args.workers is not None:
        raise RunError(
            "--workers applies to --local only; on Ray the study's [ray] table sets the shards"
        )
    try:
        from actors.driver import run_study_on_ray
    except ImportError as e:
        raise RunError(
            f"--ray {args.ray}: the Ray driver actors.driver.run_study_on_ray "
            f"cannot be imported ({e}); "
            "install Ray with pip install -e '.[ray]', or run with --local"
        ) from None
    return functools.partial(run_study_on_ray, address=args.ray)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)  # job logs: room for the table
    try:
        return _run(args, console)
    except RecoWorldError as e:
        Console(stderr=True).print(
            f"[bold red]error:[/] {escape(' '.join(str(e).split()))}",
            highlight=False,
            soft_wrap=True,
        )
        return 2
    except KeyboardInterrupt:
        Console(stderr=True).print(
            "interrupted: complete cells are kept; run the same command again to go on"
        )
        return 130


def _run(args: argparse.Namespace, console: Console) -> int:
    from recoworld.sweep import (
        POOLED_FILE,
        SUMMARY_FILE,
        CellDone,
        CellStarted,
        SweepEvent,
        load_sweep,
        ranking_table,
        run_sweep,
        sweep_table,
        world_loader,
    )

    if args.out:
        refuse_uri(args.out, "--out", "a sweep")
    sweep = load_sweep(args.sweep)
    runner = pick_runner(args)
    cache = os.environ.get("RECOWORLD_CACHE")
    where = "this process" if args.local else f"Ray ({args.ray})"
    console.print(f"sweep [bold]{sweep.cfg.name}[/]: {len(sweep.cells)} cells, on {where}")

    def observe(ev: SweepEvent) -> None:
        match ev:
            case CellStarted():
                console.print(
                    f"[{ev.index + 1}/{ev.total}] {ev.cell}: running ({ev.reason})…",
                    highlight=False,
                )
            case CellDone(action="skip"):
                console.print(
                    f"[{ev.index + 1}/{ev.total}] {ev.cell}: complete, skipped", highlight=False
                )
            case CellDone():
                console.print(
                    f"[{ev.index + 1}/{ev.total}] {ev.cell}: "
                    f"{ev.events:,} events in {ev.seconds:.1f}s",
                    highlight=False,
                )

    result = run_sweep(
        sweep,
        runner=runner,
        out_root=Path(args.out) if args.out else None,
        day=args.date,
        overwrite=args.overwrite,
        load_world=world_loader(Path(cache) if cache else None),
        observe=observe,
    )
    ran = sum(pc.action != "skip" for pc in result.planned)
    console.print(sweep_table(result.summary, title=f"{sweep.cfg.name} {result.path.name}"))
    console.print(
        ranking_table(
            result.pooled,
            title=f"{sweep.cfg.name} {result.path.name}: seeds pooled, ranked",
            summary=result.summary,
        )
    )
    if result.stray:
        console.print(
            f"not in this sweep, left out of the summary: {', '.join(result.stray)}",
            highlight=False,
        )
    console.print(
        f"{ran} cell(s) run, {len(result.planned) - ran} skipped, in {result.seconds:.1f}s -> "
        f"[bold]{result.path / SUMMARY_FILE}[/], [bold]{POOLED_FILE}[/]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
