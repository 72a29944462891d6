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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recoworld.errors import RunError
from recoworld.io.runs import check_run_dir, scan_table, verify_run
from recoworld.study import inference
from recoworld.study.metrics import METRIC_NAMES, METRICS
from recoworld.study.pooling import BETWEEN_DOMINATES, pool

SWEEP_SUMMARY_FILE = "sweep_summary.parquet"

TOP_INSTRUCTIONS = 20
TOP_FEELINGS = 15
MAX_TAGS = 200
"""Tags looked for in instructions: the creator items' and the population's most liked ones."""
CREATOR_METRICS = ("creator_reach", "creator_engagement")
TURN_VALUES = ("ctr", "watch", "satisfaction", "fatigue", "boredom", "curiosity")
SESSION_VALUES = ("share", "turns", "left_early", "return_rate", "satisfaction_end", "ctr")
EFFECT_COLUMNS = (
    "diff", "diff_ci_low", "diff_ci_high", "diff_se", "diff_df", "diff_between_share", "lift",
    "lift_ci_low", "lift_ci_high", "p_value", "p_holm", "q_bh", "significant", "mde",
)  # fmt: skip
"""The columns of a paired effect, as the summary names them."""


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
    """arm, turn, slates, impressions, and per user who had that turn (each user weighs the
    same, like the summary): ctr, watch (mean watch fraction per item shown), mindset
    (satisfaction, fatigue, boredom, curiosity) after the turn's items; each value ``v`` with
    its 95% interval ``v_lo``, ``v_hi`` (:func:`banded`)."""
    by_session: pl.DataFrame
    """arm, session, users, instructions, and with 95% intervals (``v_lo``, ``v_hi``): share
    (of the arm's users who had it), and over the users who had it: ctr, turns, left_early,
    return_rate (came back after it), satisfaction_end."""
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
    replicates: int = 1
    """Replicates pooled (the manifest's; 1 for a run without them)."""
    has_creator_items: bool = False
    """Whether the study has creator items (then placement is uncertain)."""
    placebos: tuple[tuple[str, str], ...] = ()
    """(treatment arm, its placebo arm) for every arm with ``placebo_of``."""
    slot_content: pl.DataFrame | None = None
    """Per treatment with a placebo: :func:`slot_and_content` (None without a placebo arm)."""
    creator_replicates: pl.DataFrame | None = None
    """arm, replicate, item_id, title, users (of the replicate), users_reached, reach, clicks,
    engagement (clicks per user of the replicate): how much the placement draw matters."""
    replicate_means: pl.DataFrame | None = None
    """arm, replicate, metric, n, mean: every metric's mean over each replicate's users
    (segment "all"); the summary's mean is the mean of these."""
    warnings: tuple[str, ...] = ()
    """What a reader must know before trusting an interval (:func:`run_warnings`)."""

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
    user_metrics = scan_table(run_dir, "user_metrics")
    # each user's replicate (one per user, the same in every arm)
    replicate_of = (
        user_metrics.filter(pl.col("arm") == arms[0])
        .select("user", pl.col("replicate").cast(pl.Int32))
        .unique("user")
    )
    per_replicate = replicate_of.group_by("replicate").agg(replicate_users=pl.len())
    # curves: per user per turn (each user weighs the same), then per replicate's moments
    turn_moments = (
        events.group_by("arm", "user", "turn")
        .agg(
            ctr=clicked.mean(),
            watch=pl.col("watch_fraction").mean(),
            satisfaction=pl.col("satisfaction").mean(),
            fatigue=pl.col("fatigue").mean(),
            boredom=pl.col("boredom").mean(),
            curiosity=pl.col("curiosity").mean(),
        )
        .join(replicate_of, on="user")
        .group_by("arm", "replicate", "turn")
        .agg(moments(TURN_VALUES))
        .with_columns(pl.col("turn").cast(pl.Int32) + 1)
    )
    turn_counts = (
        events.group_by("arm", "turn")
        .agg(slates=(pl.col("position") == 0).sum(), impressions=pl.len())
        .with_columns(pl.col("turn").cast(pl.Int32) + 1)
    )
    ctr_by_session = events.group_by("arm", "user", "session").agg(ctr=clicked.mean())
    session_moments = (
        sessions.select(
            "arm",
            "user",
            "session",
            "turns",
            "left_early",
            "satisfaction_end",
            return_rate="returned",
        )
        .join(ctr_by_session, on=["arm", "user", "session"], how="left")
        .join(replicate_of, on="user")
        .group_by("arm", "replicate", "session")
        .agg(pl.len().alias("had"), *moments([v for v in SESSION_VALUES if v != "share"]))
        .join(per_replicate, on="replicate")
        .with_columns(  # share of the replicate's users who had the session: a 0/1 per user
            pl.col("session").cast(pl.Int32) + 1,
            share_n=pl.col("replicate_users"),
            share_mean=pl.col("had") / pl.col("replicate_users"),
            share_m2=pl.col("had") * (1 - pl.col("had") / pl.col("replicate_users")),
        )
    )
    session_counts = (
        sessions.group_by("arm", "session")
        .agg(users=pl.len(), instructions=pl.col("instructions").sum())
        .with_columns(pl.col("session").cast(pl.Int32) + 1)
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
    creator_by_replicate = (
        events.filter(pl.col("is_creator_item"))
        .join(replicate_of, on="user")
        .group_by("arm", "replicate", pl.col("item_id").cast(pl.String))
        .agg(users_reached=pl.col("user").n_unique(), clicks=clicked.sum())
    )
    (
        turn_m, turn_n, session_m, session_n, lengths_df, creator_df, said_df, feelings_df,
        examples_df, creator_rep, reps_df, um_df,
    ) = pl.collect_all(
        [
            turn_moments, turn_counts, session_moments, session_counts, session_lengths,
            creator, said, feelings, examples, creator_by_replicate, per_replicate,
            user_metrics,
        ]
    )  # fmt: skip
    by_turn_df = turn_n.join(banded(turn_m, ["arm", "turn"], TURN_VALUES), on=["arm", "turn"])
    by_session_df = session_n.join(
        banded(session_m, ["arm", "session"], SESSION_VALUES), on=["arm", "session"]
    )
    # a share cannot leave [0, 1]: a t-interval over few replicates can, so it is clipped
    by_turn_df = by_turn_df.with_columns(_clipped(["ctr", "watch"]))
    by_session_df = by_session_df.with_columns(
        _clipped(["share", "left_early", "return_rate", "ctr"])
    )
    order = {a: k for k, a in enumerate(arms)}

    def arm_order(frame: pl.DataFrame, *then: str) -> pl.DataFrame:
        return frame.sort(
            pl.col("arm").replace_strict(order, default=len(order), return_dtype=pl.Int32), *then
        )

    by_turn_df, by_session_df = arm_order(by_turn_df, "turn"), arm_order(by_session_df, "session")
    lengths_df, creator_df = arm_order(lengths_df, "turns"), arm_order(creator_df, "item_id")
    titles = creator_titles(study)
    title_of = pl.col("item_id").replace_strict(
        {k: v[0] for k, v in titles.items()}, default=pl.col("item_id")
    )
    placebo_arms = [a.get("name") for a in study.get("arms") or [] if a.get("placebo_of")]
    title_of = (
        pl.when(pl.col("arm").is_in(placebo_arms))
        .then(pl.format("{} (placebo)", pl.col("item_id")))
        .otherwise(title_of)
    )
    creator_df = creator_df.with_columns(title=title_of)
    # every item an arm showed, in every replicate (0 where a replicate's users never saw it)
    creator_rep = (
        creator_df.select("arm", "item_id")
        .join(reps_df, how="cross")
        .join(creator_rep, on=["arm", "replicate", "item_id"], how="left")
        .fill_null(0)
        .with_columns(
            title=title_of,
            users=pl.col("replicate_users"),
            reach=pl.col("users_reached") / pl.col("replicate_users"),
            engagement=pl.col("clicks") / pl.col("replicate_users"),
        )
        .select(
            "arm",
            "replicate",
            "item_id",
            "title",
            "users",
            "users_reached",
            "reach",
            "clicks",
            "engagement",
        )
    )
    creator_rep = arm_order(creator_rep, "item_id", "replicate")
    replicates = int(manifest.get("replicates") or reps_df.height or 1)
    has_creator = bool(titles)
    pairs = tuple((t, p) for t, p in placebo_pairs(study) if t in arms and p in arms)
    slot_content = slot_and_content(summary, um_df, pairs) if pairs else None

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
        replicates=replicates,
        has_creator_items=has_creator,
        placebos=pairs,
        slot_content=slot_content,
        creator_replicates=creator_rep,
        replicate_means=arm_order(replicate_means(um_df), "replicate"),
        warnings=run_warnings(summary, replicates, has_creator, slot_content),
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
# Intervals: bands on curves, paired effects, warnings


def moments(values: Sequence[str]) -> list[pl.Expr]:
    """Per group, for each column ``v``: ``v_n`` (non-null values), ``v_mean``, ``v_m2`` (sum
    of squared deviations), the moments :func:`banded` pools."""
    out = []
    for v in values:
        x = pl.col(v).cast(pl.Float64)
        out += [
            x.count().alias(f"{v}_n"),
            x.mean().alias(f"{v}_mean"),
            ((x - x.mean()) ** 2).sum().alias(f"{v}_m2"),
        ]
    return out


def banded(frame: pl.DataFrame, keys: Sequence[str], values: Sequence[str]) -> pl.DataFrame:
    """Per ``keys`` cell, each value's mean with its 95% interval (``v``, ``v_lo``, ``v_hi``),
    from per-replicate moments (``frame``: keys, replicate and :func:`moments`' columns of
    per-user values) pooled like the summary (:func:`recoworld.study.pooling.pool`): with one
    replicate the Student-t interval over users, with several the replicates' mean and their
    random-effects interval (placement and population included)."""
    keys = list(keys)
    cells = frame.select(keys).unique().sort(keys).with_row_index("_cell")
    reps = frame.select("replicate").unique().sort("replicate").with_row_index("_rep")
    m = frame.join(cells, on=keys).join(reps, on="replicate")
    c, r = m["_cell"].to_numpy(), m["_rep"].to_numpy()
    out = cells.drop("_cell")
    cols = []
    for v in values:
        parts = []
        for part in ("n", "mean", "m2"):
            a = np.zeros((reps.height, cells.height))
            a[r, c] = m[f"{v}_{part}"].cast(pl.Float64).fill_null(0.0).to_numpy()
            parts.append(a)
        pooled = pool(*parts)
        lo, hi = pooled.interval()
        cols += [
            pl.Series(v, pooled.mean).fill_nan(None),
            pl.Series(f"{v}_lo", lo).fill_nan(None),
            pl.Series(f"{v}_hi", hi).fill_nan(None),
        ]
    return out.with_columns(cols)


def _clipped(shares: Sequence[str]) -> list[pl.Expr]:
    return [pl.col(f"{v}_{e}").clip(0.0, 1.0) for v in shares for e in ("lo", "hi")]


def _metric_values(frame: pl.DataFrame) -> np.ndarray:
    """(metrics, users): every summary metric of each row of a ``user_metrics`` frame, by the
    one definition (:data:`recoworld.study.metrics.METRICS`)."""
    names = {m.total for m in METRICS.values()} | {m.per for m in METRICS.values() if m.per}
    totals = {c: frame[c].cast(pl.Float64).to_numpy() for c in names}
    return np.stack([METRICS[m].of(totals) for m in METRIC_NAMES]).reshape(len(METRIC_NAMES), -1)


def replicate_means(user_metrics: pl.DataFrame) -> pl.DataFrame:
    """arm, replicate, metric, n, mean: each metric's mean over each replicate's users."""
    x = _metric_values(user_metrics)
    wide = user_metrics.select("arm", pl.col("replicate").cast(pl.Int32)).with_columns(
        pl.Series(m, x[k]) for k, m in enumerate(METRIC_NAMES)
    )
    return (
        wide.unpivot(index=["arm", "replicate"], variable_name="metric")
        .group_by("arm", "replicate", "metric", maintain_order=True)
        .agg(n=pl.len(), mean=pl.col("value").mean())
        .sort("arm", "replicate", maintain_order=True)
    )


def paired_effect(
    user_metrics: pl.DataFrame, arm: str, base: str, segments: Sequence[str] | None = None
) -> pl.DataFrame:
    """``arm`` - ``base`` per segment ("all" first) and metric, paired per user and computed
    like the summary's differences: per replicate the moments (n, mean, m2) of each user's
    difference of each metric (:data:`~recoworld.study.metrics.METRICS` on the user's totals),
    pooled with :func:`recoworld.study.pooling.pool`; the lift over ``base`` by
    :func:`recoworld.study.inference.relative_lift`, the p-value and the MDE as the summary
    has them. ``user_metrics``: the table (arm, user, replicate, segment and the totals).
    Columns: segment, metric, n, replicates, base_mean, mean and the summary's names for a
    difference (:data:`EFFECT_COLUMNS`; p_holm, q_bh and significant null: the family is the
    caller's). Raises RunError when the two arms do not hold the same users."""
    a = user_metrics.filter(pl.col("arm") == arm).sort("user")
    b = user_metrics.filter(pl.col("arm") == base).sort("user")
    if a.height == 0 or b.height == 0 or not a["user"].equals(b["user"]):
        raise RunError(
            f"user_metrics: arms {arm!r} and {base!r} do not hold the same users "
            f"({a.height} and {b.height} rows); expected every arm to hold every user (paired)"
        )
    if segments is None:
        segments = ["all", *sorted(a["segment"].unique().to_list())]
    seg_index = {s: k for k, s in enumerate(segments)}
    rep = a["replicate"].cast(pl.Int64).to_numpy()
    reps = np.unique(rep)
    r_idx = np.searchsorted(reps, rep)
    seg = a["segment"].replace_strict(seg_index, default=-1, return_dtype=pl.Int64).to_numpy()
    xa, xb = _metric_values(a), _metric_values(b)
    kinds = (xb, xa, xa - xb)  # base, arm, difference
    n_r, n_s, n_m = len(reps), len(segments), len(METRIC_NAMES)
    n = np.zeros((n_r, n_s))
    mean, m2 = np.zeros((3, n_r, n_s, n_m)), np.zeros((3, n_r, n_s, n_m))
    groups = [(seg >= 0, seg)]
    if "all" in seg_index:
        groups.append((np.ones_like(seg, bool), np.full_like(seg, seg_index["all"])))
    for keep, s in groups:
        key = r_idx[keep] * n_s + s[keep]
        cnt = np.bincount(key, minlength=n_r * n_s).astype(np.float64)
        n += cnt.reshape(n_r, n_s)
        for k, x in enumerate(kinds):
            for j in range(n_m):
                v = x[j][keep]
                mu = np.divide(
                    np.bincount(key, v, minlength=n_r * n_s), cnt, out=np.zeros(cnt.size),
                    where=cnt > 0,
                )  # fmt: skip
                sq = np.bincount(key, (v - mu[key]) ** 2, minlength=n_r * n_s)
                mean[k, :, :, j] += mu.reshape(n_r, n_s)
                m2[k, :, :, j] += sq.reshape(n_r, n_s)
    nn = np.broadcast_to(n[..., None], (n_r, n_s, n_m))
    d = pool(nn, mean[2], m2[2])
    lo, hi = d.interval()
    # base as arm 0, arm as arm 1 (the layout relative_lift takes): (replicates, 2, ...)
    zero = np.zeros_like(mean[2])
    lift = inference.relative_lift(
        np.stack([nn, nn], 1), mean[:2].swapaxes(0, 1), m2[:2].swapaxes(0, 1),
        np.stack([zero, mean[2]], 1), np.stack([zero, m2[2]], 1),
    )  # fmt: skip
    base_mean, arm_mean = pool(nn, mean[0], m2[0]).mean, pool(nn, mean[1], m2[1]).mean
    pv, mde = inference.p_values(d.mean, d.se, d.df), inference.mde(d.se, d.df)
    rows = []
    for s, name in enumerate(segments):
        if d.n[s, 0] == 0:
            continue
        for j, metric in enumerate(METRIC_NAMES):
            c = (s, j)
            rows.append(
                {
                    "segment": name,
                    "metric": metric,
                    "n": int(d.n[c]),
                    "replicates": int(d.replicates[c]),
                    "base_mean": base_mean[c],
                    "mean": arm_mean[c],
                    "diff": d.mean[c],
                    "diff_ci_low": lo[c],
                    "diff_ci_high": hi[c],
                    "diff_se": d.se[c],
                    "diff_df": d.df[c],
                    "diff_between_share": d.between_share[c],
                    "lift": lift.lift[1][c],
                    "lift_ci_low": lift.low[1][c],
                    "lift_ci_high": lift.high[1][c],
                    "p_value": pv[c],
                    "p_holm": None,
                    "q_bh": None,
                    "significant": None,
                    "mde": mde[c],
                }  # fmt: skip
            )
    types = {"segment": pl.String, "metric": pl.String, "n": pl.Int64, "replicates": pl.Int32}
    types["significant"] = pl.Boolean
    schema = {k: types.get(k, pl.Float64) for k in rows[0]} if rows else None
    return pl.DataFrame(rows, schema=schema).with_columns(pl.col(pl.Float64).fill_nan(None))


def placebo_pairs(study: dict) -> tuple[tuple[str, str], ...]:
    """(treatment arm, placebo arm) for every arm of ``study.json`` with ``placebo_of``."""
    return tuple(
        (a["placebo_of"], a["name"]) for a in study.get("arms") or [] if a.get("placebo_of")
    )


def slot_and_content(
    summary: pl.DataFrame, user_metrics: pl.DataFrame, pairs: Sequence[tuple[str, str]]
) -> pl.DataFrame:
    """Per (treatment, placebo) pair, segment and metric, three paired effects: ``total``
    (treatment - control) and ``slot`` (placebo - control) from the summary (their p_holm,
    q_bh and significant over the summary's family), and ``content`` (treatment - placebo) by
    :func:`paired_effect`, with Holm and Benjamini-Hochberg over every content row (their own
    family: the summary does not hold them). Columns: treatment, placebo, effect, arm, base,
    segment, metric, n, base_mean, mean and :data:`EFFECT_COLUMNS`."""
    control = summary["arm"][0]
    segments = summary["segment"].unique(maintain_order=True).to_list()
    frames = []
    base_means = summary.select("arm", "segment", "metric", base_mean=pl.col("mean"))
    for treatment, placebo in pairs:
        for effect, arm in (("total", treatment), ("slot", placebo)):
            rows = summary.filter(pl.col("arm") == arm).join(
                base_means.filter(pl.col("arm") == control).drop("arm"),
                on=["segment", "metric"],
            )
            frames.append(
                rows.select(
                    pl.lit(treatment).alias("treatment"),
                    pl.lit(placebo).alias("placebo"),
                    pl.lit(effect).alias("effect"),
                    "arm",
                    pl.lit(control).alias("base"),
                    "segment",
                    "metric",
                    "n",
                    "base_mean",
                    "mean",
                    *EFFECT_COLUMNS,
                )  # fmt: skip
            )
        content = paired_effect(user_metrics, treatment, placebo, segments)
        frames.append(
            content.select(
                pl.lit(treatment).alias("treatment"),
                pl.lit(placebo).alias("placebo"),
                pl.lit("content").alias("effect"),
                pl.lit(treatment).alias("arm"),
                pl.lit(placebo).alias("base"),
                "segment",
                "metric",
                "n",
                "base_mean",
                "mean",
                *EFFECT_COLUMNS,
            )  # fmt: skip
        )
    out = pl.concat(frames, how="vertical_relaxed")
    is_content = (out["effect"] == "content").to_numpy()
    p = np.where(is_content, out["p_value"].cast(pl.Float64).fill_null(np.nan).to_numpy(), np.nan)
    holm, bh = inference.holm(p), inference.benjamini_hochberg(p)
    return out.with_columns(
        p_holm=pl.when(pl.Series(is_content)).then(pl.Series(holm)).otherwise("p_holm"),
        q_bh=pl.when(pl.Series(is_content)).then(pl.Series(bh)).otherwise("q_bh"),
    ).with_columns(
        pl.col("p_holm", "q_bh").fill_nan(None),
        significant=pl.when(pl.Series(is_content))
        .then(pl.col("p_holm").fill_nan(None) <= inference.ALPHA)
        .otherwise("significant"),
    )


def run_warnings(
    summary: pl.DataFrame,
    replicates: int,
    has_creator_items: bool,
    slot_content: pl.DataFrame | None = None,
) -> tuple[str, ...]:
    """One line per thing a reader must know before trusting the intervals: a run with
    creator items but one replicate (its intervals ignore placement uncertainty), and every
    creator metric (segment "all") whose between_share or diff_between_share is above
    :data:`BETWEEN_DOMINATES` (which item a new item is matters more than which users saw it)."""
    out = []
    if has_creator_items and replicates <= 1:
        out.append(
            "This run has one replicate but creator items: its intervals cover which users were "
            "drawn, not which plausible item each new creator item is (placement), so they are "
            "too narrow for claims about the creator. Run the study with "
            "simulation.replicates of 2 or more (0, the default, runs 5)."
        )
    hits = []
    rows = summary.filter(
        (pl.col("segment") == "all") & pl.col("metric").is_in(CREATOR_METRICS)
    ).select("arm", "metric", "between_share", "diff_between_share")
    control = summary["arm"][0] if summary.height else ""
    for r in rows.iter_rows(named=True):
        for col, what in (("between_share", "mean"), ("diff_between_share", "difference")):
            v = r[col]
            if v is not None and v == v and v > BETWEEN_DOMINATES:
                vs = f" from {control}" if what == "difference" else ""
                hits.append(f"{r['metric']} {what} of {r['arm']}{vs} ({100 * v:.0f}%)")
    if slot_content is not None:
        content = slot_content.filter(
            (pl.col("effect") == "content")
            & (pl.col("segment") == "all")
            & pl.col("metric").is_in(CREATOR_METRICS)
        )
        for r in content.iter_rows(named=True):
            v = r["diff_between_share"]
            if v is not None and v == v and v > BETWEEN_DOMINATES:
                hits.append(
                    f"{r['metric']} difference of {r['treatment']} from {r['placebo']} "
                    f"({100 * v:.0f}%)"
                )
    if hits:
        out.append(
            "Between-replicate variance dominates (over half of one replicate's uncertainty "
            "comes from the placement of the new items and the population drawn): "
            + "; ".join(hits)
            + ". Which plausible item a new item is matters more here than which users saw it: "
            "read these intervals as spanning placements, and look at the per-replicate spread "
            "under Creator items."
        )
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Sweeps


@dataclass(frozen=True)
class SweepData:
    folder: Path
    summary: pl.DataFrame
    """sweep_summary.parquet: study, recommender, population, seed, cell, arm, metric, n, mean,
    CIs, diff and its CIs."""
    pooled: pl.DataFrame
    """sweep_pooled.parquet (schema SWEEP_POOLED): the seeds pooled per study x recommender x
    population x arm x metric, with lift, p-values (Holm and BH over the whole table),
    significant, MDE, rank and overlaps_best."""
    pooled_from: str
    """Where ``pooled`` comes from: the file's name, or a note that it was pooled again from the
    summary (no sweep_pooled.parquet, or one written before its columns were complete)."""
    cells: list[str]
    metrics: list[str]
    cell_reports: dict[str, str]
    """cell -> relative link to the cell's own report.html, where one was written."""
    warnings: tuple[str, ...]
    """:func:`recoworld.sweep.pooled.sweep_warnings` of the pooled table and the summary."""


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / SWEEP_SUMMARY_FILE).is_file()


