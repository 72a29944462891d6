"""The templated words of users who do not speak through a language model: the reflective
instruction sentence and the session summary kept in memory. (Language users write their own;
these stand in when the model fails.)"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def instruction_text(tags: Sequence[str], more: int, less: int) -> str:
    """The sentence of an instruction for more of tag ``more`` and less of ``less`` (-1: none)."""
    if less >= 0:
        return f"Too much {tags[less]} lately. Show me more {tags[more]}."
    return f"Nothing here grabs me. Something different: more {tags[more]}, please."


class TemplateTexts(Sequence[str]):
    """The sentences of coded instructions, rendered only when read (the vectorised loop
    hands every instruction's words to the recommender; most recommenders never read them)."""

    def __init__(self, tags: Sequence[str], more_of: np.ndarray, less_of: np.ndarray) -> None:
        self.tags, self.more_of, self.less_of = tags, more_of, less_of

    def __len__(self) -> int:
        return int(self.more_of.size)

    def __getitem__(self, i):  # type: ignore[override]  # noqa: ANN001, ANN204
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        return instruction_text(self.tags, int(self.more_of[i]), int(self.less_of[i]))


def instruction_dictionary(tags: Sequence[str]) -> list[str]:
    """Every templated instruction sentence, at code ``more * (T + 1) + less + 1``."""
    t = len(tags)
    return [
        instruction_text(tags, m, -1 if less == m else less)
        for m in range(t)
        for less in range(-1, t)
    ]


def session_summaries(
    tags: Sequence[str],
    *,
    turns: np.ndarray,
    watched: np.ndarray,
    clicks: np.ndarray,
    top_tag: np.ndarray,
    left: np.ndarray,
    satisfaction: np.ndarray,
    instructions: np.ndarray,
    session: int,
) -> list[str]:
    """The templated summary of a session, per user: what it remembers of the visit."""
    out = []
    for t, w, c, j, lf, sat, i in zip(
        turns.tolist(),
        watched.tolist(),
        clicks.tolist(),
        top_tag.tolist(),
        left.tolist(),
        satisfaction.tolist(),
        instructions.tolist(),
    ):
        mostly = f", mostly {tags[j]}" if j >= 0 else ""
        ending = "left early" if lf else "stayed to the end"
        feeling = "good" if sat >= 0.55 else ("so-so" if sat >= 0.4 else "let down")
        asked = f"; asked the recommender {i} time{'s' if i != 1 else ''}" if i else ""
        out.append(
            f"Session {session + 1}: {t} turn{'s' if t != 1 else ''}, watched {w} of {c} clicked"
            f"{mostly}; {ending} feeling {feeling}{asked}."
        )
    return out
