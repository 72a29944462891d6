"""What a summary may claim: relative lift, multiplicity control, minimum detectable effect.

Everything here is computed from what the summary already holds: each replicate's moments of the
values and of the paired differences (:class:`~recoworld.study.aggregate.BlockMoments`, merged)
and the pooled estimates of :func:`recoworld.study.pooling.pool`.

**Relative lift** (percent) of a treatment arm over control: ``100 * D / C``, D the pooled
paired difference and C the pooled control mean, so it is the summary's ``diff / mean`` of the
control row. Its interval is the delta method (Kohavi, Tang & Xu 2020, *Trustworthy Online
Controlled Experiments*, ch. 18, "the percent delta"; Deng, Knoblich & Lu 2018, "Applying the
Delta Method in Metric Analytics", KDD) with the paired covariance, pooled over replicates by
linearisation: replicate r contributes ``z_r = (d_r - L c_r) / C`` (L = D / C), whose squared
standard error is ``(var(d) + L^2 var(c) - 2 L cov(d, c)) / C^2`` from its users, i.e.
``var(d)/C^2 + D^2 var(c)/C^4 - 2 D cov(d, c)/C^3``. ``cov(d, c)`` of the means comes from the
moments alone: t = c + d user by user, so ``cov = (var(t) - var(c) - var(d)) / 2`` exactly.
The z_r then go through :func:`~recoworld.study.pooling.pool` like any metric (random-effects
spread over replicates, floored at user noise), so placement uncertainty is in the interval;
one replicate gives the plain paired delta-method interval with n - 1 degrees of freedom.
A sweep's seeds are pooled the same way from their summaries (each seed's means, differences
and standard errors: :func:`relative_lift_of_estimates`), one formula for both.
The lift is null where C is 0; its interval is null where the control mean is not itself
distinguishable from 0 at the same level (``|C| / se(C) < t``): there Fieller's exact interval
is unbounded and the delta method's would be meaningless.

**p-values and multiplicity.** Each paired difference is tested against 0 with the t its
interval uses (``diff / diff_se`` on ``diff_df`` degrees of freedom, two-sided). A difference
of exactly 0 has p = 1 (identical arms); a nonzero difference with standard error 0 has p = 0;
where the standard error is unknown (fewer than 2 users) p is NaN and the test is not in the
family. The family is every test one summary makes (treatment arms x segments x metrics):
Holm's step-down adjustment (family-wise error, valid under any dependence between the tests,
which here is strong: segments partition "all", metrics share users, arms share the control)
and Benjamini-Hochberg q-values (false discovery rate; valid under positive dependence,
Benjamini & Yekutieli 2001, and a screening guide otherwise).

**Minimum detectable effect** of a paired difference at two-sided level alpha and the given
power: ``(t_{1-alpha/2, df} + t_{power, df}) * diff_se`` — the true difference this design
would detect with that probability; smaller ones may well be there unseen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from recoworld.study.pooling import Pooled, pool, pool_estimates

ALPHA = 0.05
"""The family-wise level of ``significant`` and the test level of the MDE."""
POWER = 0.8
"""The power of the minimum detectable effect."""


@dataclass(frozen=True, eq=False)
class Lift:
    """Relative lift in percent with its interval, shaped (arms, ...) like one replicate's
    cells; arm 0 (the control) is NaN."""

    lift: np.ndarray
    low: np.ndarray
    high: np.ndarray


def relative_lift(
    n: np.ndarray,
    mean: np.ndarray,
    m2: np.ndarray,
    diff_mean: np.ndarray,
    diff_m2: np.ndarray,
    level: float = 0.95,
) -> Lift:
    """The lift of every arm over arm 0 from each replicate's moments, each shaped (replicates,
    arms, ...): users ``n``, the values' ``mean`` and ``m2`` (sum of squared deviations) and the
    paired differences' from arm 0 (the same users)."""
    n, mean, m2, d_mean, d_m2 = (
        np.asarray(x, np.float64) for x in (n, mean, m2, diff_mean, diff_m2)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        var = lambda m: m / (n - 1) / n  # noqa: E731 - squared standard error of a mean
        var_c, var_d, var_t = var(m2[:, :1]), var(d_m2), var(m2)
    return _lift(
        pool(n, mean, m2),
        pool(n, d_mean, d_m2),
        mean[:, :1],
        d_mean,
        (var_c, var_d, var_t),
        lambda z, u: pool(n, z, np.where(n >= 2, u * n * (n - 1), 0.0)),
        level,
    )


def relative_lift_of_estimates(
    mean: np.ndarray,
    se: np.ndarray,
    df: np.ndarray,
    diff: np.ndarray,
    diff_se: np.ndarray,
    diff_df: np.ndarray,
    level: float = 0.95,
) -> Lift:
    """The lift of every arm over arm 0 from estimates that are themselves summaries (one per
    seed on axis 0, then arms, ...: each arm's ``mean`` with its standard error and degrees of
    freedom, and the paired difference from arm 0 with its own), pooled like
    :func:`~recoworld.study.pooling.pool_estimates` pools them: what a sweep's seeds give.

    The same delta method as :func:`relative_lift`, each seed's squared standard errors standing
    for its users' variances of the means. Where a seed's own standard errors pool replicates
    (random effects, floored at user noise), ``cov = (se_t^2 - se_c^2 - se_d^2) / 2`` is exact
    in each part but not under the floor's max; a seed's squared error of ``z`` is clipped at 0.
    This only sets the floor of the pooled interval: with several seeds the spread of their
    ``z`` (their own lifts, linearised) is the estimate."""
    mean, se, df, d_mean, d_se, d_df = (
        np.asarray(x, np.float64) for x in (mean, se, df, diff, diff_se, diff_df)
    )
    return _lift(
        pool_estimates(mean, se, df),
        pool_estimates(d_mean, d_se, d_df),
        mean[:, :1],
        d_mean,
        (se[:, :1] ** 2, d_se**2, se**2),
        lambda z, u: pool_estimates(z, np.sqrt(u), d_df),
        level,
    )


def _lift(
    value: Pooled,
    diff: Pooled,
    control: np.ndarray,
    d_mean: np.ndarray,
    variances: tuple[np.ndarray, np.ndarray, np.ndarray],
    pool_z: Callable[[np.ndarray, np.ndarray], Pooled],
    level: float,
) -> Lift:
    """The delta method of the module docstring, once: ``value`` and ``diff`` pooled, each
    replicate's ``control`` mean (replicates, 1, ...) and paired differences ``d_mean``, the
    squared standard errors of its means (control, difference, arm), and how the linearised
    ``z`` with squared standard errors ``u`` are pooled."""
    var_c, var_d, var_t = variances
    c_pool, c_se, c_df = value.mean[:1], value.se[:1], value.df[:1]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        c_safe = np.where(c_pool != 0, c_pool, np.nan)
        lift = diff.mean / c_safe
        cov = (var_t - var_c - var_d) / 2  # of the mean difference and the control mean
        z = (d_mean - lift * control) / c_safe
        u = np.maximum(var_d + lift**2 * var_c - 2 * lift * cov, 0.0) / c_safe**2
        lin = pool_z(lift + z, u)
        lo, hi = dataclasses.replace(lin, mean=lift).interval(level)
        crit = sps.t.ppf(0.5 + level / 2, np.where(c_df >= 1, c_df, np.nan))
        bounded = np.abs(c_pool) >= crit * c_se  # else Fieller's interval is unbounded
    lo, hi = (np.where(bounded, x, np.nan) for x in (lo, hi))
    lift[0], lo[0], hi[0] = np.nan, np.nan, np.nan
    return Lift(lift=100 * lift, low=100 * lo, high=100 * hi)


def p_values(diff: np.ndarray, se: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Two-sided p-values of ``diff`` against 0 with Student-t on ``df`` degrees of freedom:
    1 where diff is exactly 0, 0 where a nonzero diff has standard error 0, NaN where the
    standard error or the degrees of freedom are unknown."""
    diff, se, df = np.broadcast_arrays(*(np.asarray(x, np.float64) for x in (diff, se, df)))
    known = np.isfinite(diff) & np.isfinite(se) & (df >= 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.abs(diff) / se
        p = 2 * sps.t.sf(t, np.where(known, df, np.nan))
    p = np.where(diff == 0, 1.0, np.where(se == 0, 0.0, p))
    return np.where(known, p, np.nan)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values over every finite entry of ``p`` (one family);
    NaN stays NaN. Reject at family-wise level alpha where the result is <= alpha."""
    p = np.asarray(p, np.float64)
    out = np.full(p.shape, np.nan)
    fin = np.isfinite(p)
    x = p[fin]
    m = x.size
    if m == 0:
        return out
    order = np.argsort(x, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * x[order]))
    res = np.empty(m)
    res[order] = adj
    out[fin] = res
    return out


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values over every finite entry of ``p`` (one family); NaN stays
    NaN. Declaring every q <= f a discovery keeps the false discovery rate at most f."""
    p = np.asarray(p, np.float64)
    out = np.full(p.shape, np.nan)
    fin = np.isfinite(p)
    x = p[fin]
    m = x.size
    if m == 0:
        return out
    order = np.argsort(x, kind="stable")
    scaled = x[order] * m / np.arange(1, m + 1)
    adj = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    res = np.empty(m)
    res[order] = adj
    out[fin] = res
    return out


def mde(se: np.ndarray, df: np.ndarray, alpha: float = ALPHA, power: float = POWER) -> np.ndarray:
    """Minimum detectable effect, ``(t_{1-alpha/2, df} + t_{power, df}) * se``; NaN where the
    standard error or the degrees of freedom are unknown."""
    se, df = np.broadcast_arrays(np.asarray(se, np.float64), np.asarray(df, np.float64))
    ok = np.isfinite(se) & (df >= 1)
    d = np.where(ok, df, np.nan)
    with np.errstate(invalid="ignore"):
        return np.where(ok, (sps.t.ppf(1 - alpha / 2, d) + sps.t.ppf(power, d)) * se, np.nan)
