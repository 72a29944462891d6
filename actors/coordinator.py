"""``CoordinatorActor``: drives one run's shards on a Ray cluster and writes its summary.

1. a study whose language model is an in-process engine (``llm.backend = "vllm"``) gets
   ``llm.replicas`` LLM replica actors first (``actors.llm_replica``): placed within
   ``placement_timeout_s`` (else a RunError naming what one replica needs and what the cluster
   has), then their engines started (within ``shard_timeout_s``);
2. it starts a pool of shard actors (no more than the cluster can place at once, as the
   resources in ``[ray]`` ask, beside the replicas) and waits, at most ``placement_timeout_s``,
   until they are placed; each gets the replica handles (or opens its own HTTP client / replay);
3. it hands each idle actor the next unfinished shard of the run's plan (one call per shard:
   thousands of users each), skipping shards finished earlier (``--resume``);
4. it merges the shards' mergeable aggregates into the summary (``summary.parquet``), collects
   the LLM figures (:meth:`CoordinatorActor.llm_figures`) and kills the replicas.

The plan (which users form which shard) is fixed before the coordinator starts: a pure
function of the population size and shard count, kept in the run folder.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import msgspec
import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError

from actors.llm_replica import ReplicaStats, replica_actor_class, replica_needs
from actors.router import RoutingCounts
from actors.shard import StudyModel, shard_actor_class
from recoworld.config import RayConfig
from recoworld.errors import RunError
from recoworld.study.lifecycle import finished_shards, write_summary
from recoworld.study.prepare import Prepared
from recoworld.study.shard import ShardResult, ShardSpec

NAMESPACE = "recoworld"


def shard_actor_name(run_id: str, slot: int) -> str:
    """The name of shard actor ``slot`` of run ``run_id`` (in namespace ``recoworld``)."""
    return f"{run_id}/shard-actor-{slot}"


def replica_actor_name(run_id: str, index: int) -> str:
    """The name of LLM replica ``index`` of run ``run_id`` (in namespace ``recoworld``)."""
    return f"{run_id}/llm-replica-{index}"


class LLMFigures(msgspec.Struct, frozen=True, kw_only=True):
    """How a run used its LLM replicas: routing summed over shard actors, each replica's stats."""

    routing: RoutingCounts
    replicas: list[ReplicaStats]


def start_replicas(model: StudyModel, run_id: str, cfg: RayConfig) -> list:  # -> list[ActorHandle]
    """Start ``model.llm.replicas`` LLM replica actors and their engines (see the module
    docstring); on failure every one started is killed and a RunError says why."""
    llm = model.llm
    tp = llm.engine.tensor_parallel_size
    if (
        model.replica_factory is None
        and llm.replica_num_gpus > 0
        and tp > 1
        and tp > llm.replica_num_gpus
    ):
        raise RunError(
            f"llm.engine.tensor_parallel_size = {tp} spans {tp} GPUs, "
            f"but each LLM replica reserves {llm.replica_num_gpus:g} (llm.replica_num_gpus); "
            f"give each replica at least {tp}"
        )
    cls = replica_actor_class(llm)
    handles = [
        cls.options(name=replica_actor_name(run_id, k), namespace=NAMESPACE).remote(
            k, None if model.replica_factory else llm, model.replica_factory
        )
        for k in range(llm.replicas)
    ]
    try:
        await_placement(
            handles,
            cfg,
            "LLM replicas",
            f"{replica_needs(llm)} "
            "(llm.replica_num_gpus, llm.replica_num_cpus, llm.replica_resources)",
        )
        starts = {h.start.remote(): k for k, h in enumerate(handles)}
        _, pending = ray.wait(list(starts), num_returns=len(starts), timeout=cfg.shard_timeout_s)
        if pending:
            late = ", ".join(str(starts[r]) for r in pending)
            raise RunError(
                f"LLM replicas {late} did not start their engine (model {llm.model!r}) "
                f"within {cfg.shard_timeout_s:g} s (ray.shard_timeout_s)"
            )
        for ref, k in starts.items():
            try:
                ray.get(ref)
            except (RayActorError, RayTaskError) as e:
                raise RunError(
                    f"LLM replica {k} could not start its engine (model {llm.model!r}): "
                    f"{_last_line(e)}"
                ) from None
    except BaseException:
        for h in handles:
            ray.kill(h, no_restart=True)
        raise
    return handles


def await_placement(actors: list, cfg: RayConfig, what: str, needs: str) -> None:
    """Wait until every actor answers ``ready``; a RunError after ``placement_timeout_s``
    naming what each needs and what the cluster has."""
    ready = [a.ready.remote() for a in actors]
    _, pending = ray.wait(ready, num_returns=len(ready), timeout=cfg.placement_timeout_s)
    if pending:
        raise RunError(
            f"{len(pending)} of {len(actors)} {what} could not be placed "
            f"within {cfg.placement_timeout_s:g} s "
            f"(ray.placement_timeout_s): each needs {needs}; "
            f"the cluster has {_resources(ray.cluster_resources())}"
        )


def _last_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[-1].removeprefix("recoworld.errors.") if lines else type(e).__name__


