"""The core loop: one arm, a batch of users, every session and turn.

Users in a batch advance turn by turn together, but nothing couples them: every draw is keyed
by the user, and recommenders hold per-user state only. Any split of the population into
batches (or shards) yields the same events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from recoworld.recommenders.base import Audience, Recommender
from recoworld.recommenders.factory import build_recommender
from recoworld.study.prepare import Prepared
from recoworld.users.brain import SKIP, WATCH, ParametricBrain, SlateFeedback


@dataclass(frozen=True, eq=False)
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
    instruction_rows: np.ndarray  # positions into rows that instructed
    instruction_more: np.ndarray  # their tag index wanted more of
    instruction_less: np.ndarray  # their tag index wanted less of, -1 if none
    instruction_texts: list[str] | None = None  # LLM brains: the words written, per instruction row

    def instruction_codes(self, n_tags: int) -> np.ndarray:
        """A code per instruction: ``more * (n_tags + 1) + less + 1``."""
        return self.instruction_more * (n_tags + 1) + self.instruction_less + 1


@dataclass(frozen=True, eq=False)
class SessionRecord:
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
    summaries: list[str] | None = None  # LLM brains: the summary the user wrote, per row


@dataclass(eq=False)
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

    @classmethod
    def zeros(cls, n: int) -> UserMetrics:
        return cls(*(np.zeros(n, np.float64) for _ in range(8)))

    @classmethod
    def concat(cls, parts: list[UserMetrics]) -> UserMetrics:
        if not parts:
            return cls.zeros(0)
        return cls(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__)
        )


Observer = Callable[[TurnRecord | SessionRecord], None]


def simulate_arm(prep: Prepared, arm: int, users: np.ndarray, observe: Observer) -> UserMetrics:
    """Simulate population users ``users`` under arm ``arm``; records go to ``observe``."""
    cfg = prep.cfg
    sim = cfg.simulation
    personas = prep.population.take(users)
    brain = ParametricBrain(prep.model, cfg.brain, prep.catalog, personas, cfg.seed)
    rec: Recommender = build_recommender(cfg.recommender, cfg.arms[arm], prep.creator_mask)
    rec.bind(
        Audience(
            personas=personas, catalog=prep.catalog, seed=cfg.seed, treated=prep.treated[arm][users]
        )
    )
    n, k = users.size, sim.slate_size
    m = UserMetrics.zeros(n)
    day = np.zeros(n, np.float32)
    final_sat = np.full(n, 0.5, np.float32)
    alive = np.arange(n)
    for session in range(sim.sessions):
        idx, mind = (
            alive,
            brain.start_session(alive, session, final_sat[alive] if session else None),
        )
        tally = _SessionTally.zeros(n)
        for turn in range(sim.turns):
            if idx.size == 0:
                break
            # 1. the recommender proposes a slate to every user still in session
            slates = rec.recommend(idx, session, turn, k)
            # 2. each user goes through its slate item by item; its mindset moves
            fb = brain.react(mind, idx, session, turn, slates)
            # 3. the recommender observes the feedback
            rec.observe(idx, slates, fb)
            # 4. the user reflects: writes an instruction? leaves?
            out = brain.after_slate(mind, idx, session, turn, slates, fb)
            ins = out.instructions
            rec.instruct(idx[ins.rows], ins.more_of, ins.less_of)
            observe(
                TurnRecord(
                    arm,
                    idx,
                    session,
                    turn,
                    day[idx],
                    slates,
                    fb,
                    out.leave,
                    ins.rows,
                    ins.more_of,
                    ins.less_of,
                )
            )
            tally.add(idx, fb, ins.rows, prep.creator_mask[slates], m)
            # 5. who leaves, and in what state
            last = out.leave | (turn == sim.turns - 1)
            ended = idx[last]
            final_sat[ended] = mind.satisfaction[last]
            tally.end(ended, turn + 1, out.leave[last], mind.profile[last])
            idx, mind = idx[~last], mind.take(~last)
        # 6. between sessions: does each user come back, and when?
        ret = brain.end_session(final_sat[alive], alive, session)
        observe(
            tally.record(
                arm, alive, session, day[alive], final_sat[alive], ret.returns, ret.gap_days
            )
        )
        m.sessions[alive] += 1
        m.turns[alive] += tally.turns[alive]
        if session == 0:
            m.returned_first[alive] = ret.returns
        day[alive] += np.where(ret.returns, ret.gap_days, 0.0)
        alive = alive[ret.returns]
    return m


@dataclass(eq=False)
class _SessionTally:
    turns: np.ndarray
    left: np.ndarray
    clicks: np.ndarray
    watched: np.ndarray
    watch_time: np.ndarray
    instructions: np.ndarray
    top_tag: np.ndarray

    @classmethod
    def zeros(cls, n: int) -> _SessionTally:
        z = lambda dt: np.zeros(n, dt)  # noqa: E731
        return cls(
            z(np.int32),
            z(bool),
            z(np.int32),
            z(np.int32),
            z(np.float32),
            z(np.int32),
            np.full(n, -1, np.int32),
        )

    def add(
        self,
        idx: np.ndarray,
        fb: SlateFeedback,
        ins_rows: np.ndarray,
        creator: np.ndarray,
        m: UserMetrics,
    ) -> None:
        clicked = fb.action != SKIP
        self.clicks[idx] += clicked.sum(1)
        self.watched[idx] += (fb.action >= WATCH).sum(1)
        self.watch_time[idx] += fb.watch.sum(1)
        self.instructions[idx[ins_rows]] += 1
        m.impressions[idx] += fb.action.shape[1]
        m.clicks[idx] += clicked.sum(1)
        m.watch_time[idx] += fb.watch.sum(1)
        m.creator_impressions[idx] += creator.sum(1)
        m.creator_clicks[idx] += (clicked & creator).sum(1)

    def end(self, ended: np.ndarray, turns: int, left: np.ndarray, profile: np.ndarray) -> None:
        self.turns[ended] = turns
        self.left[ended] = left
        self.top_tag[ended] = np.where(profile.max(1) > 0, profile.argmax(1), -1)

    def record(
        self,
        arm: int,
        rows: np.ndarray,
        session: int,
        day: np.ndarray,
        sat: np.ndarray,
        returned: np.ndarray,
        gap: np.ndarray,
    ) -> SessionRecord:
        return SessionRecord(
            arm=arm,
            rows=rows,
            session=session,
            day=day,
            turns=self.turns[rows],
            left=self.left[rows],
            clicks=self.clicks[rows],
            watched=self.watched[rows],
            watch_time=self.watch_time[rows],
            instructions=self.instructions[rows],
            satisfaction_end=sat,
            top_tag=self.top_tag[rows],
            returned=returned,
            gap_days=gap,
        )
