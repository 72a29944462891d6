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

Effects, as a run's summary has them (:mod:`recoworld.study.inference`, one formula each):
the relative lift over the control arm, ``100 * diff / `` the control's pooled mean, with the
delta-method interval from the seeds' estimates
(:func:`~recoworld.study.inference.relative_lift_of_estimates`); the t-test of ``diff``, with
Holm's and Benjamini-Hochberg's adjustments over every difference of the table (every study x
recommender x population x treatment arm x metric: one family, as a run's family is its whole
summary); ``significant`` (Holm at 5%); the MDE. :func:`sweep_warnings` says when one seed,
or the spread between seeds or between a cell's replicates, should change how the intervals
are read.

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

from recoworld.display import CREATOR_METRICS, flag_text, lift_text, pm
from recoworld.io.schema import SWEEP_POOLED, SWEEP_POOLED_TABLE
from recoworld.io.tables import read_frame, write_frame
from recoworld.study import inference
from recoworld.study.pooling import BETWEEN_DOMINATES, pool_estimates
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


def _control_of(summary: pl.DataFrame, keys: pl.DataFrame) -> np.ndarray:
    """Per pooled group, the index of the group of its control arm (the same study,
    recommender, population and metric; the control is the arm without differences in the
    cells, the study's first); -1 where there is none."""
    cell = ["study", "recommender", "population"]
    control = (
        summary.group_by([*cell, "arm"], maintain_order=True)
        .agg(none=pl.col("diff").is_null().all())
        .filter("none")
        .group_by(cell, maintain_order=True)
        .agg(control=pl.col("arm").first())
    )
    index = keys.with_row_index("_c").rename({"arm": "control"})
    found = (
        keys.with_row_index("_g")
        .join(control, on=cell, how="left", nulls_equal=True)
        .join(index, on=[*cell, "control", "metric"], how="left", nulls_equal=True)
        .sort("_g")
    )
    return found["_c"].fill_null(-1).cast(pl.Int64).to_numpy()


