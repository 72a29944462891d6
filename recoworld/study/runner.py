"""The local executor: run a study in this process, or in forked worker processes, through the
run lifecycle (:mod:`recoworld.study.lifecycle`): open the run, write every shard of its plan
(:class:`recoworld.study.shard.UserShard`), finish.

Observers (the Parquet writers, progress) receive the core loop's records; they do not live in
the loop.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from recoworld.config import StudyConfig, brings_own_recommender, uses_llm
from recoworld.llm.base import LanguageModel
from recoworld.llm.factory import open_model
from recoworld.recommenders.baselines import MFSource
from recoworld.recommenders.retrieval import item_index, uses_index
from recoworld.study.lifecycle import Progress, Run, RunResult
from recoworld.study.prepare import STREAM_USERS, Prepared, prepare_all
from recoworld.study.progress import ProgressBoard, ProgressFile
from recoworld.study.shard import (
    FULL_BATCH,
    ShardResult,
    ShardSpec,
    UserShard,
    batch_size_for,
    catalogue_free,
)
from recoworld.world.model import World

__all__ = ["Progress", "RunResult", "local_shard_count", "run_shards", "run_study"]

_FORKED: dict[str, UserShard] = {}  # the UserShard a forked worker inherits (set around a pool)

POLL_S = 0.25
"""How often the parent of forked workers reads their progress files."""


def _shard_task(spec: ShardSpec, report: bool) -> ShardResult:
    shard = _FORKED["shard"]
    return shard.run(spec, ProgressFile(shard.folder, spec.index) if report else None)


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Worker initializer: the worker is killed when its parent dies (SIGKILL included), so
    no orphan goes on writing into the run's folder. Linux: ``PR_SET_PDEATHSIG`` (sent when
    the thread that forked the worker exits; the pool forks from the thread that submits, the
    one running the study); elsewhere a thread polls the parent's pid."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def run_shards(
    run: Run,
    workers: int,
    progress: Progress | None = None,
    model: LanguageModel | None = None,
) -> list[ShardResult]:
    """Write every shard of the run's plan in ``workers`` forked processes (``<= 1``: this
    process). Shards already finished (``--resume``) are not run again. Studies with a language
    model run in this process (the engine is not forked).

    ``progress(arm, users)`` hears users finish as they do: in this process straight from the
    shard (after each batch, or each user of a language-model study); from forked workers
    through their progress files, polled every ``POLL_S`` (:mod:`recoworld.study.progress`).
    Shards finished earlier are told first, whole."""
    shard = UserShard(run.preps, run.path, model)
    arms = run.preps[0].cfg.arms
    if model is not None:
        workers = 1
    plan = run.plan
    results = run.finished()
    todo = [s for s in plan if s.index not in results]

    if progress:
        for s in plan:
            if s.index in results:
                for arm in arms:
                    progress(arm.name, s.stop - s.start)
    if workers <= 1 or len(todo) < 2 or "fork" not in mp.get_all_start_methods():
        for spec in todo:
            results[spec.index] = shard.run(spec, progress)
        return [results[s.index] for s in plan]
    _FORKED["shard"] = shard
    share_indexes(run.preps)
    try:
        ctx = mp.get_context("fork")  # the workers inherit the replicates without pickling them
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=_die_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            board = (
                ProgressBoard(run.path, todo, [a.name for a in arms], progress)
                if progress
                else None
            )
            futures = {pool.submit(_shard_task, spec, board is not None): spec for spec in todo}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                for fut in finished:
                    results[futures[fut].index] = fut.result()
                if board:
                    board.poll()
    finally:
        _FORKED.clear()
    return [results[s.index] for s in plan]


def share_indexes(preps: tuple[Prepared, ...]) -> None:
    """Build each replicate's candidate-retrieval index (if its study searches one) before
    workers fork: they inherit one build instead of each making its own."""
    for prep in preps:
        cfg = prep.cfg
        recs = [arm.recommender or cfg.recommender for arm in cfg.arms]
        mf = any(r.kind == "mf" or (r.kind == "agentic" and r.base == "mf") for r in recs)
        if mf and any(uses_index(r.retrieval, prep.catalog.n_items) for r in recs):
            item_index(prep.catalog, MFSource().pw)


def local_shard_count(n_users: int, n_items: int, workers: int, external: bool = True) -> int:
    """Shards for a local run: enough for every worker, each at most one simulation batch
    (``external``: as :func:`~recoworld.study.shard.catalogue_free`)."""
    batch = FULL_BATCH if catalogue_free(n_items, external) else batch_size_for(n_items)
    return max(workers, -(-n_users // batch))


def run_study(
    cfg: StudyConfig,
    world: World,
    *,
    run_id: str,
    out_dir: Path | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    on_ready: Callable[[int], None] | None = None,
    workers: int = 1,
    resume: bool = False,
    model: LanguageModel | None = None,
) -> RunResult:
    """Run ``cfg`` on ``world`` into ``<out_dir or cfg.output.dir>/<run_id>/``, in ``workers``
    processes. ``resume`` continues an interrupted run of the same id without redoing its
    finished shards. ``on_ready`` hears the population size once it is drawn. A study with a
    language brain or agentic recommender uses ``model``, else opens the one its [llm] names
    (and closes it at the end)."""
    t0 = time.perf_counter()
    preps = prepare_all(cfg, world, stream_above=STREAM_USERS)
    n = sum(p.size for p in preps)
    if on_ready:
        on_ready(n)
    llm = uses_llm(cfg)
    own = brings_own_recommender(cfg)
    shards = 1 if llm else local_shard_count(n, preps[0].catalog.n_items, workers, own)
    root = Path(out_dir or cfg.output.dir)
    opened = None
    try:
        with Run.open(
            preps, root, run_id, shards=shards, overwrite=overwrite, resume=resume, t0=t0
        ) as run:
            if llm and model is None:
                model = opened = open_model(cfg.llm, seed=cfg.seed)  # type: ignore[arg-type]
            return run.finish(run_shards(run, workers, progress=progress, model=model))
    finally:
        if opened is not None:
            asyncio.run(opened.close())
