"""Run outputs (recoworld/io): Parquet round trips, the versioned metadata every file carries,
the errors of readers, row-group sizes, and run folders that only ever hold complete runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import msgspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from recoworld.config import (
    ArmConfig,
    CreatorConfig,
    CreatorItem,
    OutputConfig,
    PopulationConfig,
    RecommenderConfig,
    SimulationConfig,
    StudyConfig,
    WorldConfig,
)
from recoworld.errors import RunError
from recoworld.io.records import EVENTS_SCHEMA, SESSIONS_SCHEMA, USER_METRICS_SCHEMA
from recoworld.io.runs import MANIFEST, Parts, PartWriter, RunDirectory, check_run_dir, scan_table
from recoworld.io.schema import METADATA_KEY, SCHEMA_VERSION, TABLE_KEY, TABLES
from recoworld.study.prepare import Prepared, prepare
from recoworld.study.runner import run_study
from recoworld.study.shard import simulate_to
from recoworld.world.synthetic import synthetic_world

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = {
    "events": EVENTS_SCHEMA,
    "sessions": SESSIONS_SCHEMA,
    "user_metrics": USER_METRICS_SCHEMA,
}

STUDY = StudyConfig(
    name="io",
    seed=5,
    world=WorldConfig(dataset="synthetic", synthetic_users=80, synthetic_items=60, embedding_dim=4),
    population=PopulationConfig(size=40),
    simulation=SimulationConfig(sessions=2, turns=3, slate_size=5),
    recommender=RecommenderConfig(kind="popular", candidates=15),
    creator=CreatorConfig(id="c", items=[CreatorItem(title="New", tags=["drama"])]),
    arms=[ArmConfig(name="control"), ArmConfig(name="inject", treatment="inject", position=1)],
)


@pytest.fixture(scope="module")
def prep() -> Prepared:
    return prepare(STUDY, synthetic_world(80, 60, seed=STUDY.seed))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    world = synthetic_world(80, 60, seed=STUDY.seed)
    return run_study(STUDY, world, run_id="io", out_dir=tmp_path_factory.mktemp("runs")).path


def strings(frame: pl.DataFrame) -> pl.DataFrame:
    """Categoricals as strings, so frames compare by value, not by dictionary."""
    return frame.with_columns(pl.col(pl.Categorical).cast(pl.String))


def row_groups(path: Path) -> list[int]:
    meta = pq.ParquetFile(path).metadata
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


# --- Parquet round trips -----------------------------------------------------------------------


def column(t: pa.DataType, n: int) -> st.SearchStrategy[pa.Array]:
    if pa.types.is_dictionary(t):
        return st.lists(
            st.none() | st.sampled_from(["a", "b", "Sci-Fi", "é ü", ""]), min_size=n, max_size=n
        ).map(lambda v: pa.array(v, pa.string()).dictionary_encode().cast(t))
    if pa.types.is_integer(t):
        bits = t.bit_width - 1
        values = st.integers(-(2**bits), 2**bits - 1)
    elif pa.types.is_floating(t):
        values = st.floats(allow_nan=False, width=t.bit_width)
    elif pa.types.is_boolean(t):
        values = st.booleans()
    else:
        values = st.text(max_size=8)
    return st.lists(st.none() | values, min_size=n, max_size=n).map(lambda v: pa.array(v, t))


@st.composite
def tables(draw: st.DrawFn, schema: pa.Schema) -> pa.Table:
    n = draw(st.integers(0, 40))
    return pa.Table.from_arrays([draw(column(f.type, n)) for f in schema], schema=schema)


@st.composite
def written(draw: st.DrawFn) -> tuple[str, pa.Table, list[int], int]:
    """A table, where it is cut into batches, and the row-group size."""
    name = draw(st.sampled_from(sorted(SCHEMAS)))
    table = draw(tables(SCHEMAS[name]))
    cuts = sorted(draw(st.lists(st.integers(0, table.num_rows), max_size=5)))
    return name, table, cuts, draw(st.integers(1, 30))


def write_in_batches(path: Path, table: pa.Table, cuts: list[int], rows: int) -> None:
    w = PartWriter(path, table.schema, rows)
    for a, b in zip([0, *cuts], [*cuts, table.num_rows]):
        for batch in table.slice(a, b - a).to_batches():
            w.write(batch)
    w.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(written())
def test_tables_read_back_with_polars_equal_what_was_written(
    case: tuple[str, pa.Table, list[int], int],
) -> None:
    name, table, cuts, rows = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "part-00000.parquet"
        write_in_batches(path, table, cuts, rows)
        back = pl.read_parquet(path)
        meta = pq.read_schema(path).metadata
        sizes = row_groups(path)
    assert_frame_equal(strings(back), strings(pl.from_arrow(table)))
    assert meta[METADATA_KEY] == str(SCHEMA_VERSION).encode() and meta[TABLE_KEY] == name.encode()
    assert sum(sizes) == table.num_rows and all(0 < s <= rows for s in sizes)


class RecordingParts(Parts):
    """Parts whose writers also keep every batch they are given."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.batches: dict[Path, list[pa.RecordBatch]] = {}

    def writer(
        self,
        table: str,
        schema: pa.Schema,
        arm: str,
        part: int,
        row_group_rows: int,
        compression: str = "zstd",
    ) -> PartWriter:
        w = super().writer(table, schema, arm, part, row_group_rows, compression)
        kept = self.batches.setdefault(w.path, [])
        write = w.write
        w.write = lambda batch: (kept.append(batch), write(batch))[1]  # type: ignore[method-assign]
        return w


