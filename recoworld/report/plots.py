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
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

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


def arm_styles(arms: Sequence[str]) -> dict[str, dict]:
    """Per arm, its colour, line style and marker: arms stay apart in grey print too."""
    colours = arm_colours(arms)
    return {
        arm: {
            "color": colours[arm],
            "ls": LINESTYLES[k % len(LINESTYLES)],
            "marker": MARKERS[k % len(MARKERS)],
        }
        for k, arm in enumerate(arms)
    }


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
                significant = bool(r.get("significant"))
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
            "difference from control (paired per user), 95% CI; "
            "filled = significant after Holm over the whole summary",
            fontsize=8,
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
    """One panel per (column, title) in ``panels``: a line per arm of ``column`` against ``x``,
    with its 95% band where ``frame`` has ``column_lo`` and ``column_hi``. Arms differ in
    colour, line style and marker, and are nudged apart along x so that equal curves stay
    visible as several lines. ``frame`` has columns arm, ``x`` and the panel columns."""
    styles = arm_styles(arms)
    nudge = 0.06 if integer_x else 0.0

    def build():
        fig = _figure(3.3 * len(panels), 2.7)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (col, title) in zip(axes, panels, strict=True):
            banded = f"{col}_lo" in frame.columns and f"{col}_hi" in frame.columns
            for k, arm in enumerate(arms):
                d = frame.filter(pl.col("arm") == arm).sort(x)
                if not d.height:
                    continue
                xs = [v + nudge * (k - (len(arms) - 1) / 2) for v in d[x].to_list()]
                st = styles[arm]
                if banded:
                    lo = d[f"{col}_lo"].fill_null(float("nan")).to_list()
                    hi = d[f"{col}_hi"].fill_null(float("nan")).to_list()
                    ax.fill_between(xs, lo, hi, color=st["color"], alpha=0.15, lw=0)
                    ax.plot(xs, lo, color=st["color"], ls=st["ls"], lw=0.5, alpha=0.6)
                    ax.plot(xs, hi, color=st["color"], ls=st["ls"], lw=0.5, alpha=0.6)
                ax.plot(
                    xs,
                    d[col].to_list(),
                    marker=st["marker"],
                    ls=st["ls"],
                    ms=3.5,
                    lw=1.4,
                    color=st["color"],
                    label=arm,
                )
            ax.set_title(title)
            ax.set_xlabel(xlabel)
            if integer_x:
                ax.xaxis.get_major_locator().set_params(integer=True)
        axes[0].legend(title="arm (band: 95% CI)" if len(arms) else None, title_fontsize=7.5)
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


def replicate_spread(frame: pl.DataFrame, *, arms: Sequence[str]) -> str:
    """Per creator item (one row per arm x item), its reach and engagement in each replicate
    (a dot each, numbered) and their mean (a bar): how much the placement draw matters.
    ``frame``: arm, replicate, title, reach, engagement (clicks per user of the replicate)."""
    styles = arm_styles(arms)
    labels = frame.select("arm", "title").unique(maintain_order=True).rows()
    panels = (
        ("reach", "share of the replicate's users reached"),
        ("engagement", "clicks per user"),
    )

    def build():
        fig = _figure(8.0, max(1.6, 0.32 * len(labels) + 0.9))
        axes = fig.subplots(1, 2, sharey=True)
        for ax, (col, title) in zip(axes, panels, strict=True):
            for y, (arm, item) in enumerate(labels):
                d = frame.filter((pl.col("arm") == arm) & (pl.col("title") == item))
                st = styles[arm]
                vals = d[col].to_list()
                ax.scatter(
                    vals, [y] * len(vals), s=16, color=st["color"], marker=st["marker"],
                    alpha=0.8, zorder=3,
                )  # fmt: skip
                if vals:
                    m = sum(vals) / len(vals)
                    ax.plot([m, m], [y - 0.3, y + 0.3], color=st["color"], lw=2)
                    ax.plot([min(vals), max(vals)], [y, y], color=st["color"], lw=0.8)
            ax.set_title(title)
            ax.set_ylim(len(labels) - 0.5, -0.5)
        axes[0].set_yticks(range(len(labels)), [f"{a} · {t}" for a, t in labels])
        for t, (a, _) in zip(axes[0].get_yticklabels(), labels, strict=True):
            t.set_color(styles[a]["color"])
        fig.supxlabel(
            "one dot per replicate (placement and population); bar = their mean", fontsize=8
        )
        return fig

    return _styled(build)


def effects(frame: pl.DataFrame, metrics: Sequence[str]) -> str:
    """Named paired effects with their 95% CIs, one panel per metric, one row per ``label``
    (``frame``: label, colour, metric, diff, diff_ci_low, diff_ci_high, significant); filled
    where significant."""
    labels = frame.select("label", "colour").unique(maintain_order=True).rows()
    cols = min(len(metrics), 4)
    n_panels = math.ceil(len(metrics) / cols) if metrics else 1

    def build():
        fig = _figure(2.6 * cols + 1.8, max(1.6, 0.24 * len(labels) + 0.9) * n_panels)
        axes = fig.subplots(n_panels, cols, squeeze=False, sharey=True)
        index = {label: k for k, (label, _) in enumerate(labels)}
        for m, metric in enumerate(metrics):
            ax = axes[m // cols][m % cols]
            for r in frame.filter(pl.col("metric") == metric).iter_rows(named=True):
                if r["diff"] is None:
                    continue
                lo, hi = r["diff_ci_low"], r["diff_ci_high"]
                ax.errorbar(
                    r["diff"],
                    index[r["label"]],
                    xerr=[[r["diff"] - lo], [hi - r["diff"]]] if lo is not None else None,
                    fmt="o",
                    color=r["colour"],
                    mfc=r["colour"] if r["significant"] else "white",
                    ms=4,
                    capsize=2,
                    lw=1,
                )
            ax.axvline(0.0, color="black", lw=0.8)
            ax.set_title(metric)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
            ax.set_ylim(len(labels) - 0.5, -0.5)
            if m % cols == 0:
                ax.set_yticks(range(len(labels)), [label for label, _ in labels])
                for t, (_, colour) in zip(ax.get_yticklabels(), labels, strict=True):
                    t.set_color(colour)
        for m in range(len(metrics), n_panels * cols):
            axes[m // cols][m % cols].set_visible(False)
        fig.supxlabel("paired difference, 95% CI; filled = significant (Holm)", fontsize=8)
        return fig

    return _styled(build)
