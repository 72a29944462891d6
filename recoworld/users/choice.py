"""The fitted choice model: which items a user engages with, how much, and how it rates them.

Static part of the click logit for user u and item i (all features vectorised over (n, k)):

    logit = b0 + b_aff * cos(pref_u, emb_i) + b_tag * taste_u . tags_i - b_dis * dislike_u . tags_i
            + b_pop * pop_i + b_conf * pop_i * (conformity_u - 0.5)

The coefficients are fitted by :mod:`recoworld.users.fit` (a logistic model of interacted vs.
sampled not-interacted items). Ratings follow ``mean_u + bias_i + gamma * (aff - aff_mean) +
sd * noise``, a latent score cut into the dataset's rating levels at thresholds fitted so that
the simulated rating distribution matches the real one (an ordinal model).
"""

from __future__ import annotations

import msgspec
import numpy as np

from recoworld.items.catalog import Catalog
from recoworld.users.persona import Personas

FEATURES = ("intercept", "affinity", "tag_match", "dislike_match", "popularity", "pop_x_conformity")


class RatingModel(msgspec.Struct, frozen=True, kw_only=True):
    scale_min: float
    scale_max: float
    step: float
    global_mean: float
    gamma: float
    """Rating points per unit of affinity above the user's mean affinity."""
    affinity_mean: float
    noise_sd: float
    item_bias: list[float]
    """Per catalog item (0 for cold-start items)."""
    levels: list[float]
    """The rating levels, ascending (e.g. 1..5, or 0.5..5 by halves)."""
    thresholds: list[float]
    """Latent cut points between consecutive levels (len(levels) - 1)."""


class ReturnModel(msgspec.Struct, frozen=True, kw_only=True):
    base_logit: float
    """Logit of returning for a neutral user, fitted to the dataset's return rate."""
    mean_gap_days: float
    """Mean days between sessions of returning users, fitted to the dataset."""
    data_return_rate: float
    """Share of the dataset's sittings followed by another within the horizon."""
    horizon_days: float


class ChoiceModel(msgspec.Struct, frozen=True, kw_only=True):
    """Everything fitted to a dataset. Serialisable (kept in each run as fit.json)."""

    coef: list[float]
    """Coefficients in the order of FEATURES."""
    base_rate: float
    """Positive share of the fitting design, 1 / (1 + negatives_per_positive)."""
    watch_intercept: float
    watch_slope: float
    rating: RatingModel | None
    returns: ReturnModel
    repeat_share: float = 1.0
    """Share of the world's consumptions that repeat an item (``users.satiation``); sets the
    lasting satiation penalty. 1.0 (none) in fits made before it existed."""

    def static_logit(
        self, p: Personas, rows: np.ndarray, items: np.ndarray, cat: Catalog
    ) -> tuple[np.ndarray, np.ndarray]:
        """(logits, affinities), each (n, k), of users ``rows`` of ``p`` for ``items`` (n, k)."""
        f = features(p, rows, items, cat)
        return static_logit(np.asarray(self.coef, dtype=np.float32), *f), f[0]

    def affinity(
        self, p: Personas, rows: np.ndarray, items: np.ndarray, cat: Catalog
    ) -> np.ndarray:
        return np.einsum("nd,nkd->nk", p.pref[rows], cat.emb[items])


def features(
    p: Personas, rows: np.ndarray, items: np.ndarray, cat: Catalog
) -> tuple[np.ndarray, ...]:
    """(affinity, tag_match, dislike_match, popularity, pop_x_conformity), each (n, k) float32."""
    aff = np.einsum("nd,nkd->nk", p.pref[rows], cat.emb[items])
    tags = cat.tag_matrix[items]
    tag = np.einsum("nt,nkt->nk", p.taste[rows], tags)
    dis = np.einsum("nt,nkt->nk", p.dislike[rows], tags)
    pop = cat.popularity[items]
    popc = pop * (p.conformity[rows, None] - 0.5)
    return aff, tag, dis, pop, popc


def static_logit(coef: np.ndarray, aff, tag, dis, pop, popc) -> np.ndarray:  # noqa: ANN001
    return (
        coef[0] + coef[1] * aff + coef[2] * tag + coef[3] * dis + coef[4] * pop + coef[5] * popc
    ).astype(np.float32)
