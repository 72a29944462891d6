"""A model of the exposure behind real logs: browsing the catalogue by its popularity.

Real logs were not produced by our recommenders: a MovieLens user rated what they had seen
anywhere (cinema, television, the site's own lists and search), a Last.fm user played what
their player offered. The choice model is fitted against this exposure (``[brain]
logged_exposure``, ``recoworld.users.fit``), the level of leaving is fitted under it
(``recoworld.study.sittings``), and the fidelity harness compares simulated sessions with the
held-out ones under it (``browse``) and under a study's recommender (``mf``, a what-if;
docs/fidelity.md, "Exposure").

:class:`CatalogueBrowsing` draws each slate from the whole catalogue without replacement,
item ``j`` with probability proportional to ``(1 + n_j) ** alpha`` where ``n_j`` is its number
of training interactions (what the training population saw is what the catalogue shows),
never an item the user has in its training history or was shown before. It knows nothing of
the user's taste: any taste in what is consumed comes from the simulated user's own decisions.
It is a recommender plug-in (``[recommender] kind = "python"``,
``target = "recoworld.recommenders.browse:CatalogueBrowsing"``, ``options = {alpha = 1.0}``),
so it runs through the simulator's own loop unchanged. Its draws are keyed by (seed, user,
session, turn, draw): a user's slates do not depend on its batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recoworld.config import RecommenderConfig
from recoworld.recommenders.base import Audience, SyncRecommender, shown_items
from recoworld.records import SlateFeedback
from recoworld.rng import Stream, uniforms

TARGET = "recoworld.recommenders.browse:CatalogueBrowsing"
DRAWS = 4
"""Draws per slate position tried before a user falls back to a pass over the catalogue."""
GUMBEL_CELLS = 1 << 22
"""(user, item) cells the fallback draws at a time (32 MB of uniforms)."""


def browse_config(alpha: float) -> RecommenderConfig:
    """The recommender settings of :class:`CatalogueBrowsing` with exponent ``alpha`` (the
    brain's ``logged_exposure``): the logs' exposure, as the fit of the sitting length and the
    fidelity harness's ``browse`` run it."""
    return RecommenderConfig(
        kind="python", target=TARGET, options={"alpha": alpha}, follow_instructions=False
    )


class CatalogueBrowsing(SyncRecommender):
    """Popularity-proportional draws from the catalogue (see the module docstring).
    ``alpha``: the exponent on ``1 + n_j`` (1: proportional; 0: uniform)."""

    name = "browse"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = float(alpha)

    def bind(self, audience: Audience) -> None:
        self.aud = audience
        cat = audience.catalog
        self.logw = self.alpha * np.log1p(cat.interaction_count.astype(np.float64))
        w = np.exp(self.logw - self.logw.max())
        self.cum = np.cumsum(w)
        self.shown = shown_items(audience.personas, cat.n_items)

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        """Successive draws in proportion to the weights, each a fresh item (a draw without
        replacement: the Plackett-Luce sample Gumbel top-k also gives): ``DRAWS`` x ``k`` keyed
        draws per user, the first ``k`` distinct items it may be shown, in draw order; a user
        they leave short (its popular items all shown) falls back to Gumbel top-k over the
        catalogue. Cost per user O(k log n) where the catalogue is not exhausted, not O(n)."""
        n_items = self.cum.size
        k = min(k, n_items)
        uid = self.aud.personas.uid[idx]
        m = DRAWS * k
        u = uniforms(
            self.aud.seed, Stream.RECOMMEND, uid[:, None], session, turn, np.arange(m)[None, :] - m
        )
        cand = np.minimum(np.searchsorted(self.cum, u * self.cum[-1], side="right"), n_items - 1)
        ok = ~self.shown.contains(idx, cand)
        # only an item's first draw in a row counts
        flat = np.arange(idx.size)[:, None] * n_items + cand
        first = np.zeros(flat.shape, bool)
        _, at = np.unique(flat.ravel(), return_index=True)
        first.ravel()[at] = True
        ok &= first
        rank = np.cumsum(ok, axis=1)
        slates = np.empty((idx.size, k), np.int64)
        full = rank[:, -1] >= k
        r, c = np.nonzero(ok & (rank <= k))
        slates[r[full[r]], rank[r, c][full[r]] - 1] = cand[r, c][full[r]]
        short = np.flatnonzero(~full)
        if short.size:
            slates[short] = self._gumbel(idx[short], session, turn, k)
        self.shown.add(idx, slates)
        return slates

    def _gumbel(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        """Gumbel top-k over the whole catalogue (the k largest log w + Gumbel noise are a draw
        without replacement), :data:`GUMBEL_CELLS` (user, item) cells at a time."""
        n_items = self.cum.size
        out = np.empty((idx.size, k), np.int64)
        step = max(1, GUMBEL_CELLS // n_items)
        for a in range(0, idx.size, step):
            part = idx[a : a + step]
            u = uniforms(
                self.aud.seed,
                Stream.RECOMMEND,
                self.aud.personas.uid[part][:, None],
                session,
                turn,
                np.arange(n_items)[None, :],
            )
            keys = self.logw[None, :] - np.log(-np.log(np.clip(u, 1e-300, 1.0 - 1e-16)))
            keys[self.shown.rows(part)] = -np.inf
            out[a : a + step] = np.argsort(-keys, axis=1, kind="stable")[:, :k]
        return out

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        return None

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        return None  # browsing does not listen
