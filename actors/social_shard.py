"""A social study on Ray: ``SocialShardActor`` hosts :class:`recoworld.study.rounds.SocialHost`
(some of the run's planned shards), and the driver steps every actor through each round, then
routes what their users said to the actors of the receivers (docs/social.md).

The actor is the plain class with a Ray transport: the rounds, the routing, the canonical order
and the finish are ``recoworld.study.rounds``'s, so a run on Ray writes the same events as one
in this process or in forked workers (tests/test_social_ray.py).

A social run's shards live through every round and finish together, so a dead actor cannot be
restarted where it stopped: the actors have no restarts, and a dead one fails the run with a
RunError naming it (run the study again).
"""

from __future__ import annotations

import os
from pathlib import Path

import ray

from actors.driver import connect, default_shards
from recoworld.config import RayConfig, StudyConfig, uses_llm
from recoworld.errors import RunError
from recoworld.social.talk import Deliveries
from recoworld.study.lifecycle import Progress, RunResult
from recoworld.study.rounds import HostDone, SocialHost, StepDone, run_social_study
from recoworld.study.shard import ShardSpec
from recoworld.study.social_loop import SocialWorld
from recoworld.world.model import World


class SocialShardActor:
    """Hosts planned shards of one social run (the plain :class:`SocialHost`)."""

    def __init__(
        self, worlds: tuple[SocialWorld, ...], folder: str, specs: list[ShardSpec]
    ) -> None:
        self._host = SocialHost(worlds, folder, specs)

    def ready(self) -> int:
        """Answers once the actor is placed and built: its process id."""
        return os.getpid()

    def step(self, day: int, inbox: list[Deliveries]) -> StepDone:
        return self._host.step(day, inbox)

    def finish(self) -> HostDone:
        return self._host.finish()


class RayHosts:
    """The hosts of a social run as Ray actors (``recoworld.study.rounds.Hosts``)."""

    def __init__(
        self,
        worlds: tuple[SocialWorld, ...],
        folder: Path,
        groups: list[list[ShardSpec]],
        cfg: RayConfig,
        num_cpus: float | None = None,
    ) -> None:
        cpus = cfg.shard_num_cpus if num_cpus is None else num_cpus
        opts: dict = {"num_cpus": cpus, "max_restarts": 0}
        if cfg.shard_memory_mb:
            opts["memory"] = cfg.shard_memory_mb * 1024 * 1024
        if cfg.shard_resources:
            opts["resources"] = dict(cfg.shard_resources)
        actor = ray.remote(**opts)(SocialShardActor)
        ref = ray.put(worlds)
        self.actors = [actor.remote(ref, str(folder), g) for g in groups]
        pending = [a.ready.remote() for a in self.actors]
        done, waiting = ray.wait(pending, num_returns=len(pending), timeout=cfg.placement_timeout_s)
        if waiting:
            self.close()
            raise RunError(
                f"{len(waiting)} of {len(pending)} social shard actors could not be placed "
                f"within {cfg.placement_timeout_s:g} s (each asks for {opts}); lower "
                "[ray] shards or the resources, or add nodes"
            )
        ray.get(done)

    def _all(self, refs: list) -> list:
        try:
            return ray.get(refs)
        except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as e:
            raise RunError(
                f"a social shard actor failed ({type(e).__name__}: {str(e).splitlines()[0]}); "
                "a social run's shards cannot be restarted mid-round: run the study again with "
                "--resume (the replicates already finished are kept)"
            ) from None

    def step(self, day: int, inboxes: list[list[Deliveries]]) -> list[StepDone]:
        return self._all([a.step.remote(day, box) for a, box in zip(self.actors, inboxes)])

    def finish(self) -> list[HostDone]:
        return self._all([a.finish.remote() for a in self.actors])

    def close(self) -> None:
        for a in self.actors:
            ray.kill(a, no_restart=True)
        self.actors = []


def run_social_study_on_ray(
    cfg: StudyConfig,
    world: World,
    *,
    run_id: str,
    out_dir: Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    address: str = "auto",
    progress: Progress | None = None,
    on_ready=None,  # noqa: ANN001
    shards: int | None = None,
) -> RunResult:
    """:func:`recoworld.study.rounds.run_social_study` with its hosts as Ray actors (the
    shape of ``actors.driver.run_study_on_ray``). ``shards`` (else ``[ray] shards``, else one
    per cluster CPU) actors host the planned shards; each reserves ``[ray] shard_num_cpus``,
    or its share of the cluster's CPUs where that is less (they must all run at once)."""
    if uses_llm(cfg):
        raise RunError(
            f"Expected a parametric brain for a social study on Ray (a language brain's social "
            f"hosts share this process's model), got {cfg.brain.kind!r} - at `$.brain.kind`; "
            "run it without --ray"
        )
    connect(address)
    cpus = ray.cluster_resources().get("CPU", 1)
    n = shards or cfg.ray.shards or default_shards(1 << 30, cpus)
    # every actor lives through every round: all must be placed at once, so each asks for at
    # most its share of the cluster's CPUs
    share = min(cfg.ray.shard_num_cpus, cpus / n)
    return run_social_study(
        cfg,
        world,
        run_id=run_id,
        out_dir=Path(out_dir or cfg.output.dir).resolve(),
        overwrite=overwrite,
        progress=progress,
        on_ready=on_ready,
        workers=n,
        resume=resume,
        open_hosts=lambda w, folder, groups: RayHosts(w, folder, groups, cfg.ray, share),
    )
