"""Users' lives, batched: the core loop of the retention episode.

A *life* is one user's sessions, as a study simulates them (``simulate_arm``): up to
``sessions`` sessions of up to ``turns`` slates; after each session the return model decides
whether, and after how many days, the user comes back; a user who does not come back is gone.
:class:`Lives` advances ``n`` lives at once (rows), each at its own session and turn, with the
agent's slates in the recommender's place. Per step, for the rows given:

1. the agent's slates (the caller's action, already shown to the :class:`AgentView`);
2. each user goes through its slate item by item, then reflects (``brain.decide``), rows grouped
   by (session, turn), the keys of the brain's draws;
3-5. the turn is settled as in every loop (:class:`recoworld.study.settle.Ledger`), the
   :class:`AgentView` in the recommender's seat;
6. where a session ended: the return model (``ledger.settle_session``); a returning user whose
   life goes on starts its next session (carrying its satisfaction, on the day it comes back).

Rows restart with new users at any time (:meth:`restart`). A user's draws are keyed by
(``brain_seed``, its *key*, session, turn, item): the key stands for the user's uid in a study,
so a life with ``key = uid`` and ``brain_seed = cfg.seed`` is exactly that user's run in the
study, and different keys give the same persona independent lives.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from recoworld.env.view import AgentView
from recoworld.records import MINDSET_FIELDS, Observer, Record, SessionRecord, UserMetrics
from recoworld.study.prepare import Prepared
from recoworld.study.settle import Ledger
from recoworld.users.brain import Mindset, ParametricBrain
from recoworld.users.persona import Personas
from recoworld.users.satiation import ItemMemory, lasting_penalty


@dataclass(frozen=True, eq=False, kw_only=True)
class Outcome:
    """What one step did to the rows stepped (every array has one row per stepped row)."""

    rows: np.ndarray
    session: np.ndarray  # (n,) the session of the slate just shown
    turn: np.ndarray  # (n,) its turn (0-based)
    action: np.ndarray  # (n, k) int8 codes into records.ACTIONS
    watch: np.ndarray  # (n,) the slate's watch fractions summed: the engagement
    slate_watch: np.ndarray  # (n, k) float32 each item's watch fraction (0 for skips)
    mind: np.ndarray  # (4, n) mindset after the slate, in MINDSET_FIELDS order
    words: np.ndarray  # (n,) object: the instruction written after the slate, or None
    left: np.ndarray  # (n,) bool: the user left the session after this slate
    session_end: np.ndarray  # (n,) bool: the session ended (left, or its turn budget spent)
    p_return: np.ndarray  # (n,) float64 P(return) at a session's end, NaN elsewhere
    returned: np.ndarray  # (n,) bool: the return model's draw (False where no session ended)
    gap_days: np.ndarray  # (n,) float32 days until it returns; inf if not; NaN mid-session
    churned: np.ndarray  # (n,) bool: the life ended: the user does not come back
    truncated: np.ndarray  # (n,) bool: the life's budget is spent and the user would come back


def _put(mind: Mindset, rows: np.ndarray, part: Mindset) -> None:
    for f in fields(Mindset):
        getattr(mind, f.name)[rows] = getattr(part, f.name)


class Lives:
    """``n`` rows of users' lives over a study's catalog, fitted brain and population."""

    def __init__(
        self,
        prep: Prepared,
        view: AgentView,
        *,
        n: int,
        sessions: int,
        turns: int,
        brain_seed: int,
        horizon_days: float | None = None,
        observe: Observer | None = None,
    ) -> None:
        self.prep, self.view, self.n = prep, view, n
        self.sessions, self.turns, self.brain_seed = sessions, turns, brain_seed
        self.horizon = np.inf if horizon_days is None else float(horizon_days)
        self.pop_rows = np.zeros(n, np.int64)
        self.keys = np.zeros(n, np.int64)
        self.session = np.zeros(n, np.int64)
        self.turn = np.zeros(n, np.int64)
        self.live = np.zeros(n, bool)
        self.ledger = Ledger(
            arm=0,
            n=n,
            turns=turns,
            creator_mask=prep.creator_mask,
            tags=prep.catalog.tags,
            observe=self._hear,
        )
        self._observe = observe
        self._session: SessionRecord | None = None
        self.personas = self._slot_personas()
        # One item memory for every row, kept across brains (a brain is rebuilt when rows
        # restart; the memory is the only per-user state a brain holds).
        self.memory = ItemMemory(
            self.personas, prep.catalog.n_items, lasting_penalty(prep.model.repeat_share)
        )
        self.brain = self._brain()
        rows = np.arange(n)
        self.mind = self.brain.start_session(rows, 0)
        view.bind_rows(n)

    def _hear(self, record: Record) -> None:
        if isinstance(record, SessionRecord):
            self._session = record  # the return model's draws, as the record holds them
        if self._observe is not None:
            self._observe(record)

    def _slot_personas(self) -> Personas:
        p = self.prep.population.take(self.pop_rows)
        return replace(p, uid=self.keys.copy())

    def _brain(self) -> ParametricBrain:
        cfg = self.prep.cfg
        # the shared memory (built once, with the world's histories), not one of its own
        return ParametricBrain(
            self.prep.model,
            cfg.brain,
            self.prep.catalog,
            self.personas,
            self.brain_seed,
            memory=self.memory,
        )

    def restart(self, rows: np.ndarray, pop_rows: np.ndarray, keys: np.ndarray) -> None:
        """New lives at ``rows``: population rows ``pop_rows`` keyed ``keys``; each starts its
        first session on day 0."""
        rows = np.asarray(rows, np.int64)
        if rows.size == 0:
            return
        self.pop_rows[rows], self.keys[rows] = pop_rows, keys
        self.personas = self._slot_personas()
        self.memory.template = self.personas.template
        self.memory.item[rows], self.memory.day[rows], self.memory.next[rows] = -1, 0.0, 0
        self.brain = self._brain()
        ledger = self.ledger
        ledger.day[rows], ledger.final_sat[rows] = 0.0, 0.5
        for name in UserMetrics.names():
            getattr(ledger.metrics, name)[rows] = 0
        self.session[rows], self.turn[rows], self.live[rows] = 0, 0, True
        self.view.restart(rows, self.personas.take(rows))
        self._start_session(rows, 0)

    def _start_session(self, rows: np.ndarray, session: int) -> None:
        carry = self.ledger.start_session(rows, session)
        mind = self.brain.start_session(rows, session, carry, self.ledger.day[rows])
        _put(self.mind, rows, mind)
        self.view.start_session(rows, session)

    def step(self, rows: np.ndarray, slates: np.ndarray) -> Outcome:
        """Rows ``rows`` (live) are shown ``slates`` (len(rows), k); see the module docstring."""
        n, k = slates.shape
        out = dict(
            rows=rows,
            session=self.session[rows].copy(),
            turn=self.turn[rows].copy(),
            action=np.zeros((n, k), np.int8),
            watch=np.zeros(n, np.float64),
            slate_watch=np.zeros((n, k), np.float32),
            mind=np.zeros((len(MINDSET_FIELDS), n), np.float32),
            words=np.full(n, None, object),
            left=np.zeros(n, bool),
            session_end=np.zeros(n, bool),
            p_return=np.full(n, np.nan),
            returned=np.zeros(n, bool),
            gap_days=np.full(n, np.nan, np.float32),
            churned=np.zeros(n, bool),
            truncated=np.zeros(n, bool),
        )
        brain, ledger = self.brain, self.ledger
        group = out["session"] * self.turns + out["turn"]
        goes_on: list[tuple[int, np.ndarray]] = []
        for g in np.unique(group).tolist():
            at = np.flatnonzero(group == g)
            r, (s, t) = rows[at], divmod(g, self.turns)
            # 2. the users go through their slates, then reflect
            mind = self.mind.take(r)
            decision = brain.decide(mind, r, s, t, slates[at])
            # 3-5. settled, the agent's view in the recommender's seat
            last = ledger.settle_turn(self.view, r, s, t, slates[at], decision, mind)
            _put(self.mind, r, mind)
            fb = decision.feedback
            out["action"][at] = fb.action
            out["watch"][at] = fb.watch.sum(1, dtype=np.float64)
            out["slate_watch"][at] = fb.watch
            out["mind"][:, at] = fb.mind[:, :, -1]
            out["words"][at] = self.view.words[r]
            out["left"][at] = decision.leave
            out["session_end"][at] = last
            self.turn[r[~last]] += 1
            ended, e_at = r[last], at[last]
            if ended.size == 0:
                continue
            # 6. the session is over: does the user come back, and when?
            out["p_return"][e_at] = brain.return_probability(ledger.final_sat[ended], ended)
            back = ledger.settle_session(brain, ended, s)
            assert self._session is not None
            out["returned"][e_at] = back
            out["gap_days"][e_at] = self._session.gap_days
            more = back & (s + 1 < self.sessions) & (ledger.day[ended] <= self.horizon)
            out["churned"][e_at] = ~back
            out["truncated"][e_at] = back & ~more
            self.live[ended[~more]] = False
            if more.any():
                goes_on.append((s + 1, ended[more]))
        for s, r in goes_on:
            self.session[r], self.turn[r] = s, 0
            self._start_session(r, s)
        return Outcome(**out)
