"""The run lifecycle, one API for every executor (the local process pool, the Ray driver and its
coordinator):

1. **open**: the run folder (fresh, or the interrupted one for ``--resume``), its shard plan,
   the study, the fit report and the users table;
2. **shards**: each shard writes itself (:class:`recoworld.study.shard.UserShard`) and leaves a
   marker; :func:`finished_shards` reads the markers back (what ``--resume`` skips);
3. **summary**: the shards' aggregates merged per replicate and pooled over the replicates
   into ``summary.parquet``;
4. **finish**: only once every shard of the plan is there (:func:`check_complete`), the
   manifest with every file's SHA-256, written last, and the run made visible atomically;
   **abort**: on any failure, open writers are closed and unfinished scratch dropped.

Opening takes the run id's lock (:class:`recoworld.io.lock.RunLock`) before anything is
written; finish and abort release it. ``with Run.open(...) as run:`` aborts the run when the
block raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pyarrow as pa

from recoworld import __version__
from recoworld.config import (
    StudyConfig,
    brings_own_recommender,
    decode_study_json,
    encode_study,
    results_difference,
    uses_llm,
)
from recoworld.errors import RunError
from recoworld.io.runs import RunDirectory, parquet_rows, part_name
from recoworld.io.schema import SUMMARY, USERS
from recoworld.io.tables import read_table, write_frame, write_tables
from recoworld.llm.wrappers import call_totals
from recoworld.study.aggregate import BlockMoments, merge_blocks, summary_from_replicates
from recoworld.study.prepare import STREAM_BLOCK, Prepared
from recoworld.study.shard import (
    ShardResult,
    ShardSpec,
    check_marker_files,
    marker_path,
    plan_replicates,
    read_marker,
    segment_names,
)
from recoworld.users.persona import liked_tag_lists

Progress = Callable[[str, int], None]
"""Called with (arm name, users just finished)."""


@dataclass(frozen=True)
class RunResult:
    path: Path
    summary: pl.DataFrame
    events: int
    seconds: float


def users_table(preps: tuple[Prepared, ...]) -> pa.Table:
    """One row per population user of every replicate: who it is (persona traits, segment,
    source user, the tags it likes)."""
    return pa.concat_tables(users_blocks(preps))


def users_blocks(preps: tuple[Prepared, ...]) -> Iterator[pa.Table]:
    """:func:`users_table` block by block (``STREAM_BLOCK`` users at a time: a streamed
    population is drawn once more, never held whole)."""
    for prep in preps:
        for start in range(0, max(prep.size, 1), STREAM_BLOCK):  # an empty one: its schema
            yield _users_of(prep, np.arange(start, min(prep.size, start + STREAM_BLOCK)))


def _users_of(prep: Prepared, users: np.ndarray) -> pa.Table:
    p = prep.personas(users)
    names = prep.segment_names()
    segments = np.asarray(names, dtype=object)[prep.segment_codes_in(names, users)]
    liked = liked_tag_lists(p, prep.catalog)  # exactly the tags its persona says it likes
    return pa.table(
        {
            "user": p.uid,
            "replicate": np.full(len(p), prep.replicate, np.int16),
            "segment": segments.tolist(),
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
    ).cast(USERS)


def finished_shards(folder: Path, plan: list[ShardSpec]) -> dict[int, ShardResult]:
    """The results of the shards of ``plan`` whose markers exist, by shard index."""
    return {s.index: r for s in plan if (r := read_marker(folder, s)) is not None}


def check_complete(
    folder: Path, plan: list[ShardSpec], arms: list[str], tables: list[str], n_users: int
) -> list[ShardResult]:
    """The shards' results, once every shard of ``plan`` has its marker and, for every arm and
    table, its part file, holding the rows the shard wrote; the events add up to the marker's
    count, the user metrics to the shard's users, ``users.parquet`` to ``n_users``. Else a
    one-line RunError naming the first missing or short file."""
    folder = Path(folder)
    out = []
    for spec in plan:
        r = read_marker(folder, spec)
        if r is None:
            raise RunError(
                f"{marker_path(folder, spec.index)}: missing; shard {spec.index} (users "
                f"{spec.start}..{spec.stop}) did not finish, so the run stays partial"
            )
        wrote = {f.path: f.rows for f in r.files}
        events = 0
        for table in tables:
            for arm in arms:
                name = part_name(table, arm, spec.index)
                path = folder / name
                if not path.is_file():
                    raise RunError(
                        f"{path}: missing; shard {spec.index} finished without it, "
                        "so the run stays partial"
                    )
                rows = parquet_rows(path)
                if name in wrote and rows != wrote[name]:
                    raise RunError(
                        f"{path}: {rows} rows; shard {spec.index} wrote {wrote[name]}, "
                        "so the run stays partial"
                    )
                users = spec.stop - spec.start
                if table == "user_metrics" and rows != users:
                    raise RunError(
                        f"{path}: {rows} users; shard {spec.index} covers {users} "
                        f"(users {spec.start}..{spec.stop}), so the run stays partial"
                    )
                events += rows if table == "events" else 0
        if "events" in tables and events != r.events:
            raise RunError(
                f"{folder / 'events'}: shard {spec.index}'s parts hold {events} events; its "
                f"marker counts {r.events}, so the run stays partial"
            )
        out.append(r)
    rows = parquet_rows(folder / "users.parquet")
    if rows != n_users:
        raise RunError(
            f"{folder / 'users.parquet'}: {rows} users; the population has {n_users}, "
            "so the run stays partial"
        )
    return out


def run_tables(cfg: StudyConfig) -> list[str]:
    """The part tables every shard writes for every arm."""
    return ["events", "sessions", "user_metrics", *(["llm_calls"] if uses_llm(cfg) else [])]


def write_summary(
    folder: Path, preps: tuple[Prepared, ...], results: list[ShardResult]
) -> pl.DataFrame:
    """Merge each replicate's shard aggregates (in block order), pool the replicates
    (:mod:`recoworld.study.pooling`) into ``summary.parquet``, and return it."""
    by_replicate = [
        merge_blocks([BlockMoments.from_bytes(r.moments) for r in results if r.spec.replicate == k])
        for k in range(len(preps))
    ]
    cfg = preps[0].cfg
    summary = summary_from_replicates(
        by_replicate, [a.name for a in cfg.arms], segment_names(preps)
    )
    write_frame(Path(folder) / "summary.parquet", summary, SUMMARY, "summary")
    return summary


def fallback_summary(folder: Path) -> dict[str, dict[str, int]]:
    """Per arm: slates shown and slates the declared fallback served instead of a
    bring-your-own recommender (``user_metrics.fallback_slates``)."""
    files = sorted((Path(folder) / "user_metrics").glob("arm=*/*.parquet"))
    out: dict[str, dict[str, int]] = {}
    for f in files:
        t = read_table(f, "user_metrics").select(["turns", "fallback_slates"])
        arm = f.parent.name.removeprefix("arm=")
        got = out.setdefault(arm, {"slates": 0, "fallback": 0})
        got["slates"] += int(np.asarray(t["turns"]).sum())
        got["fallback"] += int(np.asarray(t["fallback_slates"]).sum())
    return out


def llm_summary(folder: Path) -> dict:
    """:func:`~recoworld.llm.wrappers.call_totals` of a run's ``llm_calls``."""
    files = sorted((Path(folder) / "llm_calls").glob("arm=*/*.parquet"))
    if not files:
        return {"calls": 0}
    return call_totals(pl.from_arrow(pa.concat_tables(read_table(f, "llm_calls") for f in files)))


