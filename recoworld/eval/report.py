"""Fidelity results on disk: one Parquet file per table and a Markdown report.

Files in the output folder (written under temporary names, then renamed: an interrupted write
leaves earlier files as they were):

- ``headline.parquet``: dataset, figure, exposure, users, ours, real, ease, published,
  distance, goal, met, goal_source (:mod:`recoworld.eval.headline`);
- ``discrimination.parquet``: dataset, brain, ratio, prior, decisions, users, accuracy,
  precision, recall, f1, sim_positive_rate, real_positive_rate (averaged over users), and
  precision_micro, recall_micro, f1_micro, accuracy_micro (counts pooled over users);
- ``discrimination_tiers.parquet``: the same per trait (activity, conformity, diversity) and tier;
- ``ratings.parquet``: dataset, brain, prediction, ratings, coverage, rmse, mae, tv_distance,
  wasserstein;
- ``rating_hist.parquet``: dataset, brain, level, share;
- ``calibration.parquet``: dataset, brain, metric, trait, tier, users, real, simulated, ratio,
  exposure;
- ``hit.parquet``: dataset, recommender, users, candidates, hit_at_1, hit_at_5, ndcg_at_5;
- ``llm_calls.parquet`` (llm brain): every model call, the ``llm_calls`` table of a run
  (recoworld.io.schema: prompt, completion, seed, tokens, latency, parse status, and a
  ``fallback`` row per slate that stayed invalid after one repair);
- ``meta.json``: split, sizes, the training fit's AUC, timings, settings; ``llm``: calls by
  parse status and purpose, tokens, fallbacks, the answers' decisions;
- ``fidelity.md``: the tables in Markdown.

Each Parquet file is written by :func:`recoworld.io.tables.write_table` (so it also carries its
table name and the run schema's version) and carries ``recoworld.fidelity_schema`` =
:data:`SCHEMA_VERSION` in its metadata. Version 2: ``coverage`` in ``ratings``,
``llm_calls.parquet``. Version 3: ``headline.parquet``, the micro columns, ``exposure`` in
``calibration``, the calibration metrics ``session_gap_days`` and ``repeat_share``.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import polars as pl

from recoworld.eval.fidelity import FidelityResult
from recoworld.io.tables import write_table

SCHEMA_VERSION = "3"


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "-" if v != v else f"{v:.3f}"
    return str(v)


def markdown_table(df: pl.DataFrame, columns: list[str] | None = None) -> str:
    cols = columns or df.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.select(cols).iter_rows():
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines)


def headline(result: FidelityResult) -> dict[str, float]:
    """The goal figures: accuracy at 1:1, F1 at 1:9 and the positive rate at 1:9, for the
    evaluated brain with the list's share as its prior, per decision mode."""
    d = result.tables["discrimination"].filter(
        (pl.col("brain") == result.meta["brain"]) & (pl.col("prior") == "told")
    )
    out: dict[str, float] = {}
    for mode in d["decisions"].unique().to_list():
        m = d.filter(pl.col("decisions") == mode)
        one = m.filter(pl.col("ratio") == "1:1")
        nine = m.filter(pl.col("ratio") == "1:9")
        if one.height:
            out[f"accuracy_1_1_{mode}"] = one["accuracy"][0]
        if nine.height:
            out[f"f1_1_9_{mode}"] = nine["f1"][0]
            out[f"positive_rate_1_9_{mode}"] = nine["sim_positive_rate"][0]
            out["real_positive_rate_1_9"] = nine["real_positive_rate"][0]
    return out


HEADLINE_COLUMNS = [
    "figure",
    "exposure",
    "users",
    "ours",
    "real",
    "ease",
    "distance",
    "goal",
    "met",
    "goal_source",
    "published",
]


def coverage_line(meta: dict) -> str:
    """Who the figures cover, exactly (each headline row says its own count)."""
    return (
        f"{meta['evaluated_users']:,} of {meta['eligible_users']:,} users evaluated (users with "
        f"a held-out interaction; the world has {meta['users']:,}); each figure covers the "
        "users in its own users column (lists need a held-out positive, calibration "
        "consumption on both sides, ratings a held-out rating)"
    )


