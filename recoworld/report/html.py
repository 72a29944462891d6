"""Self-contained HTML reports: one file, inline CSS and SVG figures, no script, no network.

:func:`run_report` renders a :class:`~recoworld.report.data.RunData`; :func:`sweep_report` a
:class:`~recoworld.report.data.SweepData`. Every text that comes from a run (study names,
instructions, feelings, summaries) is escaped.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Sequence
from html import escape

import polars as pl

from recoworld.report import plots
from recoworld.report.data import RunData, SweepData
from recoworld.report.social import social_section

CSS = (
    """
:root { --fg:#1d2330; --muted:#5b6472; --line:#d9dee7; --bg:#ffffff; --soft:#f4f6fa; """
    """--up:#0a7a3f; --down:#b3261e; }
* { box-sizing:border-box; }
body { font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; """
    """color:var(--fg);
       background:var(--bg); margin:0; }
header { background:#1d2330; color:#fff; padding:18px 28px 12px; }
header h1 { margin:0 0 4px; font-size:22px; }
header p { margin:0; color:#c9d1de; }
nav { position:sticky; top:0; background:#fff; border-bottom:1px solid var(--line); """
    """padding:6px 28px; z-index:1; }
nav a { margin-right:14px; color:#0b57d0; text-decoration:none; font-size:13px; }
main { padding:8px 28px 40px; max-width:1400px; }
section { margin-top:26px; }
h2 { font-size:18px; border-bottom:2px solid var(--line); padding-bottom:4px; }
h3 { font-size:15px; margin:18px 0 6px; }
.note { color:var(--muted); font-size:12.5px; max-width:900px; }
table { border-collapse:collapse; margin:6px 0 10px; font-size:13px; }
th, td { border-bottom:1px solid var(--line); padding:3px 10px; text-align:right; """
    """vertical-align:top; }
th { background:var(--soft); font-weight:600; }
td.l, th.l { text-align:left; }
td:not(.l) { white-space:nowrap; }
td.up { color:var(--up); font-weight:600; } td.down { color:var(--down); font-weight:600; }
.grid { display:grid; grid-template-columns:repeat(auto-fit,minmax(260px,1fr)); gap:4px 24px; }
dl { margin:0; display:grid; grid-template-columns:max-content 1fr; gap:2px 12px; font-size:13px; }
dt { color:var(--muted); } dd { margin:0; }
figure { margin:8px 0 14px; } figure svg { max-width:100%; height:auto; }
details summary { cursor:pointer; color:#0b57d0; margin:6px 0; }
.quote { font-style:italic; }
.warn { background:#fff4e5; border-left:4px solid #e69f00; padding:8px 12px; margin:8px 0;
        max-width:1000px; }
.read { background:var(--soft); border-left:4px solid #0072B2; padding:6px 14px;
        max-width:1000px; font-size:13px; }
.read li { margin:3px 0; }
td.weak { color:var(--muted); }
footer { color:var(--muted); font-size:12px; padding:12px 28px; border-top:1px solid var(--line); }
"""
)


def _fmt(v: object, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:,.{digits}f}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _ci(mean: float | None, lo: float | None, hi: float | None, *, sign: bool = False) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    head = f"{mean:+.4f}" if sign else f"{mean:.4f}"
    if lo is None or hi is None or math.isnan(lo):
        return head
    return f"{head} [{lo:+.4f}, {hi:+.4f}]" if sign else f"{head} [{lo:.4f}, {hi:.4f}]"


def _lift(v: float | None, lo: float | None, hi: float | None) -> str:
    """Relative lift in percent with its interval: ``+2.4% [-1.0%, +5.9%]``."""
    if v is None or math.isnan(v):
        return "–"
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return f"{v:+.1f}%"
    return f"{v:+.1f}% [{lo:+.1f}%, {hi:+.1f}%]"


def _p(v: float | None) -> str:
    if v is None or math.isnan(v):
        return "–"
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def _significant(v: bool | None) -> str:
    return "–" if v is None else ("yes" if v else "no")


def _share(v: float | None) -> str:
    return "–" if v is None or math.isnan(v) else f"{100 * v:.0f}%"


def _effect_class(r: dict) -> str:
    """up / down: significant after Holm; weak: the CI misses 0 but not after Holm."""
    lo, hi, d = r.get("diff_ci_low"), r.get("diff_ci_high"), r.get("diff")
    if r.get("significant") and d is not None:
        return "up" if d > 0 else "down"
    if lo is not None and hi is not None and (lo > 0 or hi < 0):
        return "weak"
    return ""


def _effect_cells(r: dict) -> tuple[list[object], list[str]]:
    """The cells of one paired difference: difference [CI], lift [CI], p, p (Holm), q (BH),
    significant, MDE, between share; and their classes."""
    cells = [
        _ci(r.get("diff"), r.get("diff_ci_low"), r.get("diff_ci_high"), sign=True),
        _lift(r.get("lift"), r.get("lift_ci_low"), r.get("lift_ci_high")),
        _p(r.get("p_value")),
        _p(r.get("p_holm")),
        _p(r.get("q_bh")),
        _significant(r.get("significant")),
        r.get("mde"),
        _share(r.get("diff_between_share")),
    ]
    c = _effect_class(r)
    return cells, [c, c, "", "", "", c, "", ""]


