"""The `recoworld` command (recoworld/cli.py): `run` prints the summary table, `summary` prints it
again from Parquet, and bad inputs exit with code 2 and a one-line error, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from recoworld.cli import main
from recoworld.io.runs import scan_table
from recoworld.study.metrics import METRICS

ROOT = Path(__file__).resolve().parents[1]

TINY = """\
name = "tiny"
seed = 4

[world]
dataset = "synthetic"
synthetic_users = 60
synthetic_items = 80
embedding_dim = 4

[population]
size = 30

[simulation]
sessions = 2
turns = 2
slate_size = 4

[recommender]
candidates = 8

[creator]
id = "indie"
[[creator.items]]
title = "Small Hours"
tags = ["tag-00"]

[[arms]]
name = "control"
[[arms]]
name = "inject"
treatment = "inject"
"""

BOX = tuple("┏┃┡│├└")
WIDE = {**os.environ, "COLUMNS": "400"}


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps at the console width (80 when not a terminal); keep long tmp paths on one line."""
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("studies") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def ran(study: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The run folder and what `recoworld run` printed."""
    out = tmp_path_factory.mktemp("runs")
    capture = subprocess.run(
        [
            sys.executable,
            "-m",
            "recoworld.cli",
            "run",
            str(study),
            "--out",
            str(out),
            "--run-id",
            "r",
            "--quiet",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=WIDE,
    )
    assert capture.returncode == 0, capture.stderr
    return out / "r", capture.stdout


def table_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith(BOX)]


def test_run_prints_the_summary_table(ran: tuple[Path, str]) -> None:
    run_dir, printed = ran
    assert "tiny: 30 users per arm" in printed
    assert f"-> {run_dir}" in printed and f"read again with: recoworld summary {run_dir}" in printed
    summary = scan_table(run_dir, "summary").collect().filter(pl.col("segment") == "all")
    rows = [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in table_lines(printed)
        if line.startswith("│")
    ]
    assert [r[1] for r in rows] == list(METRICS) * 2
    assert [r[0] for r in rows if r[0]] == ["control", "inject"]
    for r, s in zip(rows, summary.iter_rows(named=True)):
        assert r[2] == f"{s['mean']:.4f} ± {(s['ci_high'] - s['ci_low']) / 2:.4f}"
        diff = (
            "(control)"
            if s["diff"] is None
            else f"{s['diff']:+.4f} ± {(s['diff_ci_high'] - s['diff_ci_low']) / 2:.4f}"
        )
        assert r[3] == diff


def test_summary_prints_the_same_table_again(
    ran: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, printed = ran
    assert main(["summary", str(run_dir)]) == 0
    again = capsys.readouterr().out
    assert "tiny (r): 30 users per arm" in again
    assert table_lines(again) == table_lines(printed) != []


def test_summary_with_segments_prints_each_segment(
    ran: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, _ = ran
    assert main(["summary", str(run_dir), "--segments"]) == 0
    printed = capsys.readouterr().out
    segments = scan_table(run_dir, "summary").collect()["segment"].unique().to_list()
    assert len(segments) > 1
    rows = [
        [c.strip() for c in line.strip("│").split("│")]
        for line in table_lines(printed)
        if line.startswith("│")
    ]
    assert len(rows) == 2 * len(segments) * len(METRICS)
    assert {r[1] for r in rows if r[1]} == set(segments)


# --- bad inputs: exit code 2, one line naming the problem ---------------------------------------


def error_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def test_missing_study_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.toml"
    assert (
        error_of(["run", str(path)], capsys)
        == f"error: {path}: cannot read the study file: No such file or directory\n"
    )


def test_study_with_an_unknown_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace("turns = 2", "turn = 2"))
    assert error_of(["run", str(path), "--out", str(tmp_path)], capsys) == (
        f"error: {path}: Object contains unknown field `turn` - at `$.simulation`\n"
    )
    assert list(tmp_path.iterdir()) == [path]  # nothing was started


def test_missing_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        error_of(["summary", str(tmp_path / "r")], capsys)
        == f"error: {tmp_path / 'r'}: no such run directory\n"
    )


def test_run_dir_of_an_interrupted_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    partial = tmp_path / ".r.partial"
    partial.mkdir()
    assert error_of(["summary", str(tmp_path / "r")], capsys) == (
        f"error: {tmp_path / 'r'}: no such run directory (an interrupted run left {partial}; "
        "re-run the study with --resume r to finish it)\n"
    )
    assert (
        error_of(["summary", str(partial)], capsys)
        == f"error: {partial}: not a complete run: manifest.json is missing\n"
    )


def test_an_existing_run_id_needs_overwrite(
    ran: tuple[Path, str], study: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, _ = ran
    argv = [
        "run",
        str(study),
        "--out",
        str(run_dir.parent),
        "--run-id",
        "r",
        "--quiet",
        "--workers",
        "1",
    ]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"error: {run_dir} already holds a complete run; "
        "pass --overwrite to replace it or choose another --run-id\n"
    )


def test_missing_arguments_are_a_usage_error() -> None:
    with pytest.raises(SystemExit) as e:
        main(["run"])
    assert e.value.code == 2


def test_an_error_in_a_real_process_has_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    done = subprocess.run(
        [sys.executable, "-m", "recoworld.cli", "run", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=WIDE,
    )
    assert done.returncode == 2
    assert done.stderr == f"error: {path}: cannot read the study file: No such file or directory\n"
    assert done.stdout == ""


def test_a_long_error_stays_on_one_line_in_a_narrow_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    path = tmp_path / ("a-rather-long-folder-name-" * 3) / "study.toml"
    assert (
        error_of(["run", str(path)], capsys)
        == f"error: {path}: cannot read the study file: No such file or directory\n"
    )
