"""Mergeable summary aggregates: per block of users, the moments of every per-user metric.

Users are grouped into fixed blocks of ``BLOCK_USERS`` consecutive population rows. A shard
covers whole blocks and returns, per block, arm, segment and metric, the count, mean and sum of
squared deviations of the metric (:mod:`recoworld.study.metrics`) and of its paired difference
from control. Merging the blocks in block order (Chan et al.) gives the summary; since the
blocks and the order do not depend on how users were sharded, the summary is bit-for-bit the
same for any shard count, in one process or on a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from recoworld.study import inference
from recoworld.study.metrics import METRIC_NAMES, METRICS
from recoworld.study.pooling import pool

BLOCK_USERS = 1024
"""Users per aggregate block; shards are cut on block boundaries."""

VALUE, DIFF = 0, 1


def metric_values(m: dict[str, np.ndarray]) -> np.ndarray:
    """(n_metrics, n_users): every metric of :data:`~recoworld.study.metrics.METRICS`, in order,
    from per-user totals."""
    return np.stack([metric.of(m) for metric in METRICS.values()])


@dataclass(frozen=True, eq=False)
class BlockMoments:
    """Moments per block: arrays of shape (blocks, arms, segments + 1, metrics, 2); the segment
    axis ends with "all"; the last axis is (value, paired difference from arm 0)."""

    first_block: int
    n: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(
        cls, users: np.ndarray, segment_codes: np.ndarray, n_segments: int, values: list[np.ndarray]
    ) -> BlockMoments:
        """``users``: sorted population rows; ``segment_codes``: their segment; ``values``: per
        arm, (metrics, users) from :func:`metric_values`."""
        first = int(users[0]) // BLOCK_USERS
        blocks = users // BLOCK_USERS - first
        n_blocks = int(blocks[-1]) + 1
        s1 = n_segments + 1
        a, m = len(values), values[0].shape[0]  # METRIC_NAMES, or another table's metrics
        shape = (n_blocks, a, s1, m, 2)
        n, mean, m2 = (np.zeros(shape) for _ in range(3))
        keys = [blocks * s1 + segment_codes, blocks * s1 + n_segments]  # own segment, "all"
        size = n_blocks * s1
        for arm, x in enumerate(values):
            for kind, v in ((VALUE, x), (DIFF, x - values[0] if arm else None)):
                if v is None:
                    continue
                for key in keys:
                    cnt = np.bincount(key, minlength=size).astype(np.float64)
                    for j in range(m):
                        s = np.bincount(key, v[j], minlength=size)
                        mu = np.divide(s, cnt, out=np.zeros(size), where=cnt > 0)
                        sq = np.bincount(key, (v[j] - mu[key]) ** 2, minlength=size)
                        sel = np.unique(key)
                        b, seg = sel // s1, sel % s1
                        n[b, arm, seg, j, kind] = cnt[sel]
                        mean[b, arm, seg, j, kind] = mu[sel]
                        m2[b, arm, seg, j, kind] = sq[sel]
        return cls(first, n, mean, m2)

    def to_bytes(self) -> bytes:
        """Compact binary form (kept in a shard's completion marker)."""
        head = np.array([self.first_block, *self.n.shape], np.int64)
        return head.tobytes() + b"".join(
            a.astype(np.float64).tobytes() for a in (self.n, self.mean, self.m2)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> BlockMoments:
        head = np.frombuffer(data[:48], np.int64)
        shape = tuple(int(v) for v in head[1:])
        size = int(np.prod(shape))
        body = np.frombuffer(data[48:], np.float64)
        n, mean, m2 = (body[k * size : (k + 1) * size].reshape(shape).copy() for k in range(3))
        return cls(int(head[0]), n, mean, m2)


def merge_blocks(parts: list[BlockMoments]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fold every block, in block order, into (n, mean, m2)
    of shape (arms, segments + 1, metrics, 2)."""
    ordered = sorted(parts, key=lambda p: p.first_block)
    n = mean = m2 = None
    for p in ordered:
        for b in range(p.n.shape[0]):
            bn, bmean, bm2 = p.n[b], p.mean[b], p.m2[b]
            if n is None:
                n, mean, m2 = bn.copy(), bmean.copy(), bm2.copy()
                continue
            tot = n + bn
            safe = np.where(tot > 0, tot, 1.0)
            delta = bmean - mean
            mean = np.where(tot > 0, mean + delta * bn / safe, 0.0)
            m2 = m2 + bm2 + delta * delta * n * bn / safe
            n = tot
    if n is None:
        raise ValueError("no blocks to merge")
    return n, mean, m2


def summary_from_moments(
    n: np.ndarray, mean: np.ndarray, m2: np.ndarray, arms: list[str], segments: list[str]
) -> pl.DataFrame:
    """:func:`summary_from_replicates` of one replicate's merged moments."""
    return summary_from_replicates([(n, mean, m2)], arms, segments)


SUMMARY_COLUMNS = (
    "arm", "segment", "metric", "n", "mean", "ci_low", "ci_high", "diff", "diff_ci_low",
    "diff_ci_high", "replicates", "se", "df", "between_share", "diff_se", "diff_df",
    "diff_between_share", "lift", "lift_ci_low", "lift_ci_high", "p_value", "p_holm", "q_bh",
    "significant", "mde",
)  # fmt: skip


def summary_from_replicates(
    replicates: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    arms: list[str],
    segments: list[str],
    metrics: tuple[str, ...] = METRIC_NAMES,
) -> pl.DataFrame:
    """The summary table (schema ``SUMMARY``) from each replicate's merged (n, mean, m2): per
    arm x segment ("all" first, then the segments in order) x metric, the pooled mean with its
    95% interval and the paired difference from ``arms[0]`` with its interval
    (:func:`recoworld.study.pooling.pool`: one replicate gives the Student-t interval over
    users); and for the differences (:mod:`recoworld.study.inference`) the relative lift with
    its interval, the p-value, its Holm and Benjamini-Hochberg adjustments over every
    difference of this table, Holm's verdict at 5% and the minimum detectable effect.
    ``metrics``: the names of the moments' metric axis (another table's per-user metrics, such
    as the social layer's diffusion metrics, are summarised the same way)."""
    stacked = [np.stack([r[k] for r in replicates]) for k in range(3)]
    p = pool(*stacked)
    lo, hi = p.interval()
    n, mean, m2 = stacked
    lift = inference.relative_lift(
        n[..., VALUE], mean[..., VALUE], m2[..., VALUE], mean[..., DIFF], m2[..., DIFF]
    )
    d_se, d_df = p.se[..., DIFF], p.df[..., DIFF]
    pv = inference.p_values(p.mean[..., DIFF], d_se, d_df)
    pv[0] = np.nan  # the control arm makes no test
    p_holm, q_bh = inference.holm(pv), inference.benjamini_hochberg(pv)
    mde = inference.mde(d_se, d_df)
    rows: dict[str, list] = {k: [] for k in SUMMARY_COLUMNS}
    order = [len(segments), *range(len(segments))]
    names = [*segments, "all"]
    nan = lambda x: None if not np.isfinite(x) else float(x)  # noqa: E731
    for a, arm in enumerate(arms):
        for s in order:
            if p.n[a, s, 0, VALUE] == 0:
                continue
            for j, metric in enumerate(metrics):
                v, d, c = (a, s, j, VALUE), (a, s, j, DIFF), (a, s, j)
                diff = (None,) * 14 if a == 0 else (
                    float(p.mean[d]), nan(lo[d]), nan(hi[d]), nan(p.se[d]), float(p.df[d]),
                    nan(p.between_share[d]), nan(lift.lift[c]), nan(lift.low[c]),
                    nan(lift.high[c]), nan(pv[c]), nan(p_holm[c]), nan(q_bh[c]),
                    None if np.isnan(p_holm[c]) else bool(p_holm[c] <= inference.ALPHA),
                    nan(mde[c]),
                )  # fmt: skip
                values = (
                    arm, names[s], metric, int(p.n[v]), float(p.mean[v]), nan(lo[v]), nan(hi[v]),
                    diff[0], diff[1], diff[2], int(p.replicates[v]), nan(p.se[v]),
                    float(p.df[v]), nan(p.between_share[v]), diff[3], diff[4], diff[5], *diff[6:],
                )  # fmt: skip
                for key, val in zip(rows, values, strict=True):
                    rows[key].append(val)
    types = {"arm": pl.String, "segment": pl.String, "metric": pl.String, "n": pl.Int64}
    types["replicates"] = pl.Int32
    types["significant"] = pl.Boolean
    return pl.DataFrame(rows, schema={k: types.get(k, pl.Float64) for k in rows})
