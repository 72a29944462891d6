"""Sweeps: study files x recommender variants x populations x seeds, one complete run per cell.

A sweep file (TOML, decoded strictly like a study: unknown fields are errors naming the file and
the ``$.path``) names study files and the variants to cross them with. Each combination is a
**cell**: the study with its ``recommender``, ``population`` and ``seed`` replaced. Layout::

    <output.dir>/<name>/date=YYYY-MM-DD/
        cell=<study>--<recommender>--<population>--s<seed>/   a complete run (recoworld/io/runs.py)
        sweep_summary.parquet                                 one row per cell x arm x metric
        sweep_pooled.parquet                                  its seeds pooled, variants ranked

so ``date`` and ``cell`` are hive partitions of every table under the sweep folder.

Modules: :mod:`~recoworld.sweep.config` (the sweep file), :mod:`~recoworld.sweep.cells` (the
grid), :mod:`~recoworld.sweep.plan` (which cells run), :mod:`~recoworld.sweep.run` (running
them), :mod:`~recoworld.sweep.summary` (the sweep summary and its table),
:mod:`~recoworld.sweep.pooled` (seeds pooled, variants ranked, and its table). None imports Ray.
"""

from __future__ import annotations

from recoworld.io.schema import (
    SWEEP_POOLED,
    SWEEP_POOLED_TABLE,
    SWEEP_SUMMARY,
    SWEEP_SUMMARY_TABLE,
)
from recoworld.sweep.cells import Cell, Sweep, cell_id, expand, load_sweep, slug, validate_study
from recoworld.sweep.config import (
    PopulationVariant,
    RecommenderVariant,
    SweepConfig,
    SweepOutput,
    check_sweep,
    decode_sweep,
    sweep_date,
)
from recoworld.sweep.plan import Action, PlannedCell, cell_status, plan
from recoworld.sweep.pooled import (
    POOLED_FILE,
    pool_estimates,
    pool_seeds,
    rank_variants,
    ranking_table,
    read_sweep_pooled,
    write_sweep_pooled,
)
from recoworld.sweep.run import (
    CellDone,
    CellRunner,
    CellStarted,
    SweepEvent,
    SweepResult,
    WorldLoader,
    date_dir,
    run_sweep,
    world_loader,
)
from recoworld.sweep.summary import (
    HEADLINE,
    SUMMARY_FILE,
    collect_summary,
    read_sweep_summary,
    sweep_table,
    write_sweep_summary,
)

__all__ = [
    "HEADLINE",
    "POOLED_FILE",
    "SUMMARY_FILE",
    "SWEEP_POOLED",
    "SWEEP_POOLED_TABLE",
    "SWEEP_SUMMARY",
    "SWEEP_SUMMARY_TABLE",
    "Action",
    "Cell",
    "CellDone",
    "CellRunner",
    "CellStarted",
    "PlannedCell",
    "PopulationVariant",
    "RecommenderVariant",
    "Sweep",
    "SweepConfig",
    "SweepEvent",
    "SweepOutput",
    "SweepResult",
    "WorldLoader",
    "cell_id",
    "cell_status",
    "check_sweep",
    "collect_summary",
    "date_dir",
    "decode_sweep",
    "expand",
    "load_sweep",
    "plan",
    "pool_estimates",
    "pool_seeds",
    "rank_variants",
    "ranking_table",
    "read_sweep_pooled",
    "read_sweep_summary",
    "run_sweep",
    "slug",
    "sweep_date",
    "sweep_table",
    "validate_study",
    "world_loader",
    "write_sweep_pooled",
    "write_sweep_summary",
]
