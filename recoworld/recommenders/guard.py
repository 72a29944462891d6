"""The contract check between the simulator and a recommender it did not write.

Every slate a plug-in, an exported file or a service returns is checked before a user sees it:
its shape (one row of ``k`` items per user asked), catalogue rows in range, no item twice in a
slate and, where the study forbids repeats, nothing the user saw before or has in its real
history. A row of ``-1`` is the protocol's "no slate for this user" (a file that does not cover
the user, a service that does not know it): the declared fallback serves it. Anything else
that breaks the contract — an exception inside plug-in code, a failed request, a bad slate — is
either a one-line :class:`~recoworld.errors.RecommenderError` naming the recommender, the user,
the session and the turn (``on_invalid = "stop"``), or the fallback's slate, counted
(``on_invalid = "fallback"``), until more than ``max_fallback_rate`` of the slates have failed.

What the checked recommender does not do is ours: the creator treatment (``inject``) edits the
slate after the check, so a plug-in is treated exactly as a built-in is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recoworld.config import RecommenderConfig
from recoworld.errors import RecommenderError, RecoWorldError
from recoworld.recommenders.base import Audience, DenseShown, PostProcessor, Recommender
from recoworld.records import SlateFeedback

NO_SLATE = -1
"""A slate row of this value (every position) asks for the fallback: the user is not covered."""
MIN_SLATES = 20
"""Slates served before the failure budget is judged (unless every one failed)."""


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters (for errors that name a value)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class CheckedRecommender:
    """Checks ``inner``'s slates for one arm; serves ``fallback`` where the contract allows.

    ``name`` names the recommender in errors (its kind and target, file or URL). Fallback slates
    are counted per user (:attr:`fallback_slates`, the ``user_metrics`` column) and overall
    (:attr:`served`, :attr:`failed`, :attr:`uncovered`).
    """

    def __init__(
        self,
        inner: Recommender,
        cfg: RecommenderConfig,
        *,
        name: str,
        arm: str,
        fallback: Recommender | None,
        post: tuple[PostProcessor, ...] = (),
    ) -> None:
        self.inner, self.cfg, self.name, self.arm = inner, cfg, name, arm
        self.fallback, self.post = fallback, post
        self.served = self.failed = self.uncovered = 0
        self.first: list[str] = []

    # --- the protocol -------------------------------------------------------------------------

    def bind(self, audience: Audience) -> None:
        self.aud = audience
        n, n_items = len(audience.personas), audience.catalog.n_items
        self.n_items = n_items
        self.shown = audience.personas.history_of(n_items).toarray()
        self._shown = DenseShown(self.shown)  # the same matrix, as post-processors read it
        self.fallback_slates = np.zeros(n, np.float64)
        self._pooled = np.full(n, -1, np.int64)  # the session the fallback last pooled
        self._call("bind", lambda: self.inner.bind(audience), None, -1, -1)
        if self.fallback is not None:
            self.fallback.bind(audience)
        for pp in self.post:
            pp.bind(audience)

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        try:
            out: object = self.inner.recommend(idx, session, turn, k)
        except RecoWorldError:
            raise
        except Exception as e:  # plug-in code: anything may come out of it
            out = e
        return self._settle(idx, session, turn, k, out)

    async def recommend_async(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        try:
            out: object = await self.inner.recommend_async(idx, session, turn, k)
        except RecoWorldError:
            raise
        except Exception as e:
            out = e
        return self._settle(idx, session, turn, k, out)

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        self._call("observe", lambda: self.inner.observe(idx, slates, feedback), idx, -1, -1)
        if self.fallback is not None:  # it learns from every click, so its slates stay fresh
            self.fallback.observe(idx, slates, feedback)

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        self._call(
            "instruct", lambda: self.inner.instruct(idx, more_of, less_of, texts), idx, -1, -1
        )

    # --- checks ---------------------------------------------------------------------------------

    def _call(self, what: str, fn, idx: np.ndarray | None, session: int, turn: int) -> None:  # noqa: ANN001
        """Run a plug-in method that returns nothing; an exception in it is a failure."""
        try:
            fn()
        except RecoWorldError:
            raise
        except Exception as e:
            why = f"{what}() raised {type(e).__name__}: {one_line(str(e))}"
            if what == "bind" or self.cfg.on_invalid == "stop" or self.fallback is None:
                raise RecommenderError(self._where(idx, session, turn) + why) from None
            self.failed += 1
            if len(self.first) < 3:
                self.first.append(self._where(idx, session, turn) + why)
            self._budget()

    def _settle(self, idx: np.ndarray, session: int, turn: int, k: int, out: object) -> np.ndarray:
        n = idx.size
        bad = np.zeros(n, bool)
        why: list[str] = [""] * n
        slates = np.full((n, k), NO_SLATE, np.int64)
        if isinstance(out, BaseException):
            bad[:] = True
            why = [f"recommend() raised {type(out).__name__}: {one_line(str(out))}"] * n
        else:
            slates, problem = _as_slates(out, n, k)
            if problem:
                bad[:] = True
                why = [problem] * n
        uncovered = ~bad & (slates == NO_SLATE).all(1)
        self._check_rows(idx, slates, k, bad | uncovered, bad, why)
        self.served += n
        if bad.any():
            self.failed += int(bad.sum())
            rows = np.flatnonzero(bad)
            if self.cfg.on_invalid == "stop" or self.fallback is None:
                r = rows[0]
                raise RecommenderError(self._where(idx[r : r + 1], session, turn) + why[r])
            for r in rows[: 3 - len(self.first)]:
                self.first.append(self._where(idx[r : r + 1], session, turn) + why[r])
            self._budget()
        if uncovered.any():
            self.uncovered += int(uncovered.sum())
            if self.fallback is None:
                r = int(np.flatnonzero(uncovered)[0])
                raise RecommenderError(
                    self._where(idx[r : r + 1], session, turn)
                    + 'no slate for this user (not covered), and fallback = "none"'
                )
        need = np.flatnonzero(bad | uncovered)
        if need.size:
            slates[need] = self._fallback_slates(idx[need], session, turn, k)
            self.fallback_slates[idx[need]] += 1
        for pp in self.post:
            slates = pp.process(idx, session, turn, slates, self._shown)
        self.shown[np.repeat(idx, slates.shape[1]), slates.ravel()] = True
        return slates

    def _check_rows(
        self,
        idx: np.ndarray,
        slates: np.ndarray,
        k: int,
        skip: np.ndarray,
        bad: np.ndarray,
        why: list[str],
    ) -> None:
        """Mark rows (not in ``skip``) with out-of-range, duplicate or forbidden items."""
        check = np.flatnonzero(~skip)
        if check.size == 0:
            return
        s = slates[check]
        out_of_range = ((s < 0) | (s >= self.n_items)).any(1)
        srt = np.sort(s, axis=1)
        dup = (srt[:, 1:] == srt[:, :-1]).any(1) if k > 1 else np.zeros(check.size, bool)
        repeat = np.zeros(check.size, bool)
        if self.cfg.repeats == "forbid":
            inside = np.clip(s, 0, self.n_items - 1)
            repeat = ~out_of_range & self.shown[idx[check][:, None], inside].any(1)
        for j in np.flatnonzero(out_of_range | dup | repeat):
            r, row = check[j], s[j]
            if out_of_range[j]:
                off = row[(row < 0) | (row >= self.n_items)]
                why[r] = (
                    f"item {int(off[0])} is not a catalogue row (expected 0..{self.n_items - 1}; "
                    f"{NO_SLATE} in every position = no slate for this user)"
                )
            elif dup[j]:
                vals, counts = np.unique(row, return_counts=True)
                why[r] = f"item {self._item(int(vals[counts > 1][0]))} twice in one slate"
            else:
                seen = row[self.shown[idx[r], row]]
                why[r] = (
                    f"item {self._item(int(seen[0]))} was shown to this user before or is in its "
                    'history, and [recommender] repeats = "forbid"'
                )
            bad[r] = True

    def _fallback_slates(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        """The fallback's slates; a user it has not pooled for this session starts its pool now
        (a pool recommender builds it at a session's first slate)."""
        assert self.fallback is not None
        fresh = self._pooled[idx] != session
        out = np.empty((idx.size, k), np.int64)
        if fresh.any():
            out[fresh] = self.fallback.recommend(idx[fresh], session, 0, k)
            self._pooled[idx[fresh]] = session
        if (~fresh).any():
            out[~fresh] = self.fallback.recommend(idx[~fresh], session, max(turn, 1), k)
        return out

    def _budget(self) -> None:
        if self.served < MIN_SLATES and self.failed < self.served:
            return
        if self.failed / max(self.served, 1) > self.cfg.max_fallback_rate:
            raise RecommenderError(
                f"recommender {self.name} (arm {self.arm!r}): {self.failed} of {self.served} "
                f"slates failed ({self.failed / max(self.served, 1):.0%}, over "
                f"[recommender] max_fallback_rate = {self.cfg.max_fallback_rate:g}); the run "
                "stops. First failures: " + "; ".join(self.first)
            )

    def _where(self, idx: np.ndarray | None, session: int, turn: int) -> str:
        where = f"recommender {self.name} (arm {self.arm!r})"
        if idx is not None and idx.size:
            p = self.aud.personas
            user = int(p.uid[idx[0]])
            src = str(p.source_user[idx[0]])
            where += f", user {user}" + (f" (dataset user {src!r})" if src else "")
            if idx.size > 1:
                where += f" and {idx.size - 1} more"
        if session >= 0:
            where += f", session {session}, turn {turn}"
        return where + ": "

    def _item(self, row: int) -> str:
        return f"{row} ({str(self.aud.catalog.item_ids[row])!r})"


def _as_slates(out: object, n: int, k: int) -> tuple[np.ndarray, str]:
    """``out`` as an (n, k) int64 array, or the problem with it (for every row)."""
    try:
        arr = np.asarray(out)
    except Exception as e:  # ragged lists and other oddities
        return np.zeros((n, k), np.int64), f"recommend() returned {type(out).__name__}: {e}"
    if arr.shape != (n, k):
        return np.zeros((n, k), np.int64), (
            f"recommend() returned shape {arr.shape}, expected ({n}, {k}): one row of "
            f"slate_size = {k} catalogue rows per user asked"
        )
    if arr.dtype.kind in "iu":
        # a copy: fallback rows and injections are written into it, and the plug-in's array
        # may be read-only (np.broadcast_to) or its own state
        return np.array(arr, dtype=np.int64), ""
    if arr.dtype.kind == "f" and np.isfinite(arr).all() and (arr == np.round(arr)).all():
        return arr.astype(np.int64), ""
    return np.zeros((n, k), np.int64), (
        f"recommend() returned {arr.dtype} values, expected integer catalogue rows"
    )


def fallback_counts(rec: object, n: int) -> np.ndarray:
    """Per-user slates a fallback served (zeros for a recommender that is not checked)."""
    if isinstance(rec, CheckedRecommender):
        return rec.fallback_slates
    return np.zeros(n, np.float64)
