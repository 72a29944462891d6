"""Bulk-synchronous rounds: the executors of a social study (docs/social.md).

A social study's users hear each other, so its shards cannot run one after another: they run
in lockstep, one round (one day) at a time, and exchange what their users said through the
coordinator between rounds:

1. every host steps its shards through round ``d`` with the deliveries addressed to their
   users (:meth:`SocialHost.step`; each shard applies them in canonical order);
2. the coordinator gathers the deliveries the round made and routes each to the host of its
   receiver (:func:`route`), counting what crosses hosts and shards;
3. after the last round every host finishes its shards: the per-user tables, the shard's
   files moved into place and its marker (the run lifecycle's protocol,
   ``recoworld.study.shard``), and the moments of the diffusion metrics.

A *host* is a plain :class:`SocialHost` holding some of the run's planned shards: in this
process (:class:`LocalHosts`), in forked worker processes that speak typed messages over
pipes (:class:`ForkedHosts`), or in Ray actors (``actors/social_shard.py``). The events are
the same for every choice, and for any number of hosts and shards (tests/test_social.py,
tests/test_social_ray.py).

A social run resumes by replicates (waves, :func:`waves`): the replicates whose shards all
finished are kept, the others run again whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing as mp
import os
import shutil
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import msgspec
import numpy as np
import polars as pl
import pyarrow as pa
from threadpoolctl import threadpool_limits

from recoworld.config import StudyConfig, uses_llm
from recoworld.errors import LLMError, RunError
from recoworld.io.integrity import digests
from recoworld.io.records import (
    EVENTS_SCHEMA,
    LLM_CALLS_SCHEMA,
    SESSIONS_SCHEMA,
    USER_METRICS_SCHEMA,
    RecordEncoder,
)
from recoworld.io.runs import Parts
from recoworld.io.schema import CASCADES, FRIENDS, SUMMARY
from recoworld.io.tables import write_frame, write_table, write_tables
from recoworld.llm.base import LanguageModel
from recoworld.llm.factory import endpoint_name, open_model
from recoworld.llm.wrappers import CallLog, FailureBudget, RecordingModel
from recoworld.recommenders.guard import fallback_counts
from recoworld.records import Record, SessionRecord, TurnRecord
from recoworld.social.diffusion import (
    CASCADE_METRICS,
    DIFFUSION_SCHEMA,
    USER_METRICS,
    cascade_moments,
    cascades,
    pooled_rows,
)
from recoworld.social.fidelity import co_consumption
from recoworld.social.graph import cross_edges
from recoworld.social.records import SEARCHES_SCHEMA, SOCIAL_SCHEMA
from recoworld.social.search import ItemSearch
from recoworld.social.talk import Deliveries, canonical
from recoworld.study.aggregate import (
    BlockMoments,
    merge_blocks,
    metric_values,
    summary_from_replicates,
)
from recoworld.study.lifecycle import Progress, Run, RunResult
from recoworld.study.shard import (
    SCRATCH,
    ShardFile,
    ShardResult,
    ShardSpec,
    marker_path,
    segment_codes,
    segment_names,
    write_marker,
)
from recoworld.study.social_loop import Inbox, SocialArm, SocialWorld, prepare_social
from recoworld.users.llm_social import SocialVoice
from recoworld.users.words import instruction_dictionary
from recoworld.world.model import World

SOCIAL_FIGURES = "social.json"
"""Written into a social run: each replicate's graph, the round choices, messages, searches,
and what the rounds cost (cross-host and cross-shard deliveries, round overhead)."""


class StepDone(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A host's answer to a round: what its users said, and the seconds it computed."""

    outbox: list[Deliveries]
    seconds: float