def load_sweep(folder: str | Path) -> SweepData:
    """A sweep's date folder (the one holding sweep_summary.parquet) and its pooled table:
    ``sweep_pooled.parquet`` where it is there with every column of this version, else the
    summary's seeds pooled here by the same function the sweep runs."""
    # the sweep modules own their schema checks and the pooling
    from recoworld.io.schema import SWEEP_POOLED
    from recoworld.sweep import POOLED_FILE, pool_seeds, read_sweep_pooled, read_sweep_summary
    from recoworld.sweep.pooled import sweep_warnings

    folder = Path(folder)
    summary = read_sweep_summary(folder / SWEEP_SUMMARY_FILE)
    if summary.height == 0:
        raise RunError(
            f"{folder / SWEEP_SUMMARY_FILE}: no cells; "
            "expected one row per cell x arm x metric (did every cell fail?)"
        )
    pooled = None
    if (folder / POOLED_FILE).is_file():
        pooled = read_sweep_pooled(folder / POOLED_FILE)
        pooled_from = POOLED_FILE
        if set(SWEEP_POOLED.names) - set(pooled.columns):
            pooled = None
            pooled_from = (
                f"{SWEEP_SUMMARY_FILE}, pooled again here ({POOLED_FILE} was written by an "
                "earlier RecoWorld without lift and p-values; re-running the sweep rewrites it)"
            )
    else:
        pooled_from = f"{SWEEP_SUMMARY_FILE}, pooled here (no {POOLED_FILE} in the folder)"
    if pooled is None:
        pooled = pool_seeds(summary)
    cells = summary["cell"].unique(maintain_order=True).to_list()
    links = {
        c: f"cell={c}/report.html"
        for c in cells
        if (folder / f"cell={c}" / "report.html").is_file()
    }
    return SweepData(
        folder=folder,
        summary=summary,
        pooled=pooled,
        pooled_from=pooled_from,
        cells=cells,
        metrics=summary["metric"].unique(maintain_order=True).to_list(),
        cell_reports=links,
        warnings=tuple(sweep_warnings(pooled, summary)),
    )
