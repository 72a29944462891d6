"""A user shard: a contiguous, block-aligned range of the population, simulated in every arm.

:class:`UserShard` is the plain class that a process pool runs locally and that
``actors.UserShardActor`` hosts on Ray. Running a shard is idempotent, so a shard that dies
half-way is simply run again:

1. its files are written under ``_tmp/shard-<i>-<attempt>/`` (never where readers look);
2. when every file is closed they are moved into place (``<table>/arm=<arm>/part-<i>.parquet``,
   the same names on every attempt, so a move repeated after a crash replaces, never adds);
3. last, ``_shards/shard-<i>.done`` is written atomically: its :class:`ShardResult` carries the
   shard's event count, summary aggregates and every file it wrote with its rows and SHA-256
   (checked when the run finishes, and when ``--resume`` keeps the shard). A shard whose
   marker exists is not run again (``--resume``, or a retried call after the shard finished).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
from threadpoolctl import threadpool_limits

from recoworld.config import brings_own_recommender, uses_llm
from recoworld.errors import LLMError, RunError
from recoworld.io.integrity import check_digests, digests
from recoworld.io.records import (
    EVENTS_SCHEMA,
    LLM_CALLS_SCHEMA,
    SESSIONS_SCHEMA,
    USER_METRICS_SCHEMA,
    RecordEncoder,
)
from recoworld.io.runs import Parts, PartWriter, RunDirectory
from recoworld.llm.base import LanguageModel
from recoworld.llm.factory import endpoint_name
from recoworld.llm.wrappers import CallLog, FailureBudget, RecordingModel
from recoworld.recommenders.base import DENSE_SHOWN_ITEMS
from recoworld.records import Observer, Record, SessionRecord, TurnRecord, UserMetrics
from recoworld.study.aggregate import BLOCK_USERS, BlockMoments, metric_values
from recoworld.study.llm_loop import simulate_arm_llm
from recoworld.study.prepare import Prepared
from recoworld.study.simulate import simulate_arm
from recoworld.users.words import instruction_dictionary

MARKERS = "_shards"
SCRATCH = "_tmp"


class ShardSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Population rows ``[start, stop)`` form shard ``index``."""

    index: int
    start: int
    stop: int
    replicate: int = 0
    """The replicate whose population rows ``[start, stop)`` are."""


class ShardFile(msgspec.Struct, frozen=True, kw_only=True):
    """A part file a shard wrote."""

    path: str
    """Relative to the run folder (``<table>/arm=<arm>/part-<i>.parquet``)."""
    rows: int
    sha256: str


class ShardResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a finished shard reports: its events, its summary aggregates (``BlockMoments``
    bytes) and its files (empty in markers written before files were recorded)."""

    spec: ShardSpec
    events: int
    seconds: float
    moments: bytes
    files: tuple[ShardFile, ...] = ()


def plan_shards(n_users: int, shards: int) -> list[ShardSpec]:
    """Split ``n_users`` into at most ``shards`` contiguous ranges of whole aggregate blocks:
    a pure function of the population size and the shard count."""
    if n_users <= 0:
        return []
    blocks = -(-n_users // BLOCK_USERS)
    cuts = np.array_split(np.arange(blocks), max(1, min(shards, blocks)))
    return [
        ShardSpec(
            index=i,
            start=int(c[0]) * BLOCK_USERS,
            stop=min(n_users, (int(c[-1]) + 1) * BLOCK_USERS),
        )
        for i, c in enumerate(cuts)
    ]


def plan_replicates(sizes: list[int], shards: int) -> list[ShardSpec]:
    """:func:`plan_shards` for each replicate's population (of ``sizes``), the shards shared
    out in proportion; shard indices run on across replicates."""
    total = max(sum(sizes), 1)
    out: list[ShardSpec] = []
    for r, n in enumerate(sizes):
        for s in plan_shards(n, max(1, round(shards * n / total))):
            out.append(ShardSpec(index=len(out), start=s.start, stop=s.stop, replicate=r))
    return out


def marker_path(folder: Path, index: int) -> Path:
    return Path(folder) / MARKERS / f"shard-{index:05d}.done"


def write_marker(folder: Path, result: ShardResult) -> None:
    """Write shard ``result``'s marker atomically (the last step of a shard)."""
    marker = marker_path(folder, result.spec.index)
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(msgspec.msgpack.encode(result))
    os.replace(tmp, marker)


def check_marker_files(folder: Path, result: ShardResult) -> None:
    """A one-line RunError naming the first file of a finished shard that is missing or has
    changed since the shard finished (``--resume`` keeps only intact shards)."""
    i = result.spec.index
    check_digests(
        folder,
        {f.path: f.sha256 for f in result.files},
        since=f"shard {i} finished",
        hint="run the study again without --resume",
    )


