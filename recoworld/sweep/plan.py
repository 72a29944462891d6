"""Planning: which cells of a sweep run. A cell whose run is complete with the same results
config (:func:`recoworld.config.results_identity`) is skipped; one complete with another config
is an error before anything runs, unless ``overwrite``; an interrupted or absent one runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from recoworld.config import decode_study_json, results_difference, results_identity
from recoworld.errors import RecoWorldError, RunError
from recoworld.io.runs import check_run_dir
from recoworld.sweep.cells import Cell

Action = Literal["run", "skip", "replace"]
CellState = Literal["absent", "interrupted", "complete", "different"]


@dataclass(frozen=True)
class PlannedCell:
    cell: Cell
    action: Action
    reason: str
    """Why: "new", "interrupted", "complete", or what differs from the complete run."""


def cell_status(cell: Cell, folder: Path) -> tuple[CellState, str]:
    """The state of ``cell``'s run folder ``folder`` and a reason."""
    if not folder.exists():
        partial = folder.parent / f".{folder.name}.partial"
        return (
            ("interrupted", f"interrupted earlier ({partial.name} is redone)")
            if partial.exists()
            else ("absent", "new")
        )
    try:
        check_run_dir(folder, verify=True)
        stored = decode_study_json(
            (folder / "study.json").read_bytes(), source=str(folder / "study.json")
        )
    except (RecoWorldError, OSError) as e:
        return "different", f"its folder cannot be kept ({e})"
    if results_identity(stored) == results_identity(cell.cfg):
        return "complete", "complete"
    diff = results_difference(stored, cell.cfg)
    return "different", f"its study.json differs from the cell's config ({diff or 'field types'})"


def plan(cells: Sequence[Cell], folder: Path, *, overwrite: bool = False) -> list[PlannedCell]:
    """What to do with each cell under the date folder ``folder``. A complete cell with another
    config is a RunError naming every such cell, unless ``overwrite`` (then it is replaced)."""
    out: list[PlannedCell] = []
    conflicts: list[str] = []
    for cell in cells:
        state, reason = cell_status(cell, folder / cell.run_id)
        match state:
            case "absent" | "interrupted":
                out.append(PlannedCell(cell=cell, action="run", reason=reason))
            case "complete":
                out.append(PlannedCell(cell=cell, action="skip", reason=reason))
            case "different":
                if not overwrite:
                    conflicts.append(f"{cell.run_id}: {reason}")
                out.append(PlannedCell(cell=cell, action="replace", reason=reason))
    if conflicts:
        raise RunError(
            f"{folder}: {len(conflicts)} complete cell(s) were run with another config; "
            f"pass --overwrite to replace them: " + "; ".join(conflicts)
        )
    return out
