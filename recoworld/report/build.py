"""`recoworld report PATH`: a run folder or a sweep's date folder -> one self-contained HTML
file."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from recoworld.errors import RunError
from recoworld.io.runs import MANIFEST
from recoworld.report.data import SWEEP_SUMMARY_FILE, is_sweep_dir, load_run, load_sweep

REPORT_FILE = "report.html"


@dataclass(frozen=True)
class Report:
    path: Path
    kind: Literal["run", "sweep"]
    seconds: float
    bytes: int


def detect(path: Path) -> Literal["run", "sweep"]:
    """``run`` for a run folder (or what looks like a broken one: check_run_dir then says what
    is wrong), ``sweep`` for a folder holding sweep_summary.parquet."""
    path = Path(path)
    if is_sweep_dir(path):
        return "sweep"
    if path.is_dir() and not (path / MANIFEST).exists():
        dates = sorted(p.name for p in path.glob(f"date=*/{SWEEP_SUMMARY_FILE}"))
        if dates:
            found = sorted(p.parent.name for p in path.glob(f"date=*/{SWEEP_SUMMARY_FILE}"))
            raise RunError(
                f"{path}: a sweep folder with several dates; expected one date folder, "
                f"e.g. {path / found[-1]} (found {', '.join(found)})"
            )
    return "run"


def write_report(path: str | Path, out: str | Path | None = None) -> Report:
    """Write the report of the run or sweep at ``path`` to ``out`` (default ``path/report.html``),
    atomically (a temporary file renamed into place)."""
    from recoworld.report.html import run_report, sweep_report

    t0 = time.perf_counter()
    path = Path(path)
    kind = detect(path)
    page = sweep_report(load_sweep(path)) if kind == "sweep" else run_report(load_run(path))
    target = Path(out) if out else path / REPORT_FILE
    if target.is_dir():
        target = target / REPORT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    data = page.encode()
    tmp.write_bytes(data)
    tmp.replace(target)
    return Report(path=target, kind=kind, seconds=time.perf_counter() - t0, bytes=len(data))
