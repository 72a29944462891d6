"""How a treated item (a creator's) spreads: through the recommender, through search, through
friends; cascades; and their summary with the study's intervals.

Per arm, :class:`Diffusion` follows every user of a shard and every item the arm treats (the
creator's items; a placebo arm's placebo items): the round it first heard of the item from a
friend and from whom, the round it was first on one of its pages and what put it there (the
recommender's slate, creator injection included, or its own search), the round it first
watched it and whose word it followed (its *parent*: the friend who first told it of the item
before it watched it). Users only talk about items they watched, so every parent watched the
item first: following parents from any adopter ends at a *root*, who found it without a
friend's word. A **cascade** is a root and everyone below it; its **size** counts its users,
its **depth** its generations below the root.

Per-user metrics (:data:`recoworld.io.schema.DIFFUSION_METRICS`; 0/1 unless said) go through
the study's block moments and pooling (``recoworld.study.aggregate``), so they get the
summary's intervals and paired differences; cascade sizes, depths and adoption rounds are
pooled over replicates with ``recoworld.study.pooling.pool`` (each replicate's mean and spread;
no pairing: cascades are not users).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from recoworld.io.schema import CASCADES, DIFFUSION, with_metadata
from recoworld.study.pooling import pool

DIFFUSION_SCHEMA = with_metadata(DIFFUSION, "diffusion")
USER_METRICS = (
    "reach_recommender",
    "reach_search",
    "reach_friends",
    "adopted",
    "adopted_after_friend",
    "mentions_sent",
)
"""Per-user diffusion metrics, in the order of the moments' metric axis."""
CASCADE_METRICS = ("cascade_size", "cascade_depth", "adoption_round")
CHANNELS = ("recommender", "search")
BY_RECOMMENDER, BY_SEARCH = 1, 2


