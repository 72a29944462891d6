"""The sweep summary: segment "all" of every cell's summary with the cell's keys, one row per
cell x arm x metric (schema :data:`recoworld.io.schema.SWEEP_SUMMARY`), written and read through
:mod:`recoworld.io.tables`; and the rich table the job prints."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl
from rich.table import Table

from recoworld.display import flag_text, lift_text, pm
from recoworld.io.runs import scan_table
from recoworld.io.schema import SWEEP_SUMMARY, SWEEP_SUMMARY_TABLE
from recoworld.io.tables import read_frame, write_frame
from recoworld.sweep.cells import Cell

SUMMARY_FILE = "sweep_summary.parquet"
"""The sweep summary's file name in the date folder."""

HEADLINE = ("ctr", "return_rate", "creator_reach")
"""The metrics :func:`sweep_table` shows by default."""


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
    """Write ``summary`` as table ``sweep_summary`` (atomically, with its schema version)."""
    write_frame(path, summary, SWEEP_SUMMARY, SWEEP_SUMMARY_TABLE)


def read_sweep_summary(path: Path) -> pl.DataFrame:
    """A sweep_summary.parquet, after checking its schema version and table name."""
    return read_frame(path, SWEEP_SUMMARY_TABLE, "no sweep summary; run the sweep to write it")


def sweep_table(
    summary: pl.DataFrame, *, metrics: Sequence[str] = HEADLINE, title: str = ""
) -> Table:
    """Cells x arms, one column per headline metric: mean ± 95% CI half-width, and for a
    treatment arm the paired difference from control (Δ) ± its half-width below it, with its
    lift [interval] and the multiplicity flag of the cell's own summary."""
    t = Table(
        title=title,
        caption=(
            "one seed per cell: ± = half-width of the cell's 95% interval (over its replicates "
            "and users); Δ = paired difference from the control arm; lift = Δ / control mean "
            "[95% interval]; * = significant after Holm over the cell's own summary; "
            "q = Benjamini-Hochberg. The seeds pooled: the ranking table"
        ),
        caption_justify="left",
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
            text = pm(r["mean"], r["ci_low"], r["ci_high"])
            if r["diff"] is not None:
                text += "\nΔ " + pm(r["diff"], r["diff_ci_low"], r["diff_ci_high"], sign=True)
                text += f"\n{lift_text(r)} {flag_text(r)}".rstrip()
            cells.append(text)
        n = rows["n"].max()
        t.add_row(cid if cid != prev else "", str(arm), f"{n:,}", *cells)
        prev = cid
    return t
