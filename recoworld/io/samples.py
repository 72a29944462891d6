"""The part files of a finished run, one by one: for tools that rewrite a run in place (the
report's sample run given a language model's records). Each part is read and written whole
through :mod:`recoworld.io.tables`, so its name and version are checked and kept."""

from __future__ import annotations

from pathlib import Path


def arm_parts(run_dir: str | Path, table: str) -> dict[str, list[Path]]:
    """The part files of ``table`` per arm, arms and parts in name order."""
    folder = Path(run_dir) / table
    return {
        arm_dir.name.removeprefix("arm="): sorted(arm_dir.glob("*.parquet"))
        for arm_dir in sorted(folder.glob("arm=*"))
    }


def part_path(run_dir: str | Path, table: str, arm: str, part: int) -> Path:
    """Where part ``part`` of ``table`` for ``arm`` lives (as :class:`recoworld.io.runs.Parts`
    lays a run out)."""
    return Path(run_dir) / table / f"arm={arm}" / f"part-{part:05d}.parquet"
