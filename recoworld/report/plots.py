"""Report figures: matplotlib figures rendered to inline SVG strings.

Figures are built with the object API (``matplotlib.figure.Figure``), never ``pyplot``: no
global figure registry, no GUI backend, safe in threads. The SVG is reproducible (no date, a
fixed hash salt) and keeps text as text (``svg.fonttype = none``), so a report diff shows real
changes and the page's text is searchable. Every function takes plain polars frames of the
aggregates in :mod:`recoworld.report.data` and returns an ``<svg …>`` element (no XML prolog).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence

import polars as pl

# A palette distinguishable in colour-blind vision (Okabe-Ito); control is always grey.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
CONTROL_COLOUR = "#7f7f7f"

_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "recoworld",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titlesize": 10,
    "legend.fontsize": 8,
    "legend.frameon": False,
}


def arm_colours(arms: Sequence[str]) -> dict[str, str]:
    """The first arm (the control) grey, the others from the palette, in order."""
    out = {}
    for k, arm in enumerate(arms):
        out[arm] = CONTROL_COLOUR if k == 0 else PALETTE[(k - 1) % len(PALETTE)]
    return out


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def to_svg(fig) -> str:
    """The figure as an inline ``<svg>`` element."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "recoworld"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    return re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)  # RDF boilerplate