def after_replicas(cluster: dict[str, float], llm_cfg, replicas: int) -> dict[str, float]:  # noqa: ANN001 - LLMConfig | None
    """What ``cluster`` (total resources) leaves for shard actors once ``replicas`` LLM replicas
    of ``llm_cfg`` are placed."""
    if llm_cfg is None or replicas == 0:
        return dict(cluster)
    left = dict(cluster)
    need = {
        "CPU": llm_cfg.replica_num_cpus,
        "GPU": llm_cfg.replica_num_gpus,
        **llm_cfg.replica_resources,
    }
    for name, amount in need.items():
        if name in left:
            left[name] = max(0.0, left[name] - replicas * amount)
    return left


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

    def __init__(self) -> None:
        self._figures: LLMFigures | None = None

    def run(
        self,
        prep_box: list,
        folder: str,
        plan: list[ShardSpec],
        run_id: str,
        cfg: RayConfig,
        model: StudyModel | None = None,
    ) -> list[ShardResult]:
        """``prep_box``: ``[ObjectRef of the study's replicates (Prepared)]`` (boxed so Ray
        hands the reference on to the shard actors instead of resolving it here). ``model``:
        the study's language model, for studies that use one."""
        prep_ref = prep_box[0]
        results = finished_shards(Path(folder), plan)
        todo = [s for s in plan if s.index not in results]
        if todo:
            replicas = (
                start_replicas(model, run_id, cfg)
                if model is not None and model.uses_replicas
                else []
            )
            try:
                if replicas:
                    model = replace(model, replicas=tuple(replicas))
                results.update(self._run_shards(prep_ref, folder, todo, run_id, cfg, model))
                if replicas:
                    stats = ray.get([h.stats.remote() for h in replicas], timeout=60)
                    self._figures = LLMFigures(
                        routing=self._figures.routing if self._figures else RoutingCounts(),
                        replicas=stats,
                    )
            finally:
                for h in replicas:
                    ray.kill(h, no_restart=True)
        ordered = [results[s.index] for s in plan]
        preps: tuple[Prepared, ...] = ray.get(prep_ref)
        write_summary(Path(folder), preps, ordered)
        return ordered

    def llm_figures(self) -> LLMFigures | None:
        """The LLM figures of the last :meth:`run` with replicas (None: it had none)."""
        return self._figures

    def _run_shards(
        self,
        prep_ref,
        folder: str,
        todo: list[ShardSpec],
        run_id: str,
        cfg: RayConfig,
        model: StudyModel | None,
    ) -> dict[int, ShardResult]:
        cls = shard_actor_class(cfg)
        llm_cfg = model.llm if model is not None and model.uses_replicas else None
        n = pool_size(
            cfg,
            len(todo),
            after_replicas(ray.cluster_resources(), llm_cfg, len(model.replicas) if model else 0),
        )
        actors = [
            cls.options(name=shard_actor_name(run_id, k), namespace=NAMESPACE).remote(
                prep_ref, folder, model
            )
            for k in range(n)
        ]
        try:
            needs = (
                f"{cfg.shard_num_cpus:g} CPU"
                + "".join(f", {v:g} {k}" for k, v in cfg.shard_resources.items())
                + (f", {cfg.shard_memory_mb} MiB" if cfg.shard_memory_mb else "")
            )
            await_placement(actors, cfg, "shard actors", needs)
            queue = list(todo)
            inflight = {}
            for a in actors:
                if queue:
                    s = queue.pop(0)
                    inflight[a.run.remote(s)] = (a, s)
            done_results: dict[int, ShardResult] = {}
            deadline = time.monotonic() + cfg.shard_timeout_s
            while inflight:
                done, _ = ray.wait(
                    list(inflight), num_returns=1, timeout=max(0.0, deadline - time.monotonic())
                )
                if not done:
                    late = ", ".join(
                        f"{s.index} (users {s.start}..{s.stop})" for _, s in inflight.values()
                    )
                    raise RunError(
                        f"shards {late} did not finish within {cfg.shard_timeout_s:g} s "
                        "(ray.shard_timeout_s)"
                    )
                ref = done[0]
                actor, spec = inflight.pop(ref)
                try:
                    done_results[spec.index] = ray.get(ref)
                except RayActorError as e:
                    raise RunError(
                        f"shard {spec.index} (users {spec.start}..{spec.stop}): "
                        f"its actor died and was not restarted "
                        f"(ray.max_restarts = {cfg.max_restarts} used up): {e}"
                    ) from None
                except RayTaskError as e:
                    raise RunError(
                        f"shard {spec.index} (users {spec.start}..{spec.stop}) failed: {e}"
                    ) from None
                if queue:
                    s = queue.pop(0)
                    inflight[actor.run.remote(s)] = (actor, s)
            if model is not None:
                self._close_shard_models(actors)
            return done_results
        finally:
            for a in actors:
                ray.kill(a, no_restart=True)

    def _close_shard_models(self, actors: list) -> None:
        """Sum the shard actors' routing counts, and close their models (HTTP clients)."""
        routing = RoutingCounts()
        try:  # figures and clean-up only: a finished run does not fail here
            for counts in ray.get([a.routing.remote() for a in actors], timeout=60):
                if counts is not None:
                    for f in routing.__struct_fields__:
                        setattr(routing, f, getattr(routing, f) + getattr(counts, f))
            ray.get([a.close.remote() for a in actors], timeout=60)
        except (RayError, GetTimeoutError):
            pass
        self._figures = LLMFigures(routing=routing, replicas=[])


def _resources(res: dict[str, float]) -> str:
    shown = {
        k: v
        for k, v in sorted(res.items())
        if not k.startswith("node:") and k != "object_store_memory"
    }
    return ", ".join(f"{v:g} {k}" for k, v in shown.items()) or "nothing"


def coordinator_actor_class():  # -> ray.actor.ActorClass
    """``CoordinatorActor`` as a Ray actor: no CPU reserved (it waits on its shards)."""
    return ray.remote(num_cpus=0, max_restarts=0)(CoordinatorActor)
