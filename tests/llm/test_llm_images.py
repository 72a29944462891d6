"""Item images on the CPU vLLM engine: the llm brain's own slate request with a generated PNG
goes through vLLM's chat renderer (multimodal inputs). The tiny model is a text model, so the
renderer refuses the image request with one clear error while its text-only twin, in the same
batch, completes; the full path needs a multimodal model (on a GPU machine: docs/items.md)."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import msgspec
import pytest

pytest.importorskip("vllm")

from recoworld.config import (  # noqa: E402
    BrainConfig,
    EngineConfig,
    LLMConfig,
    PopulationConfig,
    SimulationConfig,
    StudyConfig,
    WorldConfig,
)
from recoworld.llm.types import LLMRequest, Sampling  # noqa: E402
from recoworld.llm.vllm_engine import VLLMEngine  # noqa: E402
from recoworld.study.prepare import load_world_for  # noqa: E402
from recoworld.study.runner import run_study  # noqa: E402
from recoworld.testing.images import row_of, with_images  # noqa: E402
from recoworld.testing.scripted_llm import ScriptedModel  # noqa: E402

pytestmark = pytest.mark.llm

STUDY = StudyConfig(
    name="llm-images-vllm",
    seed=3,
    world=WorldConfig(dataset="synthetic", synthetic_users=40, synthetic_items=60, embedding_dim=4),
    population=PopulationConfig(size=2),
    simulation=SimulationConfig(sessions=1, turns=1, slate_size=4, replicates=1),
    brain=BrainConfig(kind="llm"),
    llm=LLMConfig(
        backend="openai",
        model="scripted",
        engine=EngineConfig(chat_template=True),
        attach_images=True,
        max_images=2,
    ),
)


def brain_request(tmp_path: Path) -> LLMRequest:
    """A slate request as the llm brain builds it (on the scripted model), with two images."""
    world = with_images(load_world_for(STUDY.world, STUDY.seed), tmp_path / "w")
    model = ScriptedModel()
    run_study(STUDY, world, run_id="r", out_dir=tmp_path, model=model)
    req = next(q for q in model.requests if q.purpose == "slate")
    assert len(req.images) == 2 and all(u.startswith("data:image/png;base64,") for u in req.images)
    assert "The 2 images attached after this text show slate items 1, 2" in req.prompt
    return req


def test_the_engine_renders_the_brains_image_request_as_chat_and_the_text_model_refuses_it(
    tiny_model: Path, tmp_path: Path
) -> None:
    req = brain_request(tmp_path)
    rows = [row_of(base64.b64decode(u.split(",", 1)[1])) for u in req.images]
    assert len(set(rows)) == 2  # two items' own images
    short = Sampling(temperature=0.0, max_tokens=8)
    image = msgspec.structs.replace(req, sampling=short)
    twin = msgspec.structs.replace(req, id=req.id + "/text", key=None, images=(), sampling=short)
    cfg = EngineConfig(
        enforce_eager=True,
        max_model_len=4096,
        max_num_seqs=4,
        cpu_kvcache_gib=1.0,
        chat_template=True,
    )

    async def go():
        engine = VLLMEngine(str(tiny_model), cfg)
        try:
            return await engine.generate([image, twin])
        finally:
            await engine.close()

    got, text = asyncio.run(go())
    assert text.ok and text.tokens_in > 0, text.error
    assert not got.ok and got.finish_reason == "error" and not got.retryable
    assert "is not a multimodal model" in got.error and "\n" not in got.error, got.error
    assert str(tiny_model) in got.error or "tiny-llama" in got.error
