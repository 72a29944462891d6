"""The core loop for language brains: every user runs its own sessions and turns as a
coroutine, so users progress independently (no turn barrier) and each keeps at most one model
call in flight; ``llm.users_in_flight`` users progress at once.

The steps are those of :func:`recoworld.study.simulate.simulate_arm`, for one user:
1. the recommender proposes a slate (the agentic recommender awaits its model);
2. the user goes through it (llm: the model decides; hybrid: parametric, the model writes);
3. the recommender observes the feedback;
4. instruction (tags, and words for recommenders that read them) and leave;
5. at the end of a session the model writes the summary kept in memory; the return model
   decides whether, and when, the user comes back.
A user's records are emitted together when it finishes (and ``llm_calls`` rows every few
thousand calls), so memory holds only the users in flight; rows are in finishing order within a
file — read them sorted by (user, session, turn, position) or by ``call_id``.
"""

from __future__ import annotations

import asyncio

import numpy as np

from recoworld.config import LLMConfig
from recoworld.llm.base import LanguageModel
from recoworld.llm.wrappers import CallLog
from recoworld.recommenders.base import Audience
from recoworld.study.prepare import Prepared
from recoworld.study.simulate import Observer, SessionRecord, TurnRecord, UserMetrics
from recoworld.users.brain import SKIP, WATCH, ParametricBrain
from recoworld.users.llm_brain import LanguageBrain, UserMemory, build_language_brain


def build_arm_recommender(prep: Prepared, arm: int, model: LanguageModel, log: CallLog):  # noqa: ANN201
    from recoworld.recommenders.factory import build_recommender

    cfg = prep.cfg
    a = cfg.arms[arm]
    rec_cfg = a.recommender or cfg.recommender
    if rec_cfg.kind == "agentic":
        from recoworld.recommenders.agentic import build_agentic

        assert cfg.llm is not None
        return build_agentic(rec_cfg, a, prep.creator_mask, model, cfg.llm, log, cfg.seed)
    return build_recommender(cfg.recommender, a, prep.creator_mask)


async def simulate_arm_llm(
    prep: Prepared,
    arm: int,
    users: np.ndarray,
    observe: Observer,
    model: LanguageModel,
    log: CallLog,
) -> UserMetrics:
    """Simulate population users ``users`` under arm ``arm`` with a language brain (or the
    parametric brain beside an agentic recommender); records go to ``observe``."""
    cfg = prep.cfg
    llm: LLMConfig = cfg.llm  # type: ignore[assignment]
    personas = prep.population.take(users)
    brain = ParametricBrain(prep.model, cfg.brain, prep.catalog, personas, cfg.seed)
    lang = (
        build_language_brain(
            cfg.brain.kind,
            brain,
            model,
            llm,
            log,
            arm=cfg.arms[arm].name,
            turns=cfg.simulation.turns,
        )
        if cfg.brain.kind != "parametric"
        else None
    )
    rec = build_arm_recommender(prep, arm, model, log)
    rec.bind(
        Audience(
            personas=personas, catalog=prep.catalog, seed=cfg.seed, treated=prep.treated[arm][users]
        )
    )
    m = UserMetrics.zeros(users.size)
    gate = asyncio.Semaphore(llm.users_in_flight)

    async def one(b: int) -> None:
        async with gate:
            records = await _user_life(prep, arm, b, brain, lang, rec, m)
        for (
            r
        ) in records:  # a finished user's records go out at once: memory holds only users in flight
            observe(r)
        log.flush_if(4096)

    await asyncio.gather(*(one(b) for b in range(users.size)))
    return m


