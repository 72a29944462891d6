"""The core loop: one arm, a batch of users, every session and turn.

Users in a batch advance turn by turn together, but nothing couples them: every draw is keyed
by the user, and recommenders hold per-user state only. Any split of the population into
batches (or shards) yields the same events.
"""

from __future__ import annotations

import numpy as np

from recoworld.recommenders.base import Audience
from recoworld.recommenders.factory import build_recommender
from recoworld.recommenders.guard import fallback_counts
from recoworld.records import Observer, UserMetrics
from recoworld.study.prepared import Prepared
from recoworld.study.settle import Ledger
from recoworld.users.brain import ParametricBrain


def simulate_arm(prep: Prepared, arm: int, users: np.ndarray, observe: Observer) -> UserMetrics:
    """Simulate population users ``users`` under arm ``arm``; records go to ``observe``."""
    cfg = prep.cfg
    sim = cfg.simulation
    personas = prep.personas(users)
    brain = ParametricBrain(prep.model, cfg.brain, prep.catalog, personas, cfg.seed)
    rec = build_recommender(cfg.recommender, cfg.arms[arm], prep.arm_items[arm])
    rec.bind(
        Audience(
            personas=personas, catalog=prep.catalog, seed=cfg.seed, treated=prep.treated[arm][users]
        )
    )
    ledger = Ledger(
        arm=arm,
        n=users.size,
        turns=sim.turns,
        creator_mask=prep.arm_items[arm],
        tags=prep.catalog.tags,
        observe=observe,
    )
    alive = np.arange(users.size)
    for session in range(sim.sessions):
        carry = ledger.start_session(alive, session)
        idx, mind = alive, brain.start_session(alive, session, carry, ledger.day[alive])
        for turn in range(sim.turns):
            if idx.size == 0:
                break
            # 1. the recommender proposes a slate to every user still in session
            slates = rec.recommend(idx, session, turn, sim.slate_size)
            # 2. each user goes through its slate item by item (its mindset moves), then
            #    reflects: writes an instruction? leaves?
            decision = brain.decide(mind, idx, session, turn, slates)
            # 3-5. settled: the recommender observes and is instructed; who ends the session
            last = ledger.settle_turn(rec, idx, session, turn, slates, decision, mind)
            idx, mind = idx[~last], mind.take(~last)
        # 6. between sessions: does each user come back, and when?
        alive = alive[ledger.settle_session(brain, alive, session)]
    ledger.metrics.fallback_slates[:] = fallback_counts(rec, users.size)
    return ledger.metrics
