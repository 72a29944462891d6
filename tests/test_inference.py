"""Relative lift, p-values, multiplicity and minimum detectable effect
(recoworld/study/inference.py): the lift's delta-method interval against direct simulation of
many studies (one replicate and several, placement spread or none), Holm and Benjamini-Hochberg
against a hand-computed example and a reference implementation, the MDE against the power it
promises, and the summary's new columns."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from recoworld.study.aggregate import summary_from_replicates
from recoworld.study.inference import (
    benjamini_hochberg,
    holm,
    mde,
    p_values,
    relative_lift,
    relative_lift_of_estimates,
)
from recoworld.study.metrics import METRIC_NAMES


def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, mean, m2) over the last axis."""
    mean = x.mean(-1)
    return np.full(mean.shape, float(x.shape[-1])), mean, ((x - mean[..., None]) ** 2).sum(-1)


def lift_of(c: np.ndarray, t: np.ndarray):
    """relative_lift of paired users: c and t shaped (replicates, ..., users)."""
    both = np.stack([c, t], axis=1)  # (replicates, arms, ..., users)
    n, mean, m2 = moments(both)
    _, d_mean, d_m2 = moments(both - c[:, None])
    return relative_lift(n, mean, m2, d_mean, d_m2)


def paired_users(rng: np.random.Generator, shape: tuple[int, ...], base: np.ndarray | float):
    """Control values around ``base`` and a treatment 10% above, correlated user by user."""
    c = base + rng.gamma(2.0, 0.5, shape) - 1.0
    t = 1.1 * c + rng.normal(0.0, 0.4, shape)
    return c, t


# --- the relative lift -------------------------------------------------------------------------


def test_one_replicates_lift_is_the_paired_delta_method_over_users() -> None:
    rng = np.random.default_rng(1)
    c, t = paired_users(rng, (1, 1, 50), 2.0)
    got = lift_of(c, t)
    x, y = c[0, 0], t[0, 0]
    d = y - x
    cbar, dbar = x.mean(), d.mean()
    cov = np.cov(d, x) / x.size  # of the means
    var = cov[0, 0] / cbar**2 + dbar**2 * cov[1, 1] / cbar**4 - 2 * dbar * cov[0, 1] / cbar**3
    half = sps.t.ppf(0.975, x.size - 1) * math.sqrt(var)
    assert got.lift[1, 0] == pytest.approx(100 * dbar / cbar, rel=1e-12)
    assert got.low[1, 0] == pytest.approx(100 * (dbar / cbar - half), rel=1e-9)
    assert got.high[1, 0] == pytest.approx(100 * (dbar / cbar + half), rel=1e-9)
    assert np.isnan([got.lift[0, 0], got.low[0, 0], got.high[0, 0]]).all()  # the control


@pytest.mark.parametrize(
    ("replicates", "placement_sd"),
    [(1, 0.0), (5, 0.0), (5, 0.3)],
    ids=["one-replicate", "replicates-no-spread", "replicates-placement-spread"],
)
def test_lift_interval_covers_the_true_lift_about_95_percent_of_studies(
    replicates: int, placement_sd: float
) -> None:
    rng = np.random.default_rng(7)
    studies, users = 2000, 200 // replicates
    # each replicate's placement shifts the control level; the lift stays 10% of it, so the
    # grand lift (mean diff / mean control over placements) is 10%
    base = 2.0 + placement_sd * rng.normal(size=(replicates, studies, 1))
    c, t = paired_users(rng, (replicates, studies, users), base)
    got = lift_of(c, t)
    covered = (got.low[1] <= 10.0) & (10.0 <= got.high[1])
    assert np.isfinite(got.low[1]).all()
    assert 0.93 <= covered.mean() <= 0.97, covered.mean()
    # and the interval's width matches the lift's spread over studies
    t_crit = sps.t.ppf(0.975, np.maximum(replicates - 1, users - 1))
    implied_sd = np.median((got.high[1] - got.low[1]) / 2) / t_crit
    assert implied_sd == pytest.approx(got.lift[1].std(), rel=0.25)


def test_lift_is_null_where_the_control_mean_is_zero() -> None:
    c = np.zeros((1, 1, 10))
    t = np.arange(10.0).reshape(1, 1, 10)
    got = lift_of(c, t)
    assert np.isnan([got.lift[1, 0], got.low[1, 0], got.high[1, 0]]).all()


