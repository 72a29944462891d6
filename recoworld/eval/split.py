"""Leakage-free splits for fidelity evaluation.

Per user, the most recent interactions by time are held out; everything fitted for the
evaluation (catalog embeddings and popularity, the choice, rating and return models, personas,
recommenders) sees only the training part, a :class:`~recoworld.world.model.World` with the
same users and items (so row indices agree) and fewer interactions.

Rules (documented in docs/fidelity.md):
1. Users with at least ``min_interactions`` interactions hold out their last
   ``n - ceil((1 - holdout_share) * n)`` interactions (at least one); others keep everything in
   training and are not evaluated.
2. "Last" is by timestamp, ties by file order. A world where fewer than half the interactions
   carry a time (Last.fm HetRec: only first-tagging days, on 22% of plays) has no meaningful
   order: its held-out items are a seeded random share per user (``order = "random"``).
3. A (user, item) pair never appears on both sides: a pair repeated in the data is held out
   as a whole when any of its occurrences is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from recoworld.errors import RecoWorldError
from recoworld.rng import generator
from recoworld.world.model import World

HOLDOUT_SHARE = 0.2
MIN_INTERACTIONS = 5
MIN_DATED_SHARE = 0.5


class LeakageError(RecoWorldError):
    """A split lets held-out information into training."""


@dataclass(frozen=True, eq=False)
class Coded:
    """Interactions as aligned arrays (user row, item row, rating or NaN, weight, time or -1,
    watch fraction or NaN)."""

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    weight: np.ndarray
    timestamp: np.ndarray
    watch: np.ndarray | None = None
    """The watch fraction (NaN where unknown); None when the world has none."""

    def __len__(self) -> int:
        return int(self.user.size)

    def take(self, mask: np.ndarray) -> Coded:
        return Coded(
            self.user[mask],
            self.item[mask],
            self.rating[mask],
            self.weight[mask],
            self.timestamp[mask],
            None if self.watch is None else self.watch[mask],
        )


@dataclass(frozen=True, eq=False)
class Split:
    """A world cut into a training world and held-out interactions.

    ``test`` is ordered by (user, position in that user's order): the first held-out row of a
    user is its *next* item after training. ``touched`` holds every (user, item) pair of the
    whole world as sorted codes ``user * n_items + item`` (what "never interacted" is checked
    against).
    """

    world: World
    train: World
    train_coded: Coded
    test: Coded
    order: str  # "time" | "random"
    holdout_share: float
    min_interactions: int
    touched: np.ndarray

    @property
    def n_items(self) -> int:
        return self.world.items.height

    def never_touched(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Bool mask: (user, item) pairs absent from the whole world (train and test)."""
        codes = users.astype(np.int64) * self.n_items + items.astype(np.int64)
        pos = np.searchsorted(self.touched, codes)
        pos = np.minimum(pos, self.touched.size - 1)
        return self.touched[pos] != codes


def _order_keys(world: World, seed: int, order: str) -> tuple[str, np.ndarray, Coded]:
    u, i, r, w, ts = world.coded_interactions()  # ordered by time, unknown times last
    watch = world.coded_column("watch_fraction") if world.has_watch_fractions else None
    coded = Coded(u, i, r, w, ts, watch)
    dated = float((ts >= 0).mean()) if ts.size else 0.0
    if order not in ("auto", "time", "random"):
        raise ValueError(f"order must be auto, time or random, got {order!r}")
    if order == "time" and dated < MIN_DATED_SHARE:
        raise ValueError(
            f"{world.name}: only {dated:.0%} of interactions carry a time; a time split needs >= "
            f"{MIN_DATED_SHARE:.0%}"
        )
    if order != "random" and dated >= MIN_DATED_SHARE:
        return "time", np.arange(u.size), coded
    rank = generator(seed, "eval-split", world.key).permutation(u.size)
    return "random", rank, coded


def holdout_split(
    world: World,
    *,
    holdout_share: float = HOLDOUT_SHARE,
    min_interactions: int = MIN_INTERACTIONS,
    seed: int = 0,
    order: str = "auto",
) -> Split:
    """Split ``world`` per user (see the module docstring). ``order``: "auto" (by time where
    the world has times, else random), "time", or "random" (a seeded random share per user,
    for comparison with protocols that do not split by time); ``seed`` only matters for
    random order."""
    if not 0.0 < holdout_share < 1.0:
        raise ValueError(f"holdout_share must be in (0, 1), got {holdout_share}")
    order, key, coded = _order_keys(world, seed, order)
    u = coded.user
    n_users, n_items = world.users.height, world.items.height
    # rank of each interaction within its user's order
    by = np.lexsort((key, u))
    counts = np.bincount(u, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(u.size, dtype=np.int64)
    rank[by] = np.arange(u.size) - starts[u[by]]
    keep = np.array([math.ceil((1.0 - holdout_share) * c) for c in counts], dtype=np.int64)
    keep = np.where(counts >= min_interactions, np.minimum(keep, counts - 1), counts)
    held = rank >= keep[u]
    # a repeated pair goes wholly to the held-out side
    codes = u * n_items + coded.item
    held_codes = np.unique(codes[held])
    held |= np.isin(codes, held_codes)
    # training keeps the world's order; the held-out part is ordered per user
    train_c = coded.take(~held)
    tmask = np.flatnonzero(held)
    tmask = tmask[np.lexsort((key[tmask], u[tmask]))]
    test_c = coded.take(tmask)
    train_frame = _train_frame(world, held, order)
    train = replace(
        world, interactions=train_frame, source=f"{world.source or world.name} (training part)"
    )
    return Split(
        world=world,
        train=train,
        train_coded=train_c,
        test=test_c,
        order=order,
        holdout_share=holdout_share,
        min_interactions=min_interactions,
        touched=np.unique(codes),
    )


def _train_frame(world: World, held: np.ndarray, order: str) -> pl.DataFrame:
    """The world's interaction frame without the held-out rows (``held`` is in
    ``coded_interactions`` order, which is the frame sorted by time then row)."""
    frame = world.interactions.with_row_index("_row").sort(["timestamp", "_row"], nulls_last=True)
    return frame.filter(pl.Series(~held)).sort("_row").drop("_row")


def check_split(split: Split) -> None:
    """Raise :class:`LeakageError` unless: train and test partition the world's interactions,
    no (user, item) pair is on both sides, and (time-ordered splits) no user's held-out
    interaction is older than any of its training interactions."""
    tr, te = split.train_coded, split.test
    n_items = split.n_items
    total = split.world.interactions.height
    if len(tr) + len(te) != total:
        raise LeakageError(
            f"train ({len(tr)}) + test ({len(te)}) interactions != the world's {total}"
        )
    if split.train.interactions.height != len(tr):
        raise LeakageError(
            f"the training world holds {split.train.interactions.height} interactions, the coded "
            f"training part {len(tr)}"
        )
    both = np.intersect1d(tr.user * n_items + tr.item, te.user * n_items + te.item)
    if both.size:
        u, i = divmod(int(both[0]), n_items)
        raise LeakageError(
            f"user {split.world.user_ids[u]!r} has item {split.world.item_ids[i]!r} in training "
            "and in the held-out part "
            f"({both.size} such pairs)"
        )
    again = split.train.coded_interactions()
    if not np.array_equal(
        np.sort(again[0] * n_items + again[1]), np.sort(tr.user * n_items + tr.item)
    ):
        raise LeakageError(
            "the training world's interactions differ from the split's training part"
        )
    if split.order == "time":
        n_users = split.world.users.height
        last_train = np.full(n_users, np.iinfo(np.int64).min)
        np.maximum.at(last_train, tr.user, tr.timestamp)
        # a pair repeated in the data is held out whole: judge each held-out pair by its latest time
        codes = te.user * n_items + te.item
        uniq, inv = np.unique(codes, return_inverse=True)
        latest = np.full(uniq.size, np.iinfo(np.int64).min)
        np.maximum.at(latest, inv, te.timestamp)
        first_test = np.full(n_users, np.iinfo(np.int64).max)
        np.minimum.at(first_test, uniq // n_items, latest)
        bad = np.flatnonzero(first_test < last_train)
        if bad.size:
            u = int(bad[0])
            raise LeakageError(
                f"user {split.world.user_ids[u]!r} has a held-out interaction at {first_test[u]} "
                "before its last "
                f"training interaction at {last_train[u]} ({bad.size} such users)"
            )
