"""``LLMReplicaActor``: one language-model engine on a Ray worker, shared by every user shard.

:class:`LLMReplicaActor` is the plain class; :func:`replica_actor_class` turns it into an *async*
Ray actor with the resources of ``[llm]`` (``replica_num_gpus``: one vLLM engine per GPU, 0 = a
CPU replica; ``replica_num_cpus``; ``replica_resources`` such as ``{recoworld_llm = 1}``) and a
high ``max_concurrency``, so that batches from many shards are in the engine at once.

Life cycle (driven by ``actors.coordinator``):

1. ``ready()`` answers as soon as the actor is placed (nothing heavy happens in ``__init__``);
2. ``start()`` builds the backend *inside the actor's event loop* (engines are bound to the loop
   they were created in) — ``recoworld.llm.factory.open_backend(llm)``, or a picklable
   ``factory(index)`` (tests host the scripted model this way) — and starts its engine;
3. ``generate(batch)`` serves one router batch and stamps ``replica`` on every result;
4. ``stats()`` reports in-flight and served counts and whatever the engine exposes;
5. the coordinator kills the replica at the end of the run (``max_restarts = 0``: a dead replica
   stays dead and the routers send its users elsewhere).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from recoworld.config import LLMConfig
from recoworld.errors import LLMError
from recoworld.llm.base import LanguageModel
from recoworld.llm.types import LLMRequest, LLMResult

ReplicaFactory = Callable[[int], LanguageModel]
"""Builds the backend of replica ``index`` inside the replica (must be picklable)."""

MAX_CONCURRENCY = 1000
"""Actor calls (router batches) one replica accepts at once."""


class ReplicaStats(msgspec.Struct, frozen=True, kw_only=True):
    """What a replica has done since it started."""

    replica: int
    pid: int
    model: str
    in_flight: int
    """Requests in the engine now."""
    max_in_flight: int
    served: int
    """Requests answered (errors included)."""
    errors: int
    batches: int
    """Actor calls served."""
    startup_s: float
    engine: dict[str, Any] = {}
    """The backend's own figures (``VLLMEngine.stats()``: prefix-cache hits, tokens, ...)."""


class LLMReplicaActor:
    """Hosts one backend (see the module docstring). Exactly one of ``llm`` / ``factory``."""

    def __init__(
        self, index: int, llm: LLMConfig | None = None, factory: ReplicaFactory | None = None
    ) -> None:
        if (llm is None) == (factory is None):
            raise LLMError(
                f"LLM replica {index}: give an [llm] config or a factory, "
                f"not {'both' if llm else 'neither'}"
            )
        self.index, self.llm, self.factory = index, llm, factory
        self.model: LanguageModel | None = None
        self.startup_s = 0.0
        self.in_flight = self.max_in_flight = self.served = self.errors = self.batches = 0

    async def ready(self) -> int:
        """Answers once the actor is placed: its process id."""
        return os.getpid()

    async def start(self) -> float:
        """Build the backend in this event loop and start its engine (idempotent); returns the
        seconds the start took."""
        if self.model is not None:
            return self.startup_s
        t0 = time.perf_counter()
        if self.factory is not None:
            model = self.factory(self.index)
        else:
            from recoworld.llm.factory import open_backend

            model = open_backend(self.llm)  # type: ignore[arg-type]
        start = getattr(model, "start", None)
        if start is not None:
            await start()
        self.model = model
        self.startup_s = time.perf_counter() - t0
        return self.startup_s

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        """Results for one batch, in order, each stamped with this replica's index. A dead
        engine raises (``LLMError``): the routers then send this replica nothing more."""
        if self.model is None:
            await self.start()
        n = len(requests)
        self.in_flight += n
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.batches += 1
        try:
            results = await self.model.generate(requests)  # type: ignore[union-attr]
        finally:
            self.in_flight -= n
        self.served += n
        self.errors += sum(not r.ok for r in results)
        return [
            r if r.replica == self.index else msgspec.structs.replace(r, replica=self.index)
            for r in results
        ]

    async def stats(self) -> ReplicaStats:
        engine: dict[str, Any] = {}
        fn = getattr(self.model, "stats", None)
        if fn is not None:
            out = fn()
            engine = dict(await out if hasattr(out, "__await__") else out)
        return ReplicaStats(
            replica=self.index,
            pid=os.getpid(),
            model=getattr(self.model, "name", ""),
            in_flight=self.in_flight,
            max_in_flight=self.max_in_flight,
            served=self.served,
            errors=self.errors,
            batches=self.batches,
            startup_s=round(self.startup_s, 3),
            engine=engine,
        )

    async def close(self) -> None:
        model, self.model = self.model, None
        if model is not None:
            await model.close()


def replica_needs(llm: LLMConfig) -> str:
    """What one replica asks the cluster for, in words (for placement errors)."""
    parts = [f"{llm.replica_num_gpus:g} GPU", f"{llm.replica_num_cpus:g} CPU"]
    parts += [f"{v:g} {k}" for k, v in sorted(llm.replica_resources.items())]
    return ", ".join(parts)


def replica_actor_class(llm: LLMConfig):  # -> ray.actor.ActorClass
    """``LLMReplicaActor`` as an async Ray actor with the resources of ``llm`` (never restarted)."""
    import ray

    opts: dict = {
        "num_gpus": llm.replica_num_gpus,
        "num_cpus": llm.replica_num_cpus,
        "max_concurrency": MAX_CONCURRENCY,
        "max_restarts": 0,
    }
    if llm.replica_resources:
        opts["resources"] = dict(llm.replica_resources)
    return ray.remote(**opts)(LLMReplicaActor)