class Run:
    """One run being written (see the module docstring). Build it with :meth:`open`."""

    def __init__(self, directory: RunDirectory, preps: tuple[Prepared, ...], t0: float) -> None:
        self.dir, self.preps, self.t0 = directory, preps, t0

    @property
    def users(self) -> int:
        """Users per arm, over every replicate."""
        return sum(p.size for p in self.preps)

    @classmethod
    def open(
        cls,
        preps: tuple[Prepared, ...] | Prepared,
        root: Path,
        run_id: str,
        *,
        shards: int,
        overwrite: bool = False,
        resume: bool = False,
        t0: float | None = None,
    ) -> Run:
        """Open ``<root>/<run_id>`` for the study of ``preps`` (its replicates; one Prepared:
        one replicate), planned in ``shards`` shards (a resumed run keeps its plan, and must be
        the same study but for [ray] and [output])."""
        preps = (preps,) if isinstance(preps, Prepared) else tuple(preps)
        prep = preps[0]
        cfg = prep.cfg
        t0 = time.perf_counter() if t0 is None else t0
        study = encode_study(cfg)
        d = RunDirectory(root, run_id, overwrite=overwrite, resume=resume)  # takes the lock
        try:
            if resume and d.resumed:
                check_same_study(d.path, cfg)
                plan = (d.path / "plan.json").read_bytes()
                d.plan = msgspec.json.decode(plan, type=list[ShardSpec])
                for r in finished_shards(d.path, d.plan).values():
                    check_marker_files(d.path, r)  # keep only intact shards
                return cls(d, preps, t0)
            d.plan = plan_replicates([p.size for p in preps], shards)
            d.write_bytes("plan.json", msgspec.json.encode(d.plan))
            d.write_bytes("study.json", study)
            d.write_json("fit.json", msgspec.to_builtins(prep.report))
            write_tables(d.path / "users.parquet", users_blocks(preps), "users")
        except BaseException:
            d.abort()  # releases the lock
            raise
        return cls(d, preps, t0)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type | None, *_: object) -> None:
        if kind is not None:
            self.abort()

    @property
    def path(self) -> Path:
        """The folder shards write into (the partial folder until :meth:`finish`)."""
        return self.dir.path

    @property
    def plan(self) -> list[ShardSpec]:
        return self.dir.plan

    def finished(self) -> dict[int, ShardResult]:
        """Shards already written (a resumed run's), by index."""
        return finished_shards(self.path, self.plan)

    def finish(self, results: list[ShardResult], *, summary_written: bool = False) -> RunResult:
        """Check that every shard of the plan is complete (:func:`check_complete`), write the
        summary (unless a coordinator did) and the manifest, and make the run visible."""
        prep, cfg = self.preps[0], self.preps[0].cfg
        on_disk = check_complete(
            self.path, self.plan, [a.name for a in cfg.arms], run_tables(cfg), self.users
        )
        if summary_written:
            summary = pl.from_arrow(read_table(self.path / "summary.parquet", "summary"))
        else:
            summary = write_summary(self.path, self.preps, results)
        n_events = sum(r.events for r in results)
        seconds = time.perf_counter() - self.t0
        manifest = {
            "study": cfg.name,
            "world": prep.world_name,
            "users_per_arm": self.users,
            "replicates": len(self.preps),
            "arms": [a.name for a in cfg.arms],
            "events": n_events,
            "shards": len(results),
            "shard_seconds": [r.seconds for r in results],
            "seconds": round(seconds, 3),
            "recoworld_version": __version__,
            **({"llm": llm_summary(self.path)} if uses_llm(cfg) else {}),
            **({"fallback": fallback_summary(self.path)} if brings_own_recommender(cfg) else {}),
            "created_unix": int(time.time()),
        }
        known = {f.path: f.sha256 for r in on_disk for f in r.files}
        path = self.dir.finalize(manifest, known=known)
        return RunResult(  # type: ignore[arg-type]
            path=path, summary=summary, events=n_events, seconds=seconds
        )

    def write_bytes(self, name: str, data: bytes) -> None:
        self.dir.write_bytes(name, data)

    def abort(self) -> None:
        """Stop after a failure (finished shards stay for ``--resume``)."""
        self.dir.abort()


def check_same_study(folder: Path, cfg: StudyConfig) -> None:
    """A RunError unless the run in ``folder`` was run with ``cfg`` (but for [ray] and
    [output]): what ``--resume`` may continue, or publish."""
    kept = folder / "study.json"
    if not kept.is_file():
        raise RunError(f"{folder}: --resume needs the interrupted run's study.json; it is missing")
    old = decode_study_json(kept.read_bytes(), source=str(kept))
    diff = results_difference(old, cfg)
    if diff is not None:
        raise RunError(
            f"{folder}: --resume needs the same study as the interrupted run; its study.json "
            f"differs (only [ray] and [output] may change): {diff}"
        )
