"""What a simulated user is asked in the fidelity protocols, as a small protocol.

A :class:`Decider` gets users and, per user, a list of candidate items, and says for each
(user, item) whether the user would watch it — as a probability, a sampled decision, or
both — and, on rated data, what it would rate it. Any user simulator plugs in through it:
the parametric brain (:class:`ParametricDecider`), the hybrid brain (whose choices *are* the
parametric brain's: the LLM only writes its words), and later an LLM decider (one prompt per
user and list; it may return sampled decisions only).

``base_rate`` is the share of the list the user engaged with in the data (1 / (1 + m) at
ratio 1:m). A decider may use it as its prior (the parametric brain's fitted intercept is tied
to its fitting design, 1 positive in 1 + ``negatives_per_positive``, and is moved to the
list's share by the case-control correction) or ignore it (``base_rate=None`` asks the decider
to use its own prior: the "ratio-blind" decisions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from scipy.special import expit

from recoworld.items.catalog import Catalog
from recoworld.rng import Stream, normals, uniforms
from recoworld.users.choice import ChoiceModel
from recoworld.users.fit import rating_distribution, simulate_ratings
from recoworld.users.persona import Personas


@dataclass(frozen=True, eq=False)
class Decisions:
    """Per (user, candidate): ``prob`` (n, k) float64 watch probability, or None for a decider
    that only samples; ``sampled`` (n, k) bool, one draw of the decision."""

    prob: np.ndarray | None
    sampled: np.ndarray


@dataclass(frozen=True, eq=False)
class Ratings:
    """Per (user, item): ``expected`` (n,) the mean of the decider's rating distribution (NaN if
    it has none), ``sampled`` (n,) one drawn rating on the dataset's levels."""

    expected: np.ndarray
    sampled: np.ndarray


@runtime_checkable
class Decider(Protocol):
    name: str

    def decide(
        self, users: np.ndarray, items: np.ndarray, *, base_rate: float | None, key: int
    ) -> Decisions:
        """Watch decisions of users ``users`` (n,) (rows of the evaluated personas) on
        ``items`` (n, k) (catalog rows). ``key`` separates the random draws of calls."""

    def rate(self, users: np.ndarray, items: np.ndarray, *, key: int) -> Ratings | None:
        """Ratings of (users[j], items[j]) (both (n,)); None on data without ratings."""


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def told_shift(logit: np.ndarray, share: float, iterations: int = 60) -> np.ndarray:
    """Per row of ``logit`` (n, k), the one shift ``c`` with ``mean(sigmoid(logit + c)) ==
    share``: a user told that ``share`` of its list is its own expects that many yeses, and
    moves its odds on every item of the list alike to get them (its order of the items is
    unchanged). For a model calibrated on such lists this is the case-control correction;
    where it is not (sparse data, a list unlike the fitting design) the correction alone
    would miss the share. Bisection on the monotone mean, to 1e-9 in logit."""
    x = np.asarray(logit, dtype=np.float64)
    target = _logit(min(max(share, 1e-9), 1.0 - 1e-9))
    lo = target - x.max(axis=1)  # every item at most the share: mean <= share
    hi = target - x.min(axis=1)  # every item at least the share: mean >= share
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        over = expit(x + mid[:, None]).mean(axis=1) > share
        hi, lo = np.where(over, mid, hi), np.where(over, lo, mid)
    return (0.5 * (lo + hi))[:, None]


