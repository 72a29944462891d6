"""``CoordinatorActor``: drives one run's shards on a Ray cluster and writes its summary.

1. it starts a pool of shard actors (no more than the cluster can place at once, as the
   resources in ``[ray]`` ask) and waits, at most ``placement_timeout_s``, until they are placed;
2. it hands each idle actor the next unfinished shard of the run's plan (one call per shard:
   thousands of users each), skipping shards finished earlier (``--resume``);
3. it merges the shards' mergeable aggregates into the summary (``summary.parquet``).

The plan (which users form which shard) is fixed before the coordinator starts: a pure
function of the population size and shard count, kept in the run folder.
"""

from __future__ import annotations

import time

import ray
from ray.exceptions import RayActorError, RayTaskError

from recoworld.config import RayConfig
from recoworld.errors import RunError
from recoworld.study.prepare import Prepared
from recoworld.study.runner import write_summary
from recoworld.study.shard import ShardResult, ShardSpec, read_marker

from actors.shard import shard_actor_class

NAMESPACE = "recoworld"


def shard_actor_name(run_id: str, slot: int) -> str:
    """The name of shard actor ``slot`` of run ``run_id`` (in namespace ``recoworld``)."""
    return f"{run_id}/shard-actor-{slot}"


def pool_size(cfg: RayConfig, shards: int, cluster: dict[str, float]) -> int:
    """Shard actors to start: at most one per shard, and no more than ``cluster`` (total
    resources) can hold at once; at least one (it waits for resources that may yet arrive)."""
    fits = [cluster.get("CPU", 0.0) / cfg.shard_num_cpus] if cfg.shard_num_cpus > 0 else []
    fits += [cluster.get(name, 0.0) / amount for name, amount in cfg.shard_resources.items()]
    if cfg.shard_memory_mb:
        fits.append(cluster.get("memory", 0.0) / (cfg.shard_memory_mb * 1024 * 1024))
    cap = int(min(fits)) if fits else shards
    return max(1, min(shards, cap))


class CoordinatorActor:
    """Runs the shards of one run (see the module docstring)."""

    def run(self, prep_box: list, folder: str, plan: list[ShardSpec], run_id: str, cfg: RayConfig) -> list[ShardResult]:
        """``prep_box``: ``[ObjectRef of the Prepared]`` (boxed so Ray hands the reference on
        to the shard actors instead of resolving it here)."""
        prep_ref = prep_box[0]
        results = {s.index: r for s in plan if (r := read_marker(folder, s)) is not None}
        todo = [s for s in plan if s.index not in results]
        if todo:
            results.update(self._run_shards(prep_ref, folder, todo, run_id, cfg))
        ordered = [results[s.index] for s in plan]
        prep: Prepared = ray.get(prep_ref)
        write_summary(folder, prep, ordered)
        return ordered

    def _run_shards(self, prep_ref, folder: str, todo: list[ShardSpec], run_id: str, cfg: RayConfig) -> dict[int, ShardResult]:
        cls = shard_actor_class(cfg)
        n = pool_size(cfg, len(todo), ray.cluster_resources())
        actors = [cls.options(name=shard_actor_name(run_id, k), namespace=NAMESPACE).remote(prep_ref, folder) for k in range(n)]
        try:
            ready = [a.ready.remote() for a in actors]
            _, pending = ray.wait(ready, num_returns=len(ready), timeout=cfg.placement_timeout_s)
            if pending:
                raise RunError(
                    f"{len(pending)} of {n} shard actors could not be placed within {cfg.placement_timeout_s:g} s "
                    f"(ray.placement_timeout_s): each needs {cfg.shard_num_cpus:g} CPU"
                    + "".join(f", {v:g} {k}" for k, v in cfg.shard_resources.items())
                    + (f", {cfg.shard_memory_mb} MiB" if cfg.shard_memory_mb else "")
                    + f"; the cluster has {_resources(ray.cluster_resources())}"
                )
            queue = list(todo)
            inflight = {}
            for a in actors:
                if queue:
                    s = queue.pop(0)
                    inflight[a.run.remote(s)] = (a, s)
            done_results: dict[int, ShardResult] = {}
            deadline = time.monotonic() + cfg.shard_timeout_s
            while inflight:
                done, _ = ray.wait(list(inflight), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
                if not done:
                    late = ", ".join(f"{s.index} (users {s.start}..{s.stop})" for _, s in inflight.values())
                    raise RunError(f"shards {late} did not finish within {cfg.shard_timeout_s:g} s (ray.shard_timeout_s)")
                ref = done[0]
                actor, spec = inflight.pop(ref)
                try:
                    done_results[spec.index] = ray.get(ref)
                except RayActorError as e:
                    raise RunError(
                        f"shard {spec.index} (users {spec.start}..{spec.stop}): its actor died and was not "
                        f"restarted (ray.max_restarts = {cfg.max_restarts} used up): {e}"
                    ) from None
                except RayTaskError as e:
                    raise RunError(f"shard {spec.index} (users {spec.start}..{spec.stop}) failed: {e}") from None
                if queue:
                    s = queue.pop(0)
                    inflight[actor.run.remote(s)] = (actor, s)
            return done_results
        finally:
            for a in actors:
                ray.kill(a, no_restart=True)


def _resources(res: dict[str, float]) -> str:
    shown = {k: v for k, v in sorted(res.items()) if not k.startswith("node:") and k != "object_store_memory"}
    return ", ".join(f"{v:g} {k}" for k, v in shown.items()) or "nothing"


def coordinator_actor_class():  # -> ray.actor.ActorClass
    """``CoordinatorActor`` as a Ray actor: no CPU reserved (it waits on its shards)."""
    return ray.remote(num_cpus=0, max_restarts=0)(CoordinatorActor)
