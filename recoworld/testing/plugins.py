"""Recommender plug-ins that break the contract on purpose, for the tests of the contract check
(``tests/test_byo_recommender.py``). Importable on every process and Ray worker (they live in
the package), so a failure is tested wherever it can happen.

    target = "recoworld.testing.plugins:Faulty", options = { fault = "duplicate" }
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from recoworld.recommenders.base import Audience
from recoworld.recommenders.guard import NO_SLATE
from recoworld.records import SlateFeedback

Fault = Literal[
    "none",
    "shape",
    "out_of_range",
    "duplicate",
    "repeat",
    "floats",
    "raise",
    "uncovered",
    "observe_raises",
]


class Faulty:
    """Shows each user the catalogue in order (rows ``k*t .. k*t+k-1`` at its ``t``-th slate),
    except that users selected by ``from_uid`` / ``every`` get the ``fault``:

    - ``shape``: one item too few per slate; ``out_of_range``: a row past the catalogue;
      ``duplicate``: the first item twice; ``repeat``: the previous slate again;
      ``floats``: 0.5 in the first position; ``raise``: ``recommend`` raises ValueError;
      ``uncovered``: a row of ``NO_SLATE`` (the user is not covered); ``observe_raises``:
      ``observe`` raises RuntimeError.

    A user is faulty when its uid is ``>= from_uid`` and ``uid % every == 0``, from session
    ``from_session`` on; ``while_exists``: only while that file exists (a fault one can fix
    between a failed run and its ``--resume``). ``readonly``: the slates come back read-only.
    """

    def __init__(
        self,
        fault: Fault = "none",
        from_uid: int = 0,
        every: int = 1,
        from_session: int = 0,
        while_exists: str = "",
        readonly: bool = False,
    ) -> None:
        self.fault, self.from_uid, self.every = fault, from_uid, every
        self.from_session, self.while_exists = from_session, while_exists
        self.readonly = readonly

    def bind(self, audience: Audience) -> None:
        self.uid = audience.personas.uid
        self.n_items = audience.catalog.n_items
        self.count = np.zeros(len(audience.personas), np.int64)

    def _faulty(self, idx: np.ndarray, session: int) -> np.ndarray:
        if self.while_exists and not Path(self.while_exists).exists():
            return np.zeros(idx.size, bool)
        uid = self.uid[idx]
        on = (uid >= self.from_uid) & (uid % self.every == 0)
        return on & (session >= self.from_session)

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        out = self._recommend(idx, session, k)
        if self.readonly and isinstance(out, np.ndarray):
            out.setflags(write=False)
        return out

    def _recommend(self, idx: np.ndarray, session: int, k: int) -> np.ndarray:
        t = self.count[idx]
        slates = (t[:, None] * k + np.arange(k)) % self.n_items
        self.count[idx] += 1
        bad = self._faulty(idx, session)
        if not bad.any() or self.fault in ("none", "observe_raises"):
            return slates
        match self.fault:
            case "shape":
                return slates[:, :-1]
            case "raise":
                raise ValueError(f"boom for {int(bad.sum())} users")
            case "floats":
                out = slates.astype(np.float64)
                out[bad, 0] = 0.5
                return out
            case "out_of_range":
                slates[bad, -1] = self.n_items + 7
            case "duplicate":
                slates[bad, 1] = slates[bad, 0]
            case "repeat":  # the user's previous slate (from its second slate on)
                again = bad & (t > 0)
                slates[again] = ((t[again] - 1)[:, None] * k + np.arange(k)) % self.n_items
            case "uncovered":
                slates[bad] = NO_SLATE
        return slates

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        if self.fault == "observe_raises" and self._faulty(idx, 0).any():
            raise RuntimeError("observe failed")

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        pass


class Listens:
    """Records every instruction it receives (tag codes and words) into ``heard`` (a class
    attribute: a test reads it after an in-process run) and shows the catalogue in order."""

    heard: list[tuple[int, int, int, str]] = []  # (uid, more_of, less_of, text)

    def bind(self, audience: Audience) -> None:
        self.uid = audience.personas.uid
        self.n_items = audience.catalog.n_items
        self.count = np.zeros(len(audience.personas), np.int64)

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        t = self.count[idx]
        self.count[idx] += 1
        return (t[:, None] * k + np.arange(k)) % self.n_items

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        pass

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        for j, i in enumerate(idx):
            Listens.heard.append((int(self.uid[i]), int(more_of[j]), int(less_of[j]), texts[j]))


class Relevant:
    """Serves each user the items nearest its taste (its preference vector against the item
    embeddings), never one in its history: ``mode = "fresh"`` the next ``k`` of that order on
    every slate, ``"repeat"`` the same best ``k`` on every slate of every session (the exploit
    a learning recommender finds first if re-showing pays; tests/test_repeats_study.py)."""

    def __init__(self, mode: Literal["fresh", "repeat"] = "fresh") -> None:
        if mode not in ("fresh", "repeat"):
            raise ValueError(f"mode: expected fresh or repeat, got {mode!r}")
        self.mode = mode

    def bind(self, audience: Audience) -> None:
        p, cat = audience.personas, audience.catalog
        score = p.pref @ cat.emb[: cat.n_items].T
        score[p.history_of(cat.n_items).toarray()] = -np.inf
        self.order = np.argsort(-score, axis=1, kind="stable")
        self.count = np.zeros(len(p), np.int64)

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        start = np.zeros(idx.size, np.int64) if self.mode == "repeat" else self.count[idx] * k
        self.count[idx] += 1
        return np.take_along_axis(self.order[idx], start[:, None] + np.arange(k)[None, :], 1)

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        pass

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        pass


class AsyncOnly:
    """Defines only ``recommend_async`` (the plug-in loader gives it ``recommend``)."""

    def bind(self, audience: Audience) -> None:
        self.n_items = audience.catalog.n_items

    async def recommend_async(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        return np.broadcast_to((turn * k + np.arange(k)) % self.n_items, (idx.size, k)).copy()

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        pass

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        pass


class NoObserve:
    """Lacks ``observe`` and ``instruct``: not a recommender."""

    def bind(self, audience: Audience) -> None:
        pass

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        return np.zeros((idx.size, k), np.int64)


def make_faulty(**options: object) -> Faulty:
    """A factory function (not a class) as a target."""
    return Faulty(**options)  # type: ignore[arg-type]
