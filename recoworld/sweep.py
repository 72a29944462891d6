"""Sweeps: study files x recommender variants x populations x seeds, one complete run per cell.

A sweep file (TOML, decoded strictly like a study: unknown fields are errors naming the file and
the ``$.path``) names study files and the variants to cross them with. Each combination is a
**cell**: the study with its ``recommender``, ``population`` and ``seed`` replaced. Layout::

    <output.dir>/<name>/date=YYYY-MM-DD/
        cell=<study>--<recommender>--<population>--s<seed>/   a complete run (recoworld/io/runs.py)
        sweep_summary.parquet                                 one row per cell x arm x metric

so ``date`` and ``cell`` are hive partitions of every table under the sweep folder.

Running a sweep is (1) plan: a cell whose run is complete with the same config is skipped, one
complete with another config is an error (before anything runs) unless ``overwrite``; (2) run
the remaining cells, an interrupted one (a ``.cell=<id>.partial`` folder) from scratch;
(3) rebuild the sweep summary from every cell of the grid, skipped ones included.

This module never imports Ray: the cell runner is a parameter (:class:`CellRunner`, the keyword
signature of :func:`recoworld.study.runner.run_study`); ``jobs/nightly_sweep.py`` picks it.
"""

from __future__ import annotations

import datetime
import os
import re
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import msgspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from rich.table import Table

from recoworld.config import (
    OutputConfig,
    RayConfig,
    RecommenderConfig,
    StudyConfig,
    Targeting,
    check_study,
    decode_study_json,
    encode_study,
    load_study,
)
from recoworld.errors import ConfigError, RecoWorldError, RunError
from recoworld.io.runs import check_run_dir, scan_table, writer_options
from recoworld.io.schema import METADATA_KEY, SCHEMA_VERSION, TABLE_KEY, with_metadata
from recoworld.study.runner import Progress, RunResult
from recoworld.world.model import World

# ---------------------------------------------------------------------------------------------
# The sweep file


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class RecommenderVariant(RecommenderConfig, kw_only=True):
    """A named recommender: ``name`` plus the fields of a study's ``[recommender]``. Fields left
    out take RecommenderConfig's defaults (not the study's), so a variant is fully given here."""

    name: str
    """Variant name, part of the cell id: letters, digits, '_', '.', single '-' between them."""

    def config(self) -> RecommenderConfig:
        return RecommenderConfig(
            **{f: getattr(self, f) for f in RecommenderConfig.__struct_fields__}
        )


class PopulationVariant(_Strict):
    """A named population; replaces the study's ``size``, ``target`` (and ``source`` when given).
    The study's ``segment_by`` and ``jitter`` are kept."""

    name: str
    """Population name, part of the cell id (same characters as a recommender name)."""
    size: int | None = None
    """Simulated users per arm; unset = the study's population.size."""
    source: Literal["dataset", "synthetic"] | None = None
    """dataset | synthetic personas; unset = the study's population.source."""
    target: Targeting = Targeting()
    """Who is simulated; unset = everyone (the study's own target is not kept)."""


class SweepOutput(_Strict):
    dir: str = "runs/sweeps"
    """Sweeps go to <dir>/<name>/date=YYYY-MM-DD/ (relative to the working directory, like a
    study's output.dir); `--out` overrides it."""


class SweepConfig(_Strict, kw_only=True):
    name: str
    """Sweep name: the folder under output.dir (same characters as a recommender name)."""
    description: str = ""
    date: datetime.date | None = None
    """The date partition, a TOML date without quotes (date = 2025-01-31); unset = today in UTC.
    `--date YYYY-MM-DD` overrides it."""
    studies: list[str]
    """Study files, relative to this sweep file's folder."""
    recommenders: list[RecommenderVariant]
    """Recommender variants ([[recommenders]] tables); each replaces the study's [recommender].
    Arms that set their own recommender keep it."""
    populations: list[PopulationVariant]
    """Population variants ([[populations]] tables)."""
    seeds: list[int]
    """Root seeds (>= 0); each replaces the study's seed (and a synthetic world's)."""
    users: int | None = None
    """Overrides every population's size (e.g. a smaller sweep for CI); unset = keep them."""
    output: SweepOutput = SweepOutput()


