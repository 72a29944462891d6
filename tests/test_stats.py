"""Paired statistics and the summary (recoworld/study/stats.py), checked as properties against
direct numpy/scipy computations: identical arms differ by exactly zero, shifts pass through the
paired difference, intervals behave, and shard Moments merge to the global aggregate."""

from __future__ import annotations

import itertools
import math
from functools import reduce

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from recoworld.study.stats import METRICS, Moments, per_user, summarise

SEGMENTS = ("seg-a", "seg-b")


@st.composite
def arm_metrics(draw: st.DrawFn, n: int | None = None, arm: str = "control") -> pl.DataFrame:
    """user_metrics of one arm for users 0..n-1, with consistent counts (clicks <= impressions...)."""
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


def as_arm(frame: pl.DataFrame, arm: str) -> pl.DataFrame:
    return frame.with_columns(arm=pl.lit(arm))


def row(summary: pl.DataFrame, arm: str, segment: str, metric: str) -> dict:
    rows = summary.filter(
        (pl.col("arm") == arm) & (pl.col("segment") == segment) & (pl.col("metric") == metric)
    )
    assert rows.height == 1
    return rows.row(0, named=True)


def values(frame: pl.DataFrame, metric: str) -> np.ndarray:
    """A metric per user, computed directly from its definition in numpy."""
    c = {k: frame[k].to_numpy() for k in frame.columns if k not in ("arm", "segment")}
    return {
        "ctr": c["clicks"] / c["impressions"],
        "watch_time": c["watch_time"] / c["sessions"],
        "session_length": c["turns"] / c["sessions"],
        "sessions": c["sessions"],
        "return_rate": c["returned_first"],
        "creator_reach": (c["creator_impressions"] > 0).astype(np.float64),
        "creator_engagement": c["creator_clicks"],
    }[metric]


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


# --- means, intervals and differences against numpy/scipy --------------------------------------


@settings(max_examples=20, deadline=None)
@given(paired_arms())
def test_means_intervals_and_paired_differences_match_numpy(frame: pl.DataFrame) -> None:
    summary = summarise(frame, ["control", "treatment"])
    control = frame.filter(pl.col("arm") == "control")
    treatment = frame.filter(pl.col("arm") == "treatment")
    for segment in ["all", *frame["segment"].unique().to_list()]:
        mask = (
            np.ones(control.height, bool)
            if segment == "all"
            else (control["segment"] == segment).to_numpy()
        )
        for metric in METRICS:
            c, t = values(control, metric)[mask], values(treatment, metric)[mask]
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
            assert got_c["diff"] is None


@settings(max_examples=30, deadline=None)
@given(arm_metrics())
def test_identical_arms_differ_by_exactly_zero(control: pl.DataFrame) -> None:
    frame = pl.concat([control, as_arm(control, "same")])
    summary = summarise(frame, ["control", "same"])
    same = summary.filter(pl.col("arm") == "same")
    assert (same["diff"] == 0.0).all()
    two_or_more = same.filter(pl.col("n") >= 2)
    assert (two_or_more["diff_ci_low"] == 0.0).all() and (two_or_more["diff_ci_high"] == 0.0).all()
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
    assert after.filter(~engaged).equals(before.filter(~engaged))


# --- Moments: intervals and exact merging ------------------------------------------------------

SAMPLE = st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=60).map(np.array)


@given(SAMPLE)
def test_mean_interval_contains_the_mean(x: np.ndarray) -> None:
    m = Moments.of(x)
    lo, hi = m.ci95()
    assert lo <= m.mean <= hi
    assert (lo, hi) == pytest.approx(t_interval(x), rel=1e-9, abs=1e-9)


@given(SAMPLE.filter(lambda x: np.ptp(x) > 1e-3))
def test_mean_interval_narrows_as_the_same_sample_grows(x: np.ndarray) -> None:
    widths = [np.subtract(*Moments.of(np.tile(x, r)).ci95()[::-1]) for r in (1, 2, 4)]
    assert widths[0] > widths[1] > widths[2] > 0


def test_intervals_need_two_values() -> None:
    assert all(math.isnan(v) for v in Moments.of(np.array([3.0])).ci95())
    assert math.isnan(Moments.of(np.array([3.0])).variance)
    assert Moments.of(np.array([])) == Moments()


@given(st.lists(st.lists(st.floats(-1e3, 1e3), max_size=20), min_size=1, max_size=6))
def test_shard_moments_merge_to_the_global_moments(shards: list[list[float]]) -> None:
    everything = np.array([v for s in shards for v in s])
    merged = reduce(Moments.merge, (Moments.of(np.array(s)) for s in shards), Moments())
    direct = Moments.of(everything)
    assert merged.n == direct.n
    assert merged.mean == pytest.approx(direct.mean, rel=1e-9, abs=1e-9)
    assert merged.m2 == pytest.approx(direct.m2, rel=1e-9, abs=1e-6)


@given(st.lists(st.floats(-1e3, 1e3), max_size=20), st.lists(st.floats(-1e3, 1e3), max_size=20))
def test_merge_is_symmetric_and_empty_is_its_identity(a: list[float], b: list[float]) -> None:
    ma, mb = Moments.of(np.array(a)), Moments.of(np.array(b))
    assert ma.merge(Moments()) == ma == Moments().merge(ma)
    ab, ba = ma.merge(mb), mb.merge(ma)
    assert (
        ab.n == ba.n
        and ab.mean == pytest.approx(ba.mean, abs=1e-9)
        and ab.m2 == pytest.approx(ba.m2, rel=1e-9, abs=1e-6)
    )


@settings(max_examples=30, deadline=None)
@given(paired_arms(), st.data())
def test_per_shard_moments_merge_to_the_summary(frame: pl.DataFrame, data: st.DataObject) -> None:
    """Shards of users summarised apart and merged give the summary's n, mean and interval."""
    n = frame.height // 2
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=4)))
    bounds = [0, *cuts, n]
    summary = summarise(frame, ["control", "treatment"])
    pu = per_user(frame)
    for arm in ("control", "treatment"):
        mine = pu.filter(pl.col("arm") == arm).sort("user")
        for metric in METRICS:
            x = mine[metric].to_numpy()
            merged = reduce(
                Moments.merge, (Moments.of(x[a:b]) for a, b in itertools.pairwise(bounds))
            )
            got = row(summary, arm, "all", metric)
            assert got["n"] == merged.n
            assert close(got["mean"], merged.mean)
            for g, e in zip((got["ci_low"], got["ci_high"]), merged.ci95()):
                assert g == pytest.approx(e, rel=1e-9, abs=1e-9)
