"""What a report shows, computed from a run's Parquet files with polars.

:func:`load_run` checks the run folder (a complete run of this schema version, every table's
files of that version) and aggregates the tables lazily, in a few scans, into small frames
(:class:`RunData`): nothing per event is kept in memory. :func:`load_sweep` reads a sweep's
``sweep_summary.parquet``. Both raise :class:`~recoworld.errors.RunError` with a one-line
message for a missing, partial or older run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from recoworld.errors import RunError
from recoworld.io.runs import check_run_dir, scan_table, verify_run

SWEEP_SUMMARY_FILE = "sweep_summary.parquet"

TOP_INSTRUCTIONS = 20
TOP_FEELINGS = 15
MAX_TAGS = 200
"""Tags looked for in instructions: the creator items' and the population's most liked ones."""


@dataclass(frozen=True)
class LlmStats:
    """The ``llm_calls`` table, aggregated: ``by_purpose`` (arm, purpose, calls, tokens,
    latency quantiles), ``parse_status`` and ``finish_reason`` (arm, status, calls), and the
    latencies per arm for a histogram."""

    by_purpose: pl.DataFrame
    parse_status: pl.DataFrame
    finish_reason: pl.DataFrame
    latencies: dict[str, list[float]]


@dataclass(frozen=True)
class RunData:
    """Everything a run report shows. Turns and sessions are 1-based here (as people count)."""

    run_dir: Path
    manifest: dict
    study: dict
    fit: dict | None
    arms: list[str]
    metrics: list[str]
    summary: pl.DataFrame
    """summary.parquet as written: arm, segment, metric, n, mean, CIs, diff and its CIs."""
    by_turn: pl.DataFrame
    """arm, turn, slates, impressions, ctr, watch (mean watch fraction per item shown), mean
    mindset (satisfaction, fatigue, boredom, curiosity) after the items of that turn."""
    by_session: pl.DataFrame
    """arm, session, users, share (of the arm's users who had it), ctr, turns, left_early,
    return_rate (share who came back after it), satisfaction_end, instructions."""
    session_lengths: pl.DataFrame
    """arm, turns, sessions, share of the arm's sessions."""
    creator_items: pl.DataFrame
    """arm, item_id, title, impressions, users_reached, reach (share of the arm's users),
    clicks, watches, ctr, mean_watch (over clicks), mean_rating."""
    instructions: pl.DataFrame
    """The reflective instructions, grouped by normalised text: group, example, arm, count."""
    instruction_groups: int
    """How many distinct groups there are in all (the table keeps the most frequent)."""
    instruction_totals: pl.DataFrame
    """arm, instructions (written), users (who wrote at least one)."""
    instruction_tags: pl.DataFrame
    """arm, tag, mentions: how many instructions name a tag the population likes."""
    feelings: pl.DataFrame | None
    """arm, feeling (normalised), example, count; None when no event carries a feeling."""
    session_examples: pl.DataFrame
    """A few session summaries of the first arm: user, session, summary."""
    llm: LlmStats | None
    """None when the run has no llm_calls table or it is empty."""

    @property
    def control(self) -> str:
        return self.arms[0]


def _json(path: Path, what: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunError(
            f"{path}: {what} is not valid JSON ({e.msg} at line {e.lineno}); "
            "expected the file a run writes"
        ) from None


def _norm(col: pl.Expr) -> pl.Expr:
    """Lower case, punctuation dropped, spaces collapsed: how texts are grouped."""
    return col.str.to_lowercase().str.replace_all(r"[^\p{L}\p{N}]+", " ").str.strip_chars()


def creator_titles(study: dict) -> dict[str, tuple[str, list[str]]]:
    """item_id -> (title, tags) of the study's creator items (ids as the run gives them)."""
    creator = study.get("creator") or {}
    out = {}
    for k, item in enumerate(creator.get("items") or []):
        item_id = item.get("item_id") or f"{creator.get('id', '')}:{k}"
        out[item_id] = (item.get("title") or item_id, list(item.get("tags") or []))
    return out


def load_run(run_dir: str | Path) -> RunData:
    """Aggregate a complete run for its report. Raises RunError naming what is wrong."""
    run_dir = Path(run_dir)
    manifest = check_run_dir(run_dir)
    study = _json(run_dir / "study.json", "study.json") or {}
    fit = _json(run_dir / "fit.json", "fit.json")
    arms = list(manifest.get("arms") or [])
    summary = scan_table(run_dir, "summary").collect()
    if not arms:
        arms = summary["arm"].unique(maintain_order=True).to_list()
    metrics = summary["metric"].unique(maintain_order=True).to_list()
    events = scan_table(run_dir, "events")
    sessions = scan_table(run_dir, "sessions")
    verify_run(run_dir, manifest)  # polars scans do not check page checksums: the hashes do
    users_per_arm = manifest.get("users_per_arm") or 0

    clicked = pl.col("action") != "skip"
    by_turn = (
        events.group_by("arm", "turn")
        .agg(
            slates=(pl.col("position") == 0).sum(),
            impressions=pl.len(),
            ctr=clicked.mean(),
            watch=pl.col("watch_fraction").mean(),
            satisfaction=pl.col("satisfaction").mean(),
            fatigue=pl.col("fatigue").mean(),
            boredom=pl.col("boredom").mean(),
            curiosity=pl.col("curiosity").mean(),
        )
        .with_columns(pl.col("turn").cast(pl.Int32) + 1)
        .sort("arm", "turn")
    )
    ctr_by_session = events.group_by("arm", "session").agg(ctr=clicked.mean())
    by_session = (
        sessions.group_by("arm", "session")
        .agg(
            users=pl.len(),
            turns=pl.col("turns").mean(),
            left_early=pl.col("left_early").mean(),
            return_rate=pl.col("returned").mean(),
            satisfaction_end=pl.col("satisfaction_end").mean(),
            instructions=pl.col("instructions").sum(),
        )
        .join(ctr_by_session, on=["arm", "session"], how="left")
        .with_columns(
            pl.col("session").cast(pl.Int32) + 1, share=pl.col("users") / max(users_per_arm, 1)
        )
        .sort("arm", "session")
    )
    session_lengths = (
        sessions.group_by("arm", "turns")
        .agg(sessions=pl.len())
        .with_columns(share=pl.col("sessions") / pl.col("sessions").sum().over("arm"))
        .sort("arm", "turns")
    )
    creator = (
        events.filter(pl.col("is_creator_item"))
        .group_by("arm", pl.col("item_id").cast(pl.String))
        .agg(
            impressions=pl.len(),
            users_reached=pl.col("user").n_unique(),
            clicks=clicked.sum(),
            watches=pl.col("action").is_in(["watch", "rate"]).sum(),
            mean_watch=pl.col("watch_fraction").filter(clicked).mean(),
            mean_rating=pl.col("rating").mean(),
        )
        .with_columns(
            ctr=pl.col("clicks") / pl.col("impressions"),
            reach=pl.col("users_reached") / max(users_per_arm, 1),
        )
        .sort("arm", "item_id")
    )
    said = (
        events.filter(pl.col("instruction").is_not_null())
        .select("arm", "user", "session", "turn", pl.col("instruction").cast(pl.String))
        .unique()
    )
    feelings = events.filter(pl.col("feeling").is_not_null() & (pl.col("feeling") != "")).select(
        "arm", "feeling"
    )
    examples = (
        sessions.filter(pl.col("arm") == arms[0])
        .select(
            "user", pl.col("session").cast(pl.Int32) + 1, "instructions", "left_early", "summary"
        )
        .head(2000)
    )
    (by_turn_df, by_session_df, lengths_df, creator_df, said_df, feelings_df, examples_df) = (
        pl.collect_all([by_turn, by_session, session_lengths, creator, said, feelings, examples])
    )
    order = {a: k for k, a in enumerate(arms)}

    def arm_order(frame: pl.DataFrame, *then: str) -> pl.DataFrame:
        return frame.sort(
            pl.col("arm").replace_strict(order, default=len(order), return_dtype=pl.Int32), *then
        )

    by_turn_df, by_session_df = arm_order(by_turn_df, "turn"), arm_order(by_session_df, "session")
    lengths_df, creator_df = arm_order(lengths_df, "turns"), arm_order(creator_df, "item_id")
    titles = creator_titles(study)
    creator_df = creator_df.with_columns(
        title=pl.col("item_id").replace_strict(
            {k: v[0] for k, v in titles.items()}, default=pl.col("item_id")
        )
    )

    # reflective instructions: grouped by normalised text, counted per arm
    said_df = said_df.with_columns(group=_norm(pl.col("instruction")))
    grouped = said_df.group_by("group", "arm").agg(count=pl.len())
    top = (
        grouped.group_by("group")
        .agg(total=pl.col("count").sum())
        .sort("total", "group", descending=[True, False])
    )
    keep = top.head(TOP_INSTRUCTIONS)["group"]
    instructions = (
        grouped.filter(pl.col("group").is_in(keep.implode()))
        .join(_examples(said_df, "instruction"), on="group")
        .join(top, on="group")
        .sort("total", "group", "arm", descending=[True, False, False])
        .select("group", "example", "arm", "count")
    )
    totals = said_df.group_by("arm").agg(instructions=pl.len(), users=pl.col("user").n_unique())
    totals = pl.DataFrame({"arm": arms}).join(totals, on="arm", how="left").fill_null(0)
    instruction_tags = _tag_mentions(run_dir, said_df, titles)

    feel = None
    if feelings_df.height:
        f = feelings_df.with_columns(group=_norm(pl.col("feeling")))
        counts = (
            f.group_by("arm", "group").agg(count=pl.len()).join(_examples(f, "feeling"), on="group")
        )
        top_f = (
            counts.group_by("group")
            .agg(total=pl.col("count").sum())
            .sort("total", "group", descending=[True, False])
            .head(TOP_FEELINGS)
        )
        feel = (
            counts.join(top_f, on="group")
            .sort("total", "group", "arm", descending=[True, False, False])
            .drop("total")
        )

    ex = pl.concat(
        [
            examples_df.filter(pl.col("instructions") > 0).head(3),
            examples_df.filter(pl.col("instructions") == 0).head(3),
        ]
    )
    return RunData(
        run_dir=run_dir,
        manifest=manifest,
        study=study,
        fit=fit,
        arms=arms,
        metrics=metrics,
        summary=summary,
        by_turn=by_turn_df,
        by_session=by_session_df,
        session_lengths=lengths_df,
        creator_items=creator_df,
        instructions=instructions,
        instruction_groups=top.height,
        instruction_totals=totals,
        instruction_tags=instruction_tags,
        feelings=feel,
        session_examples=ex.sort("user", "session"),
        llm=_llm_stats(run_dir),
    )


def _examples(frame: pl.DataFrame, text: str) -> pl.DataFrame:
    """group -> example: the most frequent original text of each group (ties: the first in
    order)."""
    return (
        frame.group_by("group", text)
        .agg(n=pl.len())
        .sort("n", text, descending=[True, False])
        .group_by("group", maintain_order=True)
        .agg(example=pl.col(text).first())
    )


def _tag_mentions(
    run_dir: Path, said: pl.DataFrame, titles: dict[str, tuple[str, list[str]]]
) -> pl.DataFrame:
    """How many instructions name each tag the population likes most (or a creator item carries)."""
    empty = pl.DataFrame(schema={"arm": pl.String, "tag": pl.String, "mentions": pl.UInt32})
    if said.height == 0:
        return empty
    tags: set[str] = {t for _, ts in titles.values() for t in ts}
    users = run_dir / "users.parquet"
    if users.is_file():
        try:
            liked = (
                pl.scan_parquet(users)
                .select(pl.col("liked_tags").explode().drop_nulls().value_counts(sort=True))
                .collect()
            )
            tags |= set(liked.unnest(liked.columns[0]).head(MAX_TAGS)["liked_tags"].to_list())
        except pl.exceptions.PolarsError:
            pass  # users.parquet of another layout: mentions of creator tags only
    tags = {t for t in tags if t}
    if not tags:
        return empty
    distinct = said.group_by("arm", "instruction").agg(n=pl.len())
    rows = []
    for tag in sorted(tags):
        hit = distinct.filter(
            pl.col("instruction").str.contains(
                rf"(?i)(^|[^\p{{L}}\p{{N}}]){re.escape(tag)}($|[^\p{{L}}\p{{N}}])"
            )
        )
        for arm, n in hit.group_by("arm").agg(pl.col("n").sum()).iter_rows():
            rows.append((arm, tag, n))
    if not rows:
        return empty
    return pl.DataFrame(rows, schema=empty.schema, orient="row").sort(
        "mentions", "tag", descending=[True, False]
    )


def _llm_stats(run_dir: Path) -> LlmStats | None:
    if not (run_dir / "llm_calls").is_dir():
        return None
    calls = scan_table(run_dir, "llm_calls")
    by_purpose = (
        calls.group_by("arm", pl.col("purpose").cast(pl.String))
        .agg(
            calls=pl.len(),
            tokens_in=pl.col("tokens_in").sum(),
            tokens_out=pl.col("tokens_out").sum(),
            cached_share=pl.col("cached_tokens").filter(pl.col("cached_tokens") >= 0).sum()
            / pl.col("tokens_in").filter(pl.col("cached_tokens") >= 0).sum(),
            latency_p50=pl.col("latency_s").median(),
            latency_p95=pl.col("latency_s").quantile(0.95),
            latency_mean=pl.col("latency_s").mean(),
        )
        .sort("arm", "purpose")
    )
    status = (
        calls.group_by("arm", pl.col("parse_status").cast(pl.String).alias("status"))
        .agg(calls=pl.len())
        .sort("arm", "status")
    )
    finish = (
        calls.group_by("arm", pl.col("finish_reason").cast(pl.String).alias("status"))
        .agg(calls=pl.len())
        .sort("arm", "status")
    )
    lat = calls.select("arm", "latency_s")
    by_purpose, status, finish, lat = pl.collect_all([by_purpose, status, finish, lat])
    if by_purpose.height == 0:
        return None
    latencies = {arm: g["latency_s"].drop_nulls().to_list() for (arm,), g in lat.group_by("arm")}
    return LlmStats(
        by_purpose=by_purpose, parse_status=status, finish_reason=finish, latencies=latencies
    )


# ---------------------------------------------------------------------------------------------
# Sweeps


@dataclass(frozen=True)
class SweepData:
    folder: Path
    summary: pl.DataFrame
    """sweep_summary.parquet: study, recommender, population, seed, cell, arm, metric, n, mean,
    CIs, diff and its CIs."""
    cells: list[str]
    metrics: list[str]
    cell_reports: dict[str, str]
    """cell -> relative link to the cell's own report.html, where one was written."""


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / SWEEP_SUMMARY_FILE).is_file()


def load_sweep(folder: str | Path) -> SweepData:
    """A sweep's date folder (the one holding sweep_summary.parquet)."""
    from recoworld.sweep import read_sweep_summary  # the sweep module owns its schema check

    folder = Path(folder)
    summary = read_sweep_summary(folder / SWEEP_SUMMARY_FILE)
    if summary.height == 0:
        raise RunError(
            f"{folder / SWEEP_SUMMARY_FILE}: no cells; "
            "expected one row per cell x arm x metric (did every cell fail?)"
        )
    cells = summary["cell"].unique(maintain_order=True).to_list()
    links = {
        c: f"cell={c}/report.html"
        for c in cells
        if (folder / f"cell={c}" / "report.html").is_file()
    }
    return SweepData(
        folder=folder,
        summary=summary,
        cells=cells,
        metrics=summary["metric"].unique(maintain_order=True).to_list(),
        cell_reports=links,
    )