def test_simulated_records_read_back_equal_what_was_written(prep: Prepared, tmp_path: Path) -> None:
    parts = RecordingParts(tmp_path)
    n_events, _ = simulate_to(parts, prep)
    parts.close()
    assert len(parts.batches) == 3 * len(STUDY.arms)
    for path, batches in parts.batches.items():
        expected = pl.from_arrow(pa.Table.from_batches(batches, schema=batches[0].schema))
        assert_frame_equal(strings(pl.read_parquet(path)), strings(expected))
    events = scan_table(tmp_path, "events").collect()
    assert (
        events.height
        == n_events
        == sum(
            sum(b.num_rows for b in bs)
            for p, bs in parts.batches.items()
            if p.parent.parent.name == "events"
        )
    )
    assert sorted(events["arm"].unique()) == ["control", "inject"]


def test_every_table_file_of_a_run_carries_the_schema_version_and_table_name(run_dir: Path) -> None:
    files = sorted(run_dir.glob("*/arm=*/*.parquet")) + [run_dir / "summary.parquet"]
    assert {f.parent.parent.name for f in files[:-1]} == {"events", "sessions", "user_metrics"}
    for f in files:
        meta = pq.read_schema(f).metadata
        table = "summary" if f.name == "summary.parquet" else f.parent.parent.name
        assert meta[METADATA_KEY] == str(SCHEMA_VERSION).encode(), f
        assert meta[TABLE_KEY] == table.encode(), f
        assert pq.read_schema(f).remove_metadata().equals(TABLES[table]), f


def test_users_file_carries_the_schema_version_and_table_name(run_dir: Path) -> None:
    meta = pq.read_schema(run_dir / "users.parquet").metadata or {}
    assert meta.get(METADATA_KEY) == str(SCHEMA_VERSION).encode()
    assert meta.get(TABLE_KEY) == b"users"


def test_scan_table_reads_every_arm_of_a_run(run_dir: Path) -> None:
    manifest = check_run_dir(run_dir)
    events = scan_table(run_dir, "events").collect()
    assert events.height == manifest["events"]
    users = scan_table(run_dir, "user_metrics").collect()
    assert users.group_by("arm").len().sort("arm").rows() == [("control", 40), ("inject", 40)]
    assert scan_table(run_dir, "summary").collect().height > 0


# --- row groups --------------------------------------------------------------------------------


def test_row_groups_span_many_turns_not_one_per_turn(prep: Prepared, tmp_path: Path) -> None:
    parts = Parts(tmp_path)
    simulate_to(parts, prep)
    parts.close()
    for f in tmp_path.glob("*/arm=*/*.parquet"):
        assert row_groups(f) == [pq.ParquetFile(f).metadata.num_rows], f  # 1M rows per group


def test_row_groups_hold_the_configured_rows(prep: Prepared, tmp_path: Path) -> None:
    cfg = msgspec.structs.replace(prep.cfg, output=OutputConfig(row_group_rows=300))
    parts = Parts(tmp_path)
    simulate_to(parts, replace(prep, cfg=cfg))
    parts.close()
    f = tmp_path / "events" / "arm=control" / "part-00000.parquet"
    sizes = row_groups(f)
    assert len(sizes) > 2
    assert sizes[:-1] == [300] * (len(sizes) - 1) and 0 < sizes[-1] <= 300


# --- readers' errors ---------------------------------------------------------------------------


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / run_dir.name))


