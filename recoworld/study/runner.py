"""Run a study in one process: prepare, simulate every arm over batches of users, write Parquet.

Observers (the Parquet writers, progress) receive the core loop's records; they do not live in
the loop.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from recoworld import __version__
from recoworld.config import StudyConfig, encode_study, uses_llm
from recoworld.errors import LLMError, RunError
from recoworld.io.records import (
    EVENTS_SCHEMA,
    LLM_CALLS_SCHEMA,
    SESSIONS_SCHEMA,
    USER_METRICS_SCHEMA,
    RecordEncoder,
)
from recoworld.io.runs import Parts, RunDirectory
from recoworld.io.schema import METADATA_KEY, SCHEMA_VERSION, SUMMARY, TABLE_KEY, with_metadata
from recoworld.io.tables import COMPRESSION, writer_options
from recoworld.llm.base import LanguageModel
from recoworld.study.aggregate import BlockMoments, merge_blocks, summary_from_moments
from recoworld.study.prepare import Prepared, prepare
from recoworld.study.shard import (
    ShardResult,
    ShardSpec,
    UserShard,
    plan_shards,
    read_marker,
    segment_codes,
)
from recoworld.study.simulate import SessionRecord, TurnRecord, UserMetrics, simulate_arm
from recoworld.world.model import World

Progress = Callable[[str, int], None]
"""Called with (arm name, users just finished)."""


@dataclass(frozen=True)
class RunResult:
    path: Path
    summary: pl.DataFrame
    events: int
    seconds: float


def batch_size_for(n_items: int) -> int:
    """Users simulated together: bounded so per-batch (users x items) arrays stay ~30M cells."""
    return int(max(512, min(16384, 30_000_000 // max(n_items, 1))))


def users_table(prep: Prepared) -> pa.Table:
    p, tags = prep.population, prep.catalog.tags
    top = np.argsort(-p.taste, axis=1, kind="stable")[:, :3]
    liked = [
        [tags[j] for j, w in zip(row, wrow) if w > 0]
        for row, wrow in zip(top.tolist(), np.take_along_axis(p.taste, top, 1).tolist())
    ]
    return pa.table(
        {
            "user": p.uid,
            "segment": prep.segments.astype(str).tolist(),
            "source_user": p.source_user.tolist(),
            "age": p.age,
            "gender": p.gender.tolist(),
            "occupation": p.occupation.tolist(),
            "activity": p.activity,
            "conformity": p.conformity,
            "diversity": p.diversity,
            "patience": p.patience,
            "liked_tags": pa.array(liked, pa.list_(pa.string())),
        }
    )


def simulate_to(
    run: RunDirectory | Parts,
    prep: Prepared,
    *,
    part: int = 0,
    users: np.ndarray | None = None,
    progress: Progress | None = None,
    model: LanguageModel | None = None,
) -> tuple[int, list[UserMetrics]]:
    """Simulate ``users`` (default: everyone) in every arm, writing into ``run``.
    Returns the events written and, per arm, the users' totals (in ``users`` order).
    Studies with a language brain or an agentic recommender need ``model``."""
    cfg = prep.cfg
    users = np.arange(len(prep.population)) if users is None else users
    if uses_llm(cfg):
        if model is None:
            raise LLMError(
                f"study {cfg.name!r} needs a language model (brain {cfg.brain.kind!r}); none was opened"
            )
        return _simulate_to_llm(run, prep, part, users, progress, model)
    step = batch_size_for(prep.catalog.n_items)
    enc = RecordEncoder.build(users, prep.segments, prep.catalog, prep.creator_mask)
    rows = cfg.output.row_group_rows
    n_events = 0
    totals: list[UserMetrics] = []
    for a, arm in enumerate(cfg.arms):
        ev, ss, um = _arm_writers(run, arm.name, part, rows)
        batches: list[UserMetrics] = []
        for start in range(0, users.size, step):
            batch = users[start : start + step]
            e = enc.with_users(batch)
            metrics = simulate_arm(prep, a, batch, _observer(e, ev, ss))
            um.write(e.user_metrics(metrics, prep.segments))
            batches.append(metrics)
            if progress:
                progress(arm.name, batch.size)
        for w in (ev, ss, um):
            w.close()
        n_events += ev.rows_written
        totals.append(UserMetrics.concat(batches))
    return n_events, totals


def _arm_writers(run: RunDirectory | Parts, arm: str, part: int, rows: int) -> tuple:
    """The events, sessions and user_metrics writers of one arm's part."""
    return (
        run.writer("events", EVENTS_SCHEMA, arm, part, rows),
        run.writer("sessions", SESSIONS_SCHEMA, arm, part, rows),
        run.writer("user_metrics", USER_METRICS_SCHEMA, arm, part, rows),
    )


