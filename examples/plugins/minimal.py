"""The smallest complete recommender plug-in (docs/recommenders.md shows it whole).

    [recommender]
    kind = "python"
    target = "examples.plugins.minimal:PopularUnseen"
    options = { boost = 2.0 }

Each user gets the most popular items it has not seen, and the items tagged with what it last
asked for move up. State is per user (rows of the audience), so any split of the users into
batches, shards or processes gives the same slates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recoworld.recommenders.base import Audience
from recoworld.records import SlateFeedback


class PopularUnseen:
    def __init__(self, boost: float = 1.0) -> None:
        self.boost = boost  # options = { boost = ... } arrive here as keyword arguments

    def bind(self, audience: Audience) -> None:
        """Called once per batch of users before its first slate: reset per-user state."""
        cat = audience.catalog
        self.score = cat.popularity.astype(np.float64)  # (n_items,) one score per catalogue row
        self.tagged = cat.tag_matrix > 0  # (n_items, n_tags)
        self.seen = audience.personas.history_of(cat.n_items).toarray()  # (users, n_items)
        self.wants = np.full(len(audience.personas), -1)  # per user: the tag it asked for

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        """(len(idx), k) catalogue rows for the audience's users ``idx``."""
        scores = np.tile(self.score, (idx.size, 1))
        asked = self.wants[idx] >= 0
        scores[asked] += self.boost * self.tagged[:, self.wants[idx][asked]].T
        scores[self.seen[idx]] = -np.inf  # nothing twice while unseen items remain
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        """What users ``idx`` were shown (whoever chose it) and what they did with it."""
        self.seen[idx[:, None], slates] = True

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        """Users ``idx`` asked for more of tag ``more_of`` (-1: none) and less of ``less_of``,
        in the words ``texts``."""
        self.wants[idx] = np.where(more_of >= 0, more_of, self.wants[idx])