def rewrite_metadata(path: Path, metadata: dict[bytes, bytes] | None) -> None:
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata(metadata), path)


def test_a_file_of_another_schema_version_is_refused(run_dir: Path, tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    f = run / "events" / "arm=control" / "part-00000.parquet"
    other = str(SCHEMA_VERSION + 1)
    rewrite_metadata(f, {METADATA_KEY: other.encode(), TABLE_KEY: b"events"})
    with pytest.raises(RunError) as e:
        scan_table(run, "events")
    assert str(e.value) == (
        f"{f}: table 'events' written by schema version {other} (a newer RecoWorld); "
        f"this RecoWorld reads version {SCHEMA_VERSION}: upgrade RecoWorld"
    )


def test_a_file_without_metadata_is_refused(run_dir: Path, tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    rewrite_metadata(run / "summary.parquet", None)
    with pytest.raises(RunError) as e:
        scan_table(run, "summary")
    assert str(e.value) == (
        f"{run / 'summary.parquet'}: no RecoWorld schema version in the file's metadata; "
        f"expected table 'summary' of version {SCHEMA_VERSION}"
    )


def test_a_file_of_another_table_is_refused(run_dir: Path, tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    f = run / "events" / "arm=control" / "part-00000.parquet"
    shutil.copy(run / "sessions" / "arm=control" / "part-00000.parquet", f)
    with pytest.raises(RunError) as e:
        scan_table(run, "events")
    assert str(e.value) == f"{f}: holds table 'sessions'; expected 'events'"


def test_a_later_file_of_another_schema_version_is_refused(run_dir: Path, tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    f = run / "events" / "arm=inject" / "part-00000.parquet"
    other = str(SCHEMA_VERSION + 1)
    rewrite_metadata(f, {METADATA_KEY: other.encode(), TABLE_KEY: b"events"})
    with pytest.raises(RunError) as e:
        scan_table(run, "events")
    assert str(e.value) == (
        f"{f}: table 'events' written by schema version {other} (a newer RecoWorld); "
        f"this RecoWorld reads version {SCHEMA_VERSION}: upgrade RecoWorld"
    )


def test_a_manifest_of_another_schema_version_is_refused(run_dir: Path, tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    manifest = (
        (run / MANIFEST)
        .read_text()
        .replace(f'"schema_version": {SCHEMA_VERSION}', '"schema_version": 0')
    )
    (run / MANIFEST).write_text(manifest)
    with pytest.raises(RunError) as e:
        check_run_dir(run)
    assert str(e.value) == (
        f"{run}: written by schema version 0; "
        f"this RecoWorld reads version {SCHEMA_VERSION}: re-run the study"
    )


def test_a_run_without_manifest_is_not_complete(run_dir: Path, tmp_path: Path) -> None:
    run = copy_run(run_dir, tmp_path)
    (run / MANIFEST).unlink()
    with pytest.raises(RunError) as e:
        check_run_dir(run)
    assert str(e.value) == f"{run}: not a complete run: manifest.json is missing"


def test_missing_run_dir_mentions_an_interrupted_attempt(tmp_path: Path) -> None:
    with pytest.raises(RunError) as e:
        check_run_dir(tmp_path / "r")
    assert str(e.value) == f"{tmp_path / 'r'}: no such run directory"
    (tmp_path / ".r.partial").mkdir()
    with pytest.raises(RunError) as e:
        check_run_dir(tmp_path / "r")
    assert str(e.value) == (
        f"{tmp_path / 'r'}: no such run directory "
        f"(an interrupted run left {tmp_path / '.r.partial'}; "
        "re-run the study with --resume r to finish it)"
    )


def test_scan_table_errors_name_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(RunError) as e:
        scan_table(tmp_path, "nope")
    assert str(e.value) == f"unknown table 'nope'; expected one of {sorted(TABLES)}"
    assert "'events'" in str(e.value) and "'llm_calls'" in str(e.value)
    with pytest.raises(RunError) as e:
        scan_table(tmp_path, "events")
    assert (
        str(e.value)
        == f"{tmp_path / 'events'}: no Parquet files; expected events/arm=<arm>/part-*.parquet"
    )
    with pytest.raises(RunError) as e:
        scan_table(tmp_path, "summary")
    assert str(e.value) == f"{tmp_path}: summary.parquet is missing"


# --- run folders -------------------------------------------------------------------------------

INTERRUPTED = """
import os, sys
from pathlib import Path
import pyarrow as pa
from recoworld.io.runs import RunDirectory
run = RunDirectory(Path(sys.argv[1]), "r")
run.write_json("fit.json", {"first": True})
w = run.writer("events", pa.schema([("user", pa.int64())]), "control", 0, 10)
w.write(pa.record_batch([pa.array(range(25))], names=["user"]))
os._exit(1)  # killed mid-run: no finalize, no abort
"""


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_an_interrupted_run_leaves_only_its_partial_folder_which_the_next_run_removes(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED, str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 1, done.stderr
    # the dead owner's lock file stays, unlocked (the kernel released it)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".r.lock", ".r.partial"]
    assert (tmp_path / ".r.partial" / "fit.json").is_file()

    run = RunDirectory(tmp_path, "r")  # takes the stale lock over
    # the leftovers are gone before anything is written
    assert listing(tmp_path) == [".r.lock", ".r.partial"]
    run.write_json("study.json", {"second": True})
    run.writer("events", pa.schema([("user", pa.int64())]), "control", 0, 10).write(
        pa.record_batch([pa.array([7])], names=["user"])
    )
    run.finalize({"study": "s"})
    assert listing(tmp_path) == [
        "r",
        "r/events",
        "r/events/arm=control",
        "r/events/arm=control/part-00000.parquet",
        "r/manifest.json",
        "r/study.json",
    ]
    assert pl.read_parquet(tmp_path / "r" / "events" / "arm=control" / "part-00000.parquet")[
        "user"
    ].to_list() == [7]
    assert check_run_dir(tmp_path / "r")["run_id"] == "r"


def test_abort_keeps_the_partial_folder_for_resume_but_drops_shard_scratch(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path, "r")
    (run.path / "_tmp" / "shard-00000-x").mkdir(parents=True)
    run.writer("events", pa.schema([("user", pa.int64())]), "control", 0, 10).write(
        pa.record_batch([pa.array([1])], names=["user"])
    )
    run.abort()
    assert listing(tmp_path) == [  # the lock is released and its file removed
        ".r.partial",
        ".r.partial/events",
        ".r.partial/events/arm=control",
        ".r.partial/events/arm=control/part-00000.parquet",
    ]
    RunDirectory(tmp_path, "r")  # a fresh run of the same id starts clean
    assert listing(tmp_path) == [".r.lock", ".r.partial"]


def test_an_existing_complete_run_needs_overwrite(tmp_path: Path) -> None:
    RunDirectory(tmp_path, "r").finalize({})
    with pytest.raises(RunError) as e:
        RunDirectory(tmp_path, "r")
    assert str(e.value) == (
        f"{tmp_path / 'r'} already holds a complete run; "
        "pass --overwrite to replace it or choose another --run-id"
    )


def test_overwrite_swaps_the_new_run_in_only_when_it_is_complete(tmp_path: Path) -> None:
    first = RunDirectory(tmp_path, "r")
    first.write_json("old.json", {})
    first.finalize({"n": 1})
    second = RunDirectory(tmp_path, "r", overwrite=True)
    second.write_json("new.json", {})
    assert listing(tmp_path / "r") == ["manifest.json", "old.json"]  # still the complete old run
    second.finalize({"n": 2})
    assert listing(tmp_path) == ["r", "r/manifest.json", "r/new.json"]
    assert check_run_dir(tmp_path / "r")["n"] == 2


def test_finalize_without_overwrite_refuses_a_run_completed_meanwhile(tmp_path: Path) -> None:
    mine = RunDirectory(tmp_path, "r")
    other = RunDirectory(tmp_path, "r2")
    other.finalize({"who": "other"})
    (tmp_path / "r2").rename(tmp_path / "r")  # a complete run under my id appears while I run
    with pytest.raises(RunError) as e:
        mine.finalize({"who": "me"})
    assert str(e.value) == (
        f"{tmp_path / 'r'} already holds a complete run; "
        "pass --overwrite to replace it or choose another --run-id"
    )
    assert check_run_dir(tmp_path / "r")["who"] == "other"


@pytest.mark.parametrize("run_id", ["", "a/b", ".hidden"])
def test_unusable_run_ids_are_refused(tmp_path: Path, run_id: str) -> None:
    with pytest.raises(RunError) as e:
        RunDirectory(tmp_path, run_id)
    assert str(e.value) == (
        f"run id {run_id!r} is not usable as a folder name; "
        "expected letters, digits, '-', '_' or '.'"
    )
    assert listing(tmp_path) == []