EFFECT_HEADERS = (
    "difference [95% CI]",
    "lift [95% CI]",
    "p",
    "p (Holm)",
    "q (BH)",
    "significant",
    "MDE",
    "between share",
)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    left: int = 1,
    cls: Sequence[Sequence[str]] | None = None,
) -> str:
    """An HTML table; the first ``left`` columns are left-aligned text, the rest numbers.
    Cells are escaped; ``cls`` gives extra classes per cell."""
    head = "".join(
        f'<th class="{"l" if k < left else ""}">{escape(h)}</th>' for k, h in enumerate(headers)
    )
    body = []
    for r, row in enumerate(rows):
        cells = []
        for k, v in enumerate(row):
            classes = ["l"] if k < left else []
            if cls is not None and cls[r][k]:
                classes.append(cls[r][k])
            cells.append(f'<td class="{" ".join(classes)}">{escape(_fmt(v))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _dl(items: Iterable[tuple[str, object]]) -> str:
    return (
        "<dl>"
        + "".join(
            f"<dt>{escape(k)}</dt><dd>{escape(_fmt(v))}</dd>"
            for k, v in items
            if v not in (None, "", [])
        )
        + "</dl>"
    )


def _figure(svg: str, caption: str = "") -> str:
    cap = f'<figcaption class="note">{escape(caption)}</figcaption>' if caption else ""
    return f"<figure>{svg}{cap}</figure>"


def _page(title: str, subtitle: str, nav: Sequence[tuple[str, str]], body: str, footer: str) -> str:
    links = "".join(f'<a href="#{a}">{escape(t)}</a>' for a, t in nav)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        f"<style>{CSS}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header>"
        f"<nav>{links}</nav><main>{body}</main><footer>{footer}</footer></body></html>\n"
    )


# ---------------------------------------------------------------------------------------------
# A run


