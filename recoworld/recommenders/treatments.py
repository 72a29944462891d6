"""Re-rankers and creator treatments that wrap any pool-based recommender."""

from __future__ import annotations

import numpy as np

from recoworld.recommenders.base import Audience, Shown, Source, best_first
from recoworld.records import SlateFeedback
from recoworld.rng import Stream, uniforms


class InstructionReranker:
    """Follows users' reflective instructions: candidates tagged with what a user asked for
    move up, candidates tagged with what it asked less of move down.

    Each instruction adds to a per-user tag preference (more +1, less -1) that halves at every
    new session; the score shift is ``weight x spread x (tags_i . preference)``.
    """

    def __init__(self, weight: float = 1.5) -> None:
        self.weight = weight

    def bind(self, audience: Audience) -> None:
        self.tags = audience.catalog.tag_matrix
        n = len(audience.personas)
        self.pref = np.zeros((n, self.tags.shape[1]), np.float32)
        self.session_of = np.full(n, -1)
        # Each user's tag shift of its pool: the same until an instruction or a new pool.
        self.shift = np.zeros((n, 0), np.float32)
        self.fresh = np.zeros(n, bool)

    def instruct(self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray) -> None:
        # -1 means "none" (the protocol); as an index it would silently hit the last tag.
        has_more = more_of >= 0
        self.pref[idx[has_more], more_of[has_more]] += 1.0
        has_less = less_of >= 0
        self.pref[idx[has_less], less_of[has_less]] -= 1.0
        np.clip(self.pref, -2.0, 2.0, out=self.pref)
        self.fresh[idx] = False

    def adjust(
        self, idx: np.ndarray, cand: np.ndarray, scores: np.ndarray, scale: np.ndarray
    ) -> np.ndarray:
        active = np.flatnonzero(np.abs(self.pref[idx]).sum(1) > 0)
        if active.size == 0:
            return scores
        if self.shift.shape[1] != cand.shape[1]:
            self.shift = np.zeros((self.pref.shape[0], cand.shape[1]), np.float32)
            self.fresh[:] = False
        rows = idx[active]
        stale = active[~self.fresh[rows]]
        if stale.size:
            # tag_matrix rows sum to 1; rescale so one matching tag counts fully.
            t = self.tags[cand[stale]]
            t = t / np.maximum(t.max(-1, keepdims=True), 1e-9)
            self.shift[idx[stale]] = np.einsum("nmt,nt->nm", t, self.pref[idx[stale]])
            self.fresh[idx[stale]] = True
        out = scores.copy()
        out[active] += self.weight * scale[active, None] * self.shift[rows]
        return out

    def start_session(self, idx: np.ndarray) -> None:
        self.pref[idx] *= 0.5
        self.fresh[idx] = False  # a new preference, and a new pool to shift


class CreatorBoost:
    """Wraps a source: for treated users, the creator's items (a placebo arm's: its placebo
    items) enter the candidate pool with their base score plus ``boost`` times the spread of
    that user's pool scores."""

    def __init__(self, base: Source, creator_mask: np.ndarray, boost: float) -> None:
        self.base, self.items, self.boost = base, np.flatnonzero(creator_mask), boost
        self.name = f"{base.name}+boost"

    def bind(self, audience: Audience) -> None:
        self.treated = audience.treated
        self.base.bind(audience)

    def candidates(
        self, idx: np.ndarray, session: int, m: int, shown: Shown
    ) -> tuple[np.ndarray, np.ndarray]:
        cand, cs = self.base.candidates(idx, session, m, shown)
        rows = np.flatnonzero(self.treated[idx])
        if rows.size == 0 or self.items.size == 0:
            return cand, cs
        c = np.broadcast_to(self.items, (rows.size, self.items.size))
        finite = np.where(np.isfinite(cs[rows]), cs[rows], np.nan)
        spread = np.nan_to_num(np.nanstd(finite, axis=1, keepdims=True), nan=1.0)
        boosted = self.base.score(idx[rows], c) + self.boost * spread
        boosted = np.where(shown.contains(idx[rows], c), -np.inf, boosted)
        dup = np.isin(cand[rows], self.items)
        base_s = np.where(dup, -np.inf, cs[rows])
        merged = best_first(
            np.hstack([cand[rows], c]), np.hstack([base_s, boosted]).astype(np.float32), m
        )
        cand, cs = cand.copy(), cs.copy()
        cand[rows], cs[rows] = merged
        return cand, cs

    def score(self, idx: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.base.score(idx, items)

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        self.base.observe(idx, slates, feedback)


class CreatorInjector:
    """Puts a creator item (a placebo arm's: a placebo item) at ``position`` of a treated
    user's slate with chance ``rate`` per slate: the one this user has not been shown yet (nor
    has in its real history) that its recommender scores
    highest (by the catalog embedding against the user's preference as the platform knows it
    — its history), shifting the rest down and dropping the last."""

    def __init__(self, position: int, rate: float, creator_items: np.ndarray) -> None:
        self.position, self.rate, self.items = position, rate, creator_items

    def bind(self, audience: Audience) -> None:
        self.aud = audience
        p, cat = audience.personas, audience.catalog
        # Order creator items per user once: best-matching first.
        aff = np.einsum(
            "nd,cd->nc", p.pref, cat.emb[self.items]
        )  # (n, c); no BLAS: batch-invariant
        self.order = self.items[np.argsort(-aff, axis=1, kind="stable")]

    def process(
        self, idx: np.ndarray, session: int, turn: int, slates: np.ndarray, shown: Shown
    ) -> np.ndarray:
        uid = self.aud.personas.uid[idx]
        go = self.aud.treated[idx] & (
            uniforms(self.aud.seed, Stream.INJECT, uid, session, turn) < self.rate
        )
        rows = np.flatnonzero(go)
        if rows.size == 0:
            return slates
        order = self.order[idx[rows]]  # (m, c)
        unseen = ~shown.contains(idx[rows], order)
        in_slate = (order[:, :, None] == slates[rows][:, None, :]).any(-1)
        ok = unseen & ~in_slate
        has = ok.any(1)
        rows, order, ok = rows[has], order[has], ok[has]
        if rows.size == 0:
            return slates
        pick = order[np.arange(rows.size), np.argmax(ok, axis=1)]
        out = slates.copy()
        p = self.position
        out[rows, p + 1 :] = slates[rows, p:-1]
        out[rows, p] = pick
        return out
