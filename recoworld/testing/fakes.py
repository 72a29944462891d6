"""A scripted recommender: shows given slates, records what it was told."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recoworld.recommenders.base import Audience, SyncRecommender
from recoworld.records import SlateFeedback


class ScriptedRecommender(SyncRecommender):
    """Shows ``slates[turn]`` (k items, the same for every user), or a function's output.

    ``script(idx, session, turn, k) -> (len(idx), k)`` may replace the fixed slates. It keeps
    every feedback and instruction it receives, for assertions.
    """

    def __init__(self, slates: list[list[int]] | None = None, script=None) -> None:  # noqa: ANN001
        self.slates, self.script = slates, script
        self.feedback: list[tuple[np.ndarray, np.ndarray, SlateFeedback]] = []
        self.instructions: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.texts: list[list[str]] = []

    def bind(self, audience: Audience) -> None:
        self.audience = audience

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        if self.script is not None:
            return np.asarray(self.script(idx, session, turn, k), dtype=np.int64)
        row = np.asarray(self.slates[turn % len(self.slates)][:k], dtype=np.int64)
        return np.broadcast_to(row, (idx.size, row.size)).copy()

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        self.feedback.append((idx.copy(), slates.copy(), feedback))

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        self.instructions.append((idx.copy(), more_of.copy(), less_of.copy()))
        self.texts.append(list(texts))
