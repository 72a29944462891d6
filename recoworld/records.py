"""The simulation's vocabulary: what users can do, what they tell the recommender, and the
records every loop emits. ``study/``, ``io/``, ``recommenders/``, ``env/`` and ``users/`` all
import these types from here; this module imports nothing of RecoWorld.

Records are plain frozen dataclasses of numpy arrays (one row per user of a batch), built with
keyword arguments only. They never cross a process boundary: shards turn them into Arrow
batches (``io/records.py``) where they are made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import numpy as np

ACTIONS = ("skip", "click", "watch", "rate")
"""What a user does with one item, in increasing engagement: the codes are indices."""
SKIP, CLICK, WATCH, RATE = range(4)
MINDSET_FIELDS = ("satisfaction", "fatigue", "boredom", "curiosity")


@dataclass(frozen=True, eq=False, kw_only=True)
class SlateFeedback:
    """What n users did with their (n, k) slates."""

    action: np.ndarray  # (n, k) int8 codes into ACTIONS
    watch: np.ndarray  # (n, k) float32, 0 for skips
    rating: np.ndarray  # (n, k) float32, NaN where not rated
    mind: np.ndarray  # (4, n, k) float32 mindset after each item, in MINDSET_FIELDS order
    feelings: np.ndarray | None = None  # (n, k) object (str | None): a language user's feeling

    @property
    def clicked(self) -> np.ndarray:
        return self.action != SKIP


@dataclass(frozen=True, eq=False, kw_only=True)
class Instructions:
    """Reflective instructions written in one turn by the users at ``rows`` (positions into
    the turn's batch): a tag index wanted more of, one wanted less of (-1: none stands out),
    and, for language users, the words they wrote (None: the templated sentence of the tags)."""

    rows: np.ndarray
    more_of: np.ndarray
    less_of: np.ndarray
    texts: Sequence[str] | None = None

    @classmethod
    def none(cls) -> Instructions:
        z = np.zeros(0, np.int64)
        return cls(rows=z, more_of=z, less_of=z)

    def codes(self, n_tags: int) -> np.ndarray:
        """A code per instruction: ``more * (n_tags + 1) + less + 1`` (see
        :func:`recoworld.users.words.instruction_dictionary`)."""
        return self.more_of * (n_tags + 1) + self.less_of + 1


@dataclass(frozen=True, eq=False, kw_only=True)
class TurnDecision:
    """What n users decided about their slates: the decide step of every loop (fitted model,
    language model) returns this; the turn's settlement does the rest."""

    feedback: SlateFeedback
    leave: np.ndarray  # (n,) bool
    instructions: Instructions


@dataclass(frozen=True, eq=False, kw_only=True)
class TurnRecord:
    """What happened in one turn to the users ``rows`` (batch rows) of one arm."""

    arm: int
    rows: np.ndarray  # (n,) batch rows
    session: int
    turn: int
    day: np.ndarray  # (n,) day the session started
    slates: np.ndarray  # (n, k) catalog rows
    feedback: SlateFeedback
    left: np.ndarray  # (n,) bool: left after this turn
    instructions: Instructions


@dataclass(frozen=True, eq=False, kw_only=True)
class SessionRecord:
    """One session of the users ``rows`` of one arm, settled."""

    arm: int
    rows: np.ndarray
    session: int
    day: np.ndarray
    turns: np.ndarray  # turns used
    left: np.ndarray  # left before the turn budget ran out
    clicks: np.ndarray
    watched: np.ndarray
    watch_time: np.ndarray
    instructions: np.ndarray
    satisfaction_end: np.ndarray
    top_tag: np.ndarray  # tag index most consumed, -1 if nothing
    returned: np.ndarray
    gap_days: np.ndarray
    summaries: list[str]  # what the user remembers of the session, per row


Record = TurnRecord | SessionRecord
Observer = Callable[[Record], None]
"""Hears every record a loop settles (Parquet writers, progress, tests)."""


@dataclass(eq=False, kw_only=True)
class UserMetrics:
    """Per-user totals of one arm over the whole run (the basis of the summary)."""

    impressions: np.ndarray
    clicks: np.ndarray
    watch_time: np.ndarray
    sessions: np.ndarray
    turns: np.ndarray
    returned_first: np.ndarray
    creator_impressions: np.ndarray
    creator_clicks: np.ndarray
    fallback_slates: np.ndarray

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def zeros(cls, n: int) -> UserMetrics:
        return cls(**{f: np.zeros(n, np.float64) for f in cls.names()})

    @classmethod
    def concat(cls, parts: list[UserMetrics]) -> UserMetrics:
        if not parts:
            return cls.zeros(0)
        return cls(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in cls.names()})

    def as_dict(self) -> dict[str, np.ndarray]:
        return {f: getattr(self, f) for f in self.names()}