class ParametricDecider:
    """The parametric brain's fitted models, item by item.

    The watch probability comes from the brain's *logged-world* model (``ChoiceModel.
    logged_coef``, recoworld/users/choice.py): a protocol's list asks whether the user consumed
    an item in the logs, exposure included, and its negatives are uniform draws of items the
    user never touched (the simulator itself uses the choice-among-shown model, a recommender
    supplying the exposure). The slate dynamics (position bias, fatigue, boredom, curiosity)
    are documented priors with no trace in the logs, and a list of candidates is not a
    session.

    *Told* (``base_rate`` given): the user knows that share of the list is its own, so each
    list's logits are moved by the one shift that makes its mean probability that share
    (:func:`told_shift`; for a calibrated model, the prior correction ``logit(base_rate) -
    logit(model.base_rate)`` of a logistic model fitted on a case-control sample), and the
    decision is a draw. *Blind* (``base_rate=None``): the user
    answers the question the list asks, "does this item fit my taste?", by judging whether the
    item is likelier one of the kind it consumes than one of the catalogue's: the model's
    likelihood ratio (its logit with the fitting design's prior taken out, i.e. at even odds).
    A judgment is not a coin flip: it says yes exactly when the ratio exceeds one, the same
    rule whatever the list holds (so at 1:9 it says yes to more than a tenth). ``prob`` is the
    even-odds probability. Draws are keyed by (seed, user uid, key, slot).
    """

    name = "parametric"

    def __init__(self, model: ChoiceModel, catalog: Catalog, personas: Personas, seed: int) -> None:
        self.model, self.cat, self.p, self.seed = model, catalog, personas, seed

    def probability(
        self, users: np.ndarray, items: np.ndarray, base_rate: float | None
    ) -> np.ndarray:
        logit, _ = self.model.static_logit(self.p, users, items, self.cat, "logged")
        x = logit.astype(np.float64)
        if base_rate is None:
            return expit(x + _logit(0.5) - _logit(self.model.base_rate))
        return expit(x + told_shift(x, base_rate))

    def decide(
        self, users: np.ndarray, items: np.ndarray, *, base_rate: float | None, key: int
    ) -> Decisions:
        prob = self.probability(users, items, base_rate)
        if base_rate is None:  # the judgment (see the class docstring)
            return Decisions(prob=prob, sampled=prob > 0.5)
        u = uniforms(
            self.seed,
            Stream.SAMPLE,
            self.p.uid[users][:, None],
            key,
            np.arange(items.shape[1])[None, :],
        )
        return Decisions(prob=prob, sampled=u < prob)

    def rate(self, users: np.ndarray, items: np.ndarray, *, key: int) -> Ratings | None:
        rm = self.model.rating
        if rm is None:
            return None
        aff = np.einsum("nd,nd->n", self.p.pref[users], self.cat.emb[items])
        mean_u, n = self.p.mean_rating[users], self.p.n_history[users]
        probs = rating_distribution(rm, mean_u, items, aff, n)
        expected = probs @ np.asarray(rm.levels, dtype=np.float64)
        z = normals(self.seed, Stream.RATING, self.p.uid[users], key, np.arange(users.size))
        return Ratings(
            expected=expected,
            sampled=simulate_ratings(rm, mean_u, items, aff, z, n).astype(np.float64),
        )


class RandomDecider:
    """Chance: watches each item with probability ``base_rate`` (or ``default_rate`` when
    ratio-blind); rates uniformly over ``levels``. The floor every simulator must beat."""

    name = "random"

    def __init__(
        self, seed: int, levels: tuple[float, ...] | None = None, default_rate: float = 0.1
    ) -> None:
        self.seed, self.levels, self.default_rate = seed, levels, default_rate

    def decide(
        self, users: np.ndarray, items: np.ndarray, *, base_rate: float | None, key: int
    ) -> Decisions:
        rate = self.default_rate if base_rate is None else base_rate
        prob = np.full(items.shape, rate, dtype=np.float64)
        u = uniforms(
            self.seed, Stream.SAMPLE, users[:, None], key, np.arange(items.shape[1])[None, :]
        )
        return Decisions(prob=prob, sampled=u < prob)

    def rate(self, users: np.ndarray, items: np.ndarray, *, key: int) -> Ratings | None:
        if not self.levels:
            return None
        lv = np.asarray(self.levels, dtype=np.float64)
        u = uniforms(self.seed, Stream.RATING, users, key, np.arange(users.size))
        return Ratings(
            expected=np.full(users.size, lv.mean()), sampled=lv[(u * lv.size).astype(np.int64)]
        )
