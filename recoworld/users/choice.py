"""The fitted choice model: which items a user engages with, how much, and how it rates them.

Static part of the click logit for user u and item i (all features vectorised over (n, k)):

    logit = b0 + b_aff * cos(pref_u, emb_i) + b_tag * taste_u . tags_i - b_dis * dislike_u . tags_i
            + b_pop * pop_i + b_conf * pop_i * (conformity_u - 0.5) + b_rec * cos(recent_u, emb_i)
            + b_era * timeliness(u, i) + b_nb * neighbourhood(u, i)

(``recent_u``: the user's recent taste, :mod:`recoworld.users.persona`; ``timeliness``: how much
more the item was consumed around the user's own time in the logs than its popularity says,
:mod:`recoworld.users.era`; ``neighbourhood``: how similar the item is to the user's own items
by who consumed them together, :mod:`recoworld.users.neighbours`). The coefficients are
fitted by :mod:`recoworld.users.fit`, twice (a logistic model of interacted vs. sampled
not-interacted items): ``coef``, the *choice* among what a user is shown, against items drawn
as the logs' exposure would show them (in proportion to their popularity), which the simulator
uses: a recommender supplies the exposure; and ``logged_coef``, the *logged-world* model
against items drawn uniformly, which predicts what a user consumed anywhere (exposure and
choice together: what the fidelity protocols' lists ask about, their negatives being uniform).

Ratings follow ``mean_u + bias_i + gamma * (aff - aff_mean) + sd * noise`` (``mean_u``: the
user's mean rating shrunk toward the global one by ``user_prior`` pseudo-ratings), a latent
score cut into the dataset's rating levels at thresholds fitted so that the simulated rating
distribution matches the real one (an ordinal model).
"""

from __future__ import annotations

import msgspec
import numpy as np

from recoworld.items.catalog import Catalog
from recoworld.users.era import timeliness
from recoworld.users.neighbours import NeighbourTable, neighbourhood
from recoworld.users.persona import Personas

