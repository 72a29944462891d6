"""The normalised world every loader produces.

Contract (column names and types are the same for every dataset):

- ``items``: ``item_id`` (str, unique), ``title`` (str), ``text`` (str, may be empty),
  ``tags`` (list[str]: genres or tags, most important first), ``creator`` (str, may be empty).
  Optional: ``embedding`` (list[f64], null where missing): a vector from the platform's own
  encoder (image, video, audio); ``image`` (str, null where none): an image path or URI
  (``recoworld/items``, docs/items.md).
- ``interactions``: ``user_id`` (str), ``item_id`` (str), ``rating`` (f64, null where the
  dataset has none), ``weight`` (f64, > 0: play count or 1.0), ``timestamp`` (i64 seconds,
  null where unknown).
  Optional: ``watch_fraction`` (f64 in [0, 1], null where unknown): the share of the item the
  user watched, for feed logs (KuaiRec, KuaiRand: the watch ratio, capped at 1).
- ``users``: ``user_id`` (str, unique) plus optional demographics: ``age`` (i64),
  ``gender`` (str), ``occupation`` (str), ``zip`` (str).
- ``friends``: ``user_id``, ``friend_id`` (str), possibly empty.

Every interaction references a known user and item; :meth:`World.validate` checks it.

A world's identity for random streams is :attr:`World.key`, a SHA-256 of its content (never its
``name`` or ``source``): the same data gives the same results wherever it lives.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import polars as pl

from recoworld.errors import DataError

ITEM_SCHEMA: dict[str, pl.DataType] = {
    "item_id": pl.String(),
    "title": pl.String(),
    "text": pl.String(),
    "tags": pl.List(pl.String()),
    "creator": pl.String(),
}
INTERACTION_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "item_id": pl.String(),
    "rating": pl.Float64(),
    "weight": pl.Float64(),
    "timestamp": pl.Int64(),
}
OPTIONAL_INTERACTION_COLUMNS: dict[str, pl.DataType] = {"watch_fraction": pl.Float64()}
"""Interaction columns a loader may add (see the module docstring)."""
OPTIONAL_ITEM_COLUMNS: dict[str, pl.DataType] = {
    "embedding": pl.List(pl.Float64()),
    "image": pl.String(),
}
"""Item columns a loader may add (see the module docstring)."""
DEMOGRAPHIC_COLUMNS: dict[str, pl.DataType] = {
    "age": pl.Int64(),
    "gender": pl.String(),
    "occupation": pl.String(),
    "zip": pl.String(),
}


MIN_USERS = 3
MIN_ITEMS = 3
"""The item embeddings are a rank-2 (at least) truncated SVD of the user x item matrix, which
needs both sides larger than the rank (``recoworld.items.catalog.build_catalog``)."""
MIN_DATED_SHARE = 0.5
"""A world is *dated* when at least this share of its interactions carry a time: then their
order means something (time splits in ``recoworld.eval.split``, the recent taste in
``recoworld.users.fit``); otherwise it is file order, which means nothing."""
MIN_USER_INTERACTIONS = 5
"""Fitting holds out the latest interactions of users with at least this many
(``recoworld.users.fit.MIN_INTERACTIONS``): a world without one such user has no targets."""


def empty_friends() -> pl.DataFrame:
    return pl.DataFrame(schema={"user_id": pl.String(), "friend_id": pl.String()})


@dataclass(frozen=True, eq=False)
class World:
    """A dataset in normalised form. Build with a loader, then call :meth:`validate`."""

    name: str
    items: pl.DataFrame
    interactions: pl.DataFrame
    users: pl.DataFrame
    friends: pl.DataFrame = field(default_factory=empty_friends)
    rating_scale: tuple[float, float] | None = None
    source: str = ""

    def validate(self) -> World:
        """Check the column contract and id references; returns self for chaining."""
        where = self.source or self.name
        for frame_name, frame, schema in (
            ("items", self.items, ITEM_SCHEMA),
            ("interactions", self.interactions, INTERACTION_SCHEMA),
        ):
            for col, dtype in schema.items():
                if col not in frame.columns:
                    raise DataError(
                        where,
                        f"{frame_name} lacks column {col!r}",
                        expected=f"columns {list(schema)}",
                    )
                if frame.schema[col] != dtype:
                    raise DataError(
                        where,
                        f"{frame_name}.{col} has type {frame.schema[col]}",
                        expected=str(dtype),
                    )
        for frame_name, frame, optional in (
            ("interactions", self.interactions, OPTIONAL_INTERACTION_COLUMNS),
            ("items", self.items, OPTIONAL_ITEM_COLUMNS),
        ):
            for col, dtype in optional.items():
                if col in frame.columns and frame.schema[col] != dtype:
                    raise DataError(
                        where,
                        f"{frame_name}.{col} has type {frame.schema[col]}",
                        expected=str(dtype),
                    )
        if "watch_fraction" in self.interactions.columns:
            wf = self.interactions["watch_fraction"].drop_nulls()
            if wf.len() and not (wf.is_finite().all() and wf.min() >= 0 and wf.max() <= 1):  # type: ignore[operator]
                raise DataError(
                    where, "a watch_fraction is outside [0, 1]", expected="fractions in [0, 1]"
                )
        if "user_id" not in self.users.columns:
            raise DataError(where, "users lacks column 'user_id'", expected="a user_id column")
        for frame_name, frame, col in (
            ("items", self.items, "item_id"),
            ("users", self.users, "user_id"),
        ):
            dup = frame.filter(pl.col(col).is_duplicated())
            if dup.height:
                raise DataError(
                    where,
                    f"{frame_name} has duplicate {col} {dup[col][0]!r}",
                    expected="unique ids",
                )
        if self.items.height == 0:
            raise DataError(where, "the world has no items", expected="at least one item")
        if self.interactions.height == 0:
            raise DataError(
                where, "the world has no interactions", expected="at least one interaction"
            )
        for col, frame, label in (("item_id", self.items, "item"), ("user_id", self.users, "user")):
            unknown = self.interactions.join(frame.select(col), on=col, how="anti")
            if unknown.height:
                raise DataError(
                    where,
                    f"interaction references unknown {label} {unknown[col][0]!r}",
                    expected=f"every interaction's {col} to appear in the {label}s",
                )
        if (self.interactions["weight"] <= 0).any():
            raise DataError(where, "an interaction has weight <= 0", expected="positive weights")
        return self

    def require_fittable(self) -> World:
        """Raise a DataError when the world is too small to build a catalog and fit the choice
        model (:data:`MIN_USERS`, :data:`MIN_ITEMS`, :data:`MIN_USER_INTERACTIONS`); returns
        self. Checked by :func:`recoworld.world.loaders.load_world` unless told otherwise."""
        per_user = self.interactions.group_by("user_id").len()["len"]
        most = int(per_user.max()) if per_user.len() else 0  # type: ignore[arg-type]
        users, items = self.users.height, self.items.height
        if users < MIN_USERS or items < MIN_ITEMS or most < MIN_USER_INTERACTIONS:
            raise DataError(
                self.source or self.name,
                f"the world is too small to fit: {users} user{'s' * (users != 1)}, "
                f"{items} item{'s' * (items != 1)}, {self.interactions.height} "
                f"interaction{'s' * (self.interactions.height != 1)}, at most {most} per user",
                expected=f"at least {MIN_USERS} users, {MIN_ITEMS} items and one user with "
                f">= {MIN_USER_INTERACTIONS} interactions",
            )
        return self

    @cached_property
    def key(self) -> str:
        """SHA-256 (hex) of the world's content: the frames' columns (names, types, values,
        nulls) in the contract's order, then the users' other columns and the friends by name,
        and the rating scale. Not the ``name`` nor the ``source``: random streams that must
        follow the data (fitting's draws, the random holdout) are keyed by it, so the same data
        under any folder name gives the same results. Computed once per world (ML-100K: ~15 ms)."""
        h = hashlib.sha256(b"recoworld-world-key-1")
        for label, frame, first in (
            ("items", self.items, list(ITEM_SCHEMA)),
            ("interactions", self.interactions, list(INTERACTION_SCHEMA)),
            ("users", self.users, ["user_id"]),
            ("friends", self.friends, []),
        ):
            cols = [c for c in first if c in frame.columns]
            cols += sorted(c for c in frame.columns if c not in cols)
            h.update(f"\x1d{label}:{frame.height}".encode())
            for col in cols:
                _hash_series(h, frame[col])
        h.update(repr(self.rating_scale).encode())
        return h.hexdigest()

    # ---- dense indices used by the numeric parts -------------------------------------------
    @cached_property
    def item_ids(self) -> np.ndarray:
        return self.items["item_id"].to_numpy()

    @cached_property
    def user_ids(self) -> np.ndarray:
        return self.users["user_id"].to_numpy()

    @cached_property
    def tag_vocabulary(self) -> list[str]:
        """All tags, most frequent first (ties by name), for stable feature columns."""
        counts = (
            self.items.select(pl.col("tags").explode().alias("tag"))
            .drop_nulls()
            .group_by("tag")
            .len()
            .sort(["len", "tag"], descending=[True, False])
        )
        return counts["tag"].to_list()

    def coded_interactions(
        self,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(user row, item row, rating or NaN, weight, timestamp or -1) as numpy arrays,
        ordered by time (unknown times last, then file order)."""
        uidx = pl.DataFrame({"user_id": self.users["user_id"], "u": np.arange(self.users.height)})
        iidx = pl.DataFrame({"item_id": self.items["item_id"], "i": np.arange(self.items.height)})
        df = (
            self.interactions.with_row_index("_row")
            .join(uidx, on="user_id")
            .join(iidx, on="item_id")
            .sort(["timestamp", "_row"], nulls_last=True)
        )
        return (
            df["u"].to_numpy().astype(np.int64),
            df["i"].to_numpy().astype(np.int64),
            df["rating"].fill_null(np.nan).to_numpy().astype(np.float64),
            df["weight"].to_numpy().astype(np.float64),
            df["timestamp"].fill_null(-1).to_numpy().astype(np.int64),
        )

    def coded_column(self, column: str, fill: float = np.nan) -> np.ndarray:
        """An interaction column as float64, in :meth:`coded_interactions` order (nulls and a
        missing column -> ``fill``)."""
        if column not in self.interactions.columns:
            return np.full(self.interactions.height, fill)
        df = (
            self.interactions.with_row_index("_row")
            .join(self.users.select("user_id"), on="user_id", how="semi")
            .join(self.items.select("item_id"), on="item_id", how="semi")
            .sort(["timestamp", "_row"], nulls_last=True)
        )
        return df[column].cast(pl.Float64).fill_null(fill).to_numpy().astype(np.float64)

    @property
    def has_watch_fractions(self) -> bool:
        """Whether any interaction carries a ``watch_fraction``."""
        wf = "watch_fraction"
        return wf in self.interactions.columns and self.interactions[wf].null_count() < (
            self.interactions.height
        )

    @property
    def has_ratings(self) -> bool:
        return self.interactions["rating"].null_count() < self.interactions.height


def _hash_series(h: hashlib._Hash, s: pl.Series) -> None:
    """Feed one column into ``h`` unambiguously: name, type, null mask, then values (strings as
    their byte lengths and bytes; lists as their lengths, then their flattened values)."""
    h.update(f"\x1e{s.name}:{s.dtype}".encode())
    h.update(s.is_null().to_numpy().tobytes())
    if isinstance(s.dtype, pl.List):
        h.update(s.list.len().fill_null(0).cast(pl.Int64).to_numpy().tobytes())
        _hash_series(h, s.explode().drop_nulls().rename(f"{s.name}[]"))
    elif s.dtype == pl.String:
        t = s.fill_null("")
        h.update(t.str.len_bytes().cast(pl.Int64).to_numpy().tobytes())
        h.update(t.str.join("").item().encode() if t.len() else b"")
    elif s.dtype.is_integer() or s.dtype == pl.Boolean:
        h.update(s.fill_null(0).cast(pl.Int64).to_numpy().tobytes())
    elif s.dtype.is_float():
        h.update(s.fill_null(0).cast(pl.Float64).to_numpy().tobytes())
    else:
        h.update("\x1f".join(map(str, s.to_list())).encode())