async def _user_life(
    prep: Prepared,
    arm: int,
    b: int,
    brain: ParametricBrain,
    lang: LanguageBrain | None,
    rec,
    m: UserMetrics,
) -> list[TurnRecord | SessionRecord]:  # noqa: ANN001
    sim = prep.cfg.simulation
    k = sim.slate_size
    rows = np.array([b])
    creator = prep.creator_mask
    out_records: list[TurnRecord | SessionRecord] = []
    mem = UserMemory()
    day = 0.0
    carry: np.ndarray | None = None
    for session in range(sim.sessions):
        mind = brain.start_session(rows, session, carry)
        mem.recent = []
        turns = clicks = watched = instructions = 0
        watch_time = 0.0
        left = False
        for turn in range(sim.turns):
            # 1. the recommender proposes a slate
            if hasattr(rec, "recommend_async"):
                slates = await rec.recommend_async(rows, session, turn, k)
            else:
                slates = rec.recommend(rows, session, turn, k)
            # 2. the user goes through it
            if lang is not None:
                res = await lang.turn(mind, b, session, turn, slates, mem)
                fb, out, text = res.feedback, res.outcome, res.instruction_text
                lang.remember(mem, turn, slates[0], fb)
            else:
                fb = brain.react(mind, rows, session, turn, slates)
                out = brain.after_slate(mind, rows, session, turn, slates, fb)
                text = (
                    out.instructions.texts(prep.catalog.tags)[0]
                    if out.instructions.rows.size
                    else None
                )
            # 3. the recommender observes
            rec.observe(rows, slates, fb)
            # 4. instruction and leave
            ins = out.instructions
            if ins.rows.size:
                rec.instruct(rows[ins.rows], ins.more_of, ins.less_of)
                if hasattr(rec, "instruct_text"):
                    rec.instruct_text(rows[ins.rows], [text])
            # a language brain's words (always given when it instructs); parametric: coded templates
            texts = [text] if (ins.rows.size and lang is not None) else None
            out_records.append(
                TurnRecord(
                    arm,
                    rows,
                    session,
                    turn,
                    np.array([day], np.float32),
                    slates,
                    fb,
                    out.leave,
                    ins.rows,
                    ins.more_of,
                    ins.less_of,
                    texts,
                )
            )
            clicked = fb.action[0] != SKIP
            is_creator = creator[slates[0]]
            m.impressions[b] += k
            m.clicks[b] += clicked.sum()
            m.watch_time[b] += fb.watch[0].sum()
            m.creator_impressions[b] += is_creator.sum()
            m.creator_clicks[b] += (clicked & is_creator).sum()
            turns, clicks, watched = (
                turn + 1,
                clicks + int(clicked.sum()),
                watched + int((fb.action[0] >= WATCH).sum()),
            )
            watch_time += float(fb.watch[0].sum())
            instructions += int(ins.rows.size)
            if out.leave[0]:
                left = True
                break
        # 5. summary in memory; does the user come back?
        sat = float(mind.satisfaction[0])
        top = int(mind.profile[0].argmax()) if mind.profile[0].max() > 0 else -1
        summary = await lang.summarize(b, session, mem, sat) if lang is not None else None
        if summary is not None:
            mem.summaries.append(summary)
        ret = brain.end_session(np.array([sat], np.float32), rows, session)
        out_records.append(
            SessionRecord(
                arm=arm,
                rows=rows,
                session=session,
                day=np.array([day], np.float32),
                turns=np.array([turns]),
                left=np.array([left]),
                clicks=np.array([clicks]),
                watched=np.array([watched]),
                watch_time=np.array([watch_time], np.float32),
                instructions=np.array([instructions]),
                satisfaction_end=np.array([sat], np.float32),
                top_tag=np.array([top]),
                returned=ret.returns,
                gap_days=ret.gap_days,
                summaries=[summary] if lang is not None else None,
            )
        )
        m.sessions[b] += 1
        m.turns[b] += turns
        if session == 0:
            m.returned_first[b] = float(ret.returns[0])
        if not ret.returns[0]:
            break
        day += float(ret.gap_days[0])
        carry = np.array([sat], np.float32)
    return out_records
