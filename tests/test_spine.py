"""The one spine (docs/architecture.md): every loop settles turns and sessions the same way, the
recommender protocol is complete on both sides, and worlds without tags run end to end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pytest

from recoworld.config import (
    ArmConfig,
    LLMConfig,
    PopulationConfig,
    RecommenderConfig,
    SimulationConfig,
    StudyConfig,
    WorldConfig,
)
from recoworld.errors import RecommenderError
from recoworld.io.runs import scan_table
from recoworld.llm.wrappers import CallLog
from recoworld.recommenders.base import Audience, PoolRecommender, Recommender
from recoworld.recommenders.factory import Voice, build_recommender
from recoworld.records import Record, SessionRecord, TurnRecord
from recoworld.study.llm_loop import simulate_arm_llm
from recoworld.study.prepare import load_world_for, prepare
from recoworld.study.runner import run_study
from recoworld.study.simulate import simulate_arm
from recoworld.testing.fakes import ScriptedRecommender
from recoworld.testing.scripted_llm import ScriptedModel

SMALL = StudyConfig(
    name="spine",
    seed=5,
    world=WorldConfig(dataset="synthetic", synthetic_users=80, synthetic_items=60, embedding_dim=4),
    population=PopulationConfig(size=40),
    simulation=SimulationConfig(sessions=3, turns=4, slate_size=5),
    recommender=RecommenderConfig(kind="mf", candidates=20),
    arms=[ArmConfig(name="control")],
)


def _flatten(records: list[Record]) -> tuple[list[tuple], list[tuple]]:
    """Turn and session records as per-user rows, in a canonical order."""
    turns, sessions = [], []
    for r in records:
        match r:
            case TurnRecord():
                ins = dict(zip(r.instructions.rows.tolist(), r.instructions.more_of.tolist()))
                for j, row in enumerate(r.rows.tolist()):
                    fb = r.feedback
                    turns.append(
                        (row, r.session, r.turn, r.slates[j].tolist(), fb.action[j].tolist(),
                         fb.watch[j].tolist(), fb.mind[:, j].tolist(), bool(r.left[j]),
                         ins.get(j), float(r.day[j]))
                    )  # fmt: skip
            case SessionRecord():
                for j, row in enumerate(r.rows.tolist()):
                    sessions.append(
                        (row, r.session, int(r.turns[j]), bool(r.left[j]), int(r.clicks[j]),
                         float(r.watch_time[j]), float(r.satisfaction_end[j]),
                         bool(r.returned[j]), r.summaries[j])
                    )  # fmt: skip
    return sorted(turns, key=lambda t: t[:3]), sorted(sessions, key=lambda t: t[:2])


def test_the_batch_loop_and_the_per_user_coroutines_settle_identically() -> None:
    """The parametric brain run one user per coroutine (the language-model loop) gives the
    records and per-user totals of the vectorised batch loop: one settlement."""
    cfg = msgspec.structs.replace(SMALL, llm=LLMConfig(model="scripted"))
    prep = prepare(cfg, load_world_for(cfg.world, cfg.seed))
    users = np.arange(len(prep.population))
    batch: list[Record] = []
    m_batch = simulate_arm(prep, 0, users, batch.append)
    per_user: list[Record] = []
    log = CallLog()
    model = ScriptedModel()
    m_user = asyncio.run(simulate_arm_llm(prep, 0, users, per_user.append, model, log))
    assert _flatten(batch) == _flatten(per_user)
    for name, a in m_batch.as_dict().items():
        np.testing.assert_array_equal(a, getattr(m_user, name), err_msg=name)
    assert sum(isinstance(r, SessionRecord) for r in batch) > 0
    assert any(r.instructions.rows.size for r in batch if isinstance(r, TurnRecord))


@pytest.mark.parametrize("kind", ["random", "popular", "mf"])
def test_built_in_recommenders_keep_the_whole_protocol(kind: str) -> None:
    prep = prepare(SMALL, load_world_for(SMALL.world, SMALL.seed))
    rec = build_recommender(RecommenderConfig(kind=kind), ArmConfig(name="a"), prep.creator_mask)  # type: ignore[arg-type]
    assert isinstance(rec, Recommender) and isinstance(rec, PoolRecommender)
    n = 6
    people = prep.population.take(np.arange(n))
    rec.bind(Audience(personas=people, catalog=prep.catalog, seed=1, treated=np.ones(n, bool)))
    idx = np.arange(n)
    sync = rec.recommend(idx, 0, 0, 5)
    rec.bind(Audience(personas=people, catalog=prep.catalog, seed=1, treated=np.ones(n, bool)))
    both = asyncio.run(rec.recommend_async(idx, 0, 0, 5))
    np.testing.assert_array_equal(sync, both)
    assert isinstance(ScriptedRecommender([[0, 1, 2]]), Recommender)


def test_the_agentic_recommender_serves_synchronous_callers_too() -> None:
    cfg = msgspec.structs.replace(
        SMALL,
        llm=LLMConfig(model="scripted"),
        recommender=RecommenderConfig(kind="agentic", base="mf", candidates=20),
    )
    prep = prepare(cfg, load_world_for(cfg.world, cfg.seed))
    voice = Voice(model=ScriptedModel(), llm=cfg.llm, log=CallLog(), seed=cfg.seed)  # type: ignore[arg-type]
    rec = build_recommender(cfg.recommender, cfg.arms[0], prep.creator_mask, voice)
    assert isinstance(rec, Recommender)
    n = 4
    people = prep.population.take(np.arange(n))
    rec.bind(Audience(personas=people, catalog=prep.catalog, seed=1, treated=np.ones(n, bool)))
    slates = rec.recommend(np.arange(n), 0, 0, 5)  # no event loop here: it runs its own
    assert slates.shape == (n, 5) and (slates >= 0).all()
    assert all(len(set(s)) == 5 for s in slates.tolist())

    async def inside_a_loop() -> None:
        rec.recommend(np.arange(n), 0, 1, 5)

    with pytest.raises(RecommenderError, match="await recommend_async"):
        asyncio.run(inside_a_loop())
    with pytest.raises(Exception, match="needs a language model"):
        build_recommender(cfg.recommender, cfg.arms[0], prep.creator_mask)


def _tagless_world(folder: Path) -> Path:
    """A generic folder holding only interactions.csv (no item table, so no tags)."""
    rng = np.random.default_rng(0)
    rows = ["user_id,item_id,rating"]
    for u in range(60):
        for i in rng.choice(80, size=12, replace=False).tolist():
            rows.append(f"u{u},i{i},{int(rng.integers(1, 6))}")
    folder.mkdir()
    (folder / "interactions.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_a_world_without_tags_runs_a_study_end_to_end(tmp_path: Path) -> None:
    data = _tagless_world(tmp_path / "data")
    cfg = msgspec.structs.replace(
        SMALL, world=WorldConfig(dataset="generic", path=str(data), embedding_dim=4)
    )
    world = load_world_for(cfg.world, cfg.seed)
    res = run_study(cfg, world, run_id="tagless", out_dir=tmp_path / "runs")
    ev = scan_table(res.path, "events").collect()
    ss = scan_table(res.path, "sessions").collect()
    assert ev.height > 0 and ss.height > 0
    assert ev["instruction"].null_count() == ev.height  # nothing to ask for by name
    assert ss["top_tag"].null_count() == ss.height
    assert not ss["summary"].str.contains("mostly").any()
    assert res.summary.filter(pl.col("metric") == "ctr")["mean"].is_finite().all()
