"""``UserShardActor``: a Ray actor hosting :class:`recoworld.study.shard.UserShard`.

One actor holds the run's prepared inputs (catalog, fitted brain, population: read zero-copy
from the object store) and simulates the shards it is handed, one call per shard of thousands
of users, leaving its progress in a file that the driver polls (:mod:`recoworld.study.progress`).
A killed actor is restarted by Ray and the interrupted call retried; since a shard run is
idempotent, the retry writes exactly the files an undisturbed run writes.

A study with a language brain or an agentic recommender also hands each actor a
:class:`StudyModel`: the actor opens the model its shards use (every user of a shard is a
coroutine, ``llm.users_in_flight`` of them progress at once, with no turn barrier):

- backend ``vllm``: a :class:`~actors.router.ReplicaRouter` over the run's LLM replica actors
  (started by the coordinator), wrapped in ``RetryModel`` so that requests of a replica that
  died are sent again, to a live one;
- backend ``openai`` (a ``vllm serve`` endpoint, a Ray Serve LLM deployment) or ``replay``: the
  actor's own client / replay, as ``recoworld.llm.factory.open_model`` builds it in-process.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass

import ray

from actors.router import ReplicaRouter, RoutingCounts, ray_router
from recoworld.config import LLMConfig, RayConfig
from recoworld.llm.base import LanguageModel
from recoworld.study.prepare import Prepared
from recoworld.study.progress import ProgressFile
from recoworld.study.shard import ShardResult, ShardSpec, UserShard


@dataclass(frozen=True)
class StudyModel:
    """The language model of a study on Ray (pickled to the coordinator and shard actors; it
    carries actor handles, so it is a dataclass, not a msgspec struct)."""

    llm: LLMConfig
    seed: int
    """The run's root seed (retry jitter)."""
    replica_factory: Callable | None = None
    """backend vllm: ``factory(index)`` builds each replica's backend instead of
    ``open_backend(llm)`` (tests and benchmarks host the scripted model this way)."""
    replicas: tuple = ()
    """The LLM replica actor handles, once the coordinator has started them."""

    @property
    def uses_replicas(self) -> bool:
        """Does the run host its own engines in LLM replica actors?"""
        return self.llm.backend == "vllm"

    def open(self) -> LanguageModel:
        """The model a shard actor's UserShard uses (see the module docstring)."""
        if self.uses_replicas:
            from recoworld.llm.wrappers import RetryModel

            router = ray_router(self.replicas, slack=self.llm.affinity_slack, name=self.llm.model)
            return RetryModel(
                router, retries=self.llm.retries, backoff_s=self.llm.backoff_s, seed=self.seed
            )
        from recoworld.llm.factory import open_model

        return open_model(self.llm, seed=self.seed)


class UserShardActor:
    """Simulates shards of one run into its folder."""

    def __init__(
        self, preps: tuple[Prepared, ...], folder: str, model: StudyModel | None = None
    ) -> None:
        self._model = model.open() if model is not None else None
        self._shard = UserShard(preps, folder, self._model)

    def ready(self) -> int:
        """Answers once the actor is placed and built: its process id."""
        return os.getpid()

    def run(self, spec: ShardSpec) -> ShardResult:
        """Write shard ``spec``; its progress goes to a file in the run's scratch folder, which
        the driver reads when it polls (no Ray call per batch)."""
        return self._shard.run(spec, ProgressFile(self._shard.folder, spec.index))

    def routing(self) -> RoutingCounts | None:
        """How this actor's router spread its requests over the replicas (None: no router)."""
        router = getattr(self._model, "inner", None)
        return router.counts if isinstance(router, ReplicaRouter) else None

    def close(self) -> None:
        """Close the model (HTTP clients, replay); the replicas are the coordinator's to kill."""
        model, self._model = self._model, None
        if model is not None:
            asyncio.run(model.close())


def shard_actor_class(cfg: RayConfig):  # -> ray.actor.ActorClass
    """``UserShardActor`` as a Ray actor with the resources and restart policy of ``cfg``."""
    opts: dict = {
        "num_cpus": cfg.shard_num_cpus,
        "max_restarts": cfg.max_restarts,
        "max_task_retries": cfg.max_restarts,
    }
    if cfg.shard_memory_mb:
        opts["memory"] = cfg.shard_memory_mb * 1024 * 1024
    if cfg.shard_resources:
        opts["resources"] = dict(cfg.shard_resources)
    return ray.remote(**opts)(UserShardActor)