def _setup(d: RunData) -> str:
    s, m = d.study, d.manifest
    pop, sim, brain, rec = (
        s.get("population", {}),
        s.get("simulation", {}),
        s.get("brain", {}),
        s.get("recommender", {}),
    )
    target = {k: v for k, v in (pop.get("target") or {}).items() if v not in (None, [], "")}
    created = m.get("created_unix")
    when = (
        datetime.datetime.fromtimestamp(created, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        if created
        else None
    )
    left = _dl(
        [
            ("study", s.get("name") or m.get("study")),
            ("run id", m.get("run_id")),
            ("created", when),
            ("world", f"{s.get('world', {}).get('dataset', m.get('world'))}"),
            ("seed", s.get("seed")),
            ("users per arm", m.get("users_per_arm")),
            ("events", m.get("events")),
            ("run time", f"{m['seconds']:.1f} s" if m.get("seconds") is not None else None),
            ("shards", m.get("shards")),
            ("RecoWorld", m.get("recoworld_version")),
        ]
    )
    middle = _dl(
        [
            ("population", f"{pop.get('source', '')}, segments by {pop.get('segment_by', '')}"),
            ("target", ", ".join(f"{k}={v}" for k, v in target.items()) or "everyone"),
            ("sessions", sim.get("sessions")),
            ("turns per session", sim.get("turns")),
            ("slate size", sim.get("slate_size")),
            ("brain", brain.get("kind")),
            (
                "recommender",
                f"{rec.get('kind', '')}"
                f"{' + instruction following' if rec.get('follow_instructions') else ''}",
            ),
        ]
    )
    fit = d.fit or {}
    right = _dl(
        [
            ("fit: AUC", fit.get("auc")),
            ("fit: ECE", fit.get("ece")),
            (
                "fit: predicted / observed positive rate",
                f"{fit['predicted_positive_rate']:.3f} / {fit['observed_positive_rate']:.3f}"
                if "predicted_positive_rate" in fit
                else None,
            ),
            ("fit: rating TV distance", fit.get("rating_tv_distance")),
            ("fit: data return rate", fit.get("data_return_rate")),
            (
                "fit: items per sitting, logs / simulated (browsing the catalogue)",
                f"{fit['sitting_items']:.2f} / {fit['simulated_sitting_items']:.2f}"
                if fit.get("simulated_sitting_items") is not None
                else None,
            ),
        ]
    )
    arms = []
    for k, a in enumerate(s.get("arms") or [{"name": n} for n in d.arms]):
        what = "control" if k == 0 else (a.get("treatment") or "no treatment")
        if a.get("treatment") == "inject":
            what += f" at position {a.get('position')} in {a.get('rate')} of slates"
        elif a.get("treatment") == "boost":
            what += f" by {a.get('boost')} score spreads"
        if a.get("recommender"):
            what += f"; recommender {a['recommender'].get('kind')}"
        if any(v not in (None, [], "") for v in (a.get("target") or {}).values()):
            what += "; targeted"
        arms.append((a.get("name"), what))
    creator = s.get("creator") or {}
    items = [
        (i.get("title"), ", ".join(i.get("tags") or []), i.get("text") or "")
        for i in creator.get("items") or []
    ]
    body = f'<div class="grid">{left}{middle}{right}</div>'
    if s.get("description"):
        body = f'<p class="note">{escape(s["description"])}</p>' + body
    body += "<h3>Arms</h3>" + table(["arm", "what it does"], arms, left=2)
    if items:
        body += (
            f"<h3>Creator: {escape(creator.get('name') or creator.get('id') or '')}</h3>"
            + table(["title", "tags", "text"], items, left=3)
        )
    return body


def _warnings(d: RunData) -> str:
    return "".join(f'<p class="warn"><b>Warning.</b> {escape(w)}</p>' for w in d.warnings)


def _how_to_read(d: RunData) -> str:
    users = _fmt(d.manifest.get("users_per_arm"))
    if d.replicates > 1:
        covers = (
            f"An interval covers both which users were drawn and, since this run pools "
            f"{d.replicates} replicates (each its own placement of the creator's new items and "
            f"its own population, {users} users per arm in all), which plausible item a new "
            "item is: it is the replicates' spread (random effects), never narrower than user "
            "noise alone. <i>between share</i> is the part of one replicate's uncertainty that "
            "the placement explains."
        )
    elif d.has_creator_items:
        covers = (
            f"An interval covers which users were drawn ({users} per arm) only: with one "
            "replicate the placement of the creator's new items is fixed, so intervals on "
            "creator claims are too narrow (see the warning)."
        )
    else:
        covers = f"An interval covers which users were drawn ({users} per arm)."
    items = [
        "<b>Intervals</b> (95%, on every mean, difference and curve). " + covers,
        "<b>Differences</b> are paired per user: every arm sees the same users with the same "
        "random numbers, so <i>arm − control</i> is the mean of each user's own difference.",
        "<b>Lift</b> is the difference as a percentage of the control's mean, with its own "
        "interval (delta method); none where the control's mean is not distinguishable from 0.",
        "<b>Significant</b> means the difference holds after Holm's adjustment over the whole "
        "summary table (every treatment arm x segment x metric) at 5%: the chance of even one "
        "false claim in the table is at most 5%. A CI that misses 0 alone is not enough "
        "(grey in the tables). <i>q (BH)</i> is the Benjamini-Hochberg q-value, for screening.",
        "<b>MDE</b> (minimum detectable effect): the true difference this study would detect "
        "with 80% power; a non-significant difference says little about effects smaller "
        "than it.",
    ]
    if d.placebos:
        items.append(
            "<b>Slot vs content</b>: a placebo arm gives the same treatment to matched existing "
            "items. <i>placebo − control</i> is the effect of the slot (any similar item put "
            "there); <i>treatment − placebo</i> is the effect of the creator's content."
        )
    return '<div class="read"><ul>' + "".join(f"<li>{i}</li>" for i in items) + "</ul></div>"


def _mde_sentence(d: RunData) -> str:
    """'This study could detect effects of about …' per metric (segment all, the largest MDE
    over the treatment arms), with the MDE as a share of the control's mean."""
    allseg = d.summary.filter((pl.col("segment") == "all") & (pl.col("arm") != d.control))
    control = d.summary.filter((pl.col("segment") == "all") & (pl.col("arm") == d.control))
    means = dict(zip(control["metric"], control["mean"], strict=True))
    parts = []
    for metric in d.metrics:
        m = allseg.filter(pl.col("metric") == metric)["mde"].drop_nulls()
        if m.len() == 0:
            continue
        v = float(m.max())
        c = means.get(metric)
        rel = f" ({100 * v / abs(c):.0f}% of control)" if c else ""
        parts.append(f"{escape(metric)} ±{v:.4f}{rel}")
    if not parts:
        return ""
    return (
        '<p class="note"><b>This study could detect effects of about</b> (80% power, 5%): '
        + "; ".join(parts)
        + ".</p>"
    )


def _headline(d: RunData) -> str:
    allseg = d.summary.filter(pl.col("segment") == "all")

    def row_of(arm: str, metric: str) -> dict:
        r = allseg.filter((pl.col("arm") == arm) & (pl.col("metric") == metric))
        return r.row(0, named=True) if r.height else {}

    means = [
        [metric]
        + [
            _ci(r.get("mean"), r.get("ci_low"), r.get("ci_high"))
            for r in (row_of(arm, metric) for arm in d.arms)
        ]
        for metric in d.metrics
    ]
    rows, cls = [], []
    for metric in d.metrics:
        for arm in d.arms[1:]:
            cells, c = _effect_cells(row_of(arm, metric))
            rows.append([metric, f"{arm} − {d.control}", *cells])
            cls.append(["", "", *c])
    segs = d.summary.filter(pl.col("segment") != "all")
    seg_rows, seg_cls = [], []
    for r in segs.sort("metric", "arm", "segment").iter_rows(named=True):
        cells, c = (
            _effect_cells(r) if r["diff"] is not None else (["(control)"] + [""] * 7, [""] * 8)
        )
        seg_rows.append(
            [r["arm"], r["segment"], r["metric"], r["n"], _ci(r["mean"], r["ci_low"], r["ci_high"])]
            + cells
        )
        seg_cls.append(["", "", "", "", "", *c])
    forest = plots.forest(d.summary, d.arms, d.metrics) if len(d.arms) > 1 else ""
    out = '<p class="note">Means over users with 95% intervals (segment "all").</p>' + table(
        ["metric", *(f"{a} mean [95% CI]" for a in d.arms)], means
    )
    if rows:
        out += (
            "<h3>Differences from control</h3>"
            '<p class="note">Paired per user. Green / red: significant after Holm over the '
            "whole summary (every arm x segment x metric); grey: the CI misses 0 but the "
            "difference does not survive the adjustment. between share: the part of one "
            "replicate's uncertainty about the difference that the placement explains.</p>"
            + table(["metric", "arms", *EFFECT_HEADERS], rows, left=2, cls=cls)
            + _mde_sentence(d)
        )
    if forest:
        out += _figure(
            forest, "Paired difference from control per arm x segment (segment 'all' in bold)."
        )
    if seg_rows:
        out += (
            "<details><summary>Every segment (table)</summary>"
            + table(
                ["arm", "segment", "metric", "users", "mean [95% CI]", *EFFECT_HEADERS],
                seg_rows,
                left=3,
                cls=seg_cls,
            )
            + "</details>"
        )
    return out


def _engagement(d: RunData) -> str:
    fig = plots.lines(
        d.by_turn,
        x="turn",
        arms=d.arms,
        xlabel="turn within session",
        panels=[
            ("ctr", "clicks per item shown"),
            ("watch", "mean watch fraction per item"),
            ("satisfaction", "mean satisfaction"),
            ("fatigue", "mean fatigue"),
        ],
    )
    lengths = plots.grouped_bars(
        d.session_lengths.with_columns(pl.col("turns").cast(pl.String)),
        x="turns",
        y="share",
        arms=d.arms,
        xlabel="turns (slates) in the session",
        ylabel="share of sessions",
        title="session length",
    )
    rows = [
        (
            r["arm"],
            r["turn"],
            r["slates"],
            r["ctr"],
            r["watch"],
            r["satisfaction"],
            r["fatigue"],
            r["boredom"],
            r["curiosity"],
        )
        for r in d.by_turn.iter_rows(named=True)
    ]
    return (
        _figure(
            fig,
            "Per turn within a session: each user's value over their sessions (the mindset "
            "after the turn's items), averaged over the users who had the turn; the band is "
            "the 95% interval of that mean"
            + (" (the replicates' random-effects interval)." if d.replicates > 1 else ".")
            + " Arms are nudged apart along the x axis so that equal curves stay visible.",
        )
        + _figure(
            lengths,
            "How many slates a session lasted; "
            "sessions end when the user leaves or the turn budget is spent.",
        )
        + "<details><summary>By turn (table)</summary>"
        + table(
            [
                "arm",
                "turn",
                "slates",
                "ctr",
                "watch",
                "satisfaction",
                "fatigue",
                "boredom",
                "curiosity",
            ],
            rows,
        )
        + "</details>"
    )


def _retention(d: RunData) -> str:
    fig = plots.lines(
        d.by_session,
        x="session",
        arms=d.arms,
        xlabel="session",
        panels=[
            ("share", "share of users who had the session"),
            ("return_rate", "came back after it"),
            ("ctr", "clicks per item shown"),
        ],
    )
    rows = [
        (
            r["arm"],
            r["session"],
            r["users"],
            r["share"],
            r["turns"],
            r["left_early"],
            r["return_rate"],
            r["satisfaction_end"],
            r["instructions"],
        )
        for r in d.by_session.iter_rows(named=True)
    ]
    caption = (
        "Share: of all the arm's users; return rate, ctr: over the users who had the "
        "session (each user weighs the same). Bands: 95% intervals"
        + (", the replicates' random-effects interval." if d.replicates > 1 else " over users.")
    )
    return _figure(fig, caption) + table(
        [
            "arm",
            "session",
            "users",
            "share of users",
            "mean turns",
            "left early",
            "return rate",
            "satisfaction at end",
            "instructions",
        ],
        rows,
    )


def _creator(d: RunData) -> str:
    c = d.creator_items
    if c.height == 0:
        return '<p class="note">No creator item was shown in any arm.</p>'
    reach = d.summary.filter(
        (pl.col("segment") != "all")
        & pl.col("metric").is_in(["creator_reach", "creator_engagement"])
    )
    order = c.select("title").unique(maintain_order=True)
    grid = order.join(pl.DataFrame({"arm": d.arms}), how="cross")
    full = grid.join(
        c.select("arm", "title", "reach", "ctr"), on=["arm", "title"], how="left"
    ).fill_null(0.0)
    bars = plots.grouped_bars(
        full,
        x="title",
        y="reach",
        arms=d.arms,
        xlabel="creator item",
        ylabel="share of users reached",
        width=6.0,
    )
    rows = [
        (
            r["arm"],
            r["title"],
            r["item_id"],
            r["users_reached"],
            r["reach"],
            r["impressions"],
            r["clicks"],
            r["ctr"],
            r["watches"],
            r["mean_watch"],
            r["mean_rating"],
        )
        for r in c.iter_rows(named=True)
    ]
    out = _figure(bars, "Share of each arm's users shown the item at least once.") + table(
        [
            "arm",
            "title",
            "item",
            "users reached",
            "reach",
            "impressions",
            "clicks",
            "ctr",
            "watched",
            "mean watch (clicks)",
            "mean rating",
        ],
        rows,
        left=3,
    )
    out += _replicate_spread(d)
    if reach.height:
        seg = reach.pivot(on="metric", index=["arm", "segment"], values="mean").sort(
            "arm", "segment"
        )
        cols = [m for m in ("creator_reach", "creator_engagement") if m in seg.columns]
        out += "<h3>By segment</h3>" + table(
            ["arm", "segment", *cols], seg.select("arm", "segment", *cols).rows(), left=2
        )
    return out


def _replicate_spread(d: RunData) -> str:
    """Each creator item's reach and engagement per replicate: how much the placement draw
    matters (with one replicate, a note that it was not drawn again)."""
    c = d.creator_replicates
    if c is None or c.height == 0:
        return ""
    if d.replicates <= 1:
        return (
            "<h3>Per replicate</h3>"
            '<p class="note">One replicate: the new items were placed once, so how much their '
            "placement matters is not measured here.</p>"
        )
    reps = sorted(c["replicate"].unique().to_list())
    wide = []
    for (arm, item_id, title), g in c.group_by(["arm", "item_id", "title"], maintain_order=True):
        by = dict(zip(g["replicate"], zip(g["reach"], g["engagement"], strict=True), strict=True))
        vals = [by.get(r, (0.0, 0.0)) for r in reps]
        reach = [v[0] for v in vals]
        wide.append(
            [arm, title, item_id]
            + [f"{v[0]:.3f} / {v[1]:.3f}" for v in vals]
            + [f"{min(reach):.3f}–{max(reach):.3f}"]
        )
    per_metric = []
    rm = d.replicate_means
    if rm is not None and rm.height:
        for metric in ("creator_reach", "creator_engagement"):
            m = rm.filter(pl.col("metric") == metric)
            for arm in d.arms:
                a = m.filter(pl.col("arm") == arm).sort("replicate")
                if a.height:
                    per_metric.append([metric, arm, *a["mean"].to_list()])
    out = (
        "<h3>Per replicate: how much the placement draw matters</h3>"
        f'<p class="note">Each of the {d.replicates} replicates placed the new items afresh '
        "(and drew its own users). Dots: each replicate's share of users reached by the item "
        "and its clicks per user; in a placebo arm the items are the matched existing ones.</p>"
        + _figure(plots.replicate_spread(c, arms=d.arms))
        + table(
            [
                "arm",
                "title",
                "item",
                *(f"replicate {r}: reach / clicks per user" for r in reps),
                "reach range",
            ],
            wide,
            left=3,
        )  # fmt: skip
    )
    if per_metric:
        out += (
            '<p class="note">The creator metrics per replicate (the summary\'s mean is their '
            "mean):</p>"
            + table(["metric", "arm", *(f"replicate {r}" for r in reps)], per_metric, left=2)
        )
    return out


def _slot_content(d: RunData) -> str:
    """Per treatment with a placebo: total, slot (placebo − control) and content (treatment −
    placebo) effects with intervals, lift and significance."""
    sc = d.slot_content
    if sc is None or sc.height == 0:
        return ""
    colours = plots.arm_colours(d.arms)
    out = (
        '<p class="note">A placebo arm gives the same treatment to existing items matched to the '
        "creator's on tags and popularity. <b>slot</b> = placebo − control: what putting any "
        "similar item there does. <b>content</b> = treatment − placebo: what the creator's own "
        "items add; paired per user and pooled over replicates like the summary's differences, "
        "with Holm and BH over the content rows (their own family). For creator_reach and "
        "creator_engagement the placebo arm counts its placebo items, so slot also holds the "
        "gap between the two sets' organic exposure.</p>"
    )
    names = {"total": "total", "slot": "slot", "content": "content"}
    for treatment, placebo in d.placebos:
        pair = sc.filter((pl.col("treatment") == treatment) & (pl.col("placebo") == placebo))
        allseg = pair.filter(pl.col("segment") == "all")
        rows, cls = [], []
        for metric in d.metrics:
            for effect in ("total", "slot", "content"):
                r = allseg.filter((pl.col("metric") == metric) & (pl.col("effect") == effect))
                if not r.height:
                    continue
                r = r.row(0, named=True)
                cells, c = _effect_cells(r)
                rows.append([metric, names[effect], f"{r['arm']} − {r['base']}", *cells])
                cls.append(["", "", "", *c])
        labels = {
            "total": (f"total: {treatment} − {d.control}", colours.get(treatment, "#000")),
            "slot": (f"slot: {placebo} − {d.control}", colours.get(placebo, "#000")),
            "content": (f"content: {treatment} − {placebo}", "#000000"),
        }
        fig_rows = allseg.with_columns(
            label=pl.col("effect").replace_strict({k: v[0] for k, v in labels.items()}),
            colour=pl.col("effect").replace_strict({k: v[1] for k, v in labels.items()}),
        ).sort(pl.col("effect").replace_strict({"total": 0, "slot": 1, "content": 2}))
        segs = pair.filter(pl.col("segment") != "all").sort("metric", "effect", "segment")
        seg_rows, seg_cls = [], []
        for r in segs.iter_rows(named=True):
            cells, c = _effect_cells(r)
            seg_rows.append([r["metric"], r["effect"], r["segment"], *cells])
            seg_cls.append(["", "", "", *c])
        out += (
            f"<h3>{escape(treatment)} with placebo {escape(placebo)}</h3>"
            + table(["metric", "effect", "arms", *EFFECT_HEADERS], rows, left=3, cls=cls)
            + _figure(plots.effects(fig_rows, d.metrics))
        )
        if seg_rows:
            out += (
                "<details><summary>Every segment (table)</summary>"
                + table(
                    ["metric", "effect", "segment", *EFFECT_HEADERS], seg_rows, left=3, cls=seg_cls
                )
                + "</details>"
            )
    return out


def _instructions(d: RunData) -> str:
    totals = d.instruction_totals
    out = table(
        ["arm", "instructions written", "users who wrote one"],
        totals.select("arm", "instructions", "users").rows(),
    )
    if d.instructions.height == 0:
        return out + '<p class="note">No user wrote an instruction.</p>'
    wide = d.instructions.pivot(on="arm", index=["group", "example"], values="count").fill_null(0)
    arms = [a for a in d.arms if a in wide.columns]
    rows = [(r["example"], *(r[a] for a in arms)) for r in wide.iter_rows(named=True)]
    shown = wide.height
    out += (
        f"<h3>What they asked for (the {shown} most frequent of {d.instruction_groups} "
        "distinct texts)</h3>"
        '<p class="note">Grouped by text, ignoring case and punctuation; '
        "counted once per slate.</p>" + table(["instruction", *arms], rows)
    )
    if d.instruction_tags.height:
        tags = d.instruction_tags.pivot(on="arm", index="tag", values="mentions").fill_null(0)
        tarms = [a for a in d.arms if a in tags.columns]
        tags = tags.with_columns(total=pl.sum_horizontal(tarms)).sort(
            "total", "tag", descending=[True, False]
        )
        out += "<h3>Tags named in instructions</h3>" + table(
            ["tag", *tarms], tags.select("tag", *tarms).rows()
        )
    return out


def _feelings(d: RunData) -> str:
    if d.feelings is None:
        return ""
    wide = d.feelings.pivot(on="arm", index=["group", "example"], values="count").fill_null(0)
    arms = [a for a in d.arms if a in wide.columns]
    rows = [(r["example"], *(r[a] for a in arms)) for r in wide.iter_rows(named=True)]
    return (
        '<section id="feelings"><h2>Feelings</h2>'
        '<p class="note">What LLM users said they felt about items, '
        "grouped by text; the most frequent.</p>" + table(["feeling", *arms], rows) + "</section>"
    )


def _llm(d: RunData) -> str:
    if d.llm is None:
        return ""
    s = d.llm
    rows = [
        (
            r["arm"],
            r["purpose"],
            r["calls"],
            r["tokens_in"],
            r["tokens_out"],
            r["cached_share"],
            r["latency_p50"],
            r["latency_p95"],
        )
        for r in s.by_purpose.iter_rows(named=True)
    ]
    status = s.parse_status.pivot(on="status", index="arm", values="calls").fill_null(0)
    finish = s.finish_reason.pivot(on="status", index="arm", values="calls").fill_null(0)
    arms = [a for a in d.arms if a in s.latencies] or sorted(s.latencies)
    hist = plots.histogram(s.latencies, arms=arms, xlabel="latency (s)")
    return (
        '<section id="llm"><h2>Language-model calls</h2>'
        + table(
            [
                "arm",
                "purpose",
                "calls",
                "tokens in",
                "tokens out",
                "cached share",
                "latency p50 (s)",
                "latency p95 (s)",
            ],
            rows,
            left=2,
        )
        + "<h3>Parse status</h3>"
        + table(status.columns, status.rows())
        + "<h3>Finish reason</h3>"
        + table(finish.columns, finish.rows())
        + _figure(hist)
        + "</section>"
    )


def run_report(d: RunData) -> str:
    """The HTML page of a run's report."""
    title = f"RecoWorld: {d.study.get('name') or d.manifest.get('study', '')}"
    sub = (
        f"run {d.manifest.get('run_id', d.run_dir.name)} · {len(d.arms)} arms · "
        f"{_fmt(d.manifest.get('users_per_arm'))} users per arm"
    )
    examples = table(
        ["user", "session", "summary"],
        [(r["user"], r["session"], r["summary"]) for r in d.session_examples.iter_rows(named=True)],
        left=3,
    )
    slot_content = _slot_content(d)
    social = social_section(d.run_dir, d.arms)  # a run with [social] only
    sections = [
        ("read", "How to read this", _how_to_read(d) + _warnings(d)),
        ("setup", "Set-up", _setup(d)),
        ("results", "Results", _headline(d)),
        *([("slot-content", "Slot vs content", slot_content)] if slot_content else []),
        ("engagement", "Engagement", _engagement(d)),
        ("retention", "Retention", _retention(d)),
        ("creator", "Creator items", _warnings(d) + _creator(d)),
        *([("social", "Social diffusion", social)] if social else []),
        ("instructions", "Instructions", _instructions(d)),
        (
            "sessions",
            "Session summaries",
            f'<p class="note">A few sessions of arm {escape(d.control)}, '
            "as the users' memories keep them.</p>" + examples,
        ),
    ]
    body = "".join(
        f'<section id="{a}"><h2>{escape(t)}</h2>{html}</section>' for a, t, html in sections
    )
    body += _feelings(d) + _llm(d)
    nav = [(a, t) for a, t, _ in sections]
    if d.feelings is not None:
        nav.append(("feelings", "Feelings"))
    if d.llm is not None:
        nav.append(("llm", "LLM calls"))
    footer = (
        "Replay any user's sessions: "
        f"<code>recoworld view {escape(str(d.run_dir))}</code>. Figures: matplotlib."
    )
    return _page(title, sub, nav, body, footer)


# ---------------------------------------------------------------------------------------------
# A sweep


def _sweep_how_to_read(d: SweepData) -> str:
    seeds = int(d.pooled["seeds"].max() or 0)
    tests = int(d.pooled["p_value"].is_not_null().sum())
    if seeds > 1:
        covers = (
            f"Each row pools the sweep's {seeds} seeds. A seed is a complete run with its own "
            "population (for a generated world, its own world; with creator items, its own "
            "placements of the new items), so the interval, random effects over the seeds "
            "and never narrower than their own intervals allow, covers what another seed "
            "would show, not only which users were drawn. With few seeds it is wide: it is "
            f"a Student-t on {seeds - 1} degrees of freedom where the seeds disagree."
        )
    else:
        covers = (
            "With one seed, each interval is that seed's own (its users and its replicates): "
            "it says nothing of how another seed would move the numbers (see the warning)."
        )
    items = [
        "<b>Intervals</b> (95%, on every mean, difference and lift). " + covers,
        "<b>Differences</b> are paired per user inside each seed (every arm of a cell sees the "
        "same users with the same random numbers), then averaged over the seeds: "
        "<i>arm − control</i>, the control being the study's first arm.",
        "<b>Lift</b> is the difference as a percentage of the control's pooled mean, with its "
        "own interval (delta method from the seeds' standard errors, pooled like the "
        "difference); none where the control's mean is not distinguishable from 0.",
        "<b>Significant</b> means the difference holds after Holm's adjustment over the whole "
        f"pooled table ({tests} tests: every study x recommender x population x treatment arm "
        "x metric) at 5%: the chance of even one false claim in the table is at most 5%. A "
        "CI that misses 0 alone is not enough (grey). <i>q (BH)</i> is the "
        "Benjamini-Hochberg q-value, for screening.",
        "<b>MDE</b> (minimum detectable effect): the true difference the pooled seeds would "
        "detect with 80% power; a non-significant difference says little about smaller ones.",
        "<b>Rank</b>: the recommender variants by pooled mean within each study x population "
        "x arm x metric (1 = highest). <i>Overlaps best</i>: its interval reaches the best's, "
        "so the seeds do not set it clearly below; overlap is no proof of a tie.",
        "<b>Between share</b>: the part of one seed's uncertainty that comes from what the "
        "seed drew rather than from its users; above 50% one seed's own interval misleads.",
        "<b>Per cell</b> (the last sections): one seed each, intervals over that cell's "
        "replicates and users, significance over the cell's own summary.",
    ]
    return (
        '<div class="read"><ul>'
        + "".join(f"<li>{i}</li>" for i in items)
        + "</ul></div>"
        + f'<p class="note">Pooled table from {escape(d.pooled_from)}.</p>'
        + "".join(f'<p class="warn"><b>Warning.</b> {escape(w)}</p>' for w in d.warnings)
    )


def _sweep_label(r: dict, studies: int) -> str:
    head = f"{r['study']} · " if studies > 1 else ""
    return f"{head}{r['recommender']} · {r['population']} · {r['arm']}"


POOLED_HEADERS = (
    "study",
    "population",
    "arm",
    "recommender",
    "seeds",
    "users",
    "mean [95% CI]",
    "between share (mean)",
    "rank",
    *EFFECT_HEADERS[:-1],
    "between share (difference)",
)


def _sweep_pooled(d: SweepData) -> str:
    """Per metric, every study x population x arm x recommender row of the pooled table: mean
    [CI], rank, and the effect columns of a run's summary."""
    p = d.pooled
    out = []
    for metric in d.metrics:
        rows, cls = [], []
        for r in p.filter(pl.col("metric") == metric).iter_rows(named=True):
            if r["diff"] is None:
                cells, c = ["(control)"] + [""] * 7, [""] * 8
            else:
                cells, c = _effect_cells(r)
            rows.append(
                [
                    r["study"],
                    r["population"],
                    r["arm"],
                    r["recommender"],
                    r["seeds"],
                    r["n"],
                    _ci(r["mean"], r["ci_low"], r["ci_high"]),
                    _share(r["between_share"]),
                    r["rank"],
                    *cells,
                ]
            )
            cls.append([""] * 9 + c)
        out.append(f"<h3>{escape(metric)}</h3>" + table(POOLED_HEADERS, rows, left=4, cls=cls))
    effects = p.filter(pl.col("diff").is_not_null())
    if effects.height:
        studies = p["study"].n_unique()
        arms = effects["arm"].unique(maintain_order=True).to_list()
        colour = {a: plots.PALETTE[k % len(plots.PALETTE)] for k, a in enumerate(arms)}
        frame = effects.with_columns(
            label=pl.Series([_sweep_label(r, studies) for r in effects.iter_rows(named=True)]),
            colour=pl.col("arm").replace_strict(colour),
        )
        out.insert(
            0,
            _figure(
                plots.effects(frame, d.metrics),
                "Pooled paired difference from control per recommender x population x arm, "
                "95% CI; filled = significant after Holm over the whole table.",
            ),
        )
    return (
        '<p class="note">The seeds pooled: mean [95% CI] over seeds; the difference from the '
        "control arm with its lift, p, Holm-adjusted p, BH q and significance over the whole "
        "table. Green / red: significant; grey: the CI misses 0 but not after Holm.</p>"
        + "".join(out)
    )


def _sweep_ranking(d: SweepData) -> str:
    """Per metric, per study x population x arm, the variants in rank order with their
    intervals and whether each overlaps the best's."""
    out = []
    order = ["study", "population", "arm"]
    for metric in d.metrics:
        m = (
            d.pooled.filter(pl.col("metric") == metric)
            .with_row_index("_row")
            .sort(
                *(pl.col("_row").min().over(order[: k + 1]) for k in range(3)),
                pl.col("rank"),
                nulls_last=True,
                maintain_order=True,
            )
        )
        rows = [
            [
                f"{r['study']} / {r['population']}",
                r["arm"],
                r["rank"],
                r["recommender"],
                _ci(r["mean"], r["ci_low"], r["ci_high"]),
                _significant(r["overlaps_best"]),
            ]
            for r in m.iter_rows(named=True)
        ]
        out.append(
            f"<h3>{escape(metric)}</h3>"
            + table(
                [
                    "study / population",
                    "arm",
                    "rank",
                    "recommender",
                    "mean [95% CI]",
                    "overlaps best",
                ],
                rows,
                left=2,
            )  # fmt: skip
        )
    return (
        '<p class="note">Recommender variants ranked by pooled mean (1 = highest) within each '
        "study x population x arm; <i>overlaps best</i>: the variant's 95% interval reaches "
        "the best one's.</p>" + "".join(out)
    )


def sweep_report(d: SweepData) -> str:
    """How to read it and the warnings; the seeds pooled (every recommender x population x
    arm: mean, difference, lift, Holm / BH over the whole table, MDE), the ranking of the
    variants; then the cells side by side (one seed each)."""
    s = d.summary
    metrics = d.metrics
    keys = s.select("cell", "study", "recommender", "population", "seed").unique(
        maintain_order=True
    )
    cells_table = table(
        ["cell", "study", "recommender", "population", "seed", "report"],
        [(*r, "yes" if r[0] in d.cell_reports else "") for r in keys.rows()],
        left=4,
    )
    links = "".join(
        f'<li><a href="{escape(href)}">{escape(cell)}</a></li>'
        for cell, href in d.cell_reports.items()
    )
    per_metric = []
    for metric in metrics:
        rows, cls = [], []
        for r in s.filter(pl.col("metric") == metric).iter_rows(named=True):
            if r["diff"] is None:
                cells, c = ["(control)"] + [""] * 7, [""] * 8
            else:
                cells, c = _effect_cells(r)
            rows.append(
                [r["cell"], r["arm"], r["n"], _ci(r["mean"], r["ci_low"], r["ci_high"]), *cells]
            )
            cls.append(["", "", "", "", *c])
        per_metric.append(
            f"<h3>{escape(metric)}</h3>"
            + table(
                ["cell", "arm", "users", "mean [95% CI]", *EFFECT_HEADERS], rows, left=2, cls=cls
            )
        )
    wide = s.with_columns(
        cell_value=pl.struct("mean", "ci_low", "ci_high").map_elements(
            lambda v: _ci(v["mean"], v["ci_low"], v["ci_high"]), return_dtype=pl.String
        )
    ).pivot(on="metric", index=["cell", "arm"], values="cell_value")
    side = table(
        ["cell", "arm", *metrics],
        wide.select("cell", "arm", *[m for m in metrics if m in wide.columns]).rows(),
        left=2,
    )
    has_diff = s.filter(pl.col("diff").is_not_null()).height > 0
    forest = (
        _figure(plots.cells_forest(s, metrics), "Paired difference from each cell's control arm.")
        if has_diff
        else ""
    )
    sections = [
        ("read", "How to read this", _sweep_how_to_read(d)),
        ("pooled", "Seeds pooled", _sweep_pooled(d)),
        ("ranking", "Ranking", _sweep_ranking(d)),
        ("cells", "Cells", cells_table + (f"<ul>{links}</ul>" if links else "")),
        (
            "side",
            "Side by side (per cell)",
            '<p class="note">Mean [95% CI] of each cell (one seed: over its replicates and '
            'users), segment "all".</p>' + side,
        ),
        (
            "effects",
            "Effects (per cell)",
            '<p class="note">Each cell\'s paired differences from its control arm; Holm and BH '
            "over the cell's own summary.</p>" + forest + "".join(per_metric),
        ),
    ]
    body = "".join(
        f'<section id="{a}"><h2>{escape(t)}</h2>{html}</section>' for a, t, html in sections
    )
    title = (
        f"RecoWorld sweep: {d.folder.parent.name}"
        if d.folder.name.startswith("date=")
        else f"RecoWorld sweep: {d.folder.name}"
    )
    sub = f"{d.folder.name} · {len(d.cells)} cells · {len(metrics)} metrics"
    return _page(title, sub, [(a, t) for a, t, _ in sections], body, "Figures: matplotlib.")
