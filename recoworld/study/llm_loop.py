"""The core loop for language brains: every user runs its own sessions and turns as a
coroutine, so users progress independently (no turn barrier) and each keeps at most one model
call in flight; ``llm.users_in_flight`` users progress at once.

The steps are those of :func:`recoworld.study.simulate.simulate_arm`, for one user; only the
decide step differs, the rest is the same settlement (:mod:`recoworld.study.settle`):
1. the recommender proposes a slate (the agentic recommender awaits its model);
2. the user goes through it (llm: the model decides; hybrid: parametric, the model writes);
3-5. settled: the recommender observes and is instructed; does the session end?
6. at the end of a session the model writes the summary kept in memory; settled: the return
   model decides whether, and when, the user comes back.
A user's records are emitted together when it finishes (and ``llm_calls`` rows every few
thousand calls), so memory holds only the users in flight; rows are in finishing order within a
file — read them sorted by (user, session, turn, position) or by ``call_id``.
"""

from __future__ import annotations

import asyncio

import numpy as np

from recoworld.llm.base import LanguageModel
from recoworld.llm.wrappers import CallLog
from recoworld.recommenders.base import Audience
from recoworld.recommenders.factory import Voice, build_recommender
from recoworld.recommenders.guard import fallback_counts
from recoworld.records import Observer, Record, UserMetrics
from recoworld.study.prepare import Prepared
from recoworld.study.settle import Ledger
from recoworld.users.brain import ParametricBrain
from recoworld.users.llm_brain import UserMemory, build_language_brain


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
    llm, sim = cfg.llm, cfg.simulation
    assert llm is not None  # uses_llm(cfg): checked when the study was decoded
    personas = prep.population.take(users)
    brain = ParametricBrain(prep.model, cfg.brain, prep.catalog, personas, cfg.seed)
    lang = None
    if cfg.brain.kind != "parametric":
        name = cfg.arms[arm].name
        lang = build_language_brain(
            cfg.brain.kind, brain, model, llm, log, arm=name, turns=sim.turns
        )
    voice = Voice(model=model, llm=llm, log=log, seed=cfg.seed)
    rec = build_recommender(cfg.recommender, cfg.arms[arm], prep.arm_items[arm], voice)
    treated = prep.treated[arm][users]
    rec.bind(Audience(personas=personas, catalog=prep.catalog, seed=cfg.seed, treated=treated))
    held: dict[int, list[Record]] = {}  # a user's records, until it finishes
    ledger = Ledger(
        arm=arm,
        n=users.size,
        turns=sim.turns,
        creator_mask=prep.arm_items[arm],
        tags=prep.catalog.tags,
        observe=lambda r: held.setdefault(int(r.rows[0]), []).append(r),
    )
    gate = asyncio.Semaphore(llm.users_in_flight)

    async def life(b: int) -> None:
        rows, mem = np.array([b]), UserMemory()
        async with gate:
            for session in range(sim.sessions):
                carry = ledger.start_session(rows, session)
                mind = brain.start_session(rows, session, carry, ledger.day[rows])
                mem.recent = []
                for turn in range(sim.turns):
                    # 1. the recommender proposes a slate
                    slates = await rec.recommend_async(rows, session, turn, sim.slate_size)
                    # 2. the user goes through it
                    if lang is not None:
                        decision = await lang.decide(mind, b, session, turn, slates, mem)
                    else:
                        decision = brain.decide(mind, rows, session, turn, slates)
                    # 3-5. settled; does the session end?
                    if ledger.settle_turn(rec, rows, session, turn, slates, decision, mind)[0]:
                        break
                # 6. the summary kept in memory; settled: does the user come back?
                words = None
                if lang is not None:
                    sat = float(ledger.final_sat[b])
                    summary = await lang.summarize(b, session, mem, sat)
                    if summary is not None:
                        mem.summaries.append(summary)
                    words = [summary]
                if not ledger.settle_session(brain, rows, session, words)[0]:
                    break
        for r in held.pop(b, []):  # a finished user's records go out at once
            observe(r)
        log.flush_if(4096)

    await asyncio.gather(*(life(b) for b in range(users.size)))
    ledger.metrics.fallback_slates[:] = fallback_counts(rec, users.size)
    return ledger.metrics
