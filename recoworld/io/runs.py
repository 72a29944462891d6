"""Run directories: written under a temporary name, made visible by one atomic rename.

``<root>/<run_id>/`` only ever holds a complete run. While running, files go to
``<root>/.<run_id>.partial/``; an interrupted run leaves only that folder, which the next run
with the same id deletes before starting. Re-running a complete run id needs ``overwrite``,
which swaps the new run in only once it is complete, in one atomic exchange of the two folders
(``renameat2(RENAME_EXCHANGE)``): ``<run_id>`` shows the old run or the new one at every
instant. Where the file system cannot exchange (not Linux, some network file systems) the old
run is moved aside and the new one renamed in; a kill between the two leaves the new complete
run in the partial folder, put in place by the next run or reader of that id (:func:`recover`).

Only one process writes a run id at a time (:class:`recoworld.io.lock.RunLock`, taken before
anything is written). The manifest, written last, lists every file of the run with its SHA-256;
:func:`check_run_dir` with ``verify=True`` hashes them again.

A run for an object store (``--out s3://…``) is written here too, under a local staging root,
and then published by :mod:`recoworld.io.remote` (every file, then one commit object); its
readers read a verified copy downloaded into a local read cache with the functions below.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from recoworld.errors import RunError
from recoworld.io.integrity import check_digests, digests, files_under
from recoworld.io.lock import RunLock
from recoworld.io.schema import SCHEMA_VERSION, TABLES, version_problem
from recoworld.io.tables import COMPRESSION, check_file, writer_options

MANIFEST = "manifest.json"
FILES = "files"
"""The manifest's ``{relative path: sha256}`` of every other file of the run."""
SCRATCH = ("_tmp", "_shards")
"""Shard scratch space and completion markers: never part of a finished run."""