class Diffusion:
    """One arm's diffusion record for ``n`` users (shard rows) and the arm's treated items."""

    def __init__(self, n: int, treated_items: np.ndarray, n_items: int) -> None:
        self.items = np.asarray(treated_items, np.int64)  # catalog rows, in order
        self.col = np.full(n_items, -1, np.int64)
        self.col[self.items] = np.arange(self.items.size)
        c = self.items.size
        full = lambda dt: np.full((n, c), -1, dt)  # noqa: E731
        self.heard_round, self.heard_from = full(np.int32), full(np.int64)
        self.shown_round, self.shown_by = full(np.int32), np.zeros((n, c), np.int8)
        self.adopted_round, self.parent = full(np.int32), full(np.int64)
        self.mentions = np.zeros(n, np.int64)

    @property
    def active(self) -> bool:
        return self.items.size > 0

    def heard(self, rows: np.ndarray, items: np.ndarray, senders: np.ndarray, day: int) -> None:
        """Deliveries in canonical order: the first sender of a (row, item) is kept."""
        c = self.col[items]
        ok = c >= 0
        r, c, s = rows[ok], c[ok], senders[ok]
        first = self.heard_round[r, c] < 0
        r, c, s = r[first], c[first], s[first]
        _, keep = np.unique(r * max(self.items.size, 1) + c, return_index=True)
        self.heard_round[r[keep], c[keep]] = day
        self.heard_from[r[keep], c[keep]] = s[keep]

    def shown(self, rows: np.ndarray, pages: np.ndarray, searched: np.ndarray, day: int) -> None:
        """Users ``rows`` saw ``pages`` (n, k); ``searched`` (n, k): the slot held a search
        result."""
        c = self.col[pages]
        r, j = np.nonzero(c >= 0)
        if r.size == 0:
            return
        col = c[r, j]
        how = np.where(searched[r, j], BY_SEARCH, BY_RECOMMENDER).astype(np.int8)
        new = self.shown_round[rows[r], col] < 0
        r, col, how = rows[r][new], col[new], how[new]
        # the first slot of the page wins (search results come first)
        _, keep = np.unique(r * self.items.size + col, return_index=True)
        self.shown_round[r[keep], col[keep]] = day
        self.shown_by[r[keep], col[keep]] = how[keep]

    def adopted(self, rows: np.ndarray, pages: np.ndarray, watched: np.ndarray, day: int) -> None:
        """Users ``rows`` watched the items of ``pages`` where ``watched``; a first watch of a
        treated item records its parent (who first told it of the item, if anyone)."""
        c = self.col[pages]
        r, j = np.nonzero((c >= 0) & watched)
        if r.size == 0:
            return
        u, col = rows[r], c[r, j]
        new = self.adopted_round[u, col] < 0
        u, col = u[new], col[new]
        self.adopted_round[u, col] = day
        self.parent[u, col] = self.heard_from[u, col]

    def sent(self, rows: np.ndarray, items: np.ndarray) -> None:
        """Deliveries sent by shard ``rows`` about ``items``."""
        ok = self.col[items] >= 0
        np.add.at(self.mentions, rows[ok], 1)

    def user_values(self) -> np.ndarray:
        """(len(USER_METRICS), n) per-user metrics."""
        any_ = lambda a: (a >= 0).any(axis=1).astype(np.float64)  # noqa: E731
        return np.stack(
            [
                (self.shown_by == BY_RECOMMENDER).any(axis=1).astype(np.float64),
                (self.shown_by == BY_SEARCH).any(axis=1).astype(np.float64),
                any_(self.heard_round),
                any_(self.adopted_round),
                any_(self.parent),
                self.mentions.astype(np.float64),
            ]
        )

    def table(
        self, uids: np.ndarray, pop_uid: np.ndarray, replicate: int, item_ids: np.ndarray
    ) -> pa.RecordBatch:
        """The ``diffusion`` rows: every (user, treated item) the user was reached by.
        ``uids``: the users' ids by shard row; ``pop_uid``: the replicate's ids by population
        row (senders and parents are population rows while the run goes)."""
        who = lambda a: np.where(a >= 0, pop_uid[np.maximum(a, 0)], -1)  # noqa: E731
        r, c = np.nonzero(
            (self.heard_round >= 0) | (self.shown_round >= 0) | (self.adopted_round >= 0)
        )
        opt = lambda a: pa.array(a, mask=a < 0)  # noqa: E731
        how = self.shown_by[r, c]
        chan = pa.DictionaryArray.from_arrays(
            pa.array(np.maximum(how.astype(np.int32) - 1, 0), mask=how == 0),
            pa.array(list(CHANNELS), pa.string()),
        )
        arrays = [
            pa.array(uids[r]),
            pa.array(np.full(r.size, replicate, np.int16)),
            pa.DictionaryArray.from_arrays(
                pa.array(c.astype(np.int32)), pa.array(item_ids[self.items].tolist(), pa.string())
            ),
            opt(self.heard_round[r, c]),
            opt(who(self.heard_from[r, c])),
            opt(self.shown_round[r, c]),
            chan,
            opt(self.adopted_round[r, c]),
            opt(who(self.parent[r, c])),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=DIFFUSION_SCHEMA)