class HostDone(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A host's shards, finished: their results (markers written) and diffusion moments."""

    results: list[ShardResult]
    diffusion: list[bytes]
    """``BlockMoments`` bytes of the diffusion metrics, one per shard of ``results``."""
    counts: dict[str, int]


class _ShardArms:
    """One planned shard inside a host: its writers and one :class:`SocialArm` per arm (with a
    language brain: each arm's call log, written into ``llm_calls`` every round)."""

    def __init__(
        self,
        worlds: tuple[SocialWorld, ...],
        folder: Path,
        spec: ShardSpec,
        search,  # noqa: ANN001
        model: LanguageModel | None = None,
    ) -> None:
        self.spec, self.world = spec, worlds[spec.replicate]
        prep = self.world.prep
        cfg, cat = prep.cfg, prep.catalog
        self.users = np.arange(spec.start, spec.stop)
        self.scratch = folder / SCRATCH / f"shard-{spec.index:05d}-{uuid.uuid4().hex[:8]}"
        self.parts = Parts(self.scratch)
        self.t0 = time.perf_counter()
        names = segment_names(tuple(w.prep for w in worlds))
        self.names, self.codes = names, segment_codes(prep, names)
        rows = cfg.output.row_group_rows
        self.arms: list[SocialArm] = []
        self.writers: list[dict] = []
        self.logs: list[CallLog] = []
        llm = uses_llm(cfg)
        if llm and model is None:
            raise LLMError(
                f"study {cfg.name!r} needs a language model (brain {cfg.brain.kind!r}); "
                "none was opened"
            )
        for a, arm in enumerate(cfg.arms):
            enc = RecordEncoder.build(
                self.users,
                prep.population.uid,
                prep.segments,
                replicate=prep.replicate,
                item_ids=cat.item_ids,
                creators=cat.creators,
                tags=cat.tags,
                creator_mask=prep.arm_items[a],
                instruction_words=instruction_dictionary(cat.tags),
            )
            w = {
                "enc": enc,
                **{
                    t: self.parts.writer(t, schema, arm.name, spec.index, rows)
                    for t, schema in (
                        ("events", EVENTS_SCHEMA),
                        ("sessions", SESSIONS_SCHEMA),
                        ("user_metrics", USER_METRICS_SCHEMA),
                        ("social", SOCIAL_SCHEMA),
                        ("searches", SEARCHES_SCHEMA),
                        ("diffusion", DIFFUSION_SCHEMA),
                    )
                },
            }
            self.writers.append(w)
            voice = None
            if llm:
                lc = self.parts.writer("llm_calls", LLM_CALLS_SCHEMA, arm.name, spec.index, rows)
                budget = FailureBudget(cfg.llm.max_failure_rate, endpoint_name(cfg.llm))  # type: ignore[union-attr]
                log = CallLog(
                    sink=lambda t, lc=lc: [lc.write(b) for b in t.to_batches()], budget=budget
                )
                self.logs.append(log)
                voice = functools.partial(
                    SocialVoice,
                    RecordingModel(model, log),  # type: ignore[arg-type]
                    log,
                    cfg.llm,
                    cat,
                    arm=arm.name,
                    seed=cfg.seed,
                )
            self.arms.append(
                SocialArm(
                    self.world,
                    a,
                    self.users,
                    observe=_observer(enc, w["events"], w["sessions"]),
                    social=w["social"].write,
                    searches=w["searches"].write,
                    search=search,
                    voice=voice,
                )
            )

    def flush_calls(self) -> None:
        """The round's language-model calls into ``llm_calls`` (memory stays bounded)."""
        for log in self.logs:
            log.flush()

    def finish(self, folder: Path) -> tuple[ShardResult, bytes, dict[str, int]]:
        prep = self.world.prep
        values, spread, counts = [], [], {}
        for log in self.logs:
            log.flush()
            log.budget.check()  # type: ignore[union-attr]
        for arm, w in zip(self.arms, self.writers):
            m = arm.ledger.metrics
            m.fallback_slates[:] = fallback_counts(arm.rec, self.users.size)
            w["user_metrics"].write(w["enc"].user_metrics(m))
            w["diffusion"].write(
                arm.diffusion.table(
                    arm.uid, prep.population.uid, prep.replicate, prep.catalog.item_ids
                )
            )
            values.append(metric_values(m.as_dict()))
            spread.append(arm.diffusion.user_values())
            for k, v in arm.counts.items():
                counts[k] = counts.get(k, 0) + v
            if arm.voice is not None:
                counts["llm_questions"] = counts.get("llm_questions", 0) + arm.voice.asked
                counts["llm_fallbacks"] = counts.get("llm_fallbacks", 0) + arm.voice.fallbacks
        self.parts.close()
        codes, n_seg = self.codes[self.users], len(self.names)
        moments = BlockMoments.of(self.users, codes, n_seg, values)
        diffusion = BlockMoments.of(self.users, codes, n_seg, spread)
        rows = self.parts.written()
        hashes = digests(self.scratch, sorted(rows))
        for name in sorted(rows):
            dest = folder / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.scratch / name, dest)
        result = ShardResult(
            spec=self.spec,
            events=sum(w["events"].rows_written for w in self.writers),
            seconds=round(time.perf_counter() - self.t0, 3),
            moments=moments.to_bytes(),
            files=tuple(ShardFile(path=n, rows=rows[n], sha256=hashes[n]) for n in sorted(rows)),
        )
        social = ShardSocial(diffusion=diffusion.to_bytes(), counts=counts)
        write_shard_social(folder, self.spec.index, social)  # before the marker: it is last
        write_marker(folder, result)
        shutil.rmtree(self.scratch, ignore_errors=True)
        return result, social.diffusion, counts