_NAME = re.compile(r"[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)*")
_NAME_RULE = "a name of letters, digits, '_', '.' and single '-' between them"


def _bad(path: str, expected: str, got: object) -> ConfigError:
    return ConfigError(f"Expected {expected}, got {got!r} - at `$.{path}`")


def _check_sweep(cfg: SweepConfig) -> None:
    if not _NAME.fullmatch(cfg.name) or cfg.name.startswith("."):
        raise _bad("name", _NAME_RULE, cfg.name)
    for field in ("studies", "recommenders", "populations", "seeds"):
        if not getattr(cfg, field):
            raise _bad(field, "at least one entry", [])
    for field in ("recommenders", "populations"):
        seen: set[str] = set()
        for k, v in enumerate(getattr(cfg, field)):
            if not _NAME.fullmatch(v.name):
                raise _bad(f"{field}[{k}].name", _NAME_RULE, v.name)
            if v.name in seen:
                raise _bad(f"{field}[{k}].name", f"unique {field[:-1]} names", v.name)
            seen.add(v.name)
    for k, p in enumerate(cfg.populations):
        if p.size is not None and p.size < 0:
            raise _bad(f"populations[{k}].size", "an integer >= 0", p.size)
    for k, s in enumerate(cfg.seeds):
        if s < 0:
            raise _bad(f"seeds[{k}]", "a seed >= 0", s)
        if s in cfg.seeds[:k]:
            raise _bad(f"seeds[{k}]", "unique seeds", s)
    if cfg.users is not None and cfg.users < 0:
        raise _bad("users", "an integer >= 0", cfg.users)


