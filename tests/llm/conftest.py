"""Fixtures of the LLM tier (``pytest -m llm``): a tiny model built once, one engine per session.

The tiny model (random weights, local tokenizer; :mod:`recoworld.llm.tiny`) is built into
``$RECOWORLD_LLM_CACHE`` (default ``<repo>/.cache/llm``) and reused across sessions. Starting a
vLLM engine costs ~15-30 s on CPU, so one engine serves every test of the session; its event
loop is a session loop too (the engine's output handler and sockets belong to one loop).

Nothing here imports vllm: the default tier collects this folder without it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def llm_cache() -> Path:
    return Path(os.environ.get("RECOWORLD_LLM_CACHE") or REPO / ".cache" / "llm")


@pytest.fixture(scope="session")
def llm_cache_dir() -> Path:
    """Where built test models are kept across sessions."""
    return llm_cache()


@pytest.fixture(scope="session")
def vllm_cpu_env() -> dict[str, str]:
    """The environment a vLLM CPU server subprocess needs (MACHINE-NOTES), on top of ours."""
    env = dict(os.environ)
    env.setdefault("VLLM_HOST_IP", "127.0.0.1")
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{max(len(os.sched_getaffinity(0)), 1) - 1}")
    env.setdefault("VLLM_CACHE_ROOT", str(llm_cache() / "vllm-cache"))
    return env


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    pytest.importorskip("transformers")
    from recoworld.llm.tiny import build_tiny_model

    return build_tiny_model(llm_cache() / "tiny-llama", seed=0)


class Session:
    """A session event loop and the engine living on it; ``run`` drives one coroutine."""

    def __init__(self, engine: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.engine = engine

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 240.0) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))


@pytest.fixture(scope="session")
def tiny_engine(tiny_model: Path) -> Iterator[Session]:
    """One VLLMEngine on the tiny model for the whole session (max_model_len 1024)."""
    pytest.importorskip("vllm")
    from recoworld.config import EngineConfig
    from recoworld.llm.vllm_engine import VLLMEngine

    cfg = EngineConfig(enforce_eager=True, max_model_len=1024, max_num_seqs=64, cpu_kvcache_gib=1.0)
    s = Session(VLLMEngine(str(tiny_model), cfg, name="tiny"))
    s.run(s.engine.start(), timeout=600)
    try:
        yield s
    finally:
        s.run(s.engine.close())
        s.loop.close()