class PartWriter:
    """One Parquet file written in row groups of about ``row_group_rows`` rows.

    Row groups are encoded and written on a background thread (Arrow releases the GIL), so
    writing overlaps with simulation; at most one row group waits, which bounds memory.
    """

    def __init__(
        self, path: Path, schema: pa.Schema, row_group_rows: int, compression: str = COMPRESSION
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.schema, self.limit = path, schema, row_group_rows
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(
            path, schema, **writer_options(schema, compression)
        )
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet")
        self._inflight: Future | None = None
        self._pending: list[pa.RecordBatch] = []
        self._rows = 0
        self.rows_written = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._rows += batch.num_rows
        if self._rows >= self.limit:
            self.flush()

    def flush(self, *, final: bool = False) -> None:
        """Write whole row groups of ``row_group_rows``; the remainder waits for more rows
        (written at ``close``), so row groups are full but for the last."""
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        keep = 0 if final else table.num_rows % self.limit
        out = table.slice(0, table.num_rows - keep)
        self._pending = table.slice(table.num_rows - keep).to_batches() if keep else []
        self._rows = keep
        if out.num_rows:
            self._wait()
            self._inflight = self._pool.submit(
                self._writer.write_table, out, row_group_size=self.limit
            )
            self.rows_written += out.num_rows

    def _wait(self) -> None:
        if self._inflight is not None:
            self._inflight.result()  # re-raises a write error here, in the simulating thread
            self._inflight = None

    def close(self) -> None:
        if self._writer is not None:
            try:
                self.flush(final=True)
                self._wait()
            finally:
                self._pool.shutdown(wait=True)
                self._writer.close()
                self._writer = None


class Parts:
    """Part files of a run folder: ``<table>/arm=<arm>/part-<part>.parquet``. Each shard of a
    run (a process, later a Ray actor) writes its own parts into the same folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._writers: list[PartWriter] = []

    def writer(
        self,
        table: str,
        schema: pa.Schema,
        arm: str,
        part: int,
        row_group_rows: int,
        compression: str = COMPRESSION,
    ) -> PartWriter:
        """The writer of part ``part`` of ``table`` for ``arm`` (``compression``: a codec of
        :data:`~recoworld.io.tables.CODECS`)."""
        path = self.folder / part_name(table, arm, part)
        w = PartWriter(path, schema, row_group_rows, compression)
        self._writers.append(w)
        return w

    def close(self) -> None:
        for w in self._writers:
            w.close()

    def written(self) -> dict[str, int]:
        """``{part name: rows written}`` of every part (after :meth:`close`)."""
        return {w.path.relative_to(self.folder).as_posix(): w.rows_written for w in self._writers}


def part_name(table: str, arm: str, part: int) -> str:
    """Where part ``part`` of ``table`` for ``arm`` lives, relative to the run folder."""
    return f"{table}/arm={arm}/part-{part:05d}.parquet"


def parquet_rows(path: Path) -> int:
    """The rows of a Parquet file, from its footer; a RunError naming a file that is not one."""
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowException, OSError) as e:
        raise RunError(f"{path}: not a readable Parquet file ({e})") from None


class RunDirectory:
    """The folder of one run being written. Constructing it takes the run id's lock (before
    anything is written); :meth:`finalize` and :meth:`abort` release it."""

    def __init__(
        self, root: Path, run_id: str, *, overwrite: bool = False, resume: bool = False
    ) -> None:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise RunError(
                f"run id {run_id!r} is not usable as a folder name; "
                "expected letters, digits, '-', '_' or '.'"
            )
        self.root, self.run_id, self.overwrite = Path(root), run_id, overwrite
        self.final = self.root / run_id
        self.partial = self.root / f".{run_id}.partial"
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = RunLock.acquire(self.root, run_id)
        try:
            _recover_locked(self.root, run_id)
            if self.final.exists() and not overwrite:
                raise RunError(
                    f"{self.final} already holds a complete run; "
                    "pass --overwrite to replace it or choose another --run-id"
                )
            self.resumed = resume and interrupted(self.root, run_id)
            if resume and not self.resumed:
                raise RunError(
                    f"{self.partial}: no interrupted run {run_id!r} to resume "
                    "(expected its plan.json); run without --resume"
                )
            if self.partial.exists() and not self.resumed:
                shutil.rmtree(self.partial)  # an interrupted earlier attempt
            self.partial.mkdir(parents=True, exist_ok=True)
        except BaseException:
            self.lock.release()
            raise
        self.parts = Parts(self.partial)
        self.plan: list = []  # the run's shard plan (recoworld.study.shard.ShardSpec)

    @property
    def path(self) -> Path:
        return self.partial

    def writer(
        self,
        table: str,
        schema: pa.Schema,
        arm: str,
        part: int,
        row_group_rows: int,
        compression: str = COMPRESSION,
    ) -> PartWriter:
        return self.parts.writer(table, schema, arm, part, row_group_rows, compression)

    def write_json(self, name: str, data: object) -> None:
        (self.partial / name).write_text(
            json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
        )

    def write_bytes(self, name: str, data: bytes) -> None:
        (self.partial / name).write_bytes(data)

    def finalize(self, manifest: dict, *, known: dict[str, str] | None = None) -> Path:
        """Close writers, hash every file, write the manifest last, make the run visible
        atomically and release the lock. ``known``: digests taken earlier (the shards' markers)
        that the files must still have; a file that differs is a RunError and the run stays
        partial."""
        self.parts.close()
        for scratch in SCRATCH:
            shutil.rmtree(self.partial / scratch, ignore_errors=True)
        files = digests(self.partial, files_under(self.partial, exclude=[MANIFEST]))
        if known:
            changed = {n: d for n, d in known.items() if files.get(n) != d}
            if changed:  # name the file: check_digests says missing or changed, and where
                check_digests(self.partial, changed, since="its shard finished")
        self.write_json(
            MANIFEST,
            {**manifest, "run_id": self.run_id, "schema_version": SCHEMA_VERSION, FILES: files},
        )
        if self.final.exists() and not self.overwrite:
            raise RunError(
                f"{self.final} already holds a complete run; "
                "pass --overwrite to replace it or choose another --run-id"
            )
        if not self.final.exists():
            self.partial.rename(self.final)
        elif _exchange(self.partial, self.final):
            shutil.rmtree(self.partial)  # now the old run
        else:  # no atomic exchange here: a kill between the renames is undone by recover()
            old = self.root / f".{self.run_id}.old"
            shutil.rmtree(old, ignore_errors=True)
            self.final.rename(old)
            self.partial.rename(self.final)
            shutil.rmtree(old)
        self.lock.release()
        return self.final

    def abort(self) -> None:
        """Stop writing after a failure: close what is open, drop unfinished shards' scratch
        files and release the lock. Finished shards stay in the partial folder for
        ``--resume``; a fresh run of the same id removes them."""
        try:
            for w in self.parts._writers:
                try:
                    w.close()
                except Exception:  # noqa: BLE001 - best effort while failing anyway
                    pass
            shutil.rmtree(self.partial / "_tmp", ignore_errors=True)
        finally:
            self.lock.release()


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap the folders ``a`` and ``b`` in one atomic step (Linux ``renameat2``); False where
    this system or file system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, f"cannot exchange {a} and {b}: {os.strerror(err)}")


def interrupted(root: Path, run_id: str) -> bool:
    """Does ``root`` hold an interrupted run ``run_id`` that ``--resume`` can finish?"""
    return (Path(root) / f".{run_id}.partial" / "plan.json").is_file()


def _recover_locked(root: Path, run_id: str) -> bool:
    """Under the run's lock: where a replacement was killed between its two renames (no
    ``<run_id>``, a complete partial folder), put the new run in place and drop the old."""
    final, partial = root / run_id, root / f".{run_id}.partial"
    old = root / f".{run_id}.old"
    if final.exists() or not (partial / MANIFEST).is_file():
        return False
    partial.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return True


def recover(run_dir: Path) -> bool:
    """:func:`_recover_locked` for a reader: only when no live process owns the run id (its
    lock is free); True when a run was put back in place."""
    run_dir = Path(run_dir)
    if not (run_dir.parent / f".{run_dir.name}.partial" / MANIFEST).is_file():
        return False
    try:
        lock = RunLock.acquire(run_dir.parent, run_dir.name)
    except RunError:
        return False  # its writer is alive and finishing
    try:
        return _recover_locked(run_dir.parent, run_dir.name)
    finally:
        lock.release()


def check_run_dir(run_dir: Path, *, verify: bool = False) -> dict:
    """The manifest of a complete run, or a RunError saying what is wrong with the folder
    (missing, interrupted, not a folder, a damaged manifest, another schema version).
    ``verify``: also hash every file the manifest lists (:func:`verify_run`)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        recover(run_dir)  # a replacement killed between its renames (see the module docstring)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(
            f"{run_dir}: not a folder; expected a run folder (runs/<run_id>) holding {MANIFEST}"
        )
    if not run_dir.is_dir():
        partial = run_dir.parent / f".{run_dir.name}.partial"
        hint = (
            f" (an interrupted run left {partial}; "
            f"re-run the study with --resume {run_dir.name} to finish it)"
            if partial.exists()
            else ""
        )
        raise RunError(f"{run_dir}: no such run directory{hint}")
    mf = run_dir / MANIFEST
    if not mf.is_file():
        raise RunError(f"{run_dir}: not a complete run: {MANIFEST} is missing")
    try:
        manifest = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(
            f"{mf}: not valid JSON ({e}); expected the manifest a complete run writes last"
        ) from None
    if not isinstance(manifest, dict):
        raise RunError(
            f"{mf}: holds a JSON {type(manifest).__name__}; "
            "expected an object with the run's schema_version"
        )
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise RunError(f"{run_dir}: {version_problem(manifest.get('schema_version'))}")
    if verify:
        verify_run(run_dir, manifest)
    return manifest


