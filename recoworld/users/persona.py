"""Personas built from real histories, vectorised: one row per user, numpy arrays per field.

Traits are percentiles in [0, 1] among the world's users:
- activity: number of interactions;
- conformity: mean popularity percentile of the items consumed (taste for the popular);
- diversity: normalised entropy of the user's tag distribution (spread over genres/tags);
- patience: median number of interactions per sitting (a gap of over 30 minutes starts a new
  one), the dataset's nearest trace of how long a user keeps going; activity where there are
  no timestamps.
Taste is the distribution over the catalog's tags of liked items (rating >= 4 on a 5 scale or
>= the user's mean; play-count weighted for implicit data); dislikes the same for rating <= 2.
The preference vector is the unit mean of liked items' embeddings, in the catalog's space.
The recent taste is the unit recency-weighted sum of the embeddings of everything the user
consumed, the latest weighing most: a weight halves every ``half_life`` interactions back (the
fit chooses it among :data:`HALF_LIVES` by held-out likelihood and keeps it in the fitted model,
``ChoiceModel.recent_half_life``). It is the taste signal of time-ordered behaviour: what a user
consumes next resembles what it consumed last more than its whole history.

"User likes tag T" has one definition, ``likes`` below, used by targeting (population.py), by
the persona's description and by the run's ``users.parquet`` (``liked_tag_lists``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import scipy.sparse as sp

from recoworld.items.catalog import Catalog
from recoworld.users.era import user_windows
from recoworld.world.model import World

SITTING_GAP_S = 30 * 60
DEFAULT_HALF_LIFE = 10.0
"""Interactions over which the recent taste's weights halve, where no fitted value is given."""
HALF_LIVES = (3.0, 6.0, 12.0, 25.0, 50.0)
"""The half-lives the fit chooses among (roughly doubling: a few items to a few sessions)."""
NO_RECENCY = 1e9
"""The half-life of an undated world, whose interaction order is file order: every item weighs
alike (the recent taste is then the unweighted mean of everything consumed)."""
LIKE_LIFT = 1.25
"""A user likes a tag whose share of its taste is >= LIKE_LIFT x the average user's share ..."""
LIKE_SHARE = 0.5
"""... or >= LIKE_SHARE of it (a tag most users favour, such as Drama, can still be liked)."""
SHOWN_LIKES = 5
"""Liked tags listed in a description (the targeted ones are always listed when liked)."""
SHOWN_DISLIKES = 3
"""Disliked tags listed in a description (likewise)."""
AGE_BANDS = (
    (0, 17, "<18"),
    (18, 24, "18-24"),
    (25, 34, "25-34"),
    (35, 44, "35-44"),
    (45, 54, "45-54"),
    (55, 200, "55+"),
)


def likes(share: np.ndarray, avg_share: np.ndarray) -> np.ndarray:
    """(n_users, n_tags) bool: user u likes tag T iff ``share[u, T] > 0`` and
    ``share[u, T] >= min(LIKE_LIFT * avg_share[T], LIKE_SHARE)``.

    ``share`` is a taste (or dislike) distribution over tags, one row per user; ``avg_share`` the
    average user's, the yardstick, taken over the world's users (not over a targeted population,
    where every user would be compared with fans like itself). A user with an all-zero row likes
    nothing; a world without tags (zero columns) has nobody liking anything.
    """
    share = np.asarray(share)
    threshold = np.minimum(LIKE_LIFT * np.asarray(avg_share, dtype=share.dtype), LIKE_SHARE)
    return (share > 0) & (share >= threshold)


def _listed_cells(
    share: np.ndarray, mask: np.ndarray, always: tuple[int, ...], n: int
) -> tuple[np.ndarray, np.ndarray]:
    """(counts, cols): per row, the tag columns ``mask`` holds, strongest (largest share) first
    (ties by column), at most ``n`` of them, except that the columns of ``always`` the row holds
    are kept, whatever their rank; ``cols`` holds every row's columns one row after another,
    ``counts`` how many each row has. Whole-array work: no loop over rows."""
    forced = np.zeros(mask.shape[1], dtype=bool)
    forced[list(always)] = True
    key = np.where(mask, -share.astype(np.float64), np.inf)
    order = np.argsort(key, axis=1, kind="stable")
    held = np.take_along_axis(mask, order, axis=1)
    must = held & forced[order]
    free = held & ~forced[order]
    extra = np.maximum(n - must.sum(1), 0)
    keep = must | (free & (np.cumsum(free, axis=1) <= extra[:, None]))
    return keep.sum(1), order[keep]


def _listed(
    share: np.ndarray, mask: np.ndarray, always: tuple[int, ...], n: int
) -> list[list[int]]:
    """Per row, the columns of :func:`_listed_cells`, as lists."""
    counts, cols = _listed_cells(share, mask, always, n)
    return [c.tolist() for c in np.split(cols, np.cumsum(counts)[:-1])] if counts.size else []


