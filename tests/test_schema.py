"""Self-describing outputs (recoworld/io/schema.py): ``events.clicked``/``watched`` say what the
summary counts, every column of every table carries a description that survives writing, and
``recoworld schema`` prints them."""

from __future__ import annotations

from pathlib import Path

import msgspec
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_study import SMALL, run

from recoworld.cli import main
from recoworld.config import BrainConfig
from recoworld.io.records import LLM_CALLS_SCHEMA
from recoworld.io.runs import PartWriter, scan_table
from recoworld.io.schema import (
    DESCRIBED,
    EVENTS,
    SCHEMA_VERSION,
    SUMMARY,
    SWEEP_SUMMARY,
    TABLES,
    USERS,
    WHERE,
    description,
)
from recoworld.io.tables import read_table, write_table
from recoworld.llm.wrappers import CallRow, rows_to_table
from recoworld.records import ACTIONS
from recoworld.study.metrics import METRICS
from recoworld.study.runner import RunResult

BOUNCY = msgspec.structs.replace(SMALL, brain=BrainConfig(watch_threshold=0.6))
"""The golden study with a high watch threshold, so that many clicks are bounces ("click"):
clicked and watched then differ, and ctr must count the bounces."""


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return run(BOUNCY, tmp_path_factory.mktemp("schema"))


@pytest.fixture(scope="module")
def events(small: RunResult) -> pl.DataFrame:
    return scan_table(small.path, "events").collect().with_columns(pl.col("action").cast(pl.String))


# --- clicked and watched -----------------------------------------------------------------------


def test_clicked_and_watched_are_the_action_as_booleans(events: pl.DataFrame) -> None:
    assert set(events["action"]) <= set(ACTIONS) and events.height > 0
    assert (events["clicked"] == (events["action"] != "skip")).all()
    assert (events["watched"] == events["action"].is_in(["watch", "rate"])).all()
    assert (events["action"] == "click").sum() > 0 and events["watched"].sum() > 0


def test_ctr_from_events_clicked_is_the_summarys_ctr(
    small: RunResult, events: pl.DataFrame
) -> None:
    per_user = events.group_by("arm", "user").agg(ctr=pl.col("clicked").mean())
    from_events = per_user.group_by("arm").agg(pl.col("ctr").mean()).sort("arm")
    summary = (
        small.summary.filter((pl.col("metric") == "ctr") & (pl.col("segment") == "all"))
        .select("arm", ctr=pl.col("mean"))
        .sort("arm")
    )
    assert from_events["arm"].to_list() == summary["arm"].to_list()
    for a, b in zip(from_events["ctr"], summary["ctr"]):
        assert a == pytest.approx(b, rel=1e-12)


def test_user_metrics_and_sessions_count_what_events_clicked_and_watched_say(
    small: RunResult, events: pl.DataFrame
) -> None:
    um = scan_table(small.path, "user_metrics").collect()
    by_user = events.group_by("arm", "user").agg(
        impressions=pl.len(), clicks=pl.col("clicked").sum()
    )
    both = um.join(by_user, on=["arm", "user"], suffix="_ev")
    assert both.height == um.height
    assert (both["clicks"] == both["clicks_ev"]).all()
    assert (both["impressions"] == both["impressions_ev"]).all()
    ss = scan_table(small.path, "sessions").collect()
    by_session = events.group_by("arm", "user", "session").agg(
        clicks=pl.col("clicked").sum(), watched=pl.col("watched").sum()
    )
    both = ss.join(by_session, on=["arm", "user", "session"], suffix="_ev")
    assert both.height == ss.height
    assert (both["clicks"] == both["clicks_ev"]).all()
    assert (both["watched"] == both["watched_ev"]).all()


# --- descriptions ------------------------------------------------------------------------------


@pytest.mark.parametrize("table", list(DESCRIBED))
def test_every_column_has_a_description(table: str) -> None:
    schema = DESCRIBED[table]
    missing = [f.name for f in schema if not description(f).strip()]
    assert not missing, f"{table}: no description for {missing}"
    assert WHERE[table]


