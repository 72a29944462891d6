"""How the exposure behind real logs is modelled when simulated sessions are compared with them.

Real logs were not produced by our recommenders: a MovieLens user rated what they had seen
anywhere (cinema, television, the site's own lists and search), a Last.fm user played what
their player offered. The fidelity harness therefore runs the simulated users under two
exposures and prints both (docs/fidelity.md, "Exposure"):

- ``mf`` — what a study does by default: the MF recommender following instructions. It answers
  "how do simulated users behave under our recommender?", not "do they match the logs?".
- ``browse`` — :class:`CatalogueBrowsing`, a model of the exposure behind the logs: each slate
  is drawn from the whole catalogue without replacement, item ``j`` with probability
  proportional to ``(1 + n_j)`` where ``n_j`` is its number of training interactions (what the
  training population saw is what the catalogue shows), never an item the user has in its
  training history or was shown before. It knows nothing of the user's taste: any taste in
  what is consumed comes from the simulated user's own decisions.

``CatalogueBrowsing`` is a recommender plug-in (``[recommender] kind = "python"``,
``target = "recoworld.eval.exposure:CatalogueBrowsing"``), so it runs through the simulator's
own loop unchanged. Its draws are keyed by (seed, user, session, turn, item): a user's slates
do not depend on its batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recoworld.recommenders.base import Audience, SyncRecommender
from recoworld.records import SlateFeedback
from recoworld.rng import Stream, uniforms

TARGET = "recoworld.eval.exposure:CatalogueBrowsing"


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
        self.shown = audience.personas.history_of(cat.n_items).toarray()

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        n_items = self.logw.size
        u = uniforms(
            self.aud.seed,
            Stream.RECOMMEND,
            self.aud.personas.uid[idx][:, None],
            session,
            turn,
            np.arange(n_items)[None, :],
        )
        # Gumbel top-k: the k largest log w + Gumbel noise are a draw without replacement
        keys = self.logw[None, :] - np.log(-np.log(np.clip(u, 1e-300, 1.0 - 1e-16)))
        keys[self.shown[idx]] = -np.inf
        slates = np.argsort(-keys, axis=1, kind="stable")[:, :k]
        self.shown[idx[:, None], slates] = True
        return slates

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        return None

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        return None  # browsing does not listen