@dataclass(frozen=True, eq=False)
class Personas:
    """A population of personas. Every array has one row per user."""

    uid: np.ndarray  # int64 simulated-user id, unique within a population
    template: np.ndarray  # int64 row of the real user this persona comes from, -1 if none
    source_user: np.ndarray  # str objects: the dataset's user id, "" if synthetic
    age: np.ndarray  # int64, -1 unknown
    gender: np.ndarray  # str objects, "" unknown
    occupation: np.ndarray  # str objects, "" unknown
    activity: np.ndarray  # float32 traits in [0, 1]
    conformity: np.ndarray
    diversity: np.ndarray
    patience: np.ndarray
    taste: np.ndarray  # (n, n_tags) float32, rows sum to 1 (or 0)
    dislike: np.ndarray  # (n, n_tags) float32
    pref: np.ndarray  # (n, dim) float32 unit rows
    mean_rating: np.ndarray  # float32, NaN where the dataset has no ratings
    n_history: np.ndarray  # int64 interactions in the persona's history
    history: sp.csr_matrix | None = (
        None  # (world users, n_items) bool: real users' histories, by template
    )
    avg_taste: np.ndarray | None = None  # (n_tags,) the world's average taste: the yardstick of
    avg_dislike: np.ndarray | None = None  # `likes`; None = this population's own average
    recent: np.ndarray | None = None  # (n, dim) float32 unit rows: the recent taste; None = pref
    era: np.ndarray | None = None  # (n, 2) int32 [lo, hi) time bins of the era; None = none
    targeted_likes: tuple[int, ...] = ()  # tag columns the population was targeted on liking
    targeted_dislikes: tuple[int, ...] = ()  # (always listed in descriptions when they hold)

    def history_of(self, n_items: int) -> sp.csr_matrix:
        """(n, n_items) bool CSR of each persona's real history (empty rows for synthetic ones)."""
        n = len(self)
        if self.history is None:
            return sp.csr_matrix((n, n_items), dtype=bool)
        h = self.history[np.maximum(self.template, 0)]
        h = sp.diags((self.template >= 0).astype(np.float32)) @ h.astype(np.float32)
        h.eliminate_zeros()
        if h.shape[1] < n_items:
            h = sp.hstack([h, sp.csr_matrix((n, n_items - h.shape[1]))]).tocsr()
        return h.astype(bool)

    def __len__(self) -> int:
        return int(self.uid.shape[0])

    @property
    def recent_taste(self) -> np.ndarray:
        """(n, dim) the recent taste (the preference vector where none was built)."""
        return self.pref if self.recent is None else self.recent

    def take(self, rows: np.ndarray) -> Personas:
        """A sub-population (rows in the given order)."""
        fields = {f: getattr(self, f)[rows] for f in _ROW_FIELDS}
        for name in ("recent", "era"):
            value = getattr(self, name)
            if value is not None:
                fields[name] = value[rows]
        return replace(self, **fields)

    def average_share(self, field: Literal["taste", "dislike"]) -> np.ndarray:
        """(n_tags,) the yardstick of ``likes`` for ``field``: the world's average user's share
        (this population's own average where the world's is not known)."""
        avg = getattr(self, f"avg_{field}")
        if avg is not None:
            return avg
        m = getattr(self, field)
        return m.mean(0) if len(m) else np.zeros(m.shape[1], m.dtype)

    def liked_mask(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """(n, n_tags) bool: the tags each user (of ``rows``) likes: ``likes`` of its taste."""
        return likes(self.taste[rows], self.average_share("taste"))

    def disliked_mask(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """(n, n_tags) bool: the tags each user (of ``rows``) dislikes: ``likes`` of its dislike
        distribution, less the tags it likes (common tags such as Drama fill both; liking wins)."""
        return likes(self.dislike[rows], self.average_share("dislike")) & ~self.liked_mask(rows)

    def liked_tags(self, catalog: Catalog, i: int, n: int = SHOWN_LIKES) -> list[str]:
        """The tags user ``i`` likes, by share of its taste: at most ``n``, and every targeted
        tag it likes."""
        rows = slice(i, i + 1)
        cols = _listed(self.taste[rows], self.liked_mask(rows), self.targeted_likes, n)
        return [catalog.tags[j] for j in cols[0]]

    def disliked_tags(self, catalog: Catalog, i: int, n: int = SHOWN_DISLIKES) -> list[str]:
        """The tags user ``i`` dislikes, by share of its dislikes: at most ``n``, and every
        targeted tag it dislikes."""
        rows = slice(i, i + 1)
        cols = _listed(self.dislike[rows], self.disliked_mask(rows), self.targeted_dislikes, n)
        return [catalog.tags[j] for j in cols[0]]

    def describe(self, catalog: Catalog, i: int) -> str:
        """A short text summary of persona ``i`` (for prompts and reports)."""
        who = []
        if self.age[i] >= 0:
            who.append(f"{self.age[i]}-year-old")
        if self.gender[i]:
            who.append({"M": "man", "F": "woman"}.get(self.gender[i], self.gender[i]))
        if self.occupation[i]:
            who.append(f"({self.occupation[i]})")
        head = " ".join(who) if who else "A user"
        liked = ", ".join(self.liked_tags(catalog, i)) or "nothing in particular"
        text = f"{head}; likes {liked}"
        dis = self.disliked_tags(catalog, i)
        if dis:
            text += f"; dislikes {', '.join(dis)}"
        tier = lambda x: "low" if x < 1 / 3 else ("high" if x >= 2 / 3 else "medium")  # noqa: E731
        return (
            f"{text}. Activity {tier(self.activity[i])}, taste for popular items "
            f"{tier(self.conformity[i])}, variety-seeking {tier(self.diversity[i])}, "
            f"patience {tier(self.patience[i])}."
        )


def liked_tag_lists(personas: Personas, catalog: Catalog) -> list[list[str]]:
    """Per user, the liked tags its description lists (``Personas.liked_tags``), for the run's
    ``users.parquet``."""
    counts, cols = _listed_cells(
        personas.taste, personas.liked_mask(), personas.targeted_likes, SHOWN_LIKES
    )
    if not counts.size:
        return []
    names = np.asarray(catalog.tags, dtype=object)[cols]
    return [row.tolist() for row in np.split(names, np.cumsum(counts)[:-1])]


_ROW_FIELDS = (
    "uid template source_user age gender occupation activity conformity diversity patience "
    "taste dislike pref mean_rating n_history"
).split()


def age_band(age: np.ndarray) -> np.ndarray:
    out = np.full(age.shape, "unknown", dtype=object)
    for lo, hi, label in AGE_BANDS:
        out[(age >= lo) & (age <= hi)] = label
    return out


def tier_of(x: np.ndarray) -> np.ndarray:
    """'low' / 'mid' / 'high' terciles of a trait in [0, 1]."""
    return np.where(x < 1 / 3, "low", np.where(x >= 2 / 3, "high", "mid")).astype(object)


def _percentile(x: np.ndarray) -> np.ndarray:
    """Mid-rank percentiles in [0, 1] (ties share a value)."""
    order = np.sort(x)
    lo = np.searchsorted(order, x, side="left")
    hi = np.searchsorted(order, x, side="right")
    return ((lo + hi) / 2.0 / max(len(x), 1)).astype(np.float32)


def _row_normalise(m: np.ndarray) -> np.ndarray:
    s = m.sum(axis=1, keepdims=True)
    return np.where(s > 0, m / np.maximum(s, 1e-12), 0.0).astype(np.float32)


def personas_from_history(
    world: World,
    catalog: Catalog,
    *,
    interactions: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    half_life: float = DEFAULT_HALF_LIFE,
    era_width: int = 0,
) -> Personas:
    """One persona per world user, built from ``interactions`` (user row, item row, rating,
    weight, timestamp) — by default all of the world's, ordered by time. ``half_life``: of the
    recent taste (pass the fitted model's ``recent_half_life``); ``era_width``: of the era's
    window (the model's ``era_width``; 0: no era)."""
    if interactions is None:
        interactions = world.coded_interactions()
    u, i, r, w, ts = interactions
    n_users, n_items = world.users.height, catalog.n_items
    counts = np.bincount(u, minlength=n_users)

    has_r = ~np.isnan(r)
    user_mean = np.full(n_users, np.nan)
    if has_r.any():
        sums = np.bincount(u[has_r], weights=r[has_r], minlength=n_users)
        cnt = np.bincount(u[has_r], minlength=n_users)
        user_mean = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
        hi = (world.rating_scale or (1.0, 5.0))[1]
        like_thr = np.minimum(user_mean[u], 0.8 * hi)
        like_w = np.where(has_r, (r >= like_thr).astype(float), np.log1p(w))
        dislike_w = np.where(has_r, (r <= 0.4 * hi).astype(float), 0.0)
    else:
        like_w = np.log1p(w)
        dislike_w = np.zeros_like(like_w)
    like_m = sp.csr_matrix((like_w, (u, i)), shape=(n_users, n_items))
    dis_m = sp.csr_matrix((dislike_w, (u, i)), shape=(n_users, n_items))
    any_m = sp.csr_matrix((np.ones_like(w), (u, i)), shape=(n_users, n_items))
    tm = catalog.tag_matrix
    taste = _row_normalise(np.asarray(like_m @ tm))
    fallback = _row_normalise(np.asarray(any_m @ tm))  # users who liked nothing
    taste = np.where(taste.sum(1, keepdims=True) > 0, taste, fallback)
    dislike = _row_normalise(np.asarray(dis_m @ tm))
    pref_raw = np.asarray(like_m @ catalog.emb)
    pref_raw = np.where(
        np.abs(pref_raw).sum(1, keepdims=True) > 0, pref_raw, np.asarray(any_m @ catalog.emb)
    )
    pref = pref_raw / np.maximum(np.linalg.norm(pref_raw, axis=1, keepdims=True), 1e-9)
    recent = recent_taste(u, i, n_users, catalog, half_life, pref)

    popc = np.bincount(u, weights=catalog.pop_percentile[i], minlength=n_users) / np.maximum(
        counts, 1
    )
    full_tag = _row_normalise(np.asarray(any_m @ tm))
    ent = -(full_tag * np.log(np.where(full_tag > 0, full_tag, 1.0))).sum(1)
    ent = ent / max(np.log(max(tm.shape[1], 2)), 1e-9)
    patience_raw = _sitting_lengths(u, ts, n_users) if (ts >= 0).any() else counts.astype(float)

    users = world.users
    age = (
        users["age"].fill_null(-1).to_numpy().astype(np.int64)
        if "age" in users.columns
        else np.full(n_users, -1)
    )
    col = lambda name: (  # noqa: E731
        np.array(users[name].fill_null("").to_list(), dtype=object)
        if name in users.columns
        else np.full(n_users, "", dtype=object)
    )
    history = sp.csr_matrix((np.ones(u.size, bool), (u, i)), shape=(n_users, n_items), dtype=bool)
    return Personas(
        uid=np.arange(n_users, dtype=np.int64),
        template=np.arange(n_users, dtype=np.int64),
        source_user=np.array(users["user_id"].to_list(), dtype=object),
        age=age,
        gender=col("gender"),
        occupation=col("occupation"),
        activity=_percentile(counts.astype(float)),
        conformity=_percentile(popc),
        diversity=_percentile(ent),
        patience=_percentile(patience_raw),
        taste=taste,
        dislike=dislike,
        pref=pref.astype(np.float32),
        recent=recent,
        era=user_windows(catalog.era, u, ts, n_users, era_width),
        mean_rating=user_mean.astype(np.float32),
        n_history=counts.astype(np.int64),
        history=history,
        avg_taste=taste.mean(0) if n_users else np.zeros(tm.shape[1], np.float32),
        avg_dislike=dislike.mean(0) if n_users else np.zeros(tm.shape[1], np.float32),
    )


def recent_taste(
    u: np.ndarray,
    i: np.ndarray,
    n_users: int,
    catalog: Catalog,
    half_life: float,
    pref: np.ndarray,
) -> np.ndarray:
    """(n_users, dim) float32 unit recency-weighted sums of consumed items' embeddings; ``u``,
    ``i`` in time order (each user's last interaction weighs 1, the one ``half_life`` before it
    1/2); ``pref``'s row for a user with none."""
    if u.size == 0:
        return pref.astype(np.float32)
    order = np.argsort(u, kind="stable")
    counts = np.bincount(u, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(u.size, np.int64)
    rank[order] = np.arange(u.size) - starts[u[order]]
    weight = 0.5 ** ((counts[u] - 1 - rank) / half_life)
    m = sp.csr_matrix((weight, (u, i)), shape=(n_users, catalog.n_items))
    raw = np.asarray(m @ catalog.emb, dtype=np.float64)
    out = raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-9)
    return np.where(np.abs(raw).sum(1, keepdims=True) > 0, out, pref).astype(np.float32)


def _sitting_lengths(u: np.ndarray, ts: np.ndarray, n_users: int) -> np.ndarray:
    """Median number of interactions per sitting, per user."""
    order = np.lexsort((ts, u))
    uu, tt = u[order], ts[order]
    new = np.ones(uu.size, dtype=bool)
    new[1:] = (uu[1:] != uu[:-1]) | (tt[1:] - tt[:-1] > SITTING_GAP_S)
    sitting = np.cumsum(new) - 1
    lengths = np.bincount(sitting)
    sitting_user = uu[new]
    out = np.zeros(n_users)
    # median per user via sorting (user, length)
    o = np.lexsort((lengths, sitting_user))
    su, sl = sitting_user[o], lengths[o]
    starts = np.searchsorted(su, np.arange(n_users), side="left")
    ends = np.searchsorted(su, np.arange(n_users), side="right")
    has = ends > starts
    mid_lo = sl[np.minimum((starts + ends - 1) // 2, sl.size - 1)]
    mid_hi = sl[np.minimum((starts + ends) // 2, sl.size - 1)]
    out[has] = ((mid_lo + mid_hi) / 2.0)[has]
    return out
