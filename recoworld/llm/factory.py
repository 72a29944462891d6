"""Open the language model a study's ``[llm]`` table names.

Engines and HTTP clients are bound to the event loop they were created in; a study runs one
``asyncio.run`` per arm and shard. :class:`BackgroundModel` therefore hosts a backend on its own
event loop in a daemon thread and forwards ``generate`` from any loop or thread: one engine
serves every arm, shard and study of a process.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

from recoworld.config import LLMConfig
from recoworld.errors import LLMError
from recoworld.llm.base import LanguageModel
from recoworld.llm.types import LLMRequest, LLMResult
from recoworld.llm.wrappers import ReplayModel, RetryModel


class BackgroundModel:
    """A model built by ``factory`` inside a private event loop thread; ``generate`` may be
    awaited from any other loop. ``close`` closes the model and stops the thread."""

    def __init__(
        self, factory: Callable[[], LanguageModel], *, start_timeout_s: float = 900.0
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="recoworld-llm", daemon=True
        )
        self._thread.start()

        async def build() -> LanguageModel:
            model = factory()
            start = getattr(model, "start", None)
            if (
                start is not None
            ):  # engines start here, so that a model that cannot start fails the open
                await start()
            return model

        try:
            self.inner = asyncio.run_coroutine_threadsafe(build(), self._loop).result(
                start_timeout_s
            )
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            raise
        self.name = self.inner.name
        self._closed = False

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        fut = asyncio.run_coroutine_threadsafe(self.inner.generate(requests), self._loop)
        return await asyncio.wrap_future(fut)

    def call(self, coro_fn: Callable[[LanguageModel], object]) -> object:
        """Run ``coro_fn(inner)`` (a coroutine) on the model's loop and wait (benchmarks, stats)."""
        return asyncio.run_coroutine_threadsafe(coro_fn(self.inner), self._loop).result()  # type: ignore[arg-type]

    async def close(self) -> None:
        self.close_sync()

    def close_sync(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self.inner.close(), self._loop).result(120)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)


def open_backend(llm: LLMConfig) -> LanguageModel:
    """The bare backend (no retry, no recording), built in the calling loop."""
    match llm.backend:
        case "replay":
            return ReplayModel(llm.replay_from)
        case "vllm":
            from recoworld.llm.vllm_engine import VLLMEngine

            return VLLMEngine.from_config(llm)
        case "openai":
            from recoworld.llm.openai_http import OpenAIHTTPModel

            return OpenAIHTTPModel.from_config(llm)
    raise LLMError(f"unknown llm.backend {llm.backend!r}; expected vllm, openai or replay")


def open_model(llm: LLMConfig, *, seed: int = 0) -> LanguageModel:
    """The study's model, ready to be awaited from any loop: replay as is; engines and HTTP
    clients on a background loop, with retries of retryable failures."""
    if llm.backend == "replay":
        return ReplayModel(llm.replay_from)
    bg = BackgroundModel(lambda: open_backend(llm))
    return RetryModel(bg, retries=llm.retries, backoff_s=llm.backoff_s, seed=seed)


def endpoint_name(llm: LLMConfig) -> str:
    """Where a study's questions go, in words (for errors): never the API key."""
    match llm.backend:
        case "openai":
            return f"{llm.base_url} (model {llm.model!r})"
        case "replay":
            return f"the replay of {llm.replay_from}"
    return f"the in-process vLLM engine (model {llm.model!r})"