class ShardSocial(msgspec.Struct, frozen=True, kw_only=True):
    """What a finished shard of a social run keeps beside its marker for ``--resume``: the
    moments of its diffusion metrics and its round-choice counts."""

    diffusion: bytes
    counts: dict[str, int]


def _shard_social_path(folder: Path, index: int) -> Path:
    return marker_path(folder, index).with_suffix(".social")


def write_shard_social(folder: Path, index: int, social: ShardSocial) -> None:
    path = _shard_social_path(folder, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(msgspec.msgpack.encode(social))
    os.replace(tmp, path)


def resumed(folder: Path, plan: list[ShardSpec], finished: dict[int, ShardResult]) -> HostDone:
    """The finished replicates of an interrupted social run (every shard of the replicate has
    its marker) as one host's answer; a replicate finished in part runs again whole (its
    shards talk to each other every round)."""
    reps = {s.replicate for s in plan}
    whole = {r for r in reps if all(s.index in finished for s in plan if s.replicate == r)}
    results, diffusion, counts = [], [], {}
    for spec in plan:
        if spec.replicate not in whole:
            continue
        path = _shard_social_path(folder, spec.index)
        if not path.is_file():
            raise RunError(
                f"{path}: missing; shard {spec.index} finished without it: run the "
                "study again without --resume"
            )
        social = msgspec.msgpack.decode(path.read_bytes(), type=ShardSocial)
        results.append(finished[spec.index])
        diffusion.append(social.diffusion)
        for k, v in social.counts.items():
            counts[k] = counts.get(k, 0) + v
    return HostDone(results=results, diffusion=diffusion, counts=counts)


def waves(plan: list[ShardSpec], skip: set[int], hosts: int) -> list[list[ShardSpec]]:
    """The replicates not in ``skip``, in order, gathered into waves that each hold at least
    ``hosts`` shards (or what is left): a wave's replicates run their rounds together and
    finish together, so an interrupted run resumes from its last finished wave."""
    out: list[list[ShardSpec]] = []
    wave: list[ShardSpec] = []
    for r in sorted({s.replicate for s in plan} - skip):
        wave += [s for s in plan if s.replicate == r]
        if len(wave) >= hosts:
            out.append(wave)
            wave = []
    if wave:
        out.append(wave)
    return out


def _observer(enc: RecordEncoder, events, sessions):  # noqa: ANN001, ANN202
    def observe(rec: Record) -> None:
        match rec:
            case TurnRecord():
                events.write(enc.events(rec))
            case SessionRecord():
                sessions.write(enc.sessions(rec))

    return observe


class SocialHost:
    """Planned shards ``specs`` of one social run, stepped together round by round (a plain
    class: what a forked worker or a Ray actor hosts)."""

    def __init__(
        self,
        worlds: tuple[SocialWorld, ...],
        folder: str | Path,
        specs: Sequence[ShardSpec],
        model: LanguageModel | None = None,
    ) -> None:
        """``model``: a language brain's study's model (awaitable from any event loop)."""
        self.folder = Path(folder)
        cfg = worlds[0].prep.cfg
        searches = {}
        if cfg.search.enabled:  # one engine per replicate's catalog, for this host's shards
            for r in sorted({s.replicate for s in specs}):
                searches[r] = ItemSearch(worlds[r].prep.catalog, cfg.search.engine)
        self.shards = [
            _ShardArms(worlds, self.folder, s, searches.get(s.replicate), model) for s in specs
        ]

    def step(self, day: int, inbox: Sequence[Deliveries]) -> StepDone:
        """Round ``day`` for every shard and arm, with the deliveries to their users."""
        t0 = time.perf_counter()
        by_key: dict[tuple[int, int], list[Deliveries]] = {}
        for d in inbox:
            by_key.setdefault((d.replicate, d.arm), []).append(d)
        out: list[Deliveries] = []
        # one math-library thread, as a UserShard: hosts scale by processes, one core each
        with threadpool_limits(limits=1):
            for sh in self.shards:
                r, uid = sh.spec.replicate, sh.world.prep.population.uid
                for a, arm in enumerate(sh.arms):
                    mine = _slice(by_key.get((r, a), []), sh.spec.start, sh.spec.stop, uid)
                    recv, send, item, kind, words = arm.round(day, mine)
                    if recv.size:
                        out.append(Deliveries.of(r, a, recv, send, item, kind, words))
                sh.flush_calls()
        return StepDone(outbox=out, seconds=time.perf_counter() - t0)

    def finish(self) -> HostDone:
        results, diffusion, counts = [], [], {}
        for sh in self.shards:
            res, dm, c = sh.finish(self.folder)
            results.append(res)
            diffusion.append(dm)
            for k, v in c.items():
                counts[k] = counts.get(k, 0) + v
        return HostDone(results=results, diffusion=diffusion, counts=counts)


def _slice(parts: list[Deliveries], start: int, stop: int, uid: np.ndarray) -> Inbox:
    """The deliveries to receivers in [start, stop), in canonical order (senders by id:
    ``uid`` of the replicate's population rows), with their words where they carry some."""
    if not parts:
        z = np.zeros(0, np.int64)
        return z, z, z, np.zeros(0, np.int8), None
    cols = [np.concatenate(c) for c in zip(*(p.arrays() for p in parts))]
    keep = (cols[0] >= start) & (cols[0] < stop)
    recv, send, item, kind = (c[keep] for c in cols)
    order = canonical(recv, uid[send], item, kind)
    words = None
    if any(p.text for p in parts):
        text = np.array([t for p in parts for t in (p.text or [""] * len(p))], object)
        words = text[keep][order].tolist()
    return recv[order], send[order], item[order], kind[order], words


# --- executors ---------------------------------------------------------------------------


class Hosts(Protocol):
    """Hosts of a social run's shards (module docstring): in-process, forked, Ray."""

    def step(self, day: int, inboxes: list[list[Deliveries]]) -> list[StepDone]:
        """Round ``day`` on every host (``inboxes[h]``: host h's deliveries)."""
        ...

    def finish(self) -> list[HostDone]: ...

    def close(self) -> None: ...


class LocalHosts:
    """Every host in this process, stepped one after another (``model``: a language brain's
    study's model, shared by the hosts)."""

    def __init__(
        self,
        worlds: tuple[SocialWorld, ...],
        folder: Path,
        groups: list[list[ShardSpec]],
        model: LanguageModel | None = None,
    ) -> None:
        self.hosts = [SocialHost(worlds, folder, g, model) for g in groups]

    def step(self, day: int, inboxes: list[list[Deliveries]]) -> list[StepDone]:
        return [h.step(day, box) for h, box in zip(self.hosts, inboxes)]

    def finish(self) -> list[HostDone]:
        return [h.finish() for h in self.hosts]

    def close(self) -> None:
        self.hosts = []


class _Step(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    day: int
    inbox: list[Deliveries]


class _Finish(msgspec.Struct, frozen=True, tag=True):
    pass


class _Failed(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    error: str
    trace: str


_Ask = _Step | _Finish
_FORKED: dict[str, object] = {}  # what a forked worker inherits (set around the fork)


def _serve(conn, specs: list[ShardSpec]) -> None:  # noqa: ANN001
    """A forked worker: a host that answers the coordinator's typed messages."""
    enc = msgspec.msgpack.Encoder()
    dec = msgspec.msgpack.Decoder(_Ask)
    try:
        host = SocialHost(_FORKED["worlds"], _FORKED["folder"], specs)  # type: ignore[arg-type]
        while True:
            ask = dec.decode(conn.recv_bytes())
            match ask:
                case _Step(day=day, inbox=inbox):
                    conn.send_bytes(enc.encode(host.step(day, inbox)))
                case _Finish():
                    conn.send_bytes(enc.encode(host.finish()))
                    return
    except BaseException as e:  # noqa: BLE001 - reported to the coordinator, which raises
        conn.send_bytes(
            enc.encode(_Failed(error=f"{type(e).__name__}: {e}", trace=traceback.format_exc()))
        )
    finally:
        conn.close()


class ForkedHosts:
    """One forked worker process per host; rounds go out and come back as msgpack messages
    over pipes (the replicates are inherited by the fork, never pickled)."""

    def __init__(
        self, worlds: tuple[SocialWorld, ...], folder: Path, groups: list[list[ShardSpec]]
    ) -> None:
        ctx = mp.get_context("fork")
        _FORKED.update(worlds=worlds, folder=folder)
        self.conns, self.procs = [], []
        try:
            for g in groups:
                parent, child = ctx.Pipe()
                p = ctx.Process(target=_serve, args=(child, g), daemon=True)
                p.start()
                child.close()
                self.conns.append(parent)
                self.procs.append(p)
        finally:
            _FORKED.clear()
        self.enc = msgspec.msgpack.Encoder()

    def _ask(self, asks: list[object], kind: type) -> list:
        for c, a in zip(self.conns, asks):
            c.send_bytes(self.enc.encode(a))
        dec = msgspec.msgpack.Decoder(kind | _Failed)
        out = []
        for h, c in enumerate(self.conns):
            try:
                got = dec.decode(c.recv_bytes())
            except EOFError:
                raise RunError(f"social host {h} (pid {self.procs[h].pid}) died") from None
            if isinstance(got, _Failed):
                raise RunError(f"social host {h} failed: {got.error}\n{got.trace}")
            out.append(got)
        return out

    def step(self, day: int, inboxes: list[list[Deliveries]]) -> list[StepDone]:
        return self._ask([_Step(day=day, inbox=b) for b in inboxes], StepDone)

    def finish(self) -> list[HostDone]:
        return self._ask([_Finish() for _ in self.conns], HostDone)

    def close(self) -> None:
        for c in self.conns:
            c.close()
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()


OpenHosts = Callable[[tuple[SocialWorld, ...], Path, list[list[ShardSpec]]], Hosts]


# --- the coordinator -----------------------------------------------------------------------


class RoundStats(msgspec.Struct, kw_only=True):
    """What the rounds cost (kept in ``social.json``; ``benchmarks/bench_social.py``)."""

    hosts: int
    """The most hosts a wave of replicates ran on."""
    shards: int
    resumed_shards: int = 0
    """Shards of replicates an interrupted run had finished (``--resume``): not run again."""
    waves: int = 0
    """Waves of replicates run one after another (``waves``), each through every day."""
    rounds: int = 0
    """Round steps taken: days x waves."""
    deliveries: int = 0
    cross_host: int = 0
    """Deliveries whose receiver lives on another host than its sender (they travel)."""
    cross_shard: int = 0
    """Deliveries whose receiver lives in another planned shard than its sender."""
    step_seconds: float = 0.0
    """Wall time of the rounds' steps, all hosts (transport and barrier included)."""
    compute_seconds: float = 0.0
    """Sum over rounds of the slowest host's own compute time."""
    route_seconds: float = 0.0
    """The coordinator's routing time."""
    finish_seconds: float = 0.0
    """Finishing: the hosts' per-user tables and markers, cascades, the diffusion summary and
    co-consumption (after the last round)."""

    @property
    def overhead_seconds(self) -> float:
        """What the rounds cost beyond the slowest host's work: transport, barrier, routing."""
        return max(self.step_seconds - self.compute_seconds, 0.0) + self.route_seconds


def route(
    outs: list[StepDone], plan: list[ShardSpec], host_of: np.ndarray, stats: RoundStats
) -> list[list[Deliveries]]:
    """Each delivery of ``outs`` to the host of its receiver's shard; counts the traffic."""
    inboxes: list[list[Deliveries]] = [[] for _ in range(len(outs))]
    by_rep: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # replicate: (shard starts, indices)
    for r in sorted({s.replicate for s in plan}):
        mine = sorted((s.start, s.index) for s in plan if s.replicate == r)
        by_rep[r] = (np.array([m[0] for m in mine]), np.array([m[1] for m in mine]))
    for src, out in enumerate(outs):
        for d in out.outbox:
            starts, index = by_rep[d.replicate]
            recv, send, item, kind = d.arrays()
            shard_r = index[np.searchsorted(starts, recv, side="right") - 1]
            shard_s = index[np.searchsorted(starts, send, side="right") - 1]
            dest = host_of[shard_r]
            stats.deliveries += recv.size
            stats.cross_shard += int((shard_r != shard_s).sum())
            stats.cross_host += int((dest != src).sum())
            text = np.array(d.text, object) if d.text else None
            for h in np.unique(dest):
                m = dest == h
                words = text[m].tolist() if text is not None else None
                inboxes[h].append(
                    Deliveries.of(d.replicate, d.arm, recv[m], send[m], item[m], kind[m], words)
                )
    return inboxes


def run_rounds(
    hosts: Hosts, plan: list[ShardSpec], host_of: np.ndarray, days: int, stats: RoundStats
) -> None:
    """The bulk-synchronous rounds (module docstring, steps 1-2)."""
    inboxes: list[list[Deliveries]] = [[] for _ in range(int(host_of.max(initial=0)) + 1)]
    for day in range(days):
        t0 = time.perf_counter()
        outs = hosts.step(day, inboxes)  # 1. every host steps its shards through the round
        t1 = time.perf_counter()
        inboxes = route(outs, plan, host_of, stats)  # 2. what was said goes to the receivers
        stats.step_seconds += t1 - t0
        stats.compute_seconds += max(o.seconds for o in outs)
        stats.route_seconds += time.perf_counter() - t1
        stats.rounds += 1


def host_groups(plan: list[ShardSpec], hosts: int) -> tuple[list[list[ShardSpec]], np.ndarray]:
    """The plan cut into ``hosts`` contiguous groups (neighbouring shards hold neighbouring
    communities), and the host of each shard index."""
    cuts = np.array_split(np.arange(len(plan)), max(1, min(hosts, len(plan))))
    groups = [[plan[i] for i in c] for c in cuts if c.size]
    host_of = np.zeros(max((s.index for s in plan), default=-1) + 1, np.int64)
    for h, g in enumerate(groups):
        for s in g:
            host_of[s.index] = h
    return groups, host_of


def run_social_study(
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
    shards: int | None = None,
    open_hosts: OpenHosts | None = None,
    model: LanguageModel | None = None,
) -> RunResult:
    """Run a study with ``[social]`` on (the shape of ``recoworld.study.runner.run_study``).
    ``workers`` > 1: that many forked hosts; else one host in this process. ``shards``: the
    planned shards (default: one per host). ``open_hosts`` replaces the executor (Ray:
    ``actors.social_shard.ray_hosts``). A language brain's study uses ``model``, else opens
    the one its [llm] names (and closes it at the end); its hosts live in this process."""
    t0 = time.perf_counter()
    llm = uses_llm(cfg)
    if llm and (workers > 1 and open_hosts is None):
        raise RunError(
            f"Expected workers = 1 for a social study with a language brain (its hosts share "
            f"this process's model; use shards for several), got {workers} - at --workers"
        )
    worlds = prepare_social(cfg, world)
    preps = tuple(w.prep for w in worlds)
    n = sum(len(p.population) for p in preps)
    if on_ready:
        on_ready(n)
    n_hosts = max(1, workers)
    if open_hosts is None:
        open_hosts = ForkedHosts if n_hosts > 1 else LocalHosts
    root = Path(out_dir or cfg.output.dir).resolve()  # hosts elsewhere (Ray) write here too
    with contextlib.ExitStack() as stack:
        if llm:
            if model is None:  # opened here, closed at the end
                model = open_model(cfg.llm, seed=cfg.seed)  # type: ignore[arg-type]
                stack.callback(lambda m=model: asyncio.run(m.close()))
            open_hosts = functools.partial(open_hosts, model=model)  # type: ignore[call-arg]
        run = stack.enter_context(
            Run.open(
                preps,
                root,
                run_id,
                shards=max(n_hosts, shards or 1),
                overwrite=overwrite,
                resume=resume,
                t0=t0,
            )
        )
        before = resumed(run.path, run.plan, run.finished()) if resume else None
        done = [before] if before is not None else []
        skip = {r.spec.replicate for r in before.results} if before is not None else set()
        stats = RoundStats(
            hosts=0,
            shards=len(run.plan),
            resumed_shards=len(before.results) if before is not None else 0,
        )
        host_of = np.zeros(len(run.plan), np.int64)
        finishing = 0.0
        for wave in waves(run.plan, skip, n_hosts):  # replicates finish wave by wave
            groups, wave_host = host_groups(wave, n_hosts)
            at = np.array([s.index for s in wave])
            host_of[at] = wave_host[at]
            stats.hosts = max(stats.hosts, len(groups))
            stats.waves += 1
            hosts = open_hosts(worlds, run.path, groups)
            try:
                run_rounds(hosts, wave, wave_host, cfg.social.days, stats)  # type: ignore[arg-type]
                t_finish = time.perf_counter()
                done += hosts.finish()
                finishing += time.perf_counter() - t_finish
            finally:
                hosts.close()
        t_finish = time.perf_counter()
        results = sorted((r for d in done for r in d.results), key=lambda r: r.spec.index)
        write_friends(run.path, worlds)
        write_diffusion(run.path, worlds, done)
        counts: dict[str, int] = {}
        for d in done:
            for k, v in d.counts.items():
                counts[k] = counts.get(k, 0) + v
        fidelity = co_consumption_figures(run.path, worlds, world)
        stats.finish_seconds = finishing + time.perf_counter() - t_finish
        run.write_bytes(
            SOCIAL_FIGURES, _figures(worlds, run.plan, host_of, stats, counts, fidelity)
        )
        if progress:
            for arm in cfg.arms:
                progress(arm.name, n)
        return run.finish(results)


def write_friends(folder: Path, worlds: tuple[SocialWorld, ...]) -> None:
    """``social_friends.parquet``: every friendship once (the lower user id first), per
    replicate."""

    def blocks():  # noqa: ANN202
        for k, w in enumerate(worlds):
            uid, g = w.prep.population.uid, w.graph
            a = uid[np.repeat(np.arange(g.n), g.degree())]
            b = uid[g.friends]
            keep = a < b
            order = np.lexsort((b[keep], a[keep]))
            yield pa.table(
                {
                    "replicate": np.full(int(keep.sum()), k, np.int16),
                    "user": a[keep][order],
                    "friend": b[keep][order],
                }
            ).cast(FRIENDS)

    write_tables(Path(folder) / "social_friends.parquet", blocks(), "social_friends")


def write_diffusion(
    folder: Path, worlds: tuple[SocialWorld, ...], done: list[HostDone]
) -> pl.DataFrame:
    """``cascades.parquet`` and ``diffusion_summary.parquet`` (per-user diffusion metrics with
    the summary's intervals, then cascade figures pooled over replicates); returns the
    latter."""
    preps = tuple(w.prep for w in worlds)
    cfg = preps[0].cfg
    arms = [a.name for a in cfg.arms]
    pairs = [(r, m) for d in done for r, m in zip(d.results, d.diffusion)]
    by_rep = [
        merge_blocks([BlockMoments.from_bytes(m) for r, m in pairs if r.spec.replicate == k])
        for k in range(len(preps))
    ]
    per_user = summary_from_replicates(by_rep, arms, segment_names(preps), metrics=USER_METRICS)
    files = sorted((Path(folder) / "diffusion").glob("arm=*/*.parquet"))
    diffusion = (
        pl.scan_parquet(files, hive_partitioning=True).collect() if files else pl.DataFrame()
    )
    casc = cascades(diffusion) if diffusion.height else pl.from_arrow(CASCADES.empty_table())
    write_table(Path(folder) / "cascades.parquet", casc.to_arrow().cast(CASCADES), "cascades")  # type: ignore[union-attr]
    adopters = (
        diffusion.filter(pl.col("adopted_round").is_not_null())
        .group_by("arm", "replicate", "user")
        .agg(pl.col("adopted_round").min())
        .with_columns(pl.col("arm").cast(pl.String))
        if diffusion.height
        else pl.DataFrame(
            schema={"arm": pl.String, "replicate": pl.Int16, "adopted_round": pl.Int32}
        )
    )
    figures = {
        "cascade_size": cascade_moments(casc, "size", arms, len(preps)),  # type: ignore[arg-type]
        "cascade_depth": cascade_moments(casc, "depth", arms, len(preps)),  # type: ignore[arg-type]
        "adoption_round": cascade_moments(adopters, "adopted_round", arms, len(preps)),
    }
    assert tuple(figures) == CASCADE_METRICS
    pooled = pooled_rows(figures, arms)
    summary = pl.concat([per_user, pooled], how="diagonal_relaxed") if pooled.height else per_user
    write_frame(Path(folder) / "diffusion_summary.parquet", summary, SUMMARY, "diffusion_summary")
    return summary


def _index_of(values: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions in ``values`` of ``wanted``, which of ``wanted`` are there at all)."""
    if values.size == 0:
        return np.zeros(0, np.int64), np.zeros(wanted.size, bool)
    order = np.argsort(values, kind="stable")
    pos = np.clip(np.searchsorted(values[order], wanted), 0, values.size - 1)
    ok = values[order][pos] == wanted
    return order[pos[ok]], ok


def co_consumption_figures(
    folder: Path, worlds: tuple[SocialWorld, ...], world: World
) -> dict[str, object]:
    """Friend co-consumption (``recoworld.social.fidelity``) per replicate: of what each arm's
    users watched in the run, and, with the world's graph, of the real users' histories."""
    cfg = worlds[0].prep.cfg
    simulated: dict[str, list] = {}
    real: list = []
    files = sorted((Path(folder) / "events").glob("arm=*/*.parquet"))
    watched = (
        pl.scan_parquet(files, hive_partitioning=True)
        .filter(pl.col("watched"))
        .select(pl.col("arm").cast(pl.String), "user", pl.col("item_id").cast(pl.String))
        .unique()
        .collect()
    )
    for w in worlds:
        prep, cat = w.prep, w.prep.catalog
        ids = cat.item_ids.astype(str)
        for arm in cfg.arms:
            ev = watched.filter(pl.col("arm") == arm.name)
            u, ok_u = _index_of(prep.population.uid, ev["user"].to_numpy())
            i, ok_i = _index_of(ids, ev["item_id"].to_numpy().astype(str)[ok_u])
            cc = co_consumption(w.graph, u[ok_i], i, cat.n_items, seed=cfg.seed)
            simulated.setdefault(arm.name, []).append(msgspec.to_builtins(cc))
        if cfg.social.graph == "data":
            inter = world.interactions.select("user_id", "item_id").unique()
            src = prep.population.source_user.astype(str)
            u, ok_u = _index_of(src, inter["user_id"].to_numpy().astype(str))
            i, ok_i = _index_of(ids, inter["item_id"].to_numpy().astype(str)[ok_u])
            cc = co_consumption(w.graph, u[ok_i], i, cat.n_items, seed=cfg.seed)
            real.append(msgspec.to_builtins(cc))
    return {"simulated": simulated, "real": real}


def _figures(
    worlds: tuple[SocialWorld, ...],
    plan: list[ShardSpec],
    host_of: np.ndarray,
    stats: RoundStats,
    counts: dict[str, int],
    fidelity: dict[str, object],
) -> bytes:
    graphs = []
    for k, w in enumerate(worlds):
        specs = [s for s in plan if s.replicate == k]
        shard_of = np.zeros(w.graph.n, np.int64)
        for s in specs:
            shard_of[s.start : s.stop] = s.index
        graphs.append(
            {
                **msgspec.to_builtins(w.stats),
                "cross_shard_friendships": cross_edges(w.graph, shard_of),
                "cross_host_friendships": cross_edges(w.graph, host_of[shard_of]),
            }
        )
    body = {
        "graphs": graphs,
        "rounds": {**msgspec.to_builtins(stats), "overhead_seconds": stats.overhead_seconds},
        "choices": counts,
        "co_consumption": fidelity,
    }
    return msgspec.json.format(msgspec.json.encode(body), indent=2)


__all__ = [
    "ForkedHosts",
    "Hosts",
    "LocalHosts",
    "RoundStats",
    "SocialHost",
    "run_social_study",
]