def cascades(diffusion: pl.DataFrame) -> pl.DataFrame:
    """The cascades (schema ``CASCADES``) of a run's ``diffusion`` rows (with their ``arm``):
    each adopter's root and generation follow its parents (module docstring)."""
    adopters = diffusion.filter(pl.col("adopted_round").is_not_null()).select(
        pl.col("arm").cast(pl.String),
        "replicate",
        pl.col("item_id").cast(pl.String),
        "user",
        "parent",
        "adopted_round",
    )
    if adopters.height == 0:
        return pl.from_arrow(CASCADES.empty_table())  # type: ignore[return-value]
    rows = []
    for (arm, rep, item), g in adopters.group_by(
        ["arm", "replicate", "item_id"], maintain_order=True
    ):
        users = g["user"].to_numpy()
        parent = g["parent"].fill_null(-1).to_numpy()
        when = g["adopted_round"].to_numpy()
        index = {int(u): i for i, u in enumerate(users)}
        up = np.array([index.get(int(p), -1) for p in parent], np.int64)
        root, depth = np.arange(users.size), np.zeros(users.size, np.int64)
        for _ in range(users.size):  # follow parents to the root (chains are short)
            step = up[root] >= 0
            if not step.any():
                break
            root = np.where(step, up[root], root)
            depth += step
        for r in np.unique(root):
            mine = root == r
            rows.append(
                (arm, rep, item, int(users[r]), int(mine.sum()), int(depth[mine].max()),
                 int(when[r]), int(when[mine].max()))
            )  # fmt: skip
    names = [f.name for f in CASCADES]
    frame = pl.DataFrame(rows, schema=names, orient="row")
    return frame.sort("arm", "replicate", "item_id", "root")


def cascade_moments(
    frame: pl.DataFrame, column: str, arms: list[str], replicates: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, mean, m2) of ``column`` per replicate and arm: shape (replicates, arms)."""
    shape = (replicates, len(arms))
    n, mean, m2 = (np.zeros(shape) for _ in range(3))
    frame = frame.sort(frame.columns)  # sums in one order, whatever order the rows came in
    for (arm, rep), g in frame.group_by(["arm", "replicate"], maintain_order=True):
        if arm not in arms:
            continue
        x = g[column].to_numpy().astype(np.float64)
        a = arms.index(arm)
        n[rep, a], mean[rep, a] = x.size, x.mean()
        m2[rep, a] = ((x - x.mean()) ** 2).sum()
    return n, mean, m2


def pooled_rows(
    values: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], arms: list[str]
) -> pl.DataFrame:
    """Summary rows (segment "all", no paired difference) of per-replicate moments pooled
    with the study's random-effects pooling."""
    rows: list[dict] = []
    for metric, (n, mean, m2) in values.items():
        p = pool(n, mean, m2)
        lo, hi = p.interval()
        for a, arm in enumerate(arms):
            if p.n[a] == 0:
                continue
            fin = lambda x: float(x) if np.isfinite(x) else None  # noqa: E731
            rows.append(
                {
                    "arm": arm,
                    "segment": "all",
                    "metric": metric,
                    "n": int(p.n[a]),
                    "mean": float(p.mean[a]),
                    "ci_low": fin(lo[a]),
                    "ci_high": fin(hi[a]),
                    "replicates": int(p.replicates[a]),
                    "se": fin(p.se[a]),
                    "df": float(p.df[a]),
                    "between_share": fin(p.between_share[a]),
                }
            )
    return pl.DataFrame(rows) if rows else pl.DataFrame()


def reach_by_day(diffusion: pl.DataFrame) -> pl.DataFrame:
    """Per arm, round and channel, the users reached for the first time by that channel
    (recommender, search, friends) and the adopters: the report's reach-over-days figure."""
    d = diffusion.with_columns(pl.col("arm").cast(pl.String))
    parts = [
        d.filter(pl.col("shown_by").cast(pl.String) == ch).select(
            "arm", "user", round="shown_round", channel=pl.lit(ch)
        )
        for ch in CHANNELS
    ]
    parts.append(
        d.filter(pl.col("heard_round").is_not_null()).select(
            "arm", "user", round="heard_round", channel=pl.lit("friends")
        )
    )
    parts.append(
        d.filter(pl.col("adopted_round").is_not_null()).select(
            "arm", "user", round="adopted_round", channel=pl.lit("watched")
        )
    )
    first = (
        pl.concat(parts)
        .group_by("arm", "channel", "user")
        .agg(pl.col("round").min())
        .group_by("arm", "channel", "round")
        .agg(users=pl.len())
        .sort("arm", "channel", "round")
    )
    return first.with_columns(reached=pl.col("users").cum_sum().over("arm", "channel"))