def decode_sweep(data: bytes | str, *, source: str = "<string>") -> SweepConfig:
    """Decode and check a sweep from TOML text. Errors name ``source`` and the field path."""
    if isinstance(data, str):
        data = data.encode()
    try:
        cfg = msgspec.toml.decode(data, type=SweepConfig)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{source}: {e}") from None
    except (msgspec.DecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    try:
        _check_sweep(cfg)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return cfg


# ---------------------------------------------------------------------------------------------
# Cells


class Cell(msgspec.Struct, frozen=True, kw_only=True):
    """One study x recommender x population x seed, and the study config it runs."""

    id: str
    """``<study>--<recommender>--<population>--s<seed>``; filesystem-safe."""
    study: str
    """The study's name (its ``name`` field)."""
    study_path: str
    """The study file, resolved; relative dataset paths are taken from its folder."""
    recommender: str
    population: str
    seed: int
    cfg: StudyConfig

    @property
    def run_id(self) -> str:
        return f"cell={self.id}"


def slug(text: str) -> str:
    """A cell-id part: runs of other characters become one '-' (so '--' never occurs)."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-.") or "study"


def cell_id(study: str, recommender: str, population: str, seed: int) -> str:
    return f"{slug(study)}--{recommender}--{population}--s{seed}"


def validate_study(cfg: StudyConfig) -> StudyConfig:
    """The checks a study file passes, applied to a config built in code: a JSON round trip
    (field types) and the study checks (values). Raises ConfigError with the ``$.path``."""
    try:
        back = msgspec.json.decode(encode_study(cfg), type=StudyConfig)
    except msgspec.DecodeError as e:
        raise ConfigError(f"the cell's config: {e}") from None
    check_study(back)
    return back


def expand(
    cfg: SweepConfig, studies: Sequence[tuple[str, StudyConfig]], *, source: str = "<sweep>"
) -> list[Cell]:
    """Every cell, in the order study x recommender x population x seed. ``studies`` are
    (resolved path, config) in the order of ``cfg.studies``. Each cell config is checked."""
    cells: list[Cell] = []
    owner: dict[str, str] = {}
    for path, study in studies:
        sid = slug(study.name)
        if sid in owner and owner[sid] != path:
            raise ConfigError(
                f"{source}: studies {owner[sid]} and {path} both have the name {study.name!r}; "
                "expected distinct study names - at `$.studies`"
            )
        if sid in owner:
            raise ConfigError(f"{source}: study {path} is listed twice - at `$.studies`")
        owner[sid] = path
        for r in cfg.recommenders:
            for p in cfg.populations:
                pop = study.population
                size = (
                    cfg.users
                    if cfg.users is not None
                    else (p.size if p.size is not None else pop.size)
                )
                pop = msgspec.structs.replace(
                    pop, size=size, target=p.target, source=p.source or pop.source
                )
                for seed in cfg.seeds:
                    cid = cell_id(study.name, r.name, p.name, seed)
                    cell_cfg = msgspec.structs.replace(
                        study, recommender=r.config(), population=pop, seed=seed
                    )
                    try:
                        cell_cfg = validate_study(cell_cfg)
                    except ConfigError as e:
                        where = f"study {path}, recommender {r.name!r}, population {p.name!r}, seed {seed}"
                        raise ConfigError(f"{source}: cell {cid} ({where}): {e}") from None
                    cells.append(
                        Cell(
                            id=cid,
                            study=study.name,
                            study_path=path,
                            recommender=r.name,
                            population=p.name,
                            seed=seed,
                            cfg=cell_cfg,
                        )
                    )
    return cells


@dataclass(frozen=True)
class Sweep:
    """A decoded sweep file and its cells."""

    path: Path
    cfg: SweepConfig
    cells: list[Cell]


def load_sweep(path: str | Path) -> Sweep:
    """Read a sweep file and the study files it names (relative to its folder), and expand it."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the sweep file: {e.strerror}") from None
    cfg = decode_sweep(data, source=str(p))
    studies: list[tuple[str, StudyConfig]] = []
    for k, name in enumerate(cfg.studies):
        sp = (p.parent / name).resolve()
        if not sp.is_file():
            raise ConfigError(
                f"{p}: study file {name!r} does not exist (looked at {sp}) - at `$.studies[{k}]`"
            )
        studies.append((str(sp), load_study(sp)))
    return Sweep(path=p, cfg=cfg, cells=expand(cfg, studies, source=str(p)))


def sweep_date(cfg: SweepConfig, override: datetime.date | None = None) -> datetime.date:
    """``override`` (--date), else the file's date, else today in UTC."""
    return override or cfg.date or datetime.datetime.now(datetime.UTC).date()


def date_dir(out_root: Path, name: str, day: datetime.date) -> Path:
    return Path(out_root) / name / f"date={day.isoformat()}"


# ---------------------------------------------------------------------------------------------
# Planning: which cells run


Action = Literal["run", "skip", "replace"]


@dataclass(frozen=True)
class PlannedCell:
    cell: Cell
    action: Action
    reason: str
    """Why: "new", "interrupted", "complete", or what differs from the complete run."""


def _results_config(cfg: StudyConfig) -> StudyConfig:
    # `output` (row groups) and `ray` (shards, resources) do not change results: a cell run
    # locally is the same cell on Ray, and a nightly may change its cluster size.
    return msgspec.structs.replace(cfg, output=OutputConfig(), ray=RayConfig())


