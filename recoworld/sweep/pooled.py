"""Seeds pooled per sweep study x recommender x population x arm x metric, and the recommender
variants ranked (schema :data:`recoworld.io.schema.SWEEP_POOLED`, ``sweep_pooled.parquet``).

A sweep's seeds are independent replicates of a cell: each draws its own population (and, for a
synthetic world, its own world; for a study with creator items, its own placements). One seed's
interval covers only what that seed's users (and replicates) could show, so a variant that wins
on one seed may lose on the next. The pooled row treats each seed's mean as one replicate mean
and pools them with :func:`recoworld.study.pooling.pool`: the mean of the seeds' means, and the
random-effects interval over seeds, floored at what the seeds' own standard errors allow.

A seed enters ``pool`` with its mean, its standard error ``se`` and its degrees of freedom
``df`` from ``sweep_summary`` (:func:`recoworld.study.pooling.pool_estimates`): as ``df + 1``
"users" with sum of squares ``se^2 (df + 1) df``, so that ``pool``'s per-replicate variance
is ``se^2`` exactly and, where the floor binds, its degrees of freedom are the sum of the
seeds' ``df`` (not the sum of their users': a seed whose own interval rests on 5 replicate
means has 4 of them, not thousands). ``n`` is then the seeds' users, summed.

Ranking: per study x population x arm x metric, variants by pooled mean, 1 = highest (every
metric here is better higher); ``overlaps_best`` is whether a variant's interval reaches the
best one's. Overlap is a loose check: intervals that do not overlap differ clearly; overlap
does not prove a tie.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from rich.table import Table

from recoworld.display import pm
from recoworld.io.schema import SWEEP_POOLED, SWEEP_POOLED_TABLE
from recoworld.io.tables import read_frame, write_frame
from recoworld.study.pooling import pool_estimates
from recoworld.sweep.summary import HEADLINE

POOLED_FILE = "sweep_pooled.parquet"
"""The pooled table's file name in the date folder, next to ``sweep_summary.parquet``."""

POOLED_KEYS = ("study", "recommender", "population", "arm", "metric")
"""One pooled row per value of these; the seed is pooled over."""

RANKED_WITHIN = ("study", "population", "arm", "metric")
"""Recommender variants are ranked against each other within each value of these."""

LEVEL = 0.95


def _nan_to_null(a: np.ndarray) -> list[float | None]:
    return [float(x) if np.isfinite(x) else None for x in a]


