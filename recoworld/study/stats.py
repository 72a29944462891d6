"""Summaries of arms with 95% confidence intervals, and paired differences from control.

The unit of analysis is the user: each metric is a per-user number, so users are independent
draws and a Student-t interval on their mean is valid. Every arm sees the same users with the
same random streams, so an arm's effect is estimated from per-user differences (paired), which
is far tighter than comparing two means.

:class:`Moments` (count, mean, sum of squared deviations) merge exactly (Chan et al.), so
shards can summarise their users and a coordinator can combine them.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
import polars as pl
from scipy import stats as sps

METRICS: dict[str, pl.Expr] = {
    "ctr": pl.col("clicks") / pl.col("impressions"),
    "watch_time": pl.col("watch_time") / pl.col("sessions"),
    "session_length": pl.col("turns") / pl.col("sessions"),
    "sessions": pl.col("sessions"),
    "return_rate": pl.col("returned_first"),
    "creator_reach": (pl.col("creator_impressions") > 0).cast(pl.Float64),
    "creator_engagement": pl.col("creator_clicks"),
}
"""Per-user metrics: click-through rate; items' watch fractions summed per session; turns per
session; sessions; came back after the first session (0/1); saw a creator item (0/1); creator
items clicked."""


class Moments(msgspec.Struct, frozen=True):
    """Mergeable first and second moments of a sample."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, x: np.ndarray) -> Moments:
        x = np.asarray(x, dtype=np.float64)
        if x.size == 0:
            return cls()
        mu = float(x.mean())
        return cls(int(x.size), mu, float(((x - mu) ** 2).sum()))

    def merge(self, other: Moments) -> Moments:
        if self.n == 0:
            return other
        if other.n == 0:
            return self
        n = self.n + other.n
        delta = other.mean - self.mean
        return Moments(
            n,
            self.mean + delta * other.n / n,
            self.m2 + other.m2 + delta * delta * self.n * other.n / n,
        )

    @property
    def variance(self) -> float:
        return self.m2 / (self.n - 1) if self.n > 1 else math.nan

    def ci95(self) -> tuple[float, float]:
        if self.n < 2:
            return (math.nan, math.nan)
        half = float(sps.t.ppf(0.975, self.n - 1)) * math.sqrt(self.variance / self.n)
        return (self.mean - half, self.mean + half)


def per_user(user_metrics: pl.DataFrame) -> pl.DataFrame:
    """arm, segment, user and one column per metric."""
    return user_metrics.select("arm", "segment", "user", *(e.alias(k) for k, e in METRICS.items()))


def _t_interval(mean: pl.Expr, sd: pl.Expr, n: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    half = pl.col("_t") * sd / n.sqrt()
    return mean - half, mean + half


def summarise(user_metrics: pl.DataFrame, arms: list[str]) -> pl.DataFrame:
    """One row per arm x segment (plus segment "all") x metric; ``arms[0]`` is the control."""
    pu = per_user(user_metrics)
    pu = pl.concat([pu, pu.with_columns(segment=pl.lit("all"))])
    long = pu.unpivot(index=["arm", "segment", "user"], variable_name="metric", value_name="value")
    control = long.filter(pl.col("arm") == arms[0]).select(
        "segment", "user", "metric", pl.col("value").alias("_c")
    )
    long = long.join(control, on=["segment", "user", "metric"], how="left").with_columns(
        _d=pl.when(pl.col("arm") != arms[0]).then(pl.col("value") - pl.col("_c"))
    )
    agg = long.group_by("arm", "segment", "metric").agg(
        n=pl.len(),
        mean=pl.col("value").mean(),
        _sd=pl.col("value").std(),
        diff=pl.col("_d").mean(),
        _dsd=pl.col("_d").std(),
        _dn=pl.col("_d").count(),
    )
    tcrit = lambda n: np.where(n > 1, sps.t.ppf(0.975, np.maximum(n - 1, 1)), np.nan)  # noqa: E731
    agg = agg.with_columns(
        _t=pl.Series(tcrit(agg["n"].to_numpy())),
        _td=pl.Series(tcrit(agg["_dn"].to_numpy())),
    )
    lo, hi = _t_interval(pl.col("mean"), pl.col("_sd"), pl.col("n").cast(pl.Float64))
    dhalf = pl.col("_td") * pl.col("_dsd") / pl.col("_dn").cast(pl.Float64).sqrt()
    order = {a: k for k, a in enumerate(arms)}
    metric_order = {m: k for k, m in enumerate(METRICS)}
    out = agg.with_columns(
        ci_low=lo,
        ci_high=hi,
        diff_ci_low=pl.col("diff") - dhalf,
        diff_ci_high=pl.col("diff") + dhalf,
    ).with_columns(
        _ao=pl.col("arm").replace_strict(order, return_dtype=pl.Int64),
        _mo=pl.col("metric").replace_strict(metric_order, return_dtype=pl.Int64),
        _so=(pl.col("segment") != "all").cast(pl.Int64),
    )
    return out.sort("_ao", "_so", "segment", "_mo").select(
        "arm",
        "segment",
        "metric",
        pl.col("n").cast(pl.Int64),
        "mean",
        "ci_low",
        "ci_high",
        "diff",
        "diff_ci_low",
        "diff_ci_high",
    )