FEATURES = (
    "intercept",
    "affinity",
    "tag_match",
    "dislike_match",
    "popularity",
    "pop_x_conformity",
    "recent_affinity",
    "timeliness",
    "neighbourhood",
)


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
    user_prior: float = 0.0
    """Pseudo-ratings at the global mean added to each user's mean (empirical Bayes: the
    within-user variance over the between-user variance of the data's ratings), so a user with
    few ratings starts near the global mean (``recoworld.users.fit.user_means``). 0 in fits
    made before it existed."""


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
    """The choice among shown items: coefficients in the order of FEATURES (a fit made before
    a feature existed has fewer: the missing ones are 0)."""
    base_rate: float
    """Positive share of the fitting design, 1 / (1 + negatives_per_positive)."""
    watch_intercept: float
    watch_slope: float
    appeal_center: float | None = None
    """The choice logit of a typical consumed item (the mean over the fit's positives): a
    click's watch fraction is a logit-normal around ``watch_intercept + watch_slope * (logit -
    appeal_center)``, so an item as appealing as what users consume is watched ~60% through,
    whatever the fitted features' scale. None in fits made before it existed (then the
    intercept, ``coef[0]``)."""
    rating: RatingModel | None
    returns: ReturnModel
    repeat_share: float = 1.0
    """Share of the world's consumptions that repeat an item (``users.satiation``); sets the
    lasting satiation penalty. 1.0 (none) in fits made before it existed."""
    recent_half_life: float = 10.0
    """Interactions over which the recent taste's weights halve (chosen by the fit; personas
    must be built with it: ``personas_from_history(..., half_life=...)``)."""
    session_repetition: float = 0.0
    """Logit per unit of an item's repetition of the session (its tags' cosine with the
    profile of what the user consumed earlier in the session: the brain's ``repetition``),
    fitted on the logs' sittings given ``coef`` (``recoworld.users.fit``); positive where users
    linger on a kind of item within a sitting. 0 in fits made before it existed and in worlds
    without tags or times."""
    era_width: int = 0
    """Time bins either side of a user's own that its era spans (``recoworld.users.era``),
    chosen by the fit; 0: no era (the timeliness feature is 0). Personas must be built with it:
    ``personas_from_history(..., era_width=...)``."""
    sitting_items: float = 0.0
    """Mean items a user consumes in a sitting (30-minute gaps), over the whole sittings of
    the logs' most recent part (``recoworld.users.fit``): the length the level of leaving is
    fitted to (``leave_offset``, ``enough``). 0 in undated worlds and fits made before it
    existed."""
    leave_offset: float = 0.0
    """Logit added to every user's leave logit after a slate (``[brain] leave_bias`` and the
    dynamics around it); at most 0, where the logs' sittings are longer than the dynamics
    alone give. Fitted by simulation (``recoworld.study.sittings``); 0 where unfitted."""
    enough: float = 0.0
    """The chance that a user has had enough after each item it consumes, and leaves there,
    mid-slate; above 0 where the logs' sittings are shorter than the dynamics give. Fitted
    with ``leave_offset`` (one of the two is 0); 0 where unfitted."""
    logged_coef: list[float] = []
    """The logged-world model (what a user consumed anywhere, exposure included), in the order
    of FEATURES; empty in fits made before it existed (then ``coef``)."""

    @property
    def fatigue_scale(self) -> float:
        """The factor on the fatigue each item adds (``[brain] fatigue_per_item``,
        ``fatigue_per_watch``): ``exp(leave_offset)``, so that a user who stays longer also
        tires more slowly in the same proportion (``recoworld.study.sittings.level``)."""
        return float(np.exp(min(self.leave_offset, 0.0)))

    def coefficients(self, which: str = "choice") -> np.ndarray:
        """float32 (len(FEATURES),): ``choice`` (``coef``) or ``logged`` (``logged_coef``)."""
        c = self.logged_coef if which == "logged" and self.logged_coef else self.coef
        out = np.zeros(len(FEATURES), np.float32)
        out[: len(c)] = c[: len(FEATURES)]
        return out

    def static_logit(
        self,
        p: Personas,
        rows: np.ndarray,
        items: np.ndarray,
        cat: Catalog,
        which: str = "choice",
        table: NeighbourTable | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(logits, affinities), each (n, k), of users ``rows`` of ``p`` for ``items`` (n, k),
        under the ``which`` model (:meth:`coefficients`); ``table``: ``p``'s neighbourhoods,
        built once for many calls (:func:`features`)."""
        f = features(p, rows, items, cat, table)
        return static_logit(self.coefficients(which), *f), f[0]

    def affinity(
        self, p: Personas, rows: np.ndarray, items: np.ndarray, cat: Catalog
    ) -> np.ndarray:
        return np.einsum("nd,nkd->nk", p.pref[rows], cat.emb[items])


def features(
    p: Personas,
    rows: np.ndarray,
    items: np.ndarray,
    cat: Catalog,
    table: NeighbourTable | None = None,
) -> tuple[np.ndarray, ...]:
    """(affinity, tag_match, dislike_match, popularity, pop_x_conformity, recent_affinity,
    timeliness, neighbourhood), each (n, k) float32. ``table``: the neighbourhoods of ``p``'s
    users for ``cat`` (a :class:`NeighbourTable`), built once where many calls follow;
    None: computed here."""
    emb = cat.emb[items]
    aff = np.einsum("nd,nkd->nk", p.pref[rows], emb)
    rec = aff if p.recent is None else np.einsum("nd,nkd->nk", p.recent[rows], emb)
    tags = cat.tag_matrix[items]
    tag = np.einsum("nt,nkt->nk", p.taste[rows], tags)
    dis = np.einsum("nt,nkt->nk", p.dislike[rows], tags)
    pop = cat.popularity[items]
    popc = pop * (p.conformity[rows, None] - 0.5)
    era = timeliness(cat.era, None if p.era is None else p.era[rows], items)
    nb = (
        neighbourhood(cat.neighbours, p.history, p.template[rows], items)
        if table is None
        else table(p.template[rows], items)
    )
    return aff, tag, dis, pop, popc, rec, era, nb


def static_logit(coef: np.ndarray, aff, tag, dis, pop, popc, rec, era, nb) -> np.ndarray:  # noqa: ANN001
    return (
        coef[0]
        + coef[1] * aff
        + coef[2] * tag
        + coef[3] * dis
        + coef[4] * pop
        + coef[5] * popc
        + coef[6] * rec
        + coef[7] * era
        + coef[8] * nb
    ).astype(np.float32)
