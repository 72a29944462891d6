"""A seeded synthetic world with a known generating model, for tests and for runs without data.

The generating story (every draw comes from ``recoworld.rng.generator(seed, "synthetic")``):

1. ``n_tags`` cluster centres on the unit sphere in ``dim`` dimensions; each is named by a tag.
2. Each item belongs to one cluster (cluster sizes vary); its latent vector is the centre plus
   noise, normalised. Its tags are its cluster's tag, then the tag of the next-nearest centre
   when that one is close too. Its creator is drawn among the creators homed in its cluster.
3. Item popularity is Zipf-like: ``item_popularity_logit = -log(rank)``, centred, over a random
   ranking of the items.
4. Each user likes one or two clusters; the user vector is their mix plus noise, normalised.
   Demographics (age 18-70, gender, occupation) are drawn independently of the vector.
5. Each user makes ``k ~ U{lo..hi}`` distinct choices (capped at ``n_items``) by the logit
   model ``P(j) ∝ exp(affinity_weight * <u, v_j> + popularity_weight * pop_j)`` over the items
   not yet chosen (Plackett-Luce, sampled with Gumbel top-k); timestamps increase in choice
   order, in sittings: 4 items on average (geometric), 1 to 11 minutes apart, about 3 days
   between sittings (exponential).
6. Ratings: ``clip(round(rating_intercept + rating_slope * <u, v_j> + noise), 1, 5)`` with
   ``noise ~ N(0, rating_noise_sd)``.

:class:`SyntheticTruth` holds the vectors and coefficients, so models fitted on the world can be
checked against the truth. Row ``i`` of ``user_vectors`` is row ``i`` of ``world.users``; row
``j`` of ``item_vectors`` is row ``j`` of ``world.items``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from recoworld.rng import generator
from recoworld.world.loaders._common import interactions_frame, items_frame
from recoworld.world.model import World

GENRE_WORDS = (
    "drama",
    "comedy",
    "thriller",
    "romance",
    "sci-fi",
    "documentary",
    "horror",
    "animation",
    "fantasy",
    "mystery",
    "western",
    "musical",
    "jazz",
    "indie",
    "folk",
    "electronic",
    "hip-hop",
    "classical",
    "metal",
    "ambient",
    "crime",
    "adventure",
    "history",
    "sports",
)
"""Tag names used when ``n_tags`` is at most their number; otherwise tags are 'tag-00', ..."""

OCCUPATIONS = (
    "student",
    "engineer",
    "educator",
    "artist",
    "healthcare",
    "retired",
    "writer",
    "sales",
    "administrator",
    "technician",
    "scientist",
    "homemaker",
)
GENDERS = ("F", "M")
_ADJECTIVES = (
    "Silent",
    "Golden",
    "Broken",
    "Hidden",
    "Last",
    "Electric",
    "Lonely",
    "Wild",
    "Crimson",
    "Distant",
    "Secret",
    "Endless",
    "Quiet",
    "Burning",
    "Paper",
    "Glass",
)
_NOUNS = (
    "Harbor",
    "Summer",
    "Signal",
    "Garden",
    "River",
    "Machine",
    "Letters",
    "Kingdom",
    "Orbit",
    "Stranger",
    "Horizon",
    "Echo",
    "Winter",
    "Road",
    "City",
    "Dream",
)

EPOCH_START = 1_600_000_000
"""First possible timestamp (2020-09-13); users start within a year after it."""


@dataclass(frozen=True, eq=False)
class SyntheticTruth:
    """The generating model of a synthetic world (arrays are row-aligned with the world)."""

    user_vectors: np.ndarray
    """(n_users, dim), unit rows."""
    item_vectors: np.ndarray
    """(n_items, dim), unit rows."""
    item_popularity_logit: np.ndarray
    """(n_items,), mean 0."""
    item_cluster: np.ndarray
    """(n_items,) index of each item's cluster, i.e. of its first tag in ``tags``."""
    cluster_centers: np.ndarray
    """(n_tags, dim), unit rows."""
    tags: tuple[str, ...]
    """Tag name of each cluster."""
    affinity_weight: float
    popularity_weight: float
    rating_intercept: float
    rating_slope: float
    rating_noise_sd: float

    def choice_logits(self, user: int) -> np.ndarray:
        """The choice model's logit of every item for user row ``user``."""
        return (
            self.affinity_weight * (self.item_vectors @ self.user_vectors[user])
            + self.popularity_weight * self.item_popularity_logit
        )