def test_lift_interval_is_null_where_the_control_mean_is_not_distinguishable_from_zero() -> None:
    # Fieller's interval is unbounded there: the delta method's would be meaningless
    c = np.array([[[-1.0, 1.0, -2.0, 2.1, 0.5, -0.4]]])
    got = lift_of(c, c + 1.0)
    assert np.isfinite(got.lift[1, 0])
    assert np.isnan(got.low[1, 0]) and np.isnan(got.high[1, 0])


# --- p-values ----------------------------------------------------------------------------------


def test_p_values_are_the_two_sided_t_test_of_the_difference() -> None:
    d = np.random.default_rng(3).normal(0.2, 1.0, 30)
    se = d.std(ddof=1) / math.sqrt(d.size)
    got = p_values(np.array(d.mean()), np.array(se), np.array(float(d.size - 1)))
    assert float(got) == pytest.approx(sps.ttest_1samp(d, 0.0).pvalue, rel=1e-10)


@pytest.mark.parametrize(
    ("diff", "se", "df", "expected"),
    [
        (0.0, 0.3, 10.0, 1.0),  # a zero difference
        (0.0, 0.0, 10.0, 1.0),  # identical arms
        (0.5, 0.0, 10.0, 0.0),  # every user moved by the same nonzero amount
        (0.0, math.nan, 0.0, math.nan),  # one user: no standard error, no test
        (0.5, math.nan, 0.0, math.nan),
        (0.5, 0.2, 0.0, math.nan),  # no degrees of freedom
    ],
)
def test_p_values_of_degenerate_differences(
    diff: float, se: float, df: float, expected: float
) -> None:
    got = float(p_values(np.array(diff), np.array(se), np.array(df)))
    assert got == expected or (math.isnan(got) and math.isnan(expected))


# --- multiplicity ------------------------------------------------------------------------------


def reference_holm(p: list[float]) -> list[float]:
    """Holm (1979) from its definition: the i-th smallest gets max_{j<=i} (m - j + 1) p_(j)."""
    m, order = len(p), sorted(range(len(p)), key=lambda k: p[k])
    out, running = [0.0] * m, 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[k]))
        out[k] = running
    return out


def reference_bh(p: list[float]) -> list[float]:
    """Benjamini-Hochberg (1995) q-values: the i-th smallest gets min_{j>=i} m p_(j) / j."""
    m, order = len(p), sorted(range(len(p)), key=lambda k: p[k])
    out = [0.0] * m
    for i, k in enumerate(order):
        out[k] = min(1.0, min(m * p[order[j]] / (j + 1) for j in range(i, m)))
    return out


def test_holm_and_bh_of_a_hand_computed_example() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # Holm: sorted 0.005 0.01 0.03 0.04 times 4 3 2 1 = 0.02 0.03 0.06 0.04, running max
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    # BH: sorted times 4/1 4/2 4/3 4/4 = 0.02 0.02 0.04 0.04, running min from the top
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])


def test_holm_and_bh_leave_undefined_tests_out_of_the_family() -> None:
    p = np.array([[0.01, math.nan], [0.04, 0.03], [math.nan, 0.005]])
    np.testing.assert_allclose(holm(p), [[0.03, math.nan], [0.06, 0.06], [math.nan, 0.02]])
    np.testing.assert_allclose(
        benjamini_hochberg(p), [[0.02, math.nan], [0.04, 0.04], [math.nan, 0.02]]
    )
    assert np.isnan(holm(np.array([math.nan]))).all()


@pytest.mark.parametrize("seed", range(5))
def test_holm_and_bh_match_their_definitions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(size=20), rng.uniform(0, 0.01, 5), [0.5, 0.5, 1.0, 0.0]])
    rng.shuffle(p)
    np.testing.assert_allclose(holm(p), reference_holm(list(p)), rtol=1e-12)
    np.testing.assert_allclose(benjamini_hochberg(p), reference_bh(list(p)), rtol=1e-12)


def test_holm_and_bh_match_statsmodels() -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(11).uniform(0, 0.2, 40)
    np.testing.assert_allclose(holm(p), multitest.multipletests(p, method="holm")[1])
    np.testing.assert_allclose(benjamini_hochberg(p), multitest.multipletests(p, "fdr_bh")[1])


# --- minimum detectable effect -----------------------------------------------------------------