def _styled(build):
    """Run ``build`` with the report's rc settings (a context, not a global change)."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        return to_svg(build())


def forest(summary: pl.DataFrame, arms: Sequence[str], metrics: Sequence[str]) -> str:
    """Paired difference from control with its 95% CI, one panel per metric, one row per
    treatment arm x segment (segment "all" first, in bold). A CI that misses zero is filled."""
    control = arms[0]
    rows = summary.filter(pl.col("arm") != control)
    segments = ["all", *sorted(s for s in rows["segment"].unique().to_list() if s != "all")]
    treat = [a for a in arms if a != control]
    labels = [(a, s) for a in treat for s in segments]
    colours = arm_colours(arms)
    n_rows = max(len(labels), 1)
    cols = min(len(metrics), 4)
    n_panels = math.ceil(len(metrics) / cols)

    def build():
        fig = _figure(2.6 * cols + 1.2, max(1.8, 0.19 * n_rows + 0.9) * n_panels)
        axes = fig.subplots(n_panels, cols, squeeze=False, sharey=True)
        index = {key: k for k, key in enumerate(labels)}
        for m, metric in enumerate(metrics):
            ax = axes[m // cols][m % cols]
            d = rows.filter(pl.col("metric") == metric)
            for r in d.iter_rows(named=True):
                y = index.get((r["arm"], r["segment"]))
                if y is None or r["diff"] is None or math.isnan(r["diff"]):
                    continue
                lo, hi = r["diff_ci_low"], r["diff_ci_high"]
                significant = lo is not None and hi is not None and (lo > 0 or hi < 0)
                ax.errorbar(
                    r["diff"],
                    y,
                    xerr=[[r["diff"] - lo], [hi - r["diff"]]] if lo is not None else None,
                    fmt="o",
                    color=colours[r["arm"]],
                    ms=4 if r["segment"] == "all" else 3,
                    mfc=colours[r["arm"]] if significant else "white",
                    capsize=2,
                    lw=1,
                )
            ax.axvline(0.0, color="black", lw=0.8)
            ax.set_title(metric)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
            ax.set_ylim(len(labels) - 0.5, -0.5)
            if m % cols == 0:  # shared y: the labels are drawn on the first panel of a row
                ax.set_yticks(range(len(labels)), [f"{a} · {s}" for a, s in labels])
                for t, (a, s) in zip(ax.get_yticklabels(), labels, strict=True):
                    t.set_color(colours[a])
                    if s == "all":
                        t.set_fontweight("bold")
        for m in range(len(metrics), n_panels * cols):
            axes[m // cols][m % cols].set_visible(False)
        fig.supxlabel(
            "difference from control (paired per user), 95% CI; filled = CI excludes 0", fontsize=8
        )
        return fig

    return _styled(build)


def lines(
    frame: pl.DataFrame,
    *,
    x: str,
    panels: Sequence[tuple[str, str]],
    arms: Sequence[str],
    xlabel: str,
    integer_x: bool = True,
) -> str:
    """One panel per (column, title) in ``panels``: a line per arm of ``column`` against ``x``.
    ``frame`` has columns arm, ``x`` and the panel columns."""
    colours = arm_colours(arms)

    def build():
        fig = _figure(3.3 * len(panels), 2.6)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (col, title) in zip(axes, panels, strict=True):
            for arm in arms:
                d = frame.filter(pl.col("arm") == arm).sort(x)
                if d.height:
                    ax.plot(
                        d[x].to_list(),
                        d[col].to_list(),
                        marker="o",
                        ms=3,
                        lw=1.4,
                        color=colours[arm],
                        label=arm,
                    )
            ax.set_title(title)
            ax.set_xlabel(xlabel)
            if integer_x:
                ax.xaxis.get_major_locator().set_params(integer=True)
        axes[0].legend()
        return fig

    return _styled(build)


def grouped_bars(
    frame: pl.DataFrame,
    *,
    x: str,
    y: str,
    arms: Sequence[str],
    xlabel: str,
    ylabel: str,
    title: str = "",
    width: float = 6.5,
    height: float = 2.6,
    rotate: bool = False,
) -> str:
    """Bars of ``y`` per value of ``x`` (categories in first-seen order), side by side per arm."""
    colours = arm_colours(arms)
    cats = frame[x].unique(maintain_order=True).to_list()

    def build():
        fig = _figure(width, height)
        ax = fig.subplots()
        w = 0.8 / max(len(arms), 1)
        pos = {c: k for k, c in enumerate(cats)}
        for j, arm in enumerate(arms):
            d = frame.filter(pl.col("arm") == arm)
            xs = [pos[c] - 0.4 + w * (j + 0.5) for c in d[x].to_list()]
            ax.bar(xs, d[y].to_list(), width=w, color=colours[arm], label=arm)
        ax.set_xticks(
            range(len(cats)),
            [str(c) for c in cats],
            rotation=30 if rotate else 0,
            ha="right" if rotate else "center",
        )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(axis="x", visible=False)
        if title:
            ax.set_title(title)
        ax.legend()
        return fig

    return _styled(build)


def histogram(
    values: dict[str, Sequence[float]], *, arms: Sequence[str], xlabel: str, bins: int = 30
) -> str:
    """Overlaid step histograms per arm (e.g. LLM call latency)."""
    colours = arm_colours(arms)

    def build():
        fig = _figure(5.0, 2.4)
        ax = fig.subplots()
        for arm in arms:
            v = values.get(arm)
            if v is not None and len(v):
                ax.hist(v, bins=bins, histtype="step", lw=1.4, color=colours[arm], label=arm)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("calls")
        ax.legend()
        return fig

    return _styled(build)


def cells_forest(frame: pl.DataFrame, metrics: Sequence[str]) -> str:
    """A sweep: per metric, each cell x treatment arm's paired difference from control with its
    95% CI (``frame``: cell, arm, metric, diff, diff_ci_low, diff_ci_high), one colour per arm."""
    d = frame.filter(pl.col("diff").is_not_null())
    labels = d.select("cell", "arm").unique(maintain_order=True).rows()
    arms = list(dict.fromkeys(a for _, a in labels))
    colours = {a: PALETTE[k % len(PALETTE)] for k, a in enumerate(arms)}
    cols = min(len(metrics), 3)
    n_panels = math.ceil(len(metrics) / cols) if metrics else 1

    def build():
        fig = _figure(3.2 * cols + 2.6, max(1.8, 0.2 * len(labels) + 0.9) * n_panels)
        axes = fig.subplots(n_panels, cols, squeeze=False, sharey=True)
        index = {key: k for k, key in enumerate(labels)}
        for m, metric in enumerate(metrics):
            ax = axes[m // cols][m % cols]
            for r in d.filter(pl.col("metric") == metric).iter_rows(named=True):
                y = index[(r["cell"], r["arm"])]
                lo, hi = r["diff_ci_low"], r["diff_ci_high"]
                significant = lo is not None and hi is not None and (lo > 0 or hi < 0)
                ax.errorbar(
                    r["diff"],
                    y,
                    xerr=[[r["diff"] - lo], [hi - r["diff"]]] if lo is not None else None,
                    fmt="o",
                    color=colours[r["arm"]],
                    mfc=colours[r["arm"]] if significant else "white",
                    ms=4,
                    capsize=2,
                    lw=1,
                )
            ax.axvline(0.0, color="black", lw=0.8)
            ax.set_title(metric)
            ax.set_ylim(len(labels) - 0.5, -0.5)
            if m % cols == 0:
                ax.set_yticks(range(len(labels)), [f"{c} · {a}" for c, a in labels])
        for m in range(len(metrics), n_panels * cols):
            axes[m // cols][m % cols].set_visible(False)
        fig.supxlabel(
            "difference from control (paired per user), 95% CI; filled = CI excludes 0", fontsize=8
        )
        return fig

    return _styled(build)
