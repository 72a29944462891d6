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
from recoworld.users.satiation import HistoryIndex


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
        self, idx: np.ndarray, session: int, m: int, shown: Shown
    ) -> tuple[np.ndarray, np.ndarray]:
        """Users ``idx``'s best ``m`` items not in ``shown`` (what each user of the audience
        was shown or has in its history), best first: (items, scores). Rows with fewer than
        ``m`` such items pad with score -inf."""

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
    """The full-catalog path: best ``m`` unshown items from (n, n_items) ``scores`` (``shown``
    the same users' (n, n_items) bool rows, :meth:`Shown.rows`)."""
    scores = np.where(shown, -np.inf, scores)
    items = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    return best_first(items, scores, min(m, scores.shape[1]))


DENSE_SHOWN_ITEMS = 4096
"""Catalogues up to this size keep what each user was shown as a (users, items) bool matrix;
larger ones as a list of items per user (:class:`SparseShown`): the same answers, memory that
does not grow with the catalogue."""


class Shown(Protocol):
    """What each user of an audience must not be recommended again while unshown candidates
    remain: the items of its real history and every item it was shown (rows are audience
    rows, as ``idx`` everywhere)."""

    n_items: int

    def contains(self, idx: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(len(idx), j) bool: ``items`` (len(idx), j) shown to (or in the history of) users
        ``idx``."""
        ...

    def add(self, idx: np.ndarray, items: np.ndarray) -> None:
        """Users ``idx`` were shown ``items`` (len(idx), k)."""
        ...

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """(len(idx), n_items) bool rows (the full-catalogue paths; mind the size)."""
        ...

    def count(self, idx: np.ndarray) -> np.ndarray:
        """(len(idx),) at least as many as the distinct items each user holds."""
        ...


def shown_items(personas: Personas, n_items: int) -> Shown:
    """The users' histories, nothing shown yet: dense for small catalogues, else sparse."""
    if n_items <= DENSE_SHOWN_ITEMS:
        rows, of = by_template(personas)
        return DenseShown(rows.history_of(n_items).toarray()[of])
    return SparseShown(personas, n_items)


def by_template(personas: Personas) -> tuple[Personas, np.ndarray]:
    """One persona per template (the first of each) and each persona's row among them: what
    depends only on a persona's real history is computed once per template."""
    _, first, of = np.unique(personas.template, return_index=True, return_inverse=True)
    return personas.take(first), of


class DenseShown:
    """:class:`Shown` over a (users, items) bool matrix (kept, not copied: a view of it)."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask, self.n_items = mask, mask.shape[1]

    def contains(self, idx: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.mask[idx[:, None], items]

    def add(self, idx: np.ndarray, items: np.ndarray) -> None:
        self.mask[np.repeat(idx, items.shape[1]), items.ravel()] = True

    def rows(self, idx: np.ndarray) -> np.ndarray:
        return self.mask[idx]

    def count(self, idx: np.ndarray) -> np.ndarray:
        return self.mask[idx].sum(1)


class SparseShown:
    """:class:`Shown` as each user's history (shared by template, :class:`HistoryIndex`) and
    the list of items shown to it in the simulation: memory per user grows with what it was
    shown, not with the catalogue."""

    def __init__(self, personas: Personas, n_items: int) -> None:
        self.n_items, self.template = n_items, personas.template
        self.history = HistoryIndex(personas.history, n_items)
        self.items = np.full((len(personas), 16), -1, np.int32)
        self.n = np.zeros(len(personas), np.int64)

    def contains(self, idx: np.ndarray, items: np.ndarray) -> np.ndarray:
        out = self.history.contains(self.template[idx][:, None], items)
        width = int(self.n[idx].max()) if idx.size else 0
        if width == 0:
            return out
        listed = self.items[idx, :width]
        if items.shape[1] * width <= 256:  # short lists: compare all pairs
            return out | (items[:, :, None] == listed[:, None, :]).any(-1)
        # long lists: one sorted array of (row, item) keys, searched for every query
        span = np.int64(self.n_items + 1)
        base = np.arange(idx.size, dtype=np.int64)[:, None] * span
        keys = np.sort(np.where(listed >= 0, listed, self.n_items).astype(np.int64), axis=1)
        keys = (keys + base).ravel()
        q = (items + base).ravel()
        at = np.minimum(np.searchsorted(keys, q), keys.size - 1)
        return out | (keys[at] == q).reshape(items.shape)

    def add(self, idx: np.ndarray, items: np.ndarray) -> None:
        k = items.shape[1]
        need = int(self.n[idx].max()) + k if idx.size else 0
        if need > self.items.shape[1]:
            grown = np.full((self.items.shape[0], max(need, 2 * self.items.shape[1])), -1, np.int32)
            grown[:, : self.items.shape[1]] = self.items
            self.items = grown
        cols = self.n[idx][:, None] + np.arange(k)
        self.items[idx[:, None], cols] = items
        self.n[idx] += k

    def rows(self, idx: np.ndarray) -> np.ndarray:
        out = self.history.rows(self.template[idx])
        listed = self.items[idx]
        r, c = np.nonzero(listed >= 0)
        out[r, listed[r, c]] = True
        return out

    def count(self, idx: np.ndarray) -> np.ndarray:
        return self.history.count(self.template[idx]) + self.n[idx]


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
        self, idx: np.ndarray, session: int, turn: int, slates: np.ndarray, shown: Shown
    ) -> np.ndarray:
        """Edited slates; ``shown``: what each user of the audience saw before."""


class PoolRecommender(SyncRecommender):
    """Source + adjusters + post-processors, with slate selection shared by all of them.

    Items a persona's real history holds, and items already shown to the user in any earlier
    turn or session, are not recommended again while unshown candidates remain.

    What the user saw is kept twice: :attr:`shown` (:class:`Shown`, every item: the source
    needs it once a session) and a mask over the session's pool (:attr:`pool_shown`, (n, m)),
    which is all a turn needs: a turn never looks at the catalogue.
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
        self.shown = shown_items(audience.personas, n_items)
        self.cand = np.zeros((n, 0), np.int64)
        self.cand_scores = np.zeros((n, 0), np.float32)
        self.pool_shown = np.zeros((n, 0), bool)
        self.pool_twice = np.zeros(n, bool)  # a pool that holds an item twice
        # the last adjusted scores each user's pool was sorted by, and that order: adjusters
        # move scores only now and then (an instruction), so most turns reuse the sort
        self.sorted_by = np.zeros((n, 0), np.float32)
        self.sort_order = np.zeros((n, 0), np.int64)
        self.scale = np.ones(n, np.float32)
        self.session = -1
        for part in (self.source, *self.adjusters, *self.post):
            part.bind(audience)

    def _pool(self, idx: np.ndarray, session: int) -> None:
        """Each user's best ``m`` unshown items, ordered best first."""
        for adj in self.adjusters:
            adj.start_session(idx)
        m = min(self.m, self.aud.catalog.n_items)
        cand, cs = self.source.candidates(idx, session, m, self.shown)
        finite = np.isfinite(cs)
        if finite.all():
            spread = cs.std(axis=1)
        else:  # exhausted users' rows may be all -inf: spread NaN (then 1, below), quietly
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                spread = np.nanstd(np.where(finite, cs, np.nan), axis=1)
        if self.cand.shape[1] != m:
            n = self.cand.shape[0]
            self.cand = np.zeros((n, m), np.int64)
            self.cand_scores = np.zeros((n, m), np.float32)
            self.pool_shown = np.zeros((n, m), bool)
            self.sorted_by = np.full((n, m), np.nan, np.float32)
            self.sort_order = np.zeros((n, m), np.int64)
        self.cand[idx] = cand
        # Exhausted users (fewer unshown items than the pool) fall back to repeats, ranked last.
        self.cand_scores[idx] = np.where(finite, cs, -1e9).astype(np.float32)
        self.scale[idx] = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
        self.pool_shown[idx] = self.shown.contains(idx, cand)
        srt = np.sort(cand, axis=1)
        self.pool_twice[idx] = (srt[:, 1:] == srt[:, :-1]).any(1)

    def propose(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        """The slates (len(idx), k) of :meth:`recommend` before post-processing, without
        counting them as shown (the agentic recommender re-ranks them, then
        :meth:`mark_shown` counts what it shows)."""
        return self._select(idx, session, turn, k)[0]

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        slates, picked = self._select(idx, session, turn, k)
        out = slates
        for pp in self.post:
            out = pp.process(idx, session, turn, out, self.shown)
        self._mark(idx, out, picked, (out != slates).any(1) if out is not slates else None)
        return out

    def mark_shown(self, idx: np.ndarray, slates: np.ndarray) -> None:
        """Users ``idx`` were shown ``slates`` (chosen elsewhere from :meth:`propose`)."""
        self._mark(idx, slates, None, None)

    def _select(
        self, idx: np.ndarray, session: int, turn: int, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Slates, and the (len(idx), m) bool of the pool positions they hold."""
        if turn == 0:
            self._pool(idx, session)
        cand = self.cand[idx]
        base = self.cand_scores[idx]
        scores = base
        for adj in self.adjusters:
            scores = adj.adjust(idx, cand, scores, self.scale[idx])
        avail = ~self.pool_shown[idx]
        # Candidates are kept best-first; only users whose scores an adjuster moved need sorting.
        moved = (
            np.flatnonzero((scores != base).any(1)) if scores is not base else np.zeros(0, np.int64)
        )
        if moved.size:
            order = self._sorted(idx[moved], scores[moved])
            cand = cand.copy()
            cand[moved] = np.take_along_axis(cand[moved], order, axis=1)
            avail[moved] = np.take_along_axis(avail[moved], order, axis=1)
        count = np.cumsum(avail, axis=1, dtype=np.int32)
        short = count[:, -1] < k
        if not short.any():
            picked = avail & (count <= k)
            slates = cand[picked].reshape(idx.size, k)
        else:  # some users have seen every candidate: unseen first, then repeats
            first = np.argsort(~avail, axis=1, kind="stable")[:, :k]
            slates = np.take_along_axis(cand, first, axis=1)
            picked = np.zeros(avail.shape, bool)
            np.put_along_axis(picked, first, True, axis=1)
        if moved.size:  # back to the pool's own order
            back = np.zeros((moved.size, picked.shape[1]), bool)
            np.put_along_axis(back, order, picked[moved], axis=1)
            picked[moved] = back
        return slates, picked

    def _sorted(self, rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """The best-first order of ``scores`` (stable), sorted again only where a user's
        scores differ from those its last order was found for."""
        order = self.sort_order[rows]
        again = np.flatnonzero(~(scores == self.sorted_by[rows]).all(1))
        if again.size:
            order[again] = np.argsort(-scores[again], axis=1, kind="stable")
            self.sort_order[rows[again]] = order[again]
            self.sorted_by[rows[again]] = scores[again]
        return order

    def _mark(
        self,
        idx: np.ndarray,
        slates: np.ndarray,
        picked: np.ndarray | None,
        edited: np.ndarray | None,
    ) -> None:
        """Count ``slates`` as shown to users ``idx``: in :attr:`shown`, and in the pool mask
        by position (``picked``) or, where the positions do not tell (no ``picked``, a slate
        a post-processor ``edited``, a pool holding an item twice), by item."""
        self.shown.add(idx, slates)
        if picked is None:
            by_item = np.arange(idx.size)
        else:
            twice = self.pool_twice[idx]
            if edited is not None:
                twice = twice | edited
                picked = np.where(edited[:, None], False, picked)
            self.pool_shown[idx] |= picked
            by_item = np.flatnonzero(twice)
        if by_item.size:
            rows = idx[by_item]
            cand = self.cand[rows]
            hit = (cand[:, :, None] == slates[by_item][:, None, :]).any(-1)
            self.pool_shown[rows] |= hit

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        self.source.observe(idx, slates, feedback)

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        for adj in self.adjusters:
            adj.instruct(idx, more_of, less_of)
