"""The language-model protocol: a batch of requests in, one result per request out (same order).

Backends run requests of one batch concurrently (continuous batching inside vLLM, a
concurrency-limited pool of HTTP requests) and many batches may be in flight at once: callers
``await`` from many coroutines (one per simulated user) so that engines stay full. Cross-cutting
concerns — retry, recording, replay — are wrappers around this interface, not flags inside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from recoworld.llm.types import LLMRequest, LLMResult


@runtime_checkable
class LanguageModel(Protocol):
    name: str
    """Model name recorded with every call."""

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        """Results for ``requests``, in order. A request that fails has ``finish_reason ==
        "error"``; only a broken backend (engine dead, bad configuration) raises."""
        ...

    async def close(self) -> None:
        """Release the engine / connections. Idempotent."""
        ...