AFFINITY_WEIGHT = 4.0
POPULARITY_WEIGHT = 1.0
RATING_INTERCEPT = 2.8
RATING_SLOPE = 2.0
RATING_NOISE_SD = 0.7
_SECOND_TAG_MIN_COSINE = 0.6
_ITEM_NOISE = 0.8
_USER_NOISE = 0.8
_MEAN_GAP_S = 3 * 86400
"""Mean days between a user's sittings (plus an hour), in seconds."""
_WITHIN_GAP_S = 10 * 60
"""Longest gap between two items of a sitting, in seconds (each is 1 to 11 minutes)."""
SITTING_CUT = float(np.log(4.0))
"""A sitting goes on after each item with chance 1 - exp(-SITTING_CUT) = 3/4: sittings of 4
items on average (geometric)."""


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _ids(prefix: str, n: int) -> list[str]:
    width = len(str(max(n - 1, 0)))
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


def synthetic_world_with_truth(
    n_users: int,
    n_items: int,
    *,
    seed: int,
    n_tags: int = 12,
    dim: int = 8,
    interactions_per_user: tuple[int, int] = (20, 80),
    with_ratings: bool = True,
) -> tuple[World, SyntheticTruth]:
    """A synthetic World and its :class:`SyntheticTruth`; same arguments -> identical frames.

    ``interactions_per_user = (lo, hi)`` bounds each user's number of distinct items
    (``1 <= lo <= hi``; capped at ``n_items``). Without ratings, ``rating`` is null and the
    rating scale None. Raises ValueError on impossible sizes.
    """
    lo, hi = interactions_per_user
    if n_users < 1 or n_items < 1 or n_tags < 1 or dim < 1:
        raise ValueError(
            "n_users, n_items, n_tags and dim must be >= 1, "
            f"got {n_users}, {n_items}, {n_tags}, {dim}"
        )
    if not 1 <= lo <= hi:
        raise ValueError(
            f"interactions_per_user must satisfy 1 <= lo <= hi, got {interactions_per_user}"
        )
    rng = generator(seed, "synthetic")
    tags = (
        GENRE_WORDS[:n_tags]
        if n_tags <= len(GENRE_WORDS)
        else tuple(f"tag-{i:02d}" for i in range(n_tags))
    )

    # 1-2. clusters and items
    centers = _unit(rng.normal(size=(n_tags, dim)))
    cluster_p = np.exp(rng.normal(scale=0.5, size=n_tags))
    cluster = rng.choice(n_tags, size=n_items, p=cluster_p / cluster_p.sum())
    item_vec = _unit(
        centers[cluster] + _ITEM_NOISE * rng.normal(size=(n_items, dim)) / np.sqrt(dim)
    )
    cos = item_vec @ centers.T
    cos[np.arange(n_items), cluster] = -np.inf
    second = np.argmax(cos, axis=1) if n_tags > 1 else np.zeros(n_items, dtype=np.int64)
    has_second = (n_tags > 1) & (cos[np.arange(n_items), second] > _SECOND_TAG_MIN_COSINE)
    n_creators = max(1, round(n_items / 8))
    creator_home = rng.integers(n_tags, size=n_creators)
    creator = rng.integers(n_creators, size=n_items)  # fallback for clusters without a creator
    for k in range(n_tags):
        homed = np.flatnonzero(creator_home == k)
        members = np.flatnonzero(cluster == k)
        if homed.size and members.size:
            creator[members] = homed[rng.integers(homed.size, size=members.size)]
    adjective = rng.integers(len(_ADJECTIVES), size=n_items)
    noun = rng.integers(len(_NOUNS), size=n_items)

    # 3. popularity
    rank = rng.permutation(n_items) + 1
    pop = -np.log(rank)
    pop -= pop.mean()

    # 4. users
    favourite = rng.integers(n_tags, size=(n_users, 2))
    mix = rng.uniform(size=(n_users, 1)) * (rng.uniform(size=(n_users, 1)) < 0.5)
    user_vec = _unit(
        (1 - mix) * centers[favourite[:, 0]]
        + mix * centers[favourite[:, 1]]
        + _USER_NOISE * rng.normal(size=(n_users, dim)) / np.sqrt(dim)
    )
    age = rng.integers(18, 71, size=n_users)
    gender = rng.integers(len(GENDERS), size=n_users)
    occupation = rng.integers(len(OCCUPATIONS), size=n_users)

    # 5. choices: Gumbel top-k over the logits is sequential sampling without replacement.
    hi_eff = min(hi, n_items)
    counts = np.minimum(rng.integers(lo, hi + 1, size=n_users), n_items)
    chunk = max(1, 2_000_000 // n_items)
    chosen_rows, chosen_items = [], []
    for start in range(0, n_users, chunk):
        u = np.arange(start, min(start + chunk, n_users))
        keys = AFFINITY_WEIGHT * (user_vec[u] @ item_vec.T) + POPULARITY_WEIGHT * pop
        keys += rng.gumbel(size=keys.shape)
        top = (
            np.argpartition(-keys, hi_eff - 1, axis=1)[:, :hi_eff]
            if hi_eff < n_items
            else (np.tile(np.arange(n_items), (u.size, 1)))
        )
        order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        keep = np.arange(hi_eff)[None, :] < counts[u][:, None]
        chosen_rows.append(np.broadcast_to(u[:, None], top.shape)[keep])
        chosen_items.append(top[keep])
    rows = np.concatenate(chosen_rows)
    items = np.concatenate(chosen_items)

    # timestamps: per-user start plus cumulative gaps, in choice order, in sittings: an
    # exponential draw under SITTING_CUT goes on with the sitting (a few minutes later),
    # one above it starts the next (days later: its excess is again exponential)
    e = rng.exponential(1.0, size=rows.size)
    within = e < SITTING_CUT
    gaps = np.where(
        within, 60.0 + e * (_WITHIN_GAP_S / SITTING_CUT), 3600.0 + (e - SITTING_CUT) * _MEAN_GAP_S
    )
    gaps = np.ceil(gaps).astype(np.int64)
    csum = np.cumsum(gaps)
    first = np.r_[0, np.flatnonzero(np.diff(rows)) + 1]
    before = np.repeat(csum[first] - gaps[first], np.diff(np.r_[first, rows.size]))
    starts = EPOCH_START + rng.integers(0, 365 * 86400, size=n_users)
    timestamp = starts[rows] + csum - before

    # 6. ratings
    affinity = np.einsum("ij,ij->i", user_vec[rows], item_vec[items])
    noise = rng.normal(scale=RATING_NOISE_SD, size=rows.size)
    rating = np.clip(np.round(RATING_INTERCEPT + RATING_SLOPE * affinity + noise), 1, 5)

    user_ids, item_ids = _ids("u", n_users), _ids("i", n_items)
    tag_lists = [
        [tags[cluster[j]], tags[second[j]]] if has_second[j] else [tags[cluster[j]]]
        for j in range(n_items)
    ]
    creator_ids = _ids("creator-", n_creators)
    item_frame = pl.DataFrame(
        {
            "item_id": item_ids,
            "title": [
                f"{_ADJECTIVES[a]} {_NOUNS[b]}" for a, b in zip(adjective, noun, strict=True)
            ],
            "tags": tag_lists,
            "creator": [creator_ids[k] for k in creator],
        },
        schema_overrides={"tags": pl.List(pl.String)},
    ).with_columns(
        (
            pl.lit("A ")
            + pl.col("tags").list.first()
            + pl.lit(" title by ")
            + pl.col("creator")
            + pl.lit(". Tags: ")
            + pl.col("tags").list.join(", ")
            + pl.lit(".")
        ).alias("text")
    )
    inter = pl.DataFrame(
        {
            "user_id": pl.Series(user_ids).gather(rows),
            "item_id": pl.Series(item_ids).gather(items),
            "timestamp": timestamp,
            **({"rating": rating} if with_ratings else {}),
        }
    )
    users = pl.DataFrame(
        {
            "user_id": user_ids,
            "age": age.astype(np.int64),
            "gender": [GENDERS[g] for g in gender],
            "occupation": [OCCUPATIONS[o] for o in occupation],
        }
    )
    world = World(
        name="synthetic",
        items=items_frame(item_frame),
        interactions=interactions_frame(inter),
        users=users,
        rating_scale=(1.0, 5.0) if with_ratings else None,
        source=(
            f"synthetic(n_users={n_users}, n_items={n_items}, seed={seed}, "
            f"n_tags={n_tags}, dim={dim})"
        ),
    ).validate()
    truth = SyntheticTruth(
        user_vectors=user_vec,
        item_vectors=item_vec,
        item_popularity_logit=pop,
        item_cluster=cluster,
        cluster_centers=centers,
        tags=tuple(tags),
        affinity_weight=AFFINITY_WEIGHT,
        popularity_weight=POPULARITY_WEIGHT,
        rating_intercept=RATING_INTERCEPT,
        rating_slope=RATING_SLOPE,
        rating_noise_sd=RATING_NOISE_SD,
    )
    return world, truth


def synthetic_world(
    n_users: int,
    n_items: int,
    *,
    seed: int,
    n_tags: int = 12,
    dim: int = 8,
    interactions_per_user: tuple[int, int] = (20, 80),
    with_ratings: bool = True,
) -> World:
    """The world of :func:`synthetic_world_with_truth`, without the truth."""
    return synthetic_world_with_truth(
        n_users,
        n_items,
        seed=seed,
        n_tags=n_tags,
        dim=dim,
        interactions_per_user=interactions_per_user,
        with_ratings=with_ratings,
    )[0]
