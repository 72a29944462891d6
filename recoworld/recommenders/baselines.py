"""Baseline sources: random, most popular, matrix factorisation.

Each proposes a per-user candidate pool without scoring the whole catalog every session
where it can avoid it: that pass dominates the cost of a simulated turn.
"""

from __future__ import annotations

import numpy as np

from recoworld.recommenders.base import Audience, best_first, top_of_catalog
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
        self, idx: np.ndarray, session: int, m: int, shown: np.ndarray
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
        bad = dup | np.take_along_axis(shown, items, axis=1)
        cand, cs = best_first(items, np.where(bad, -np.inf, scores), m)
        short = np.flatnonzero(~np.isfinite(cs[:, -1]))
        if short.size:  # users who have seen much of the catalog: draw over all of it
            cand[short], cs[short] = top_of_catalog(
                self._full(idx[short], session), shown[short], m
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
        self, idx: np.ndarray, session: int, m: int, shown: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        avail = ~shown[:, self.order]
        count = np.cumsum(avail, axis=1, dtype=np.int32)
        take = avail & (count <= m)
        pos = np.argsort(~take, axis=1, kind="stable")[:, :m]  # available positions, in order
        cand = self.order[pos]
        ok = np.take_along_axis(take, pos, axis=1)
        return cand, np.where(ok, self.aud.catalog.popularity[cand], -np.inf).astype(np.float32)

    def score(self, idx: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.aud.catalog.popularity[items].astype(np.float32)


class MFSource:
    """Matrix factorisation over the world's SVD item factors (the catalog embedding).

    A user's vector starts at the mean factor of its history (what the platform knows of it;
    zero for a user with none, which then falls back to popularity) and moves toward the
    factors of the items it clicks: the recommender learns during the simulation.

    Two stages: the first session scores the whole catalog and keeps a shortlist of
    ``shortlist x m`` items per user; later sessions re-score the shortlist with the updated
    vector (and go back to the whole catalog only for users who exhausted it).
    """

    name = "mf"

    def __init__(
        self, learning_rate: float = 0.1, popularity_weight: float = 0.15, shortlist: int = 2
    ) -> None:
        self.lr, self.pw, self.shortlist = learning_rate, popularity_weight, shortlist

    def bind(self, audience: Audience) -> None:
        self.aud = audience
        p, cat = audience.personas, audience.catalog
        h = p.history_of(cat.n_items).astype(np.float32)
        counts = np.asarray(h.sum(1)).ravel()
        self.vec = (np.asarray(h @ cat.emb) / np.maximum(counts, 1)[:, None]).astype(np.float32)
        self.short = np.zeros((len(p), 0), np.int32)
        self._emb64_t = np.ascontiguousarray(cat.emb.T, dtype=np.float64)
        self._pop64 = self.pw * cat.popularity.astype(np.float64)[None, :]

    def _unit(self, idx: np.ndarray) -> np.ndarray:
        v = self.vec[idx]
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)

    def _all(self, idx: np.ndarray) -> np.ndarray:
        # One (n, d) x (d, items) product is far cheaper than gathering (n, j, d) embeddings.
        # BLAS results depend (in the last bits) on how many rows a call holds; in float64,
        # rounded to float32, a user's scores are the same whatever batch or shard it is in.
        unit = self._unit(idx).astype(np.float64)
        out = np.empty((idx.size, self._emb64_t.shape[1]), np.float32)
        for s in range(0, idx.size, 4096):  # bounded float64 temporaries
            out[s : s + 4096] = unit[s : s + 4096] @ self._emb64_t + self._pop64
        return out

    def score(self, idx: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.take_along_axis(self._all(idx), items, axis=1).astype(np.float32)

    def candidates(
        self, idx: np.ndarray, session: int, m: int, shown: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        cat = self.aud.catalog
        width = min(self.shortlist * m, cat.n_items)
        if self.short.shape[1] != width:
            self.short = np.zeros((self.short.shape[0], width), np.int32)
        if session == 0:
            # Before any feedback a user's vector and shown items are its template's history:
            # score the catalog once per template, not once per simulated user.
            templates = self.aud.personas.template[idx]
            uniq, first, inverse = np.unique(templates, return_index=True, return_inverse=True)
            wide, ws = top_of_catalog(self._all(idx[first]), shown[first], width)
            self.short[idx] = wide[inverse]
            return wide[inverse, :m], ws[inverse, :m].astype(np.float32)
        short = self.short[idx]
        s = np.where(np.take_along_axis(shown, short, axis=1), -np.inf, self.score(idx, short))
        cand, cs = best_first(short, s, m)
        redo = np.flatnonzero(~np.isfinite(cs[:, -1]))
        if redo.size:  # the shortlist ran dry: back to the whole catalog for these users
            wide, ws = top_of_catalog(self._all(idx[redo]), shown[redo], width)
            self.short[idx[redo]] = wide
            cand[redo], cs[redo] = wide[:, :m], ws[:, :m]
        return cand, cs.astype(np.float32)

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