def _observer(enc: RecordEncoder, ev, ss):  # noqa: ANN001, ANN202 - PartWriters -> Observer
    """The core loop's observer: turn records to ``ev``, session records to ``ss``."""

    def observe(rec: TurnRecord | SessionRecord) -> None:
        match rec:
            case TurnRecord():
                ev.write(enc.events(rec))
            case SessionRecord():
                ss.write(enc.sessions(rec))

    return observe


def _simulate_to_llm(
    run: RunDirectory | Parts,
    prep: Prepared,
    part: int,
    users: np.ndarray,
    progress: Progress | None,
    model: LanguageModel,
) -> tuple[int, list[UserMetrics]]:
    """The LLM path: per arm one event loop, every user a coroutine; every call recorded."""
    from recoworld.llm.wrappers import CallLog, RecordingModel
    from recoworld.study.llm_loop import simulate_arm_llm

    cfg = prep.cfg
    enc = RecordEncoder.build(users, prep.segments, prep.catalog, prep.creator_mask)
    rows = cfg.output.row_group_rows
    n_events = 0
    totals: list[UserMetrics] = []
    for a, arm in enumerate(cfg.arms):
        ev, ss, um = _arm_writers(run, arm.name, part, rows)
        lc = run.writer("llm_calls", LLM_CALLS_SCHEMA, arm.name, part, rows)
        log = CallLog(sink=lambda t, lc=lc: [lc.write(b) for b in t.to_batches()])
        metrics = asyncio.run(
            simulate_arm_llm(
                prep, a, users, _observer(enc, ev, ss), RecordingModel(model, log), log
            )
        )
        log.flush()
        um.write(enc.user_metrics(metrics, prep.segments))
        for w in (ev, ss, um, lc):
            w.close()
        if progress:
            progress(arm.name, users.size)
        n_events += ev.rows_written
        totals.append(metrics)
    return n_events, totals


_FORKED: dict[str, object] = {}  # the UserShard a forked worker inherits (set only around a pool)


def _shard_task(spec: ShardSpec) -> ShardResult:
    return _FORKED["shard"].run(spec)  # type: ignore[attr-defined]


def run_shards(
    run: RunDirectory,
    prep: Prepared,
    workers: int,
    progress: Progress | None = None,
    model: LanguageModel | None = None,
) -> list[ShardResult]:
    """Simulate every shard of the run's plan in ``workers`` forked processes (``<= 1``: this
    process). Shards already finished (``--resume``) are not run again. Studies with a language
    model run in this process (the engine is not forked)."""
    shard = UserShard(prep, run.path, model)
    if model is not None:
        workers = 1
    plan = run.plan
    results = {s.index: r for s in plan if (r := read_marker(run.path, s)) is not None}
    todo = [s for s in plan if s.index not in results]
    if progress:
        for s in plan:
            if s.index in results:
                for arm in prep.cfg.arms:
                    progress(arm.name, s.stop - s.start)
    if workers <= 1 or len(todo) < 2 or "fork" not in mp.get_all_start_methods():
        for spec in todo:
            results[spec.index] = shard.run(spec)
            if progress:
                for arm in prep.cfg.arms:
                    progress(arm.name, spec.stop - spec.start)
        return [results[s.index] for s in plan]
    _FORKED["shard"] = shard
    try:
        ctx = mp.get_context("fork")  # the workers inherit `prep` without pickling it
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(_shard_task, spec): spec for spec in todo}
            for fut in as_completed(futures):
                spec = futures[fut]
                results[spec.index] = fut.result()
                if progress:
                    for arm in prep.cfg.arms:
                        progress(arm.name, spec.stop - spec.start)
    finally:
        _FORKED.clear()
    return [results[s.index] for s in plan]


