"""Running a sweep: (1) plan, (2) run the cells that are missing, interrupted or (with
``overwrite``) different, (3) rebuild the sweep summary from every cell of the grid, and its
seeds pooled.

Never imports Ray: the cell runner is a parameter (:class:`CellRunner`, the keyword signature of
:func:`recoworld.study.runner.run_study`); ``jobs/nightly_sweep.py`` picks it. Progress is
reported as :data:`SweepEvent` records to an ``observe`` callback.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec
import polars as pl

from recoworld.config import StudyConfig
from recoworld.errors import RecoWorldError, RunError
from recoworld.io.remote import refuse_uri
from recoworld.study.runner import Progress, RunResult
from recoworld.sweep.cells import Cell, Sweep
from recoworld.sweep.config import sweep_date
from recoworld.sweep.plan import Action, PlannedCell, plan
from recoworld.sweep.pooled import POOLED_FILE, pool_seeds, write_sweep_pooled
from recoworld.sweep.summary import SUMMARY_FILE, collect_summary, write_sweep_summary
from recoworld.world.model import World


class CellRunner(Protocol):
    """Runs one cell's study into ``<out_dir>/<run_id>/``: ``run_study``, or the Ray driver's
    ``run_study_on_ray`` with its address bound."""

    def __call__(
        self,
        cfg: StudyConfig,
        world: World,
        *,
        run_id: str,
        out_dir: Path | None = ...,
        overwrite: bool = ...,
        progress: Progress | None = ...,
    ) -> RunResult: ...


WorldLoader = Callable[[Cell], World]


def world_loader(cache_dir: Path | None = None) -> WorldLoader:
    """Loads each cell's world once per sweep: per study folder and world config, and per seed
    only for synthetic worlds (which are drawn from the seed)."""
    from recoworld.study.prepare import load_world_for

    worlds: dict[tuple[str, bytes, int | None], World] = {}

    def load(cell: Cell) -> World:
        w = cell.cfg.world
        base = str(Path(cell.study_path).parent)
        key = (base, msgspec.json.encode(w), cell.seed if w.dataset == "synthetic" else None)
        if key not in worlds:
            worlds[key] = load_world_for(w, cell.cfg.seed, base_dir=Path(base), cache_dir=cache_dir)
        return worlds[key]

    return load


class CellStarted(msgspec.Struct, frozen=True, tag=True):
    index: int
    """0-based position in the grid."""
    total: int
    cell: str
    action: Action
    reason: str


class CellDone(msgspec.Struct, frozen=True, tag=True):
    index: int
    total: int
    cell: str
    action: Action
    """skip: the complete run was kept; run / replace: it was (re)run."""
    path: str
    events: int | None = None
    seconds: float = 0.0


SweepEvent = CellStarted | CellDone


@dataclass(frozen=True)
class SweepResult:
    path: Path
    """The date folder."""
    summary: pl.DataFrame
    pooled: pl.DataFrame
    """The summary's seeds pooled per study x recommender x population x arm x metric, ranked."""
    planned: list[PlannedCell]
    stray: list[str]
    """cell=... folders under the date folder that are not in this grid
    (left out of the summary)."""
    seconds: float


def date_dir(out_root: Path, name: str, day: datetime.date) -> Path:
    """``<out_root>/<name>/date=YYYY-MM-DD``: the sweep's date folder."""
    return Path(out_root) / name / f"date={day.isoformat()}"


def run_sweep(
    sweep: Sweep,
    *,
    runner: CellRunner,
    out_root: Path | None = None,
    day: datetime.date | None = None,
    overwrite: bool = False,
    load_world: WorldLoader | None = None,
    observe: Callable[[SweepEvent], None] | None = None,
    progress: Progress | None = None,
) -> SweepResult:
    """Run every cell of ``sweep`` that is not complete into ``<out_root>/<name>/date=<day>/``
    (defaults: the sweep's output.dir and date), then rebuild the sweep summary and the
    pooled table (its seeds pooled, the variants ranked)."""
    t0 = time.perf_counter()
    if out_root is None:  # a sweep's cells are not published to object storage (yet)
        refuse_uri(sweep.cfg.output.dir, f"{sweep.cfg.name}: `$.output.dir`", "a sweep")
    folder = date_dir(
        Path(out_root or sweep.cfg.output.dir), sweep.cfg.name, sweep_date(sweep.cfg, day)
    )
    load_world = load_world or world_loader()
    # 1. plan: conflicts fail here, before any cell runs
    planned = plan(sweep.cells, folder, overwrite=overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    total = len(planned)
    # 2. run what is missing, interrupted, or (with overwrite) different
    for k, pc in enumerate(planned):
        cell = pc.cell
        if pc.action == "skip":
            if observe:
                observe(
                    CellDone(
                        index=k,
                        total=total,
                        cell=cell.id,
                        action="skip",
                        path=str(folder / cell.run_id),
                    )
                )
            continue
        if observe:
            observe(
                CellStarted(index=k, total=total, cell=cell.id, action=pc.action, reason=pc.reason)
            )
        try:
            res = runner(
                cell.cfg,
                load_world(cell),
                run_id=cell.run_id,
                out_dir=folder,
                overwrite=pc.action == "replace",
                progress=progress,
            )
        except RecoWorldError as e:
            raise RunError(f"{cell.run_id}: {e}") from e
        if observe:
            observe(
                CellDone(
                    index=k,
                    total=total,
                    cell=cell.id,
                    action=pc.action,
                    path=str(res.path),
                    events=res.events,
                    seconds=res.seconds,
                )
            )
    # 3. the summary, from every cell of the grid
    summary = collect_summary(sweep.cells, folder)
    write_sweep_summary(summary, folder / SUMMARY_FILE)
    pooled = pool_seeds(summary)
    write_sweep_pooled(pooled, folder / POOLED_FILE)
    known = {c.run_id for c in sweep.cells}
    stray = sorted(p.name for p in folder.glob("cell=*") if p.is_dir() and p.name not in known)
    return SweepResult(
        path=folder,
        summary=summary,
        pooled=pooled,
        planned=planned,
        stray=stray,
        seconds=time.perf_counter() - t0,
    )
