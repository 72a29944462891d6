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

Other orders, for reusing published protocols (``order``):

- ``last-k``: each user with more than ``last_k`` interactions (and at least
  ``min_interactions``) holds out its last ``last_k`` by time (AFL / LLaRA: the last 10);
- ``given``: the held-out (user, item) pairs are read from a file (:func:`read_given_pairs`),
  so that a split published with a paper is reused as is; users without a listed pair are
  training only. Time order is not checked (a published split need not be by time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from recoworld.errors import DataError, RecoWorldError
from recoworld.rng import generator
from recoworld.world.model import MIN_DATED_SHARE, World

HOLDOUT_SHARE = 0.2
MIN_INTERACTIONS = 5
LAST_K = 10
"""``last-k``: interactions held out per user (AFL's protocol: the last 10)."""
ORDERS = ("auto", "time", "random", "last-k", "given")


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
    order: str  # "time" | "random" | "last-k" | "given"
    holdout_share: float
    min_interactions: int
    touched: np.ndarray

    @property
    def timed(self) -> bool:
        """Whether the held-out part is in time order with known times (real sessions can be
        cut from it)."""
        return self.order in ("time", "last-k") or (
            self.order == "given"
            and bool(len(self.test))
            and bool((self.test.timestamp >= 0).all())
        )

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
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if order in ("time", "last-k") and dated < MIN_DATED_SHARE:
        raise ValueError(
            f"{world.name}: only {dated:.0%} of interactions carry a time; a time split needs >= "
            f"{MIN_DATED_SHARE:.0%}"
        )
    if order in ("last-k", "given"):
        return order, np.arange(u.size), coded  # time order where known, else file order
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
    last_k: int = LAST_K,
    given: np.ndarray | None = None,
) -> Split:
    """Split ``world`` per user (see the module docstring). ``order``: "auto" (by time where
    the world has times, else random), "time", "random" (a seeded random share per user,
    for comparison with protocols that do not split by time), "last-k" (the last ``last_k``
    by time) or "given" (``given``: the held-out pairs as codes ``user * n_items + item``,
    see :func:`read_given_pairs`); ``seed`` only matters for random order."""
    if not 0.0 < holdout_share < 1.0:
        raise ValueError(f"holdout_share must be in (0, 1), got {holdout_share}")
    if order == "last-k" and last_k < 1:
        raise ValueError(f"last_k must be >= 1, got {last_k}")
    if order == "given" and given is None:
        raise ValueError("order 'given' needs the held-out pairs (given=)")
    order, key, coded = _order_keys(world, seed, order)
    u = coded.user
    n_users, n_items = world.users.height, world.items.height
    # rank of each interaction within its user's order
    by = np.lexsort((key, u))
    counts = np.bincount(u, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(u.size, dtype=np.int64)
    rank[by] = np.arange(u.size) - starts[u[by]]
    codes = u * n_items + coded.item
    if order == "given":
        held = np.isin(codes, given)  # type: ignore[arg-type]
    else:
        if order == "last-k":
            keep = counts - last_k
            eligible = (counts > last_k) & (counts >= min_interactions)
        else:
            keep = np.array([math.ceil((1.0 - holdout_share) * c) for c in counts], dtype=np.int64)
            keep = np.minimum(keep, counts - 1)
            eligible = counts >= min_interactions
        keep = np.where(eligible, keep, counts)
        held = rank >= keep[u]
    # a repeated pair goes wholly to the held-out side
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


GIVEN_LAYOUT = "a header naming user_id and item_id (other columns ignored)"


def read_given_pairs(path: str | Path, world: World) -> np.ndarray:
    """The held-out pairs of a published split: a CSV (comma or tab) or Parquet file with
    columns ``user_id`` and ``item_id`` (the dataset's ids, as text). Returns sorted codes
    ``user * n_items + item``. A missing column, an empty file, or a pair the world does not
    hold raises a one-line DataError naming the file and the line (or row)."""
    from recoworld.world.loaders import _common as c

    path = Path(path)
    if path.suffix.lower() == ".parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 (polars and pyarrow raise several kinds)
            raise DataError(
                path, f"unreadable Parquet ({exc})", expected=f"a Parquet file with {GIVEN_LAYOUT}"
            ) from None
        missing = [col for col in ("user_id", "item_id") if col not in frame.columns]
        if missing:
            raise DataError(
                path, f"no column {missing[0]!r} (found {frame.columns})", expected=GIVEN_LAYOUT
            )
        frame = frame.select(pl.col("user_id", "item_id").cast(pl.String)).with_row_index(
            c.LINE, offset=1
        )
        table = c.Table(path, frame, GIVEN_LAYOUT, unit="row")
    else:
        head = c.read_bytes(path, what=f"a CSV file with {GIVEN_LAYOUT}")[:4096]
        sep = "\t" if b"\t" in head.split(b"\n", 1)[0] else ","
        header, table = c.read_header_table(path, separator=sep, what=GIVEN_LAYOUT)
        c.require_columns(table, header, ["user_id", "item_id"], described=GIVEN_LAYOUT)
    table = c.check_ids(c.require_records(table, "held-out pair"), "user_id", "item_id")
    uidx = pl.DataFrame({"user_id": world.users["user_id"], "_u": np.arange(world.users.height)})
    iidx = pl.DataFrame({"item_id": world.items["item_id"], "_i": np.arange(world.items.height)})
    coded = table.frame.join(uidx, on="user_id", how="left").join(iidx, on="item_id", how="left")
    bad = coded.filter(pl.col("_u").is_null() | pl.col("_i").is_null()).sort(c.LINE)
    if bad.height:
        r = bad.row(0, named=True)
        what = f"user {r['user_id']!r}" if r["_u"] is None else f"item {r['item_id']!r}"
        raise table.error(
            r[c.LINE],
            f"{what} is not in the world {world.name!r}",
            "pairs of the dataset's own user and item ids",
        )
    codes = coded["_u"].to_numpy().astype(np.int64) * world.items.height + coded["_i"].to_numpy()
    u, i, *_ = world.coded_interactions()
    known = np.unique(u * world.items.height + i)
    missing = ~np.isin(codes, known)
    if missing.any():
        r = coded.filter(pl.Series(missing)).sort(c.LINE).row(0, named=True)
        raise table.error(
            r[c.LINE],
            f"user {r['user_id']!r} never interacted with item {r['item_id']!r}",
            "held-out pairs that are interactions of the dataset",
        )
    return np.unique(codes)


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
    if split.order in ("time", "last-k"):
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
