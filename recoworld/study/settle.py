"""The one settlement of a turn and of a session, shared by every loop.

A loop (the vectorised batch loop, the per-user coroutine of language brains, the Gymnasium
environment) only *decides*: who picks the slate and who reacts to it. Everything that follows
a decision is settled here, the same way for all of them:

turn: 3. the recommender observes the feedback; 4. instructions reach it (codes and words);
      the turn record goes to the observer; the session's tallies and the run's per-user
      metrics grow; 5. who ends the session (left, or the turn budget is spent) and in what
      state;
session: 6. the return model decides whether and when each user comes back; the session
      record (with what the user remembers of it) goes to the observer; the per-user totals
      and the calendar move.

A :class:`Ledger` holds one arm's accounts for ``n`` users (batch rows). Rows are independent,
so users may be at different sessions and turns at once (the coroutine loop), or move together
(the batch loop).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recoworld.recommenders.base import Recommender
from recoworld.records import (
    SKIP,
    WATCH,
    Instructions,
    Observer,
    SessionRecord,
    TurnDecision,
    TurnRecord,
    UserMetrics,
)
from recoworld.users.brain import Mindset, ParametricBrain
from recoworld.users.words import TemplateTexts, session_summaries

_F32 = np.float32


class Ledger:
    """One arm's accounts for ``n`` users: per-user run totals (:attr:`metrics`), the day each
    user's session starts, its last session's final satisfaction, and the current session's
    tallies."""

    def __init__(
        self,
        *,
        arm: int,
        n: int,
        turns: int,
        creator_mask: np.ndarray,
        tags: Sequence[str],
        observe: Observer,
    ) -> None:
        self.arm, self.turns, self.creator, self.tags, self.observe = (
            arm,
            turns,
            creator_mask,
            tags,
            observe,
        )
        self.metrics = UserMetrics.zeros(n)
        self.day = np.zeros(n, _F32)
        self.final_sat = np.full(n, 0.5, _F32)
        z = lambda dt: np.zeros(n, dt)
        self._turns, self._left = z(np.int32), z(bool)
        self._clicks, self._watched, self._ins = z(np.int32), z(np.int32), z(np.int32)
        self._watch_time = z(np.float32)
        self._top = np.full(n, -1, np.int32)

    def start_session(self, rows: np.ndarray, session: int) -> np.ndarray | None:
        """Clear the session tallies of ``rows``; returns the satisfaction they carry in from
        their previous session (None for the first)."""
        for a in (self._turns, self._clicks, self._watched, self._ins, self._watch_time):
            a[rows] = 0
        self._left[rows] = False
        self._top[rows] = -1
        return self.final_sat[rows] if session else None

    def settle_turn(
        self,
        rec: Recommender,
        idx: np.ndarray,
        session: int,
        turn: int,
        slates: np.ndarray,
        decision: TurnDecision,
        mind: Mindset,
    ) -> np.ndarray:
        """Settle users ``idx``'s turn after ``decision``; returns the (n,) bool of those whose
        session ends with it (their state is kept for :meth:`settle_session`)."""
        fb, ins = decision.feedback, decision.instructions
        # 3. the recommender observes the feedback
        rec.observe(idx, slates, fb)
        # 4. instructions reach the recommender: tags wanted more / less, and the words
        if ins.rows.size:
            texts = ins.texts
            if texts is None:
                texts = TemplateTexts(self.tags, ins.more_of, ins.less_of)
            rec.instruct(idx[ins.rows], ins.more_of, ins.less_of, texts)
        self.observe(
            TurnRecord(
                arm=self.arm,
                rows=idx,
                session=session,
                turn=turn,
                day=self.day[idx],
                slates=slates,
                feedback=fb,
                left=decision.leave,
                instructions=ins,
            )
        )
        self._tally(idx, fb.action, fb.watch, ins, self.creator[slates])
        # 5. who ends the session, and in what state
        last = decision.leave | (turn == self.turns - 1)
        ended = idx[last]
        self.final_sat[ended] = mind.satisfaction[last]
        self._turns[ended] = turn + 1
        self._left[ended] = decision.leave[last]
        profile = mind.profile[last]
        if profile.shape[1]:
            self._top[ended] = np.where(profile.max(1) > 0, profile.argmax(1), -1)
        return last

    def _tally(
        self,
        idx: np.ndarray,
        action: np.ndarray,
        watch: np.ndarray,
        ins: Instructions,
        creator: np.ndarray,
    ) -> None:
        m = self.metrics
        clicked = action != SKIP
        n_clicked, watch_sum = clicked.sum(1), watch.sum(1)
        self._clicks[idx] += n_clicked
        self._watched[idx] += (action >= WATCH).sum(1)
        self._watch_time[idx] += watch_sum
        self._ins[idx[ins.rows]] += 1
        m.impressions[idx] += action.shape[1]
        m.clicks[idx] += n_clicked
        m.watch_time[idx] += watch_sum
        m.creator_impressions[idx] += creator.sum(1)
        m.creator_clicks[idx] += (clicked & creator).sum(1)

    def settle_session(
        self,
        brain: ParametricBrain,
        rows: np.ndarray,
        session: int,
        own_words: Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Settle the session of users ``rows`` (all of whose turns are settled); returns the
        (n,) bool of those who come back. ``own_words``: language users' own summaries of the
        session (None where the model failed: the templated summary stands)."""
        sat = self.final_sat[rows]
        # 6. does each user come back, and when?
        ret = brain.end_session(sat, rows, session)
        turns, left, ins = self._turns[rows], self._left[rows], self._ins[rows]
        clicks, watched, top = self._clicks[rows], self._watched[rows], self._top[rows]
        summaries = session_summaries(
            self.tags,
            turns=turns,
            watched=watched,
            clicks=clicks,
            top_tag=top,
            left=left,
            satisfaction=sat,
            instructions=ins,
            session=session,
        )
        if own_words is not None:
            summaries = [own if own is not None else t for own, t in zip(own_words, summaries)]
        self.observe(
            SessionRecord(
                arm=self.arm,
                rows=rows,
                session=session,
                day=self.day[rows],
                turns=turns,
                left=left,
                clicks=clicks,
                watched=watched,
                watch_time=self._watch_time[rows],
                instructions=ins,
                satisfaction_end=sat,
                top_tag=top,
                returned=ret.returns,
                gap_days=ret.gap_days,
                summaries=summaries,
            )
        )
        m = self.metrics
        m.sessions[rows] += 1
        m.turns[rows] += turns
        if session == 0:
            m.returned_first[rows] = ret.returns
        self.day[rows] += np.where(ret.returns, ret.gap_days, 0.0)
        return ret.returns