def _first_difference(a: object, b: object, path: str = "$") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_difference(a.get(k), b.get(k), f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for k, (x, y) in enumerate(zip(a, b)):
            d = _first_difference(x, y, f"{path}[{k}]")
            if d:
                return d
        return None
    return None if a == b else f"`{path}` was {a!r}, now {b!r}"


def cell_status(
    cell: Cell, folder: Path
) -> tuple[Literal["absent", "interrupted", "complete", "different"], str]:
    """The state of ``cell``'s run folder ``folder`` and a reason."""
    if not folder.exists():
        partial = folder.parent / f".{folder.name}.partial"
        return (
            ("interrupted", f"interrupted earlier ({partial.name} is redone)")
            if partial.exists()
            else ("absent", "new")
        )
    try:
        check_run_dir(folder)
        stored = decode_study_json(
            (folder / "study.json").read_bytes(), source=str(folder / "study.json")
        )
    except (RecoWorldError, OSError) as e:
        return "different", f"its folder cannot be kept ({e})"
    want, have = _results_config(cell.cfg), _results_config(stored)
    if want == have:
        return "complete", "complete"
    diff = _first_difference(msgspec.to_builtins(have), msgspec.to_builtins(want))
    return "different", f"its study.json differs from the cell's config ({diff or 'field types'})"


def plan(cells: Sequence[Cell], folder: Path, *, overwrite: bool = False) -> list[PlannedCell]:
    """What to do with each cell under the date folder ``folder``. A complete cell with another
    config is a RunError naming every such cell, unless ``overwrite`` (then it is replaced)."""
    out: list[PlannedCell] = []
    conflicts: list[str] = []
    for cell in cells:
        state, reason = cell_status(cell, folder / cell.run_id)
        match state:
            case "absent" | "interrupted":
                out.append(PlannedCell(cell, "run", reason))
            case "complete":
                out.append(PlannedCell(cell, "skip", reason))
            case "different":
                if not overwrite:
                    conflicts.append(f"{cell.run_id}: {reason}")
                out.append(PlannedCell(cell, "replace", reason))
    if conflicts:
        raise RunError(
            f"{folder}: {len(conflicts)} complete cell(s) were run with another config; "
            f"pass --overwrite to replace them: " + "; ".join(conflicts)
        )
    return out


# ---------------------------------------------------------------------------------------------
# Running


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
    planned: list[PlannedCell]
    stray: list[str]
    """cell=... folders under the date folder that are not in this grid (left out of the summary)."""
    seconds: float


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
    (defaults: the sweep's output.dir and date), then rebuild the sweep summary."""
    t0 = time.perf_counter()
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
                observe(CellDone(k, total, cell.id, "skip", str(folder / cell.run_id)))
            continue
        if observe:
            observe(CellStarted(k, total, cell.id, pc.action, pc.reason))
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
            observe(CellDone(k, total, cell.id, pc.action, str(res.path), res.events, res.seconds))
    # 3. the summary, from every cell of the grid
    summary = collect_summary(sweep.cells, folder)
    write_sweep_summary(summary, folder / SUMMARY_FILE)
    known = {c.run_id for c in sweep.cells}
    stray = sorted(p.name for p in folder.glob("cell=*") if p.is_dir() and p.name not in known)
    return SweepResult(
        path=folder, summary=summary, planned=planned, stray=stray, seconds=time.perf_counter() - t0
    )


# ---------------------------------------------------------------------------------------------
# The sweep summary

SUMMARY_FILE = "sweep_summary.parquet"
SWEEP_SUMMARY_TABLE = "sweep_summary"

SWEEP_SUMMARY = pa.schema(
    [
        ("study", pa.string()),
        ("recommender", pa.string()),
        ("population", pa.string()),
        ("seed", pa.int64()),
        ("cell", pa.string()),
        ("arm", pa.string()),
        ("metric", pa.string()),
        ("n", pa.int64()),
        ("mean", pa.float64()),
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
        ("diff", pa.float64()),
        ("diff_ci_low", pa.float64()),
        ("diff_ci_high", pa.float64()),
    ]
)
"""One row per cell x arm x metric, segment "all" of each cell's summary. The date is the hive
partition of the folder the file is in (not a column). Versioned with recoworld/io/schema.py's
SCHEMA_VERSION; to move into schema.py's TABLES."""


def collect_summary(cells: Sequence[Cell], folder: Path) -> pl.DataFrame:
    """The headline (segment "all") rows of every cell's summary.parquet, with the cell's keys."""
    frames = []
    for cell in cells:
        s = scan_table(folder / cell.run_id, "summary").filter(pl.col("segment") == "all").collect()
        frames.append(
            s.with_columns(
                study=pl.lit(cell.study),
                recommender=pl.lit(cell.recommender),
                population=pl.lit(cell.population),
                seed=pl.lit(cell.seed, dtype=pl.Int64),
                cell=pl.lit(cell.id),
            ).select(SWEEP_SUMMARY.names)
        )
    if not frames:
        return pl.from_arrow(SWEEP_SUMMARY.empty_table())  # type: ignore[return-value]
    return pl.concat(frames)


def write_sweep_summary(summary: pl.DataFrame, path: Path) -> None:
    """Write atomically: a temporary file in the same folder, renamed over ``path``."""
    table = (
        summary.select(SWEEP_SUMMARY.names)
        .to_arrow()
        .cast(with_metadata(SWEEP_SUMMARY, SWEEP_SUMMARY_TABLE))
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, **writer_options(table.schema))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_sweep_summary(path: Path) -> pl.DataFrame:
    """A sweep_summary.parquet, after checking its schema version and table name."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: no sweep summary; run the sweep to write it")
    meta = pq.read_schema(path).metadata or {}
    version, table = meta.get(METADATA_KEY, b"").decode(), meta.get(TABLE_KEY, b"").decode()
    if version != str(SCHEMA_VERSION) or table != SWEEP_SUMMARY_TABLE:
        raise RunError(
            f"{path}: holds table {table!r} version {version!r}; expected {SWEEP_SUMMARY_TABLE!r} version {SCHEMA_VERSION}"
        )
    return pl.read_parquet(path)


HEADLINE = ("ctr", "return_rate", "creator_reach")


def _pm(mean: float | None, lo: float | None, hi: float | None, sign: bool = False) -> str:
    if mean is None or mean != mean:
        return "-"
    head = f"{mean:+.4f}" if sign else f"{mean:.4f}"
    return head if lo is None or hi is None or lo != lo else f"{head} ± {(hi - lo) / 2:.4f}"


def sweep_table(
    summary: pl.DataFrame, *, metrics: Sequence[str] = HEADLINE, title: str = ""
) -> Table:
    """Cells x arms, one column per headline metric: mean ± 95% CI half-width, and for a
    treatment arm the paired difference from control (Δ) ± its half-width below it."""
    t = Table(
        title=title,
        caption="± = half-width of the 95% CI over users; Δ = paired difference from the control arm",
    )
    t.add_column("cell", overflow="fold", min_width=16)
    t.add_column("arm", no_wrap=True)
    t.add_column("n", justify="right", no_wrap=True)
    for m in metrics:
        t.add_column(m, justify="right")  # wraps at " ± " on narrow terminals
    wide = summary.filter(pl.col("metric").is_in(list(metrics)))
    prev = None
    for (cid, arm), rows in wide.group_by(["cell", "arm"], maintain_order=True):
        if prev is not None and cid != prev:
            t.add_section()
        by = {r["metric"]: r for r in rows.iter_rows(named=True)}
        cells = []
        for m in metrics:
            r = by.get(m)
            if r is None:
                cells.append("-")
                continue
            text = _pm(r["mean"], r["ci_low"], r["ci_high"])
            if r["diff"] is not None:
                text += "\nΔ " + _pm(r["diff"], r["diff_ci_low"], r["diff_ci_high"], sign=True)
            cells.append(text)
        n = rows["n"].max()
        t.add_row(cid if cid != prev else "", str(arm), f"{n:,}", *cells)
        prev = cid
    return t


__all__ = [
    "Cell",
    "CellDone",
    "CellRunner",
    "CellStarted",
    "PlannedCell",
    "PopulationVariant",
    "RecommenderVariant",
    "Sweep",
    "SweepConfig",
    "SweepResult",
    "SWEEP_SUMMARY",
    "cell_id",
    "decode_sweep",
    "expand",
    "load_sweep",
    "plan",
    "read_sweep_summary",
    "run_sweep",
    "sweep_table",
    "write_sweep_summary",
]