def read_marker(folder: Path, spec: ShardSpec) -> ShardResult | None:
    """The result of a finished shard, or None. A marker for a different range is an error."""
    path = marker_path(folder, spec.index)
    if not path.is_file():
        return None
    try:
        result = msgspec.msgpack.decode(path.read_bytes(), type=ShardResult)
    except msgspec.DecodeError as e:
        raise RunError(
            f"{path}: not a shard marker ({e}); run the study again without --resume"
        ) from None
    if result.spec != spec:
        raise RunError(
            f"{path}: shard {spec.index} covered users {result.spec.start}..{result.spec.stop}; "
            f"this run plans {spec.start}..{spec.stop}"
        )
    return result


def segment_names(preps: tuple[Prepared, ...]) -> list[str]:
    """The sorted segment names of every replicate's population."""
    return sorted(set().union(*(p.segment_names() for p in preps)))


def segment_codes(prep: Prepared, names: list[str]) -> np.ndarray:
    """Each of ``prep``'s population users' code into ``names``."""
    return prep.segment_codes_in(names, np.arange(prep.size))


class UserShard:
    """Simulates shards of one run into its folder (see the module docstring for the protocol)."""

    def __init__(
        self, preps: tuple[Prepared, ...], folder: str | Path, model: object | None = None
    ) -> None:
        """``preps``: the study's replicates; ``model``: the LanguageModel of a study with a
        language brain or agentic recommender (an in-process engine, an HTTP client, a replay,
        or the Ray router to replica actors)."""
        self.preps, self.folder, self.model = preps, Path(folder), model
        self.segment_names = segment_names(preps)

    def run(
        self, spec: ShardSpec, progress: Callable[[str, int], None] | None = None
    ) -> ShardResult:
        """Write shard ``spec`` (nothing if its marker exists). ``progress(arm, users)`` hears
        users finish as the shard goes (see :class:`UsersDone`); the marker is written after."""
        done = read_marker(self.folder, spec)
        if done is not None:
            return done
        t0 = time.perf_counter()
        scratch = self.folder / SCRATCH / f"shard-{spec.index:05d}-{uuid.uuid4().hex[:8]}"
        users = np.arange(spec.start, spec.stop)
        prep = self.preps[spec.replicate]
        parts = Parts(scratch)
        try:
            # One math-library thread: a study scales by shards (processes), each one core;
            # BLAS or OpenMP threads of their own would only fight over the same cores.
            with threadpool_limits(limits=1):
                events, metrics = simulate_to(
                    parts, prep, part=spec.index, users=users, model=self.model, progress=progress
                )  # type: ignore[arg-type]
        finally:
            parts.close()
        values = [metric_values(m.as_dict()) for m in metrics]
        codes = prep.segment_codes_in(self.segment_names, users)
        moments = BlockMoments.of(users, codes, len(self.segment_names), values)
        rows = parts.written()
        hashes = digests(scratch, sorted(rows))  # of the bytes written, before they move
        for name in sorted(rows):
            dest = self.folder / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(scratch / name, dest)
        result = ShardResult(
            spec=spec,
            events=events,
            seconds=round(time.perf_counter() - t0, 3),
            moments=moments.to_bytes(),
            files=tuple(ShardFile(path=n, rows=rows[n], sha256=hashes[n]) for n in sorted(rows)),
        )
        write_marker(self.folder, result)
        shutil.rmtree(scratch, ignore_errors=True)
        return result


