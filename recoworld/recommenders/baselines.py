"""Baseline sources: random, most popular, matrix factorisation.

Each proposes a per-user candidate pool without scoring the whole catalog every session
where it can avoid it: that pass dominates the cost of a simulated turn.
"""

from __future__ import annotations

import numpy as np

from recoworld.recommenders.base import (
    Audience,
    Shown,
    best_first,
    by_template,
    top_of_catalog,
)
from recoworld.recommenders.retrieval import ANN_ABOVE, Retrieval, item_index, uses_index
from recoworld.records import SlateFeedback
from recoworld.rng import Stream, uniforms


class _Stateless:
    def bind(self, audience: Audience) -> None:
        self.aud = audience

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        pass


class RandomSource(_Stateless):
    """Uniformly random unshown items, keyed by (user, session, slot): reproducible per user."""

    name = "random"

    def _full(self, idx: np.ndarray, session: int) -> np.ndarray:
        uid = self.aud.personas.uid[idx][:, None]
        return uniforms(
            self.aud.seed,
            Stream.RECOMMEND,
            uid,
            session,
            1,
            np.arange(self.aud.catalog.n_items)[None, :],
        )

    def candidates(
        self, idx: np.ndarray, session: int, m: int, shown: Shown
    ) -> tuple[np.ndarray, np.ndarray]:
        n_items = self.aud.catalog.n_items
        uid = self.aud.personas.uid[idx][:, None]
        slots = np.arange(int(m * 1.5) + 16)[None, :]
        items = (
            uniforms(self.aud.seed, Stream.RECOMMEND, uid, session, 0, slots) * n_items
        ).astype(np.int64)
        items.sort(axis=1)
        dup = np.zeros(items.shape, bool)
        dup[:, 1:] = items[:, 1:] == items[:, :-1]
        scores = uniforms(self.aud.seed, Stream.RECOMMEND, uid, session, 2, slots)
        bad = dup | shown.contains(idx, items)
        cand, cs = best_first(items, np.where(bad, -np.inf, scores), m)
        short = np.flatnonzero(~np.isfinite(cs[:, -1]))
        block = max(1, (1 << 24) // n_items)  # (block, n_items) draws at a time
        for s in range(0, short.size, block):  # users who have seen much of the catalog:
            rows = short[s : s + block]  # draw over all of it
            cand[rows], cs[rows] = top_of_catalog(
                self._full(idx[rows], session), shown.rows(idx[rows]), m
            )
        return cand, cs.astype(np.float32)

    def score(self, idx: np.ndarray, items: np.ndarray) -> np.ndarray:
        uid = self.aud.personas.uid[idx][:, None]
        return uniforms(self.aud.seed, Stream.RECOMMEND, uid, 3, items).astype(np.float32)


class PopularSource(_Stateless):
    """Most interacted-with items in the world's data (creator items at the catalog median)."""

    name = "popular"

    def bind(self, audience: Audience) -> None:
        self.aud = audience
        self.order = np.argsort(-audience.catalog.popularity, kind="stable")

    def candidates(
        self, idx: np.ndarray, session: int, m: int, shown: Shown
    ) -> tuple[np.ndarray, np.ndarray]:
        # A user's first m unshown items lie within the first m + (what it holds) of the
        # order: only those are looked at, however large the catalogue.
        w = self.order.size
        if idx.size:
            w = int(min(w, m + shown.count(idx).max()))
        top = self.order[:w]
        avail = ~shown.contains(idx, np.broadcast_to(top, (idx.size, w)))
        count = np.cumsum(avail, axis=1, dtype=np.int32)
        take = avail & (count <= m)
        pos = np.argsort(~take, axis=1, kind="stable")[:, :m]  # available positions, in order
        cand = top[pos]
        ok = np.take_along_axis(take, pos, axis=1)
        return cand, np.where(ok, self.aud.catalog.popularity[cand], -np.inf).astype(np.float32)

    def score(self, idx: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.aud.catalog.popularity[items].astype(np.float32)


OWN = -2
"""MFSource.group of a user whose shortlist is its own (redone after it ran dry)."""


class MFSource:
    """Matrix factorisation over the world's SVD item factors (the catalog embedding).

    A user's vector starts at the mean factor of its history (what the platform knows of it;
    zero for a user with none, which then falls back to popularity) and moves toward the
    factors of the items it clicks: the recommender learns during the simulation.

    Two stages: the first session finds each user's ``shortlist x m`` best items in the
    catalogue (its shortlist); later sessions re-score only the shortlist with the updated
    vector (and go back to the catalogue only for users who exhausted it). How the catalogue
    is searched is ``retrieval`` (:mod:`recoworld.recommenders.retrieval`): every item scored
    (exact, block by block) or an approximate index whose shortlist is then scored exactly.

    Scores are float32 computed with float64 sums (rounded to float32): BLAS results depend,
    in their last bits, on how many rows a call holds; rounded, a user's scores are the same
    whatever batch or shard it is in.
    """

    name = "mf"

    def __init__(
        self,
        learning_rate: float = 0.1,
        popularity_weight: float = 0.15,
        shortlist: int = 2,
        retrieval: Retrieval = "auto",
    ) -> None:
        self.lr, self.pw, self.shortlist = learning_rate, popularity_weight, shortlist
        self.retrieval = retrieval

    def bind(self, audience: Audience) -> None:
        self.aud = audience
        p, cat = audience.personas, audience.catalog
        first, of = by_template(p)  # a vector per template: rows are summed independently
        h = first.history_of(cat.n_items).astype(np.float32)
        counts = np.asarray(h.sum(1)).ravel()
        vec = (np.asarray(h @ cat.emb) / np.maximum(counts, 1)[:, None]).astype(np.float32)
        self.vec = vec[of]
        self.short = np.zeros((len(p), 0), np.int32)
        # whose shortlist each user holds: its template's (session 0), or OWN
        self.group = np.full(len(p), OWN, np.int64)
        self._pop64 = self.pw * cat.popularity.astype(np.float64)
        self._emb64_t: np.ndarray | None = None  # the exact path's, on first use
        self.index = item_index(cat, self.pw) if uses_index(self.retrieval, cat.n_items) else None

    def _unit(self, idx: np.ndarray) -> np.ndarray:
        v = self.vec[idx]
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)

    def _all(self, idx: np.ndarray) -> np.ndarray:
        """(len(idx), n_items) scores of every item (the exact path)."""
        # One (n, d) x (d, items) product is far cheaper than gathering (n, j, d) embeddings.
        unit = self._unit(idx).astype(np.float64)
        cat = self.aud.catalog
        out = np.empty((idx.size, cat.n_items), np.float32)
        if cat.n_items <= ANN_ABOVE:
            if self._emb64_t is None:
                self._emb64_t = np.ascontiguousarray(cat.emb.T, dtype=np.float64)
            for s in range(0, idx.size, 4096):  # bounded float64 temporaries
                out[s : s + 4096] = unit[s : s + 4096] @ self._emb64_t + self._pop64
            return out
        for c in range(0, cat.n_items, 1 << 16):  # a large catalogue: item blocks too
            e = cat.emb[c : c + (1 << 16)].astype(np.float64)
            out[:, c : c + (1 << 16)] = unit @ e.T + self._pop64[c : c + (1 << 16)]
        return out

    def score(self, idx: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(len(idx), j) scores of ``items``: per-user float64 sums (no BLAS: the same in any
        batch)."""
        unit = self._unit(idx).astype(np.float64)
        out = np.empty(items.shape, np.float32)
        step = max(1, (1 << 22) // max(1, items.shape[1] * unit.shape[1]))
        for s in range(0, idx.size, step):
            it = items[s : s + step]
            e = self.aud.catalog.emb[it].astype(np.float64)
            out[s : s + step] = np.einsum("nd,njd->nj", unit[s : s + step], e) + self._pop64[it]
        return out

    def _score_shortlists(self, idx: np.ndarray, short: np.ndarray) -> np.ndarray:
        """(len(idx), width) scores of each user's shortlist: one product per group of users
        holding the same template's shortlist, per-user sums for the others."""
        group = self.group[idx]
        out = np.empty(short.shape, np.float32)
        own = np.flatnonzero(group == OWN)
        if own.size:
            out[own] = self.score(idx[own], short[own])
        shared = np.flatnonzero(group != OWN)
        if shared.size:
            unit = self._unit(idx[shared]).astype(np.float64)
            order = np.argsort(group[shared], kind="stable")
            cuts = np.flatnonzero(np.diff(group[shared][order])) + 1
            emb = self.aud.catalog.emb
            for part in np.split(order, cuts):
                items = short[shared[part[0]]]
                e = emb[items].astype(np.float64)
                out[shared[part]] = unit[part] @ e.T + self._pop64[items]
        return out

    def candidates(
        self, idx: np.ndarray, session: int, m: int, shown: Shown
    ) -> tuple[np.ndarray, np.ndarray]:
        cat = self.aud.catalog
        width = min(self.shortlist * m, cat.n_items)
        if self.short.shape[1] != width:
            self.short = np.zeros((self.short.shape[0], width), np.int32)
            self.group[:] = OWN
        if session == 0:
            # Before any feedback a user's vector and shown items are its template's history:
            # search the catalog once per template, not once per simulated user.
            templates = self.aud.personas.template[idx]
            uniq, first, inverse = np.unique(templates, return_index=True, return_inverse=True)
            wide, ws = self._first_shortlists(idx[first], uniq, shown, width)
            self.short[idx] = wide[inverse]
            self.group[idx] = uniq[inverse]
            return wide[inverse, :m], ws[inverse, :m].astype(np.float32)
        short = self.short[idx]
        s = np.where(shown.contains(idx, short), -np.inf, self._score_shortlists(idx, short))
        cand, cs = best_first(short, s, m)
        redo = np.flatnonzero(~np.isfinite(cs[:, -1]))
        if redo.size:  # the shortlist ran dry: back to the catalog for these users
            wide, ws = self._widest(idx[redo], shown, width)
            self.short[idx[redo]] = wide
            self.group[idx[redo]] = OWN
            cand[redo], cs[redo] = wide[:, :m], ws[:, :m]
        return cand, cs.astype(np.float32)

    def _first_shortlists(
        self, idx: np.ndarray, templates: np.ndarray, shown: Shown, width: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The session-start shortlists of users ``idx`` (one per template of ``templates``);
        with an index, each template's is searched once and kept with it."""
        if self.index is None:
            return self._widest(idx, shown, width)
        kept = self.index.shortlists
        new = np.array([j for j, t in enumerate(templates) if (int(t), width) not in kept], int)
        if new.size:
            wide, ws = self._widest(idx[new], shown, width)
            for j, items, scores in zip(new, wide, ws):
                kept[int(templates[j]), width] = (items.astype(np.int32), scores)
        items = np.stack([kept[int(t), width][0] for t in templates]).astype(np.int64)
        return items, np.stack([kept[int(t), width][1] for t in templates])

    def _widest(self, idx: np.ndarray, shown: Shown, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Users ``idx``'s best ``width`` unshown items in the whole catalogue, best first."""
        if self.index is not None:
            return self._search(idx, shown, width)
        return self._scan(idx, shown, width)

    def _scan(self, idx: np.ndarray, shown: Shown, width: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_widest` by scoring every item, a block of users at a time."""
        n_items = self.aud.catalog.n_items
        block = max(1, (1 << 24) // n_items)  # rows of (block, n_items) scores at a time
        items = np.empty((idx.size, min(width, n_items)), np.int64)
        scores = np.empty(items.shape, np.float32)
        for s in range(0, idx.size, block):
            b = idx[s : s + block]
            items[s : s + block], scores[s : s + block] = top_of_catalog(
                self._all(b), shown.rows(b), width
            )
        return items, scores

    def _search(self, idx: np.ndarray, shown: Shown, width: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_widest` through the index: its best items for each user (enough to leave
        ``width`` once what the user holds is removed), scored exactly; users without a
        vector (no history, no click) take the most popular; rows the index cannot fill are
        scored against the whole catalogue."""
        assert self.index is not None
        n_items = self.aud.catalog.n_items
        k = int(min(n_items, 2 * width + shown.count(idx).max()))
        found = np.empty((idx.size, k), np.int64)
        plain = np.linalg.norm(self.vec[idx], axis=1) == 0
        if plain.any():
            found[plain] = np.argsort(-self._pop64, kind="stable")[:k]
        if (~plain).any():
            unit = self._unit(idx[~plain])
            query = np.hstack([unit, np.ones((unit.shape[0], 1), np.float32)])
            found[~plain] = self.index.search(query, k)
        ok = found >= 0
        found = np.where(ok, found, 0)
        bad = ~ok | shown.contains(idx, found)
        s = np.where(bad, -np.inf, self.score(idx, found))
        items, scores = best_first(found, s, width)
        dry = np.flatnonzero(~np.isfinite(scores[:, -1]))
        if dry.size and k < n_items:
            items[dry], scores[dry] = self._scan(idx[dry], shown, width)
        return items, scores

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        clicked = feedback.clicked
        who = np.flatnonzero(clicked.any(1))
        if who.size == 0:
            return
        w = clicked[who].astype(np.float32)
        n_click = w.sum(1, keepdims=True)
        target = np.einsum("nk,nkd->nd", w, self.aud.catalog.emb[slates[who]]) / n_click
        rows = idx[who]
        self.vec[rows] += (self.lr * np.minimum(n_click, 3) / 3) * (target - self.vec[rows])
