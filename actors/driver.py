"""Run a study on Ray: connect, prepare once, hand the coordinator the plan, finish the run.

``run_study_on_ray`` has the shape of :func:`recoworld.study.runner.run_study`; the two differ
only in transport, and a test shows they give the same events and summary.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import msgspec
import ray

from actors import watchdog
from actors.coordinator import NAMESPACE, coordinator_actor_class
from actors.llm_replica import ReplicaFactory
from actors.shard import StudyModel
from recoworld import errors
from recoworld.config import StudyConfig, uses_llm
from recoworld.errors import RecoWorldError, RunError
from recoworld.study.aggregate import BLOCK_USERS
from recoworld.study.lifecycle import Progress, Run, RunResult
from recoworld.study.prepare import STREAM_USERS, prepare_all
from recoworld.study.progress import ProgressBoard
from recoworld.world.model import World

POLL_S = 0.5
"""How often the driver reads the shards' progress while it waits."""

LLM_FIGURES = "llm_replicas.json"
"""Written into a run that used LLM replica actors: routing counts and each replica's stats."""


def connect(address: str = "auto", *, num_cpus: int | None = None) -> str:
    """Connect to the Ray cluster at ``address`` ("auto": the one this machine or job runs in,
    else an embedded local one; "local": always an embedded one). Returns what it connected to.
    An unreachable address is a RunError within seconds, not a hang."""
    if ray.is_initialized():
        return "the running Ray session"
    if address == "auto" and not os.environ.get("RAY_ADDRESS"):
        try:
            ray.init(address="auto", namespace=NAMESPACE, log_to_driver=False)
            return "the local Ray cluster"
        except ConnectionError:
            address = "local"
    if address == "local":
        ray.init(
            namespace=NAMESPACE,
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
        )
        watchdog.start(os.getpid())  # Ray's processes die with this driver, even on SIGKILL
        return "an embedded Ray cluster"
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise RunError(f"cannot connect to the Ray cluster at {address!r}: {e}") from None
    return f"the Ray cluster at {address}"


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    url = urlparse(address if "://" in address else f"ray://{address}")
    host, port = url.hostname, url.port
    if not host or not port:
        raise RunError(
            f"Ray address {address!r}: expected HOST:PORT (the head's GCS, e.g. 127.0.0.1:6379), "
            "ray://HOST:PORT, 'auto' or 'local'"
        )
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise RunError(
            f"cannot reach a Ray cluster at {address!r} ({host}:{port}): {e.strerror or e}; "
            "is `ray start --head` running there?"
        ) from None


def default_shards(n_users: int, cluster_cpus: float) -> int:
    """One shard per cluster CPU, at most one per block of users, at most 256."""
    return max(1, min(256, int(cluster_cpus) or 1, -(-n_users // BLOCK_USERS)))


def run_study_on_ray(
    cfg: StudyConfig,
    world: World,
    *,
    run_id: str,
    out_dir: Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    address: str = "auto",
    progress: Progress | None = None,
    on_ready=None,
    shards: int | None = None,
    replica_factory: ReplicaFactory | None = None,
) -> RunResult:
    """Run ``cfg`` on Ray into ``<out_dir or cfg.output.dir>/<run_id>/`` (a folder every node
    can write: shared storage on a real cluster). ``shards`` overrides ``cfg.ray.shards``.

    A study with a language model (``uses_llm``) runs its shards' users as coroutines against
    LLM replica actors (``llm.backend = "vllm"``; ``replica_factory(index)``, picklable, builds
    each replica's backend instead of the engine: tests, benchmarks) or against each shard's
    own client (``openai``, ``replay``); see ``actors.coordinator``. A run with replicas gets
    ``llm_replicas.json``: how requests were routed, and each replica's figures."""
    t0 = time.perf_counter()
    preps = prepare_all(cfg, world, stream_above=STREAM_USERS)
    users = sum(p.size for p in preps)
    if on_ready:
        on_ready(users)
    connect(address)
    n = shards or cfg.ray.shards or default_shards(users, ray.cluster_resources().get("CPU", 1))
    root = Path(out_dir or cfg.output.dir).resolve()
    opts = {"shards": n, "overwrite": overwrite, "resume": resume, "t0": t0}
    with Run.open(preps, root, run_id, **opts) as run:
        model = (
            StudyModel(cfg.llm, cfg.seed, replica_factory)
            if uses_llm(cfg) and cfg.llm is not None
            else None
        )
        coordinator = (
            coordinator_actor_class()
            .options(name=f"{run_id}/coordinator", namespace=NAMESPACE)
            .remote()
        )
        ref = coordinator.run.remote(
            [ray.put(preps)], str(run.path), run.plan, run_id, cfg.ray, model
        )
        # running shards leave progress files, finished ones a marker: progress costs no Ray call
        arms = [arm.name for arm in cfg.arms]
        board = ProgressBoard(run.path, run.plan, arms, progress) if progress else None
        while True:
            done, _ = ray.wait([ref], timeout=POLL_S)
            if board:
                board.poll()
            if done:
                break
        try:
            results = ray.get(ref)
            figures = (
                ray.get(coordinator.llm_figures.remote())
                if model is not None and model.uses_replicas
                else None
            )
            if figures is not None and figures.replicas:
                run.write_bytes(
                    LLM_FIGURES, msgspec.json.format(msgspec.json.encode(figures), indent=2)
                )
        except ray.exceptions.RayTaskError as e:
            cause = e.as_instanceof_cause()
            if isinstance(cause, RecoWorldError) or _REMOTE_ERROR.match(_last_line(str(e))):
                raise remote_error(str(e)) from None
            raise
        finally:
            ray.kill(coordinator, no_restart=True)
        return run.finish(results, summary_written=True)


_REMOTE_ERROR = re.compile(r"^recoworld\.errors\.(\w+): (.*)$")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def remote_error(text: str) -> RecoWorldError:
    """The RecoWorld error a Ray task's failure ``text`` ends with, as its own type where that
    type takes a message alone (else a RunError with the same message): a plug-in's contract
    error on Ray reads as it does in-process."""
    line = _last_line(text)
    m = _REMOTE_ERROR.match(line)
    if m is None:
        return RunError(line or "a Ray task failed")
    name, message = m.group(1), m.group(2)
    # "shard N failed: recoworld.errors.X: ..." nests: keep the innermost error
    while (inner := _REMOTE_ERROR.match(message.split(" failed: ", 1)[-1])) is not None:
        name, message = inner.group(1), inner.group(2)
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, RecoWorldError):
        try:
            return cls(message)
        except TypeError:  # an error built from parts (DataError): its message is what counts
            pass
    return RunError(message)