def batch_size_for(n_items: int) -> int:
    """Users simulated together: bounded so per-batch (users x items) arrays stay ~30M cells."""
    return int(max(512, min(16384, 30_000_000 // max(n_items, 1))))


FULL_BATCH = 16384
"""Users simulated together where nothing per user grows with the catalogue."""


def catalogue_free(n_items: int, external: bool) -> bool:
    """Whether a batch's memory does not grow with the catalogue: the built-in recommenders
    keep no (users x items) array above ``DENSE_SHOWN_ITEMS`` items (a list of what each user
    was shown; the catalogue scanned block by block), unless an arm brings its own recommender
    (``external``: its contract check keeps such a matrix). Such batches are
    :data:`FULL_BATCH` users, else :func:`batch_size_for`."""
    return not external and n_items > DENSE_SHOWN_ITEMS


def simulate_to(
    parts: Parts | RunDirectory,
    prep: Prepared,
    *,
    part: int = 0,
    users: np.ndarray | None = None,
    model: LanguageModel | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> tuple[int, list[UserMetrics]]:
    """Simulate ``users`` (default: everyone) in every arm, writing part ``part`` of each table
    into ``parts``. Returns the events written and, per arm, the users' totals (in ``users``
    order). Studies with a language brain or an agentic recommender need ``model``: their users
    run as coroutines on one event loop per arm, every call recorded in ``llm_calls``.
    ``progress(arm, users)``: users finished, as they finish (:class:`UsersDone`)."""
    cfg = prep.cfg
    users = np.arange(prep.size) if users is None else users
    llm = uses_llm(cfg)
    if llm and model is None:
        raise LLMError(
            f"study {cfg.name!r} needs a language model (brain {cfg.brain.kind!r}, "
            f"recommender {cfg.recommender.kind!r}); none was opened"
        )
    cat = prep.catalog
    rows, codec = cfg.output.row_group_rows, cfg.output.compression
    free = catalogue_free(cat.n_items, brings_own_recommender(cfg))
    step = FULL_BATCH if free else batch_size_for(cat.n_items)
    n_events = 0
    totals: list[UserMetrics] = []
    # The encoder sees only these users (rows 0.. of ``users``): nothing per population user
    # is held, but the segments' dictionary stays the population's.
    local = np.arange(users.size)
    names = prep.segment_names()
    seg_codes = prep.segment_codes_in(names, users)
    for a, arm in enumerate(cfg.arms):
        # is_creator_item marks the items this arm treats (a placebo arm's: the placebo items)
        enc = RecordEncoder.build(
            local,
            prep.uids(users),
            np.asarray(names, dtype=object)[seg_codes],
            replicate=prep.replicate,
            item_ids=cat.item_ids,
            creators=cat.creators,
            tags=cat.tags,
            creator_mask=prep.arm_items[a],
            instruction_words=instruction_dictionary(cat.tags),
            mindset=cfg.output.mindset,
        )
        enc = replace(
            enc,
            segment_codes=seg_codes.astype(np.int32),
            segment_names=pa.array(names, pa.string()),
        )
        ev = parts.writer("events", EVENTS_SCHEMA, arm.name, part, rows, codec)
        ss = parts.writer("sessions", SESSIONS_SCHEMA, arm.name, part, rows, codec)
        um = parts.writer("user_metrics", USER_METRICS_SCHEMA, arm.name, part, rows, codec)
        if llm:
            lc = parts.writer("llm_calls", LLM_CALLS_SCHEMA, arm.name, part, rows, codec)
            budget = FailureBudget(cfg.llm.max_failure_rate, endpoint_name(cfg.llm))  # type: ignore[union-attr]
            log = CallLog(
                sink=lambda t, lc=lc: [lc.write(b) for b in t.to_batches()], budget=budget
            )
            recorded = RecordingModel(model, log)  # type: ignore[arg-type]
            done = UsersDone(progress, arm.name, cfg.simulation.sessions)
            loop = simulate_arm_llm(
                prep, a, users, done.watch(_observer(enc, ev, ss)), recorded, log
            )
            metrics = asyncio.run(loop)
            done.upto(users.size)
            log.flush()
            budget.check()
            um.write(enc.user_metrics(metrics))
            lc.close()
        else:
            batches: list[UserMetrics] = []
            done = UsersDone(progress, arm.name, cfg.simulation.sessions)
            for start in range(0, users.size, step):
                e = enc.with_users(local[start : start + step])
                batch = users[start : start + step]
                batches.append(simulate_arm(prep, a, batch, done.watch(_observer(e, ev, ss))))
                um.write(e.user_metrics(batches[-1]))
                done.upto(start + e.users.size)
            metrics = UserMetrics.concat(batches)
        for w in (ev, ss, um):
            w.close()
        n_events += ev.rows_written
        totals.append(metrics)
    return n_events, totals


class UsersDone:
    """Progress as an observer of one arm's records: ``progress(arm, users)`` as users finish
    (a session record of users who do not come back, or of the last session), and
    :meth:`upto` at the end of a batch reports any not heard of yet, so that the calls add up
    to exactly the users simulated."""

    def __init__(
        self, progress: Callable[[str, int], None] | None, arm: str, sessions: int
    ) -> None:
        self.progress, self.arm, self.last, self.told = progress, arm, sessions - 1, 0

    def watch(self, observe: Observer) -> Observer:
        """``observe``, and progress after each session record (``observe`` itself if none)."""
        if self.progress is None:
            return observe

        def seen(rec: Record) -> None:
            observe(rec)
            if isinstance(rec, SessionRecord):
                n = rec.rows.size if rec.session >= self.last else int((~rec.returned).sum())
                if n:
                    self.told += n
                    self.progress(self.arm, n)  # type: ignore[misc]

        return seen

    def upto(self, users: int) -> None:
        """The arm's first ``users`` users have finished."""
        if self.progress is not None and users > self.told:
            self.progress(self.arm, users - self.told)
            self.told = users


def _observer(enc: RecordEncoder, events: PartWriter, sessions: PartWriter) -> Observer:
    """The loops' observer: turn records to ``events``, session records to ``sessions``."""

    def observe(rec: Record) -> None:
        match rec:
            case TurnRecord():
                events.write(enc.events(rec))
            case SessionRecord():
                sessions.write(enc.sessions(rec))

    return observe