def test_mde_is_the_two_quantiles_times_the_standard_error() -> None:
    got = mde(np.array([0.1, 0.1, math.nan]), np.array([1e9, 9.0, 9.0]))
    assert got[0] == pytest.approx((1.959964 + 0.841621) * 0.1, rel=1e-6)
    assert got[1] == pytest.approx((sps.t.ppf(0.975, 9) + sps.t.ppf(0.8, 9)) * 0.1, rel=1e-12)
    assert np.isnan(got[2])


@pytest.mark.parametrize("df", [4.0, 19.0, 199.0])
def test_a_true_difference_of_one_mde_is_detected_about_80_percent_of_the_time(df: float) -> None:
    # the t-test's power at noncentrality MDE / se (the standard error known)
    crit = sps.t.ppf(0.975, df)
    delta = float(mde(np.array(1.0), np.array(df)))
    power = sps.nct.sf(crit, df, delta) + sps.nct.cdf(-crit, df, delta)
    assert power == pytest.approx(0.8, abs=0.02)


# --- the summary's columns ---------------------------------------------------------------------


def test_the_summary_tests_every_difference_as_one_family() -> None:
    rng = np.random.default_rng(5)
    users, arms, segments = 40, ["control", "small", "big"], ["a", "b"]
    m = len(METRIC_NAMES)
    base = rng.gamma(2.0, 1.0, (1, m, users)) + 1.0
    arm_values = [base, base + rng.normal(0.05, 0.5, base.shape), base * 1.5 + rng.normal(size=1)]
    per_rep = []
    for rep in range(3):
        vals = np.stack([v[0] + 0.1 * rep for v in arm_values])  # (arms, metrics, users)
        seg = np.arange(users) % 2 == 0
        cells = [vals[:, :, seg], vals[:, :, ~seg], vals]  # a, b, all
        n = np.zeros((3, 3, m, 2))
        mean, m2 = np.zeros_like(n), np.zeros_like(n)
        for s, x in enumerate(cells):
            for kind, y in enumerate((x, x - x[:1])):
                k, mu, sq = moments(y)
                n[:, s, :, kind], mean[:, s, :, kind], m2[:, s, :, kind] = k, mu, sq
        n[0, :, :, 1] = mean[0, :, :, 1] = m2[0, :, :, 1] = 0.0  # no difference for control
        per_rep.append((n, mean, m2))
    summary = summary_from_replicates(per_rep, arms, segments)
    control = summary.filter(pl.col("arm") == "control")
    new = ["lift", "lift_ci_low", "lift_ci_high", "p_value", "p_holm", "q_bh", "significant", "mde"]
    assert all(control[c].is_null().all() for c in new)
    treated = summary.filter(pl.col("arm") != "control")
    assert treated.height == 2 * 3 * m
    p = treated["p_value"].to_numpy()
    np.testing.assert_allclose(treated["p_holm"].to_numpy(), reference_holm(list(p)))
    np.testing.assert_allclose(treated["q_bh"].to_numpy(), reference_bh(list(p)))
    assert treated["significant"].to_list() == (treated["p_holm"] <= 0.05).to_list()
    means = control.select("segment", "metric", control_mean="mean")
    joined = treated.join(means, on=["segment", "metric"])
    np.testing.assert_allclose(
        joined["lift"].to_numpy(), 100 * joined["diff"] / joined["control_mean"], rtol=1e-12
    )
    assert (treated["mde"] > 0).all()
    assert treated.filter(pl.col("arm") == "big")["significant"].all()


def test_the_lift_of_seed_estimates_is_the_lift_of_their_moments() -> None:
    """A sweep pools each seed's summary (mean, se, df); with user-level standard errors that
    is exactly the moments' lift: one formula, two ways in."""
    rng = np.random.default_rng(7)
    c, t = paired_users(rng, (4, 3, 80), 2.0)
    c += rng.normal(0.0, 0.3, (4, 1, 1))  # a seed effect
    both = np.stack([c, t], axis=1)
    n, mean, m2 = moments(both)
    _, d_mean, d_m2 = moments(both - c[:, None])
    want = relative_lift(n, mean, m2, d_mean, d_m2)
    se, d_se = np.sqrt(m2 / (n - 1) / n), np.sqrt(d_m2 / (n - 1) / n)
    got = relative_lift_of_estimates(mean, se, n - 1, d_mean, d_se, n - 1)
    for a, b in ((got.lift, want.lift), (got.low, want.low), (got.high, want.high)):
        np.testing.assert_allclose(a, b, rtol=1e-12, equal_nan=True)
    assert np.isfinite(got.low[1]).all()