def _at(a: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Columns ``index`` of ``a`` (seeds x groups); NaN where the index is -1."""
    return np.where(index >= 0, a[:, np.maximum(index, 0)], np.nan)


def pool_seeds(summary: pl.DataFrame) -> pl.DataFrame:
    """One row per study x recommender x population x arm x metric of a sweep summary: its
    seeds pooled (values and paired differences), the relative lift over the control arm,
    the p-value with Holm's and Benjamini-Hochberg's adjustments over every difference of the
    table, Holm's verdict at 5%, the MDE (:mod:`recoworld.study.inference`), and each variant's
    ``rank`` and ``overlaps_best`` (schema :data:`~recoworld.io.schema.SWEEP_POOLED`)."""
    if summary.is_empty():
        return pl.from_arrow(SWEEP_POOLED.empty_table())  # type: ignore[return-value]
    keys, a = _grid(summary, ("n", "mean", "se", "df", "diff", "diff_se", "diff_df"))
    cols: dict[str, pl.Series] = {}

    def put(col: str, values: np.ndarray) -> None:
        cols[col] = pl.Series(col, values, dtype=pl.Float64).fill_nan(None)

    value = pool_estimates(a["mean"], a["se"], a["df"])
    diff = pool_estimates(a["diff"], a["diff_se"], a["diff_df"])
    for name, prefix, p in (("mean", "", value), ("diff", "diff_", diff)):
        lo, hi = p.interval(LEVEL)
        put(name, np.where(p.replicates > 0, p.mean, np.nan))
        put(prefix + "ci_low", lo)
        put(prefix + "ci_high", hi)
        put(prefix + "se", p.se)
        put(prefix + "df", np.where(np.isfinite(p.se), p.df, np.nan))
        put(prefix + "between_share", p.between_share)
    cols["seeds"] = pl.Series("seeds", value.replicates, dtype=pl.Int32)
    users = np.where(np.isfinite(a["mean"]) & np.isfinite(a["n"]), a["n"], 0.0)
    cols["n"] = pl.Series("n", users.sum(0), dtype=pl.Int64)
    # The lift over the control: (seeds, [control, this arm], groups), as inference takes it.
    c = _control_of(summary, keys)
    pair = {k: np.stack([_at(a[k], c), a[k]], axis=1) for k in ("mean", "se", "df")}
    none = np.full_like(a["diff"], np.nan)
    d = {k: np.stack([none, a[k]], axis=1) for k in ("diff", "diff_se", "diff_df")}
    lift = inference.relative_lift_of_estimates(
        pair["mean"], pair["se"], pair["df"], d["diff"], d["diff_se"], d["diff_df"], LEVEL
    )
    is_diff = np.isfinite(diff.mean)
    has_lift = is_diff & (c >= 0)
    put("lift", np.where(has_lift, lift.lift[1], np.nan))
    put("lift_ci_low", np.where(has_lift, lift.low[1], np.nan))
    put("lift_ci_high", np.where(has_lift, lift.high[1], np.nan))
    # One family: every difference of the table.
    pv = np.where(is_diff, inference.p_values(diff.mean, diff.se, diff.df), np.nan)
    p_holm = inference.holm(pv)
    put("p_value", pv)
    put("p_holm", p_holm)
    put("q_bh", inference.benjamini_hochberg(pv))
    significant = [None if np.isnan(x) else bool(x <= inference.ALPHA) for x in p_holm]
    cols["significant"] = pl.Series("significant", significant, dtype=pl.Boolean)
    put("mde", np.where(is_diff, inference.mde(diff.se, diff.df), np.nan))
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


def sweep_warnings(pooled: pl.DataFrame, summary: pl.DataFrame | None = None) -> list[str]:
    """One line per thing a reader must know before trusting a sweep's pooled intervals: one
    seed (the intervals are that seed's own), the metrics whose between-seed share of a mean or
    a difference is above :data:`~recoworld.study.pooling.BETWEEN_DOMINATES` (counted over the
    study x recommender x population x arm rows), and, from the cells' own ``summary``, the
    creator metrics whose between-replicate share is above it within cells."""
    out = []
    if pooled.height and int(pooled["seeds"].max() or 0) <= 1:
        out.append(
            "One seed: every interval is that seed's own and covers its users (and its "
            "replicates), not how much another seed's population, world and placement of new "
            "items would move the numbers, so a ranking or an effect may not hold at the next "
            "seed. Run the sweep with 2 or more seeds."
        )
    hits = _dominant(pooled, "variant x population x arm rows")
    if hits:
        out.append(
            "Between-seed variance dominates (over half of one seed's uncertainty comes from "
            "which population, world and item placements the seed drew, not from its users): "
            + "; ".join(hits)
            + ". One seed's interval would mislead there: read the pooled intervals, which span "
            "the seeds."
        )
    if summary is not None and summary.height:
        creator = summary.filter(pl.col("metric").is_in(CREATOR_METRICS))
        hits = _dominant(creator, "cells")
        if hits:
            out.append(
                "Within cells, between-replicate variance dominates (the placement of the new "
                "items matters more than which users saw them): "
                + "; ".join(hits)
                + ". Each cell's own report shows the per-replicate spread."
            )
    return out


def _dominant(frame: pl.DataFrame, unit: str) -> list[str]:
    """'<metric> mean in k of n <unit>' (and 'difference') where between_share (or
    diff_between_share) is above BETWEEN_DOMINATES; n counts the rows that have a share."""
    out = []
    for (metric,), rows in frame.group_by("metric", maintain_order=True):
        for col, what in (("between_share", "mean"), ("diff_between_share", "difference")):
            share = rows[col].drop_nulls().drop_nans()
            k = int((share > BETWEEN_DOMINATES).sum())
            if k:
                out.append(f"{metric} {what} in {k} of {share.len()} {unit}")
    return out


def _rank_text(rank: int | None, overlaps: bool | None) -> str:
    if rank is None:
        return ""
    return f"  #{rank}" + (" ≈1" if rank > 1 and overlaps else "")


def ranking_table(
    pooled: pl.DataFrame,
    *,
    metrics: Sequence[str] = HEADLINE,
    title: str = "",
    summary: pl.DataFrame | None = None,
) -> Table:
    """Study x population x arm sections, one row per recommender variant, one column per
    headline metric: the pooled mean ± its 95% half-width and the variant's rank (``≈1``: its
    interval overlaps the best's); under a treatment arm the pooled paired difference (Δ) ±
    its half-width, its lift [interval] and the multiplicity flag (``*``: Holm over the whole
    table) with its q. The caption says how to read it and warns (:func:`sweep_warnings`;
    ``summary``: the sweep summary, for the cells' own between-replicate spread)."""
    notes = [
        "seeds pooled: mean of the seeds' means ± half-width of the 95% random-effects "
        "interval over seeds; #k = rank by mean among the recommenders (1 = highest); "
        "≈1 = its interval overlaps the best's (not clearly lower)",
        "Δ = paired difference from the control arm (mean of the seeds') ± half-width; "
        "lift = Δ / control mean [95% interval]; * = significant after Holm over the whole "
        "table (every study x recommender x population x treatment arm x metric); "
        "q = Benjamini-Hochberg",
        *(f"warning: {w}" for w in sweep_warnings(pooled, summary)),
    ]
    t = Table(title=title, caption="\n".join(notes), caption_justify="left")
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
                text += f"\n{lift_text(r)} {flag_text(r)}".rstrip()
            cells.append(text)
        head = f"{study} / {population}" if prev is None or section[:2] != prev[:2] else ""
        t.add_row(
            head, str(arm) if section != prev else "", str(rec), str(rows["seeds"].max()), *cells
        )
        prev = section
    return t
