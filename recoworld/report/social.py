"""The report's social section (a run with ``[social]``; docs/social.md): reach by channel
with the summary's intervals, reach over days by channel, a cascade picture, the rounds'
figures and friend co-consumption. Only a run that holds ``diffusion_summary.parquet`` gets it.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

import msgspec
import polars as pl

from recoworld.io.tables import read_table
from recoworld.report.plots import _figure, _styled, arm_styles, lines
from recoworld.social.diffusion import CASCADE_METRICS, USER_METRICS, reach_by_day

CHANNEL_TITLES = (
    ("recommender", "shown by the recommender"),
    ("search", "found by search"),
    ("friends", "heard from a friend"),
    ("watched", "watched"),
)


def _ci(mean: float | None, lo: float | None, hi: float | None) -> str:
    if mean is None:
        return "–"
    if lo is None or hi is None or math.isnan(lo):
        return f"{mean:.4g}"
    return f"{mean:.4g} [{lo:.4g}, {hi:.4g}]"


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def cascade_picture(cascades: pl.DataFrame, diffusion: pl.DataFrame, top: int = 6) -> str:
    """The largest cascades as trees: each adopter at its adoption round (x) and its cascade
    (y, spread by generation), joined to its parent."""
    big = cascades.sort(["size", "depth"], descending=True).head(top)

    def build():
        fig = _figure(7.0, 0.45 * max(big.height, 1) + 1.2)
        ax = fig.subplots()
        adopters = diffusion.filter(pl.col("adopted_round").is_not_null())
        for y, c in enumerate(big.iter_rows(named=True)):
            d = adopters.filter(
                (pl.col("arm").cast(pl.String) == c["arm"])
                & (pl.col("replicate") == c["replicate"])
                & (pl.col("item_id").cast(pl.String) == c["item_id"])
            )
            when = dict(zip(d["user"].to_list(), d["adopted_round"].to_list()))
            parent = dict(zip(d["user"].to_list(), d["parent"].to_list()))
            members = [c["root"]]
            k = 0
            while k < len(members):  # breadth first from the root
                members += [u for u, p in parent.items() if p == members[k]]
                k += 1
            ys = {u: y + 0.3 * (i / max(len(members) - 1, 1) - 0.5) for i, u in enumerate(members)}
            for u in members[1:]:
                p = parent[u]
                ax.plot([when[p], when[u]], [ys[p], ys[u]], color="#888", lw=0.8)
            ax.scatter([when[u] for u in members], [ys[u] for u in members], s=14, zorder=3)
            ax.annotate(
                f"{c['arm']} · r{c['replicate']} · {c['item_id']}: {c['size']} users, "
                f"depth {c['depth']}",
                (min(when.values()), y + 0.32),
                fontsize=7,
            )
        ax.set_yticks([])
        ax.set_xlabel("round (day) the user first watched the item")
        ax.set_ylim(max(big.height, 1) - 0.2, -0.6)  # the largest on top
        return fig

    return _styled(build)


def social_section(run_dir: Path, arms: list[str]) -> str | None:
    """The section's HTML, or None for a run without the social layer."""
    run_dir = Path(run_dir)
    if not (run_dir / "diffusion_summary.parquet").is_file():
        return None
    summary = pl.from_arrow(read_table(run_dir / "diffusion_summary.parquet", "diffusion_summary"))
    all_ = summary.filter(pl.col("segment") == "all")
    rows = []
    for arm in arms:
        cells = [arm]
        for m in (*USER_METRICS, *CASCADE_METRICS):
            r = all_.filter((pl.col("arm") == arm) & (pl.col("metric") == m))
            cells.append(_ci(*r.select("mean", "ci_low", "ci_high").row(0)) if r.height else "–")
        rows.append(cells)
    html = (
        '<p class="note">Per creator item treated by the arm: who was reached and how. Per-user '
        "shares (0/1) carry the summary's 95% intervals (pooled over replicates, paired with "
        "the control in <code>diffusion_summary.parquet</code>); cascade sizes and depths and "
        "adoption rounds are pooled over replicates. docs/social.md reads them.</p>"
        + _table(["arm", *USER_METRICS, *CASCADE_METRICS], rows)
    )
    files = sorted((run_dir / "diffusion").glob("arm=*/*.parquet"))
    diffusion = pl.scan_parquet(files, hive_partitioning=True).collect() if files else None
    if diffusion is not None and diffusion.height:
        by_day = reach_by_day(diffusion)
        wide = by_day.pivot(on="channel", index=["arm", "round"], values="reached").sort("round")
        panels = [(c, t) for c, t in CHANNEL_TITLES if c in wide.columns]
        filled = wide.with_columns(pl.col(c).forward_fill().over("arm") for c, _ in panels)
        html += "<h3>Reach over days, by channel</h3>" + lines(
            filled, x="round", panels=panels, arms=arms, xlabel="round (day)"
        )
        cascades = pl.from_arrow(read_table(run_dir / "cascades.parquet", "cascades"))
        if cascades.height:
            html += "<h3>The largest cascades</h3>" + cascade_picture(cascades, diffusion)
    figures_path = run_dir / "social.json"
    if figures_path.is_file():
        fig = msgspec.json.decode(figures_path.read_bytes())
        r = fig.get("rounds", {})
        html += "<h3>Rounds</h3>" + _table(
            ["rounds", "hosts", "shards", "deliveries", "cross-host", "cross-shard", "overhead s"],
            [
                [
                    str(r.get("rounds")), str(r.get("hosts")), str(r.get("shards")),
                    f"{r.get('deliveries', 0):,}", f"{r.get('cross_host', 0):,}",
                    f"{r.get('cross_shard', 0):,}", f"{r.get('overhead_seconds', 0):.2f}",
                ]
            ],
        )  # fmt: skip
        cc = fig.get("co_consumption", {})
        cc_rows = [
            [f"simulated · {arm}", *_cc(v)] for arm, v in cc.get("simulated", {}).items()
        ] + ([["real (the world's histories)", *_cc(cc["real"])]] if cc.get("real") else [])
        if cc_rows:
            html += "<h3>Friend co-consumption</h3>" + _table(
                ["", "share", "random friends", "lift", "items per user"], cc_rows
            )
    return html


def _cc(per_replicate: list[dict]) -> list[str]:
    mean = lambda k: sum(d[k] for d in per_replicate) / len(per_replicate)  # noqa: E731
    return [
        f"{mean('share'):.3f}",
        f"{mean('random_share'):.3f}",
        f"{mean('lift'):.2f}",
        f"{mean('items_per_user'):.1f}",
    ]


__all__ = ["arm_styles", "cascade_picture", "social_section"]
