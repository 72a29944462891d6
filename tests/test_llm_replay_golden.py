"""The default tier replays a run recorded on the real vLLM engine (the tiny model, CPU):
unit tests run on real completions without vLLM. The recording, tests/golden/llm_tiny_run/, is
rewritten by the LLM tier with

    RECOWORLD_UPDATE_GOLDEN=1 .venv-llm/bin/python -m pytest -m llm \
        tests/llm/test_llm_study_vllm.py -k golden

after any change to prompts or schemas (replay refuses a prompt that differs from the recorded
one, naming the call)."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recoworld.config import decode_study_json
from recoworld.io.runs import scan_table
from recoworld.study.prepare import load_world_for
from recoworld.study.runner import run_study

GOLDEN = Path(__file__).resolve().parent / "golden" / "llm_tiny_run"
KEYS = {
    "events": ["arm", "user", "session", "turn", "position"],
    "sessions": ["arm", "user", "session"],
    "llm_calls": ["call_id"],
}


def frame(run: Path, name: str) -> pl.DataFrame:
    df = scan_table(run, name).collect()
    df = df.with_columns(
        [
            pl.col(c).cast(pl.String)
            for c, t in df.schema.items()
            if isinstance(t, pl.Categorical | pl.Enum)
        ]
    )
    return df.sort(KEYS[name])


@pytest.fixture(scope="module")
def recorded() -> Path:
    if not (GOLDEN / "manifest.json").is_file():
        pytest.fail(
            f"{GOLDEN} is missing: record it with the LLM tier (see this module's docstring)"
        )
    return GOLDEN


def test_the_recording_is_a_real_engine_run_with_every_completion_valid(recorded: Path) -> None:
    calls = frame(recorded, "llm_calls")
    assert calls.height > 0 and set(calls["parse_status"]) == {"ok"}
    assert set(calls["model"]) == {"tiny"} or all("tiny" in m for m in calls["model"])
    assert (calls["tokens_out"] > 0).all() and (calls["latency_s"] > 0).all()
    manifest = json.loads((recorded / "manifest.json").read_text())
    assert manifest["llm"]["calls"] == calls.height


def test_replaying_the_recording_reproduces_the_run_without_a_model(
    recorded: Path, tmp_path: Path
) -> None:
    cfg = decode_study_json((recorded / "study.json").read_bytes(), source="study.json")
    cfg = msgspec.structs.replace(
        cfg, llm=msgspec.structs.replace(cfg.llm, backend="replay", replay_from=str(recorded))
    )
    again = run_study(cfg, load_world_for(cfg.world, cfg.seed), run_id="again", out_dir=tmp_path)
    for name in ("events", "sessions"):
        assert_frame_equal(frame(recorded, name), frame(again.path, name))
    assert_frame_equal(
        pl.read_parquet(recorded / "summary.parquet"),
        pl.read_parquet(again.path / "summary.parquet"),
    )
    a, b = frame(recorded, "llm_calls"), frame(again.path, "llm_calls")
    assert (
        a["call_id"].to_list() == b["call_id"].to_list()
        and a["completion"].to_list() == b["completion"].to_list()
    )
    assert b["model"].unique().to_list() == a["model"].unique().to_list()
