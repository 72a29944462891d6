"""Run directories: written under a temporary name, made visible by one atomic rename.

``<root>/<run_id>/`` only ever holds a complete run. While running, files go to
``<root>/.<run_id>.partial/``; an interrupted run leaves only that folder, which the next run
with the same id deletes before starting. Re-running a complete run id needs ``overwrite``,
which swaps the new run in only once it is complete.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from recoworld.errors import RunError
from recoworld.io.schema import SCHEMA_VERSION, TABLES, version_problem
from recoworld.io.tables import check_file, writer_options

MANIFEST = "manifest.json"


class PartWriter:
    """One Parquet file written in row groups of about ``row_group_rows`` rows.

    Row groups are encoded and written on a background thread (Arrow releases the GIL), so
    writing overlaps with simulation; at most one row group waits, which bounds memory.
    """

    def __init__(self, path: Path, schema: pa.Schema, row_group_rows: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.schema, self.limit = path, schema, row_group_rows
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(
            path, schema, **writer_options(schema)
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
        self, table: str, schema: pa.Schema, arm: str, part: int, row_group_rows: int
    ) -> PartWriter:
        w = PartWriter(
            self.folder / table / f"arm={arm}" / f"part-{part:05d}.parquet", schema, row_group_rows
        )
        self._writers.append(w)
        return w

    def close(self) -> None:
        for w in self._writers:
            w.close()


class RunDirectory:
    """The folder of one run being written."""

    def __init__(
        self, root: Path, run_id: str, *, overwrite: bool = False, resume: bool = False
    ) -> None:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise RunError(
                f"run id {run_id!r} is not usable as a folder name; expected letters, digits, '-', '_' or '.'"
            )
        self.root, self.run_id, self.overwrite = Path(root), run_id, overwrite
        self.final = self.root / run_id
        self.partial = self.root / f".{run_id}.partial"
        if self.final.exists() and not overwrite:
            raise RunError(
                f"{self.final} already holds a complete run; pass --overwrite to replace it or choose another --run-id"
            )
        self.resumed = resume and (self.partial / "plan.json").is_file()
        if resume and not self.resumed:
            raise RunError(
                f"{self.partial}: no interrupted run {run_id!r} to resume (expected its plan.json); run without --resume"
            )
        if self.partial.exists() and not self.resumed:
            shutil.rmtree(self.partial)  # an interrupted earlier attempt
        self.partial.mkdir(parents=True, exist_ok=True)
        self.parts = Parts(self.partial)
        self.plan: list = []  # the run's shard plan (recoworld.study.shard.ShardSpec)

    @property
    def path(self) -> Path:
        return self.partial

    def writer(
        self, table: str, schema: pa.Schema, arm: str, part: int, row_group_rows: int
    ) -> PartWriter:
        return self.parts.writer(table, schema, arm, part, row_group_rows)

    def write_json(self, name: str, data: object) -> None:
        (self.partial / name).write_text(
            json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
        )

    def write_bytes(self, name: str, data: bytes) -> None:
        (self.partial / name).write_bytes(data)

    def finalize(self, manifest: dict) -> Path:
        """Close writers, write the manifest last, and make the run visible atomically."""
        self.parts.close()
        for scratch in ("_tmp", "_shards"):  # shard scratch space and completion markers
            shutil.rmtree(self.partial / scratch, ignore_errors=True)
        self.write_json(
            MANIFEST, {**manifest, "run_id": self.run_id, "schema_version": SCHEMA_VERSION}
        )
        if self.final.exists() and not self.overwrite:
            raise RunError(
                f"{self.final} already holds a complete run; pass --overwrite to replace it or choose another --run-id"
            )
        if self.final.exists():
            old = self.root / f".{self.run_id}.old"
            shutil.rmtree(old, ignore_errors=True)
            self.final.rename(old)
            self.partial.rename(self.final)
            shutil.rmtree(old)
        else:
            self.partial.rename(self.final)
        return self.final

    def abort(self) -> None:
        """Stop writing after a failure: close what is open and drop unfinished shards' scratch
        files. Finished shards stay in the partial folder for ``--resume``; a fresh run of the
        same id removes them."""
        for w in self.parts._writers:
            try:
                w.close()
            except Exception:  # noqa: BLE001 - best effort while failing anyway
                pass
        shutil.rmtree(self.partial / "_tmp", ignore_errors=True)


def check_run_dir(run_dir: Path) -> dict:
    """The manifest of a complete run, or a RunError saying what is wrong with the folder
    (missing, interrupted, not a folder, a damaged manifest, another schema version)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(
            f"{run_dir}: not a folder; expected a run folder (runs/<run_id>) holding {MANIFEST}"
        )
    if not run_dir.is_dir():
        partial = run_dir.parent / f".{run_dir.name}.partial"
        hint = (
            f" (an interrupted run left {partial}; re-run the study with --resume {run_dir.name} to finish it)"
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
            f"{mf}: holds a JSON {type(manifest).__name__}; expected an object with the run's schema_version"
        )
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise RunError(f"{run_dir}: {version_problem(manifest.get('schema_version'))}")
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
