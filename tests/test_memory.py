"""A user's memory read back from a run: records and session summaries match the tables."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recoworld.cli import main
from recoworld.errors import RunError
from recoworld.users.memory import memory_of

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert (
        main(
            [
                "run",
                str(ROOT / "studies" / "quick_synthetic.toml"),
                "--out",
                str(out),
                "--run-id",
                "m",
                "--quiet",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    return out / "m"


def test_memory_matches_the_events_and_sessions(run_dir: Path) -> None:
    ev = pl.read_parquet(run_dir / "events" / "arm=control" / "*.parquet")
    user = int(ev["user"][0])
    mine = ev.filter(pl.col("user") == user)
    m = memory_of(run_dir, "control", user)
    assert len(m.records) == mine.height
    assert [r.item_id for r in m.records] == mine.sort("session", "turn", "position")[
        "item_id"
    ].cast(pl.String).to_list()
    assert all(r.rating is None for r in m.records if r.action != "rate")
    sessions = pl.read_parquet(run_dir / "sessions" / "arm=control" / "*.parquet").filter(
        pl.col("user") == user
    )
    assert [s.session for s in m.sessions] == sorted(sessions["session"].to_list())
    assert m.recall().splitlines()[-1] == m.sessions[-1].summary
    assert m.sessions[0].summary.startswith("Session 1: ")


def test_memory_errors_name_what_is_missing(run_dir: Path) -> None:
    with pytest.raises(RunError) as e:
        memory_of(run_dir, "nope", 0)
    assert str(e.value) == f"{run_dir}: no arm 'nope'; the run has arms ['control', 'inject']"
    with pytest.raises(RunError) as e:
        memory_of(run_dir, "control", 10**9)
    assert (
        str(e.value)
        == f"{run_dir}: user 1000000000 has no events in arm 'control' (users are 0..499)"
    )