def render_markdown(result: FidelityResult) -> str:
    m, t = result.meta, result.tables
    parts = [
        f"# Fidelity: {m['dataset']}, brain {m['brain']}, protocol {m.get('protocol', '-')}",
        "",
        f"Split: {m['split_order']} (held out per user: {m['settings']['holdout_share']:.0%}"
        f"; last-k: {m['settings'].get('last_k')}); "
        f"{m['evaluated_users']:,} evaluated users, {m['train_interactions']:,} training and "
        f"{m['test_interactions']:,} held-out interactions. "
        f"Choice model fitted on the training part only: "
        f"AUC {m['fit_auc']:.3f} on its own inner split. {m['seconds']:.1f}s. "
        f"World content key {m.get('world_key', '-')[:16]}.",
        "",
        coverage_line(m) + ".",
    ]
    hl = t.get("headline")
    if hl is not None and hl.height:
        parts += [
            "",
            "## Headline",
            "",
            "`ours`: the simulated users (sampled decisions unless the figure says otherwise); "
            "`real`: the held-out behaviour; `ease`: EASE on the same lists; `exposure` (protocol "
            "c): `mf` is a study's default recommender, `browse` the model of the exposure behind "
            "the logs (docs/fidelity.md). Goals from issue 15 or proposed here.",
            "",
            markdown_table(hl, HEADLINE_COLUMNS),
        ]
    if m.get("brain_note"):
        parts += ["", m["brain_note"] + "."]
    if m.get("llm"):
        parts += ["", llm_summary(m["llm"])]
    d = t["discrimination"]
    parts += [
        "",
        f"## a. Discrimination (protocol {m.get('protocol', 'recoworld')})",
        "",
        "prior `told`: the simulated user knows the list's positive share; "
        "`blind`: its own fitted prior. "
        "decisions `sampled`: one draw; `expected`: in expectation over draws; `mode`: p >= 0.5; "
        "`ranked`: the list's share of items, those with the highest p.",
        "",
        markdown_table(
            d.sort(
                ["brain", "prior", "decisions", "ratio"], descending=[False, True, False, False]
            ),
            [
                "brain",
                "prior",
                "decisions",
                "ratio",
                "users",
                "accuracy",
                "precision",
                "recall",
                "f1",
                "precision_micro",
                "recall_micro",
                "f1_micro",
                "sim_positive_rate",
                "real_positive_rate",
            ],
        ),
    ]
    if t.get("ratings") is not None and t["ratings"].height:
        parts += [
            "",
            "## b. Rating alignment (held-out ratings)",
            "",
            markdown_table(
                t["ratings"],
                [
                    "brain",
                    "prediction",
                    "ratings",
                    "coverage",
                    "rmse",
                    "mae",
                    "tv_distance",
                    "wasserstein",
                ],
            ),
        ]
        h = t["rating_hist"]
        if h.height:
            wide = h.pivot(on="level", index="brain", values="share")
            parts += ["", "Rating shares per level:", "", markdown_table(wide)]
    if t.get("calibration") is not None and t["calibration"].height:
        c = t["calibration"]
        parts += [
            "",
            "## c. Behavioural calibration (simulated sessions vs. held-out behaviour)",
            "",
            markdown_table(
                c.filter(pl.col("trait") == "all"),
                ["exposure", "metric", "users", "real", "simulated", "ratio"],
            ),
            "",
            "Per trait tier:",
            "",
            markdown_table(
                c.filter(pl.col("trait") != "all"),
                ["exposure", "metric", "trait", "tier", "users", "real", "simulated", "ratio"],
            ),
        ]
    tiers = t.get("discrimination_tiers")
    if tiers is not None and tiers.height:
        pr = tiers.filter(
            (pl.col("brain") == m["brain"])
            & (pl.col("prior") == "told")
            & (pl.col("decisions") == "sampled")
            & (pl.col("ratio") == "1:9")
        )
        parts += [
            "",
            "Simulated vs. real positive rate per trait tier "
            "(1:9 lists, sampled decisions, told prior):",
            "",
            markdown_table(
                pr,
                [
                    "trait",
                    "tier",
                    "users",
                    "sim_positive_rate",
                    "real_positive_rate",
                    "accuracy",
                    "f1",
                ],
            ),
        ]
    parts += [
        "",
        "## d. Recommendation Hit@1 (AFL protocol: the true next item among 20 candidates)",
        "",
        markdown_table(
            t["hit"], ["recommender", "users", "candidates", "hit_at_1", "hit_at_5", "ndcg_at_5"]
        ),
        "",
    ]
    return "\n".join(parts)


def llm_summary(llm: dict) -> str:
    """One paragraph on the llm brain's calls: what they cost and how many failed."""
    st = llm.get("by_status", {})
    d = llm.get("decisions", {})
    lat = llm.get("mean_latency_s")
    statuses = ", ".join(f"{k} {v:,}" for k, v in sorted(st.items())) or "none"
    return (
        f"LLM calls ({llm.get('model', '?')}): {llm.get('calls', 0):,} calls ({statuses}); "
        f"{llm.get('fallbacks', 0):,} fallbacks (slates still invalid after one repair: "
        f"{d.get('fallback_skip', 0):,} items counted as skips); "
        f"answers: watch {d.get('watch', 0):,}, "
        f"click {d.get('click', 0):,}, skip {d.get('skip', 0):,}; "
        f"tokens in {llm.get('tokens_in', 0):,}, "
        f"out {llm.get('tokens_out', 0):,}"
        + (f"; mean latency {lat:.2f}s" if lat is not None else "")
        + (
            f"; {llm['seconds']:.1f}s of calls, {llm['calls_per_s']:.1f} calls/s"
            if llm.get("calls_per_s")
            else ""
        )
        + ". Every call is in llm_calls.parquet."
    )


def write_result(result: FidelityResult, out: Path) -> list[Path]:
    """Write every table, ``meta.json`` and ``fidelity.md`` into ``out`` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    version = {b"recoworld.fidelity_schema": SCHEMA_VERSION.encode()}
    # a table without columns (ratings of data without ratings) is left out
    tables = {name: df.to_arrow() for name, df in result.tables.items() if df.width}
    if result.llm_calls is not None:  # the run's llm_calls table, as the brain wrote it
        tables["llm_calls"] = result.llm_calls  # type: ignore[assignment]
    written = [
        write_table(
            out / f"{name}.parquet",
            table.replace_schema_metadata({**(table.schema.metadata or {}), **version}),
            name,
        )
        for name, table in tables.items()
    ]
    meta_json = msgspec.json.format(
        msgspec.json.encode({**result.meta, "headline": headline(result)}), indent=2
    )
    for path, data in (
        (out / "meta.json", meta_json + b"\n"),
        (out / "fidelity.md", render_markdown(result).encode()),
    ):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        written.append(path)
    return written