def test_every_run_table_and_the_users_and_sweep_tables_are_described() -> None:
    assert set(TABLES) | {"users", "sweep_summary", "sweep_pooled"} == set(DESCRIBED)
    assert DESCRIBED["users"] is USERS and DESCRIBED["sweep_summary"] is SWEEP_SUMMARY


def test_index_columns_say_they_are_0_based() -> None:
    for table, schema in DESCRIBED.items():
        for name in ("user", "session", "turn", "position"):
            if name in schema.names:
                assert "0-based" in description(schema.field(name)), f"{table}.{name}"


def test_the_summary_metric_description_names_every_metric() -> None:
    text = description(SUMMARY.field("metric"))
    assert [m for m in METRICS if m not in text] == []
    assert "clicked" in description(EVENTS.field("action"))


def descriptions(schema: pa.Schema) -> dict[str, str]:
    return {f.name: description(f) for f in schema}


@pytest.mark.parametrize("table", ["events", "sessions", "user_metrics"])
def test_descriptions_survive_the_part_files_of_a_run(small: RunResult, table: str) -> None:
    files = sorted((small.path / table).glob("arm=*/*.parquet"))
    assert files
    for f in files:
        assert descriptions(pq.read_schema(f)) == descriptions(TABLES[table]), f


def test_descriptions_survive_the_summary_file_of_a_run(small: RunResult) -> None:
    written = read_table(small.path / "summary.parquet", "summary").schema
    assert descriptions(written) == descriptions(SUMMARY)


def test_descriptions_survive_the_users_file_of_a_run(small: RunResult) -> None:
    written = read_table(small.path / "users.parquet", "users").schema
    assert descriptions(written) == descriptions(USERS)


@pytest.mark.parametrize("table", list(DESCRIBED))
def test_descriptions_survive_write_table(tmp_path: Path, table: str) -> None:
    path = write_table(tmp_path / f"{table}.parquet", DESCRIBED[table].empty_table(), table)
    assert descriptions(read_table(path, table).schema) == descriptions(DESCRIBED[table])


def test_descriptions_survive_the_llm_calls_part_writer(tmp_path: Path) -> None:
    row = CallRow(
        call_id="control/0/0/0/slate/0", user=0, session=0, turn=0, purpose="slate", attempt=0
    )
    w = PartWriter(tmp_path / "part-00000.parquet", LLM_CALLS_SCHEMA, 10)
    w.write(rows_to_table([row]).to_batches()[0])
    w.close()
    written = pq.read_schema(tmp_path / "part-00000.parquet")
    assert descriptions(written) == descriptions(DESCRIBED["llm_calls"])


# --- recoworld schema --------------------------------------------------------------------------


def test_schema_prints_one_line_per_column_of_one_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["schema", "events"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0] == f"schema version {SCHEMA_VERSION}; user, session, turn and position are 0-based"
    )
    assert out[2] == f"events: {WHERE['events']}"
    cols = out[3:]
    assert len(cols) == len(EVENTS)
    for line, f in zip(cols, EVENTS):
        name, type_ = line.split()[:2]
        assert name == f.name and line.endswith(description(f))
        assert type_ == {pa.bool_(): "bool", pa.int16(): "int16"}.get(f.type, type_)
    assert any(line.split()[:2] == ["clicked", "bool"] for line in cols)


def test_schema_without_a_table_prints_every_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    out = capsys.readouterr().out.splitlines()
    heads = [line.split(":")[0] for line in out if line and not line.startswith(" ")][1:]
    assert heads == list(DESCRIBED)
    assert len([line for line in out if line.startswith("  ")]) == sum(
        len(s) for s in DESCRIBED.values()
    )


def test_schema_of_an_unknown_table_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["schema", "clicks"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == (
        "error: unknown table 'clicks'; expected one of " + ", ".join(DESCRIBED)
    )
    assert "events, sessions, user_metrics, summary" in captured.err