def local_shard_count(n_users: int, n_items: int, workers: int) -> int:
    """Shards for a local run: enough for every worker, each at most one simulation batch."""
    return max(workers, -(-n_users // batch_size_for(n_items)))


def write_summary(run_dir: Path, prep: Prepared, results: list[ShardResult]) -> pl.DataFrame:
    """Merge the shards' aggregates (in block order) into summary.parquet, and return it."""
    n, mean, m2 = merge_blocks([BlockMoments.from_bytes(r.moments) for r in results])
    names, _ = segment_codes(prep)
    summary = summary_from_moments(n, mean, m2, [a.name for a in prep.cfg.arms], names)
    table = summary.to_arrow().cast(with_metadata(SUMMARY, "summary"))
    pq.write_table(table, Path(run_dir) / "summary.parquet", **writer_options(table.schema))
    return summary


def start_run(
    cfg: StudyConfig,
    prep: Prepared,
    root: Path,
    run_id: str,
    *,
    shards: int,
    overwrite: bool = False,
    resume: bool = False,
) -> RunDirectory:
    """Open the run folder (fresh, or the interrupted one when ``resume``) with its shard plan,
    study, fit and users written."""
    study = encode_study(cfg)
    run = RunDirectory(root, run_id, overwrite=overwrite, resume=resume)
    if resume and run.resumed:
        kept = (
            (run.path / "study.json").read_bytes() if (run.path / "study.json").is_file() else b""
        )
        if _results_part(kept) != _results_part(study):
            raise RunError(
                f"{run.path}: --resume needs the same study as the interrupted run; its study.json differs (only [ray] and [output] may change)"
            )
        run.plan = [
            ShardSpec(**s) for s in msgspec.json.decode((run.path / "plan.json").read_bytes())
        ]
        return run
    run.plan = plan_shards(len(prep.population), shards)
    run.write_bytes("plan.json", msgspec.json.encode(run.plan))
    run.write_bytes("study.json", study)
    run.write_json("fit.json", msgspec.to_builtins(prep.report))
    users = users_table(prep)
    users = users.replace_schema_metadata(
        {METADATA_KEY: str(SCHEMA_VERSION).encode(), TABLE_KEY: b"users"}
    )
    pq.write_table(users, run.path / "users.parquet", compression=COMPRESSION)
    return run


def llm_summary(run_dir: Path) -> dict:
    """:func:`~recoworld.llm.wrappers.call_totals` of a run's ``llm_calls``."""
    from recoworld.llm.wrappers import call_totals

    files = sorted((Path(run_dir) / "llm_calls").glob("arm=*/*.parquet"))
    return call_totals(pl.read_parquet(files)) if files else {"calls": 0}


def _results_part(study_json: bytes) -> object:
    """The parts of a study that decide its results (not where or how it runs)."""
    if not study_json:
        return None
    d = msgspec.json.decode(study_json)
    return {k: v for k, v in d.items() if k not in ("ray", "output")}


def finish_run(
    run: RunDirectory,
    prep: Prepared,
    results: list[ShardResult],
    t0: float,
    *,
    summary_written: bool = False,
) -> RunResult:
    """Write the summary (unless a coordinator did) and the manifest, and make the run visible."""
    if summary_written:
        summary = pl.read_parquet(run.path / "summary.parquet")
    else:
        summary = write_summary(run.path, prep, results)
    n_events = sum(r.events for r in results)
    seconds = time.perf_counter() - t0
    cfg = prep.cfg
    path = run.finalize(
        {
            "study": cfg.name,
            "world": prep.world_name,
            "users_per_arm": len(prep.population),
            "arms": [a.name for a in cfg.arms],
            "events": n_events,
            "shards": len(results),
            "shard_seconds": [r.seconds for r in results],
            "seconds": round(seconds, 3),
            "recoworld_version": __version__,
            **({"llm": llm_summary(run.path)} if uses_llm(cfg) else {}),
            "created_unix": int(time.time()),
        }
    )
    return RunResult(path=path, summary=summary, events=n_events, seconds=seconds)


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
    prep = prepare(cfg, world)
    if on_ready:
        on_ready(len(prep.population))
    llm = uses_llm(cfg)
    shards = 1 if llm else local_shard_count(len(prep.population), prep.catalog.n_items, workers)
    run = start_run(
        cfg,
        prep,
        Path(out_dir or cfg.output.dir),
        run_id,
        shards=shards,
        overwrite=overwrite,
        resume=resume,
    )
    opened = None
    try:
        if llm and model is None:
            from recoworld.llm.factory import open_model

            model = opened = open_model(cfg.llm, seed=cfg.seed)  # type: ignore[arg-type]
        results = run_shards(run, prep, workers, progress=progress, model=model)
        result = finish_run(run, prep, results, t0)
    except BaseException:
        run.abort()
        raise
    finally:
        if opened is not None:
            asyncio.run(opened.close())
    return result
