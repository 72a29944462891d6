"""The metrics and the summary (recoworld/study/metrics.py, recoworld/study/aggregate.py),
checked against direct numpy/scipy computations over every user: each formula, means and
intervals, identical arms differ by exactly zero, shifts pass through the paired difference, and
block moments merge to the same summary however the users are sharded."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from recoworld.config import (
    ArmConfig,
    CreatorConfig,
    CreatorItem,
    PopulationConfig,
    RecommenderConfig,
    SimulationConfig,
    StudyConfig,
    WorldConfig,
)
from recoworld.io.runs import scan_table
from recoworld.study.aggregate import (
    BLOCK_USERS,
    BlockMoments,
    merge_blocks,
    metric_values,
    summary_from_moments,
    summary_from_replicates,
)
from recoworld.study.metrics import METRIC_NAMES, METRICS
from recoworld.study.prepare import load_world_for
from recoworld.study.runner import run_study

SEGMENTS = ("seg-a", "seg-b")
TOTALS = (
    "impressions",
    "clicks",
    "watch_time",
    "sessions",
    "turns",
    "returned_first",
    "creator_impressions",
    "creator_clicks",
)


@st.composite
def arm_metrics(draw: st.DrawFn, n: int | None = None, arm: str = "control") -> pl.DataFrame:
    """user_metrics of one arm for users 0..n-1,
    with consistent counts (clicks <= impressions...)."""
    n = draw(st.integers(2, 25)) if n is None else n
    rows = []
    for user in range(n):
        sessions = draw(st.integers(1, 3))
        turns = draw(st.integers(sessions, 3 * sessions))
        impressions = turns * draw(st.integers(1, 6))
        creator_impressions = draw(st.integers(0, impressions))
        rows.append(
            {
                "segment": draw(st.sampled_from(SEGMENTS)),
                "user": user,
                "impressions": float(impressions),
                "clicks": float(draw(st.integers(0, impressions))),
                "watch_time": draw(st.floats(0.0, float(impressions))),
                "sessions": float(sessions),
                "turns": float(turns),
                "returned_first": float(draw(st.booleans()) if sessions == 1 else True),
                "creator_impressions": float(creator_impressions),
                "creator_clicks": float(draw(st.integers(0, creator_impressions))),
            }
        )
    return pl.DataFrame(rows).with_columns(arm=pl.lit(arm))


@st.composite
def paired_arms(draw: st.DrawFn) -> pl.DataFrame:
    """A control and a treatment over the same users and segments."""
    control = draw(arm_metrics())
    treatment = draw(arm_metrics(n=control.height, arm="treatment"))
    return pl.concat([control, treatment.with_columns(segment=control["segment"])])


SPACING = st.sampled_from([1, 7, 300, BLOCK_USERS])
"""Population rows between consecutive users: > 1 spreads a few users over several blocks."""


def as_arm(frame: pl.DataFrame, arm: str) -> pl.DataFrame:
    return frame.with_columns(arm=pl.lit(arm))


def values(frame: pl.DataFrame, arm: str) -> np.ndarray:
    """(metrics, users) of ``arm``, users in order."""
    mine = frame.filter(pl.col("arm") == arm).sort("user")
    return metric_values({k: mine[k].to_numpy() for k in TOTALS})


def summarise(
    frame: pl.DataFrame, arms: list[str], spacing: int = 1, cuts: list[int] | None = None
) -> pl.DataFrame:
    """The summary as a run computes it: block moments of shards cut before the blocks
    ``cuts`` (users at population rows ``user * spacing``), merged."""
    control = frame.filter(pl.col("arm") == arms[0]).sort("user")
    segments = sorted(control["segment"].unique().to_list())
    codes = np.searchsorted(segments, control["segment"].to_numpy())
    rows = control["user"].to_numpy() * spacing
    per_arm = [values(frame, a) for a in arms]
    edges = [0, *np.searchsorted(rows // BLOCK_USERS, sorted(cuts or [])), len(rows)]
    parts = [
        BlockMoments.of(rows[a:b], codes[a:b], len(segments), [v[:, a:b] for v in per_arm])
        for a, b in itertools.pairwise(edges)
        if b > a
    ]
    return summary_from_moments(*merge_blocks(parts), arms, segments)


def row(summary: pl.DataFrame, arm: str, segment: str, metric: str) -> dict:
    rows = summary.filter(
        (pl.col("arm") == arm) & (pl.col("segment") == segment) & (pl.col("metric") == metric)
    )
    assert rows.height == 1
    return rows.row(0, named=True)


def t_interval(x: np.ndarray) -> tuple[float, float]:
    if x.size < 2:
        return (math.nan, math.nan)
    if x.std() == 0:
        return (float(x.mean()), float(x.mean()))
    lo, hi = sps.t.interval(0.95, x.size - 1, loc=x.mean(), scale=sps.sem(x))
    return float(lo), float(hi)


def close(a: float | None, b: float) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return math.isnan(b)
    return a == pytest.approx(b, rel=1e-9, abs=1e-9)


# --- each metric's formula ---------------------------------------------------------------------

TWO_USERS = {
    "impressions": np.array([8.0, 0.0]),
    "clicks": np.array([2.0, 0.0]),
    "watch_time": np.array([1.5, 0.0]),
    "sessions": np.array([2.0, 1.0]),
    "turns": np.array([6.0, 1.0]),
    "returned_first": np.array([1.0, 0.0]),
    "creator_impressions": np.array([3.0, 0.0]),
    "creator_clicks": np.array([1.0, 0.0]),
}


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("ctr", [0.25, math.nan]),
        ("watch_time", [0.75, 0.0]),
        ("session_length", [3.0, 1.0]),
        ("sessions", [2.0, 1.0]),
        ("return_rate", [1.0, 0.0]),
        ("creator_reach", [1.0, 0.0]),
        ("creator_engagement", [1.0, 0.0]),
    ],
)
def test_each_metric_is_its_formula_over_the_users_totals(
    metric: str, expected: list[float]
) -> None:
    got = METRICS[metric].of(TWO_USERS)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(metric_values(TWO_USERS)[METRIC_NAMES.index(metric)], got)


def test_the_metrics_are_the_summarys_metrics_in_order() -> None:
    assert METRIC_NAMES == (
        "ctr",
        "watch_time",
        "session_length",
        "sessions",
        "return_rate",
        "creator_reach",
        "creator_engagement",
    )
    assert metric_values(TWO_USERS).shape == (len(METRICS), 2)


# --- the summary's shape -----------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(paired_arms())
def test_summary_has_one_row_per_arm_segment_and_metric_in_order(frame: pl.DataFrame) -> None:
    summary = summarise(frame, ["control", "treatment"])
    segments = ["all", *sorted(frame["segment"].unique().to_list())]
    expected = [
        (a, s, m) for a, s, m in itertools.product(["control", "treatment"], segments, METRICS)
    ]
    assert summary.select("arm", "segment", "metric").rows() == expected
    assert summary.filter(pl.col("segment") == "all")["n"].to_list() == [
        frame.height // 2
    ] * 2 * len(METRICS)


def fixed_arm(n: int) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    impressions = rng.integers(5, 20, n).astype(float)
    return pl.DataFrame(
        {
            "segment": [SEGMENTS[u % 2] for u in range(n)],
            "user": np.arange(n),
            "impressions": impressions,
            "clicks": np.floor(impressions * rng.random(n)),
            "watch_time": rng.random(n),
            "sessions": np.ones(n),
            "turns": np.full(n, 2.0),
            "returned_first": rng.integers(0, 2, n).astype(float),
            "creator_impressions": rng.integers(0, 3, n).astype(float),
            "creator_clicks": np.zeros(n),
            "arm": ["control"] * n,
        }
    )


def test_summary_orders_arms_as_given_not_alphabetically() -> None:
    frame = fixed_arm(6)
    both = pl.concat([as_arm(frame, "z-control"), as_arm(frame, "a-treatment")])
    summary = summarise(both, ["z-control", "a-treatment"])
    assert summary["arm"].unique(maintain_order=True).to_list() == ["z-control", "a-treatment"]
    assert summary.filter(pl.col("arm") == "z-control")["diff"].is_null().all()


def test_intervals_need_two_users() -> None:
    frame = fixed_arm(3)  # seg-b holds one user
    summary = summarise(pl.concat([frame, as_arm(frame, "treatment")]), ["control", "treatment"])
    one = summary.filter(pl.col("segment") == "seg-b")
    assert (one["n"] == 1).all()
    for col in ("ci_low", "ci_high", "diff_ci_low", "diff_ci_high"):
        assert one[col].drop_nulls().is_nan().all(), col


# --- means, intervals and differences against numpy/scipy --------------------------------------


@settings(max_examples=20, deadline=None)
@given(paired_arms(), SPACING, st.lists(st.integers(0, 30), max_size=4))
def test_means_intervals_and_paired_differences_match_numpy_over_every_user(
    frame: pl.DataFrame, spacing: int, cuts: list[int]
) -> None:
    summary = summarise(frame, ["control", "treatment"], spacing, cuts)
    control = frame.filter(pl.col("arm") == "control").sort("user")
    c_all, t_all = values(frame, "control"), values(frame, "treatment")
    for segment in ["all", *frame["segment"].unique().to_list()]:
        mask = (
            np.ones(control.height, bool)
            if segment == "all"
            else (control["segment"] == segment).to_numpy()
        )
        for j, metric in enumerate(METRIC_NAMES):
            c, t = c_all[j][mask], t_all[j][mask]
            got_c, got_t = (
                row(summary, "control", segment, metric),
                row(summary, "treatment", segment, metric),
            )
            assert got_c["n"] == got_t["n"] == mask.sum()
            assert close(got_c["mean"], c.mean()) and close(got_t["mean"], t.mean())
            for got, expected in zip((got_t["ci_low"], got_t["ci_high"]), t_interval(t)):
                assert close(got, expected)
            assert close(got_t["diff"], (t - c).mean())
            for got, expected in zip(
                (got_t["diff_ci_low"], got_t["diff_ci_high"]), t_interval(t - c)
            ):
                assert close(got, expected)
            d = t - c
            if d.size >= 2 and d.std() > 0:  # the paired t-test (degenerate cases: test_inference)
                assert close(got_t["p_value"], sps.ttest_1samp(d, 0.0).pvalue)
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                want_lift = 100 * d.mean() / c.mean() if c.mean() != 0 else np.nan
            if np.isfinite(want_lift):  # (a denormal control mean overflows: no lift, null)
                assert close(got_t["lift"], want_lift)
            assert got_c["diff"] is None and got_c["p_value"] is None and got_c["lift"] is None


@settings(max_examples=30, deadline=None)
@given(arm_metrics())
def test_identical_arms_differ_by_exactly_zero(control: pl.DataFrame) -> None:
    frame = pl.concat([control, as_arm(control, "same")])
    summary = summarise(frame, ["control", "same"])
    same = summary.filter(pl.col("arm") == "same")
    assert (same["diff"] == 0.0).all()
    two_or_more = same.filter(pl.col("n") >= 2)
    assert (two_or_more["diff_ci_low"] == 0.0).all() and (two_or_more["diff_ci_high"] == 0.0).all()
    assert (two_or_more["p_value"] == 1.0).all() and not two_or_more["significant"].any()
    assert (two_or_more["mde"] == 0.0).all()
    cols = ["segment", "metric", "n", "mean", "ci_low", "ci_high"]
    assert same.select(cols).equals(summary.filter(pl.col("arm") == "control").select(cols))


@settings(max_examples=30, deadline=None)
@given(paired_arms(), st.integers(-50, 50) | st.floats(-50, 50))
def test_adding_a_constant_to_a_treatment_metric_shifts_its_diff_by_that_constant(
    frame: pl.DataFrame, c: float
) -> None:
    shifted = frame.with_columns(
        creator_clicks=pl.when(pl.col("arm") == "treatment")
        .then(pl.col("creator_clicks") + c)
        .otherwise(pl.col("creator_clicks"))
    )
    before = summarise(frame, ["control", "treatment"]).filter(pl.col("arm") == "treatment")
    after = summarise(shifted, ["control", "treatment"]).filter(pl.col("arm") == "treatment")
    engaged = pl.col("metric") == "creator_engagement"
    for col in ("mean", "diff", "diff_ci_low", "diff_ci_high"):
        moved = after.filter(engaged)[col].to_numpy() - before.filter(engaged)[col].to_numpy()
        finite = np.isfinite(moved)
        np.testing.assert_allclose(moved[finite], c, rtol=0, atol=1e-9)
    # the width of the paired interval does not change; no other metric moves
    width = lambda s: (
        s.filter(engaged)["diff_ci_high"] - s.filter(engaged)["diff_ci_low"]
    ).to_numpy()  # noqa: E731
    np.testing.assert_allclose(width(after), width(before), rtol=0, atol=1e-9)
    # (the multiplicity adjustments are over the whole table: they may move with any p-value)
    family = ["p_holm", "q_bh", "significant"]
    assert after.filter(~engaged).drop(family).equals(before.filter(~engaged).drop(family))


# --- block moments: the same summary for any sharding ------------------------------------------


@settings(max_examples=30, deadline=None)
@given(paired_arms(), SPACING, st.lists(st.integers(0, 30), max_size=4))
def test_shards_cut_on_any_blocks_merge_to_the_same_summary_bit_for_bit(
    frame: pl.DataFrame, spacing: int, cuts: list[int]
) -> None:
    arms = ["control", "treatment"]
    one = summarise(frame, arms, spacing)
    assert summarise(frame, arms, spacing, cuts).equals(one)


@settings(max_examples=20, deadline=None)
@given(paired_arms(), SPACING)
def test_block_moments_survive_their_bytes(frame: pl.DataFrame, spacing: int) -> None:
    control = frame.filter(pl.col("arm") == "control").sort("user")
    codes = (control["segment"] == SEGMENTS[1]).cast(pl.Int64).to_numpy()
    rows = control["user"].to_numpy() * spacing
    m = BlockMoments.of(rows, codes, 2, [values(frame, "control"), values(frame, "treatment")])
    back = BlockMoments.from_bytes(m.to_bytes())
    assert back.first_block == m.first_block
    for a, b in ((back.n, m.n), (back.mean, m.mean), (back.m2, m.m2)):
        np.testing.assert_array_equal(a, b)


# --- a run's summary is its users' summary -----------------------------------------------------

BLOCKS = StudyConfig(
    name="blocks",
    seed=5,
    world=WorldConfig(dataset="synthetic", synthetic_users=80, synthetic_items=60, embedding_dim=4),
    population=PopulationConfig(size=2 * BLOCK_USERS + 100, segment_by="activity"),
    simulation=SimulationConfig(sessions=2, turns=2, slate_size=4),
    recommender=RecommenderConfig(kind="popular", candidates=10),
    creator=CreatorConfig(id="indie", items=[CreatorItem(title="Small Hours", tags=["drama"])]),
    arms=[
        ArmConfig(name="control"),
        ArmConfig(name="inject", treatment="inject", position=1, rate=0.5),
    ],
)
"""Three blocks of users, two arms."""


@pytest.mark.parametrize("replicates", [1, 3])
def test_a_runs_summary_equals_the_summary_computed_from_every_users_totals(
    tmp_path: Path, replicates: int
) -> None:
    cfg = msgspec.structs.replace(
        BLOCKS, simulation=msgspec.structs.replace(BLOCKS.simulation, replicates=replicates)
    )
    run = run_study(
        cfg, load_world_for(cfg.world, cfg.seed), run_id="b", out_dir=tmp_path, workers=1
    ).path
    users = scan_table(run, "user_metrics").collect()
    users = users.with_columns(pl.col(pl.Categorical).cast(pl.String))
    stored = scan_table(run, "summary").collect()
    arms, segments = ["control", "inject"], sorted(users["segment"].unique().to_list())
    per_replicate = []
    for r in range(replicates):  # each replicate's users, at their rows in its population
        part = users.filter(pl.col("replicate") == r)
        part = part.with_columns(pl.col("user") - pl.col("user").min())
        control = part.filter(pl.col("arm") == arms[0]).sort("user")
        codes = np.searchsorted(segments, control["segment"].to_numpy())
        rows = control["user"].to_numpy()
        values_r = [values(part, a) for a in arms]
        per_replicate.append(merge_blocks([BlockMoments.of(rows, codes, len(segments), values_r)]))
    direct = summary_from_replicates(per_replicate, arms, segments)
    assert (
        stored.select("arm", "segment", "metric", "n", "replicates")
        .sort(pl.all())
        .equals(direct.select("arm", "segment", "metric", "n", "replicates").sort(pl.all()))
    )
    assert set(stored["replicates"]) == {replicates}
    for r in direct.iter_rows(named=True):
        got = row(stored, r["arm"], r["segment"], r["metric"])
        for col in ("mean", "ci_low", "ci_high", "diff", "diff_ci_low", "diff_ci_high", "se"):
            assert close(got[col], r[col] if r[col] is not None else math.nan), (r, col)
    # the pooled mean is the plain mean of the replicates' means
    ctr = users.filter(pl.col("arm") == "control").with_columns(
        (pl.col("clicks") / pl.col("impressions")).alias("ctr")
    )
    by_rep = ctr.group_by("replicate").agg(pl.col("ctr").mean())["ctr"].mean()
    assert row(stored, "control", "all", "ctr")["mean"] == pytest.approx(by_rep, rel=1e-12)
