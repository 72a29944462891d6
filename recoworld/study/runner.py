"""Run a study in one process: prepare, simulate every arm over batches of users, write Parquet.

Observers (the Parquet writers, progress) receive the core loop's records; they do not live in
the loop.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from recoworld import __version__
from recoworld.config import StudyConfig, encode_study
from recoworld.io.records import EVENTS_SCHEMA, SESSIONS_SCHEMA, USER_METRICS_SCHEMA, RecordEncoder
from recoworld.io.runs import COMPRESSION, Parts, RunDirectory, writer_options
from recoworld.io.schema import SUMMARY, with_metadata
from recoworld.study.prepare import Prepared, prepare
from recoworld.study.simulate import SessionRecord, TurnRecord, simulate_arm
from recoworld.study.stats import summarise
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
    liked = [[tags[j] for j, w in zip(row, wrow) if w > 0] for row, wrow in zip(top.tolist(), np.take_along_axis(p.taste, top, 1).tolist())]
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


def simulate_to(run: RunDirectory | Parts, prep: Prepared, *, part: int = 0, users: np.ndarray | None = None, progress: Progress | None = None) -> int:
    """Simulate ``users`` (default: everyone) in every arm, writing into ``run``. Returns events."""
    cfg = prep.cfg
    users = np.arange(len(prep.population)) if users is None else users
    step = batch_size_for(prep.catalog.n_items)
    enc = RecordEncoder.build(users, prep.segments, prep.catalog, prep.creator_mask)
    rows = cfg.output.row_group_rows
    n_events = 0
    for a, arm in enumerate(cfg.arms):
        ev = run.writer("events", EVENTS_SCHEMA, arm.name, part, rows)
        ss = run.writer("sessions", SESSIONS_SCHEMA, arm.name, part, rows)
        um = run.writer("user_metrics", USER_METRICS_SCHEMA, arm.name, part, rows)
        for start in range(0, users.size, step):
            batch = users[start : start + step]
            e = enc.with_users(batch)

            def observe(rec: TurnRecord | SessionRecord, e: RecordEncoder = e) -> None:
                match rec:
                    case TurnRecord():
                        ev.write(e.events(rec))
                    case SessionRecord():
                        ss.write(e.sessions(rec))

            metrics = simulate_arm(prep, a, batch, observe)
            um.write(e.user_metrics(metrics, prep.segments))
            if progress:
                progress(arm.name, batch.size)
        for w in (ev, ss, um):
            w.close()
        n_events += ev.rows_written
    return n_events


def shard_users(n_users: int, shards: int) -> list[np.ndarray]:
    """Contiguous user ranges: a pure function of population size and shard count."""
    return [a for a in np.array_split(np.arange(n_users), max(1, min(shards, n_users))) if a.size]


_FORKED: dict[str, object] = {}  # the Prepared a forked worker inherits (set only around a pool)


def _shard_task(folder: str, part: int, users: np.ndarray) -> int:
    prep = _FORKED["prep"]
    parts = Parts(Path(folder))
    try:
        return simulate_to(parts, prep, part=part, users=users)  # type: ignore[arg-type]
    finally:
        parts.close()


def simulate_parallel(run: RunDirectory, prep: Prepared, workers: int, progress: Progress | None = None) -> int:
    """Simulate in ``workers`` forked processes, each writing its own part files. Same events
    as one process (users are independent); ``workers <= 1`` runs in this process."""
    n = len(prep.population)
    step = batch_size_for(prep.catalog.n_items)
    tasks = max(workers, -(-n // step))
    if workers <= 1 or n < 2 * 2048 or "fork" not in mp.get_all_start_methods():
        return simulate_to(run, prep, progress=progress)
    _FORKED["prep"] = prep
    try:
        ctx = mp.get_context("fork")  # the workers inherit `prep` without pickling it
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(_shard_task, str(run.path), part, users): users for part, users in enumerate(shard_users(n, tasks))}
            total = 0
            for fut in as_completed(futures):
                total += fut.result()
                if progress:
                    for arm in prep.cfg.arms:
                        progress(arm.name, futures[fut].size)
            return total
    finally:
        _FORKED.clear()


def write_summary(run_dir: Path, arms: list[str]) -> pl.DataFrame:
    """Summarise the run's user_metrics into summary.parquet (and return it)."""
    um = pl.read_parquet(run_dir / "user_metrics" / "arm=*" / "*.parquet", hive_partitioning=True)
    summary = summarise(um, arms)
    table = summary.to_arrow().cast(with_metadata(SUMMARY, "summary"))
    pq.write_table(table, run_dir / "summary.parquet", **writer_options(table.schema))
    return summary


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
) -> RunResult:
    """Run ``cfg`` on ``world`` into ``<out_dir or cfg.output.dir>/<run_id>/``.
    ``on_ready`` hears the population size once it is drawn."""
    t0 = time.perf_counter()
    prep = prepare(cfg, world)
    if on_ready:
        on_ready(len(prep.population))
    run = RunDirectory(Path(out_dir or cfg.output.dir), run_id, overwrite=overwrite)
    try:
        run.write_bytes("study.json", encode_study(cfg))
        run.write_json("fit.json", msgspec.to_builtins(prep.report))
        pq.write_table(users_table(prep), run.path / "users.parquet", compression=COMPRESSION)
        n_events = simulate_parallel(run, prep, workers, progress=progress)
        summary = write_summary(run.path, [a.name for a in cfg.arms])
        seconds = time.perf_counter() - t0
        path = run.finalize(
            {
                "study": cfg.name,
                "world": prep.world_name,
                "users_per_arm": len(prep.population),
                "arms": [a.name for a in cfg.arms],
                "events": n_events,
                "seconds": round(seconds, 3),
                "recoworld_version": __version__,
                "created_unix": int(time.time()),
            }
        )
    except BaseException:
        run.abort()
        raise
    return RunResult(path=path, summary=summary, events=n_events, seconds=seconds)
