"""Summaries on a terminal: the one number formatter and the run summary table (the CLI, the
sweep tables and the jobs print through here)."""

from __future__ import annotations

import math

import polars as pl
from rich.table import Table

from recoworld.study.pooling import BETWEEN_DOMINATES

CREATOR_METRICS = ("creator_reach", "creator_engagement")


def pm(mean: float | None, lo: float | None, hi: float | None, sign: bool = False) -> str:
    """``mean ± half-width`` of the interval [lo, hi] ("-" without a mean)."""
    if mean is None or math.isnan(mean):
        return "-"
    head = f"{mean:+.4f}" if sign else f"{mean:.4f}"
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return head
    return f"{head} ± {(hi - lo) / 2:.4f}"


def lift_text(r: dict) -> str:
    """A row's relative lift ``+2.4% [-1.0, +5.9]`` ("-" for a difference without one, "" for
    the control)."""
    if r.get("lift") is None:
        return "-" if r["diff"] is not None else ""
    lo, hi = r.get("lift_ci_low"), r.get("lift_ci_high")
    if lo is None or hi is None:
        return f"{r['lift']:+.1f}%"
    return f"{r['lift']:+.1f}% [{lo:+.1f}, {hi:+.1f}]"


def flag_text(r: dict) -> str:
    """A row's multiplicity flag: ``*`` significant after Holm, ``?`` untestable, with its
    Benjamini-Hochberg q ("" for the control)."""
    if r["diff"] is None:
        return ""
    sig = r.get("significant")
    mark = "*" if sig else ("" if sig is not None else "?")
    q = r.get("q_bh")
    return f"{mark} q={q:.2g}" if q is not None else mark


def summary_table(
    summary: pl.DataFrame,
    *,
    segments: bool = False,
    title: str = "",
    creator_items: bool | None = None,
) -> Table:
    """A rich table of a run's summary: per arm x metric (x segment), the mean ± the half-width
    of its 95% interval, the paired difference from control ± its half-width, the relative lift
    with its interval, the multiplicity flag and the minimum detectable effect; the caption says
    how to read it (:func:`summary_notes`; ``creator_items``: does the study have any, None:
    guess from the creator metrics)."""
    df = summary if segments else summary.filter(pl.col("segment") == "all")
    notes = summary_notes(summary, creator_items=creator_items)
    t = Table(title=title, caption="\n".join(notes), caption_justify="left")
    columns = ("arm", *(["segment", "n"] if segments else []), "metric", "mean", "vs control")
    for col in (*columns, "lift", "sig.", "MDE"):
        t.add_column(col, justify="left" if col in ("arm", "segment", "metric") else "right")
    prev_arm = None
    for r in df.iter_rows(named=True):
        if r["arm"] != prev_arm and prev_arm is not None:
            t.add_section()
        arm = r["arm"] if r["arm"] != prev_arm else ""
        prev_arm = r["arm"]
        control = r["diff"] is None
        diff = "(control)" if control else pm(r["diff"], r["diff_ci_low"], r["diff_ci_high"], True)
        cells = [arm, *([r["segment"], f"{r['n']:,}"] if segments else []), r["metric"]]
        mde = r.get("mde")
        t.add_row(
            *cells,
            pm(r["mean"], r["ci_low"], r["ci_high"]),
            diff,
            lift_text(r),
            flag_text(r),
            "" if mde is None else f"{mde:.4f}",
        )
    return t


def summary_notes(summary: pl.DataFrame, *, creator_items: bool | None = None) -> list[str]:
    """How to read the table, and warnings: what the intervals cover (users; with replicates the
    placement of the new items and the population too), when one replicate ignores placement,
    and when the replicates' spread dominates a creator metric."""
    reps = int(summary["replicates"].max() or 1) if "replicates" in summary.columns else 1
    if reps > 1:
        over = (
            f"over {reps} replicates (each its own placement of the creator's new items and "
            "its own population) and users"
        )
    else:
        over = "over users"
    notes = [
        f"± = half-width of the 95% interval, {over}; differences are paired per user",
        "lift = difference / control mean [95% interval]; * = significant after Holm over the "
        "whole table; q = Benjamini-Hochberg; MDE = effect detectable with 80% power",
    ]
    if creator_items is None:
        creator_items = bool(summary.filter(pl.col("metric").is_in(CREATOR_METRICS))["mean"].sum())
    if reps == 1 and creator_items:
        notes.append(
            "warning: one replicate: the intervals ignore which plausible item each new creator "
            "item is (set [simulation] replicates, or leave it 0 for the automatic count)"
        )
    if "between_share" in summary.columns:
        heavy = summary.filter(
            pl.col("metric").is_in(CREATOR_METRICS)
            & (pl.col("segment") == "all")
            & (
                (pl.col("between_share") > BETWEEN_DOMINATES)
                | (pl.col("diff_between_share").fill_null(0.0) > BETWEEN_DOMINATES)
            )
        )
        if heavy.height:
            cells = ", ".join(sorted({f"{a} {m}" for a, m in heavy.select("arm", "metric").rows()}))
            notes.append(
                "warning: where the new items land matters more than which users saw them "
                f"(between-replicate share > {BETWEEN_DOMINATES}: {cells}); "
                "read those intervals, not the means"
            )
    return notes