def verify_run(run_dir: Path, manifest: dict) -> None:
    """A one-line RunError naming the first file of the run (in name order) that is missing or
    whose SHA-256 differs from the manifest's. A manifest without file digests (written before
    they were recorded) has nothing to verify. Files added later (a report) are not checked."""
    files = manifest.get(FILES)
    if files is None:
        return
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise RunError(
            f"{Path(run_dir) / MANIFEST}: {FILES!r} holds {type(files).__name__}; "
            "expected an object of file name -> sha256"
        )
    check_digests(run_dir, files, since="the run finished")


def reseal(run_dir: Path) -> dict:
    """Record the digests of a complete run's files again, for a tool that rewrites a finished
    run in place on purpose (the report's sample run given a language model's records);
    returns the new manifest. Takes the run's lock while it writes."""
    run_dir = Path(run_dir)
    manifest = check_run_dir(run_dir)
    lock = RunLock.acquire(run_dir.parent, run_dir.name)
    try:
        listed = set(manifest.get(FILES) or {})
        names = [  # the run's files: those listed before and every table part (new ones too)
            n
            for n in files_under(run_dir, exclude=[MANIFEST])
            if n in listed or n.split("/", 1)[0] in TABLES
        ]
        manifest = {**manifest, FILES: digests(run_dir, names)}
        tmp = run_dir / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp, run_dir / MANIFEST)
    finally:
        lock.release()
    return manifest


def scan_table(run_dir: Path, table: str) -> pl.LazyFrame:
    """A lazy polars scan of one table of a run (hive partition ``arm`` becomes a column)."""
    if table not in TABLES:
        raise RunError(f"unknown table {table!r}; expected one of {sorted(TABLES)}")
    run_dir = Path(run_dir)
    folder = run_dir / table
    files = sorted(folder.glob("arm=*/*.parquet")) if folder.is_dir() else []
    if table == "summary":
        path = run_dir / "summary.parquet"
        if not path.is_file():
            raise RunError(f"{run_dir}: summary.parquet is missing")
        check_file(path, table)
        return pl.scan_parquet(path)
    if not files:
        raise RunError(f"{folder}: no Parquet files; expected {table}/arm=<arm>/part-*.parquet")
    for f in files:
        check_file(f, table)
    return pl.scan_parquet(folder / "arm=*" / "*.parquet", hive_partitioning=True)
