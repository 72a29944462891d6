"""``UserShardActor``: a Ray actor hosting :class:`recoworld.study.shard.UserShard`.

One actor holds the run's prepared inputs (catalog, fitted brain, population: read zero-copy
from the object store) and simulates the shards it is handed, one call per shard of thousands
of users. A killed actor is restarted by Ray and the interrupted call retried; since a shard
run is idempotent, the retry writes exactly the files an undisturbed run writes.
"""

from __future__ import annotations

import os

import ray

from recoworld.config import RayConfig
from recoworld.study.prepare import Prepared
from recoworld.study.shard import ShardResult, ShardSpec, UserShard


class UserShardActor:
    """Simulates shards of one run into its folder."""

    def __init__(self, prep: Prepared, folder: str) -> None:
        self._shard = UserShard(prep, folder)

    def ready(self) -> int:
        """Answers once the actor is placed and built: its process id."""
        return os.getpid()

    def run(self, spec: ShardSpec) -> ShardResult:
        return self._shard.run(spec)


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