def _grid(summary: pl.DataFrame, columns: Sequence[str]) -> tuple[pl.DataFrame, dict]:
    """The pooled keys (one row per group, in order of first appearance) and, per column, a
    seeds x groups array (NaN where a seed has no row or a null)."""
    keys = summary.select(POOLED_KEYS).unique(maintain_order=True).with_row_index("_g")
    seeds = sorted(summary["seed"].unique().to_list())
    rows = summary.join(keys, on=list(POOLED_KEYS), how="left", nulls_equal=True)
    g = rows["_g"].to_numpy()
    s = np.searchsorted(seeds, rows["seed"].to_numpy())
    out = {}
    for c in columns:
        a = np.full((len(seeds), keys.height), np.nan)
        a[s, g] = rows[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
        out[c] = a
    return keys.drop("_g"), out


def pool_seeds(summary: pl.DataFrame) -> pl.DataFrame:
    """One row per study x recommender x population x arm x metric of a sweep summary: its
    seeds pooled (values and paired differences), with each variant's ``rank`` and
    ``overlaps_best`` (schema :data:`~recoworld.io.schema.SWEEP_POOLED`)."""
    if summary.is_empty():
        return pl.from_arrow(SWEEP_POOLED.empty_table())  # type: ignore[return-value]
    keys, a = _grid(summary, ("n", "mean", "se", "df", "diff", "diff_se", "diff_df"))
    cols: dict[str, pl.Series] = {}
    for name, prefix in (("mean", ""), ("diff", "diff_")):
        p = pool_estimates(a[name], a[prefix + "se"], a[prefix + "df"])
        lo, hi = p.interval(LEVEL)
        some = p.replicates > 0
        for col, values in (
            (name, np.where(some, p.mean, np.nan)),
            (prefix + "ci_low", lo),
            (prefix + "ci_high", hi),
            (prefix + "se", p.se),
            (prefix + "df", np.where(np.isfinite(p.se), p.df, np.nan)),
            (prefix + "between_share", p.between_share),
        ):
            cols[col] = pl.Series(col, values, dtype=pl.Float64).fill_nan(None)
        if name == "mean":
            cols["seeds"] = pl.Series("seeds", p.replicates, dtype=pl.Int32)
            users = np.where(np.isfinite(a["mean"]) & np.isfinite(a["n"]), a["n"], 0.0)
            cols["n"] = pl.Series("n", users.sum(0), dtype=pl.Int64)
    return rank_variants(keys.with_columns(**cols)).select(SWEEP_POOLED.names)


def rank_variants(pooled: pl.DataFrame) -> pl.DataFrame:
    """``pooled`` with ``rank`` (by mean within study x population x arm x metric; 1 = the
    highest, ties share the lower rank; null without a mean) and ``overlaps_best`` (the
    interval reaches the best variant's: its upper end is at least the best's lower end, true
    for rank 1; null where either interval is unknown)."""
    by = list(RANKED_WITHIN)
    rank = pl.col("mean").rank("min", descending=True).over(by).cast(pl.Int32)
    # The best's lower end: where several tie at rank 1, the lowest of theirs.
    best_low = pl.col("ci_low").filter(pl.col("rank") == 1).min().over(by)
    overlaps = (
        pl.when(pl.col("ci_low").is_null() | pl.col("ci_high").is_null())
        .then(None)
        .when(pl.col("rank") == 1)
        .then(True)
        .otherwise(pl.col("ci_high") >= best_low)
    )
    return pooled.with_columns(rank=rank).with_columns(overlaps_best=overlaps)


def write_sweep_pooled(pooled: pl.DataFrame, path: Path) -> None:
    """Write ``pooled`` as table ``sweep_pooled`` (atomically, with its schema version)."""
    write_frame(path, pooled, SWEEP_POOLED, SWEEP_POOLED_TABLE)


def read_sweep_pooled(path: Path) -> pl.DataFrame:
    """A sweep_pooled.parquet, after checking its schema version and table name."""
    return read_frame(path, SWEEP_POOLED_TABLE, "no pooled sweep table; run the sweep to write it")


def _rank_text(rank: int | None, overlaps: bool | None) -> str:
    if rank is None:
        return ""
    return f"  #{rank}" + (" ≈1" if rank > 1 and overlaps else "")


def ranking_table(
    pooled: pl.DataFrame, *, metrics: Sequence[str] = HEADLINE, title: str = ""
) -> Table:
    """Study x population x arm sections, one row per recommender variant, one column per
    headline metric: the pooled mean ± its 95% half-width and the variant's rank (``≈1``: its
    interval overlaps the best's); under a treatment arm the pooled paired difference (Δ)."""
    t = Table(
        title=title,
        caption=(
            "seeds pooled: mean of the seeds' means ± half-width of the 95% random-effects "
            "interval over seeds; #k = rank by mean among the recommenders (1 = highest); "
            "≈1 = its interval overlaps the best's (not clearly lower); "
            "Δ = paired difference from the control arm"
        ),
    )
    t.add_column("study / population", overflow="fold", min_width=16)
    t.add_column("arm", no_wrap=True)
    t.add_column("recommender", no_wrap=True)
    t.add_column("seeds", justify="right", no_wrap=True)
    for m in metrics:
        t.add_column(m, justify="right")
    # Sections in the sweep's order of studies, populations and arms; variants in its order.
    wide = (
        pooled.filter(pl.col("metric").is_in(list(metrics)))
        .with_row_index("_row")
        .sort(
            *(pl.col("_row").min().over(k) for k in ("study", "population", "arm", "recommender")),
            maintain_order=True,
        )
    )
    prev = None
    for (study, population, arm, rec), rows in wide.group_by(
        ["study", "population", "arm", "recommender"], maintain_order=True
    ):
        section = (study, population, arm)
        if prev is not None and section != prev:
            t.add_section()
        by = {r["metric"]: r for r in rows.iter_rows(named=True)}
        cells = []
        for m in metrics:
            r = by.get(m)
            if r is None:
                cells.append("-")
                continue
            text = pm(r["mean"], r["ci_low"], r["ci_high"]) + _rank_text(
                r["rank"], r["overlaps_best"]
            )
            if r["diff"] is not None:
                text += "\nΔ " + pm(r["diff"], r["diff_ci_low"], r["diff_ci_high"], sign=True)
            cells.append(text)
        head = f"{study} / {population}" if prev is None or section[:2] != prev[:2] else ""
        t.add_row(
            head, str(arm) if section != prev else "", str(rec), str(rows["seeds"].max()), *cells
        )
        prev = section
    return t
