"""The recommender protocol and the pool-based machinery the built-in recommenders share.

A recommender serves a *batch* of users at once (rows ``idx`` into the batch it was bound
to). It holds per-user state only — never state shared across users — so that a user's slates
do not depend on which users share its batch or shard.

Built-ins are a :class:`PoolRecommender`: a *source* scores a candidate pool per user at the
start of each session (random, popular, matrix factorisation); *adjusters* shift those scores
(the instruction-following re-ranker, a creator boost); each turn the best unshown candidates
form the slate; *post-processors* edit the slate (creator injection).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from recoworld.items.catalog import Catalog
from recoworld.records import SlateFeedback
from recoworld.users.persona import Personas


@dataclass(frozen=True, eq=False)
class Audience:
    """The users a recommender serves: a batch of personas and what it may know of them."""

    personas: Personas  # the batch, row b = user b
    catalog: Catalog
    seed: int
    treated: np.ndarray  # (n,) bool: creator treatments apply to these users


@runtime_checkable
class Recommender(Protocol):
    """What the simulator needs of a recommender: the public plug-in interface.

    Every method takes ``idx``, rows into the audience of :meth:`bind`; a recommender keeps
    per-user state only, so a user's slates never depend on who else shares its batch.
    Both sides of ``recommend`` must work: the vectorised loop (and the Gymnasium env) call
    :meth:`recommend`; the per-user coroutines of language-model studies await
    :meth:`recommend_async`. A synchronous recommender gets the async side from
    :class:`SyncRecommender`; an asynchronous one (a model, a service) runs its own event loop
    in :meth:`recommend`.
    """

    def bind(self, audience: Audience) -> None:
        """Start serving ``audience`` (resets all per-user state)."""

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        """Slates (len(idx), k) of catalog rows for users ``idx`` of the audience."""

    async def recommend_async(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        """:meth:`recommend` for callers inside an event loop."""

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        """What users ``idx`` did with the slates they were shown."""

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        """Reflective instructions of users ``idx``: the tag index each wants more of, the one
        it wants less of (-1: none stands out), and the words it wrote (``texts[j]`` for user
        ``idx[j]``; templated sentences for users who do not speak through a model)."""


class SyncRecommender:
    """Base of synchronous recommenders: the async side of :class:`Recommender` is the sync one."""

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        raise NotImplementedError

    async def recommend_async(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        return self.recommend(idx, session, turn, k)


class Source(Protocol):
    """Proposes and scores items for users; the base of a :class:`PoolRecommender`."""

    name: str

    def bind(self, audience: Audience) -> None: ...

    def candidates(
        self, idx: np.ndarray, session: int, m: int, shown: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Users ``idx``'s best ``m`` items not in ``shown`` (len(idx), n_items) bool, best
        first: (items, scores). Rows with fewer than ``m`` such items pad with score -inf."""

    def score(self, idx: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(len(idx), j) scores of ``items`` (len(idx), j) on the same scale."""

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None: ...


def best_first(cand: np.ndarray, scores: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``m`` best of each row of (cand, scores), sorted best first."""
    if scores.shape[1] > m:
        part = np.argpartition(-scores, m - 1, axis=1)[:, :m]
        cand, scores = (
            np.take_along_axis(cand, part, axis=1),
            np.take_along_axis(scores, part, axis=1),
        )
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(cand, order, axis=1), np.take_along_axis(scores, order, axis=1)


def top_of_catalog(scores: np.ndarray, shown: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The full-catalog path: best ``m`` unshown items from (n, n_items) ``scores``."""
    scores = np.where(shown, -np.inf, scores)
    items = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    return best_first(items, scores, min(m, scores.shape[1]))


class Adjuster(Protocol):
    """Shifts candidate scores (re-ranking); may listen to feedback and instructions."""

    def bind(self, audience: Audience) -> None: ...

    def adjust(
        self, idx: np.ndarray, cand: np.ndarray, scores: np.ndarray, scale: np.ndarray
    ) -> np.ndarray:
        """New (n, M) scores for candidates ``cand``; ``scale`` (n,) is the base scores' spread."""

    def instruct(self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray) -> None: ...

    def start_session(self, idx: np.ndarray) -> None: ...


class PostProcessor(Protocol):
    def bind(self, audience: Audience) -> None: ...

    def process(
        self, idx: np.ndarray, session: int, turn: int, slates: np.ndarray, shown: np.ndarray
    ) -> np.ndarray:
        """Edited slates; ``shown`` is the (n, n_items) bool of what each user saw before."""


class PoolRecommender(SyncRecommender):
    """Source + adjusters + post-processors, with slate selection shared by all of them.

    Items a persona's real history holds, and items already shown to the user in any earlier
    turn or session, are not recommended again while unshown candidates remain.
    """

    def __init__(
        self,
        source: Source,
        adjusters: tuple[Adjuster, ...] = (),
        post: tuple[PostProcessor, ...] = (),
        candidates: int = 200,
    ) -> None:
        self.source, self.adjusters, self.post, self.m = source, adjusters, post, candidates

    @property
    def name(self) -> str:
        return self.source.name

    def bind(self, audience: Audience) -> None:
        self.aud = audience
        n, n_items = len(audience.personas), audience.catalog.n_items
        self.shown = audience.personas.history_of(n_items).toarray()
        self.cand = np.zeros((n, 0), np.int64)
        self.cand_scores = np.zeros((n, 0), np.float32)
        self.scale = np.ones(n, np.float32)
        self.session = -1
        for part in (self.source, *self.adjusters, *self.post):
            part.bind(audience)

    def _pool(self, idx: np.ndarray, session: int) -> None:
        """Each user's best ``m`` unshown items, ordered best first."""
        for adj in self.adjusters:
            adj.start_session(idx)
        m = min(self.m, self.shown.shape[1])
        cand, cs = self.source.candidates(idx, session, m, self.shown[idx])
        finite = np.isfinite(cs)
        if finite.all():
            spread = cs.std(axis=1)
        else:  # exhausted users' rows may be all -inf: spread NaN (then 1, below), quietly
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                spread = np.nanstd(np.where(finite, cs, np.nan), axis=1)
        if self.cand.shape[1] != m:
            self.cand = np.zeros((self.cand.shape[0], m), np.int64)
            self.cand_scores = np.zeros((self.cand.shape[0], m), np.float32)
        self.cand[idx] = cand
        # Exhausted users (fewer unshown items than the pool) fall back to repeats, ranked last.
        self.cand_scores[idx] = np.where(finite, cs, -1e9).astype(np.float32)
        self.scale[idx] = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        if turn == 0:
            self._pool(idx, session)
        cand = self.cand[idx]
        base = self.cand_scores[idx]
        scores = base
        for adj in self.adjusters:
            scores = adj.adjust(idx, cand, scores, self.scale[idx])
        # Candidates are kept best-first; only users whose scores an adjuster moved need sorting.
        moved = (
            np.flatnonzero((scores != base).any(1)) if scores is not base else np.zeros(0, np.int64)
        )
        if moved.size:
            order = np.argsort(-scores[moved], axis=1, kind="stable")
            cand = cand.copy()
            cand[moved] = np.take_along_axis(cand[moved], order, axis=1)
        avail = ~self.shown[idx[:, None], cand]
        count = np.cumsum(avail, axis=1, dtype=np.int32)
        short = count[:, -1] < k
        if not short.any():
            slates = cand[avail & (count <= k)].reshape(idx.size, k)
        else:  # some users have seen every candidate: unseen first, then repeats
            first = np.argsort(~avail, axis=1, kind="stable")[:, :k]
            slates = np.take_along_axis(cand, first, axis=1)
        for pp in self.post:
            slates = pp.process(idx, session, turn, slates, self.shown)
        self.shown[np.repeat(idx, slates.shape[1]), slates.ravel()] = True
        return slates

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        self.source.observe(idx, slates, feedback)

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        for adj in self.adjusters:
            adj.instruct(idx, more_of, less_of)
