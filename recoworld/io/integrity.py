"""File digests of a run: a SHA-256 of every file, recorded when a shard finishes (its marker)
and when the run finishes (its manifest), and checked again when a run is read or resumed.

Parquet pages also carry CRC checksums (:func:`recoworld.io.tables.writer_options`), verified
by pyarrow reads; polars scans do not verify them, which is what these digests are for.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from recoworld.errors import RunError

CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """The hex SHA-256 of the file at ``path``."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)  # releases the GIL: files hash in parallel on threads
    return h.hexdigest()


def files_under(folder: str | Path, *, exclude: Iterable[str] = ()) -> list[str]:
    """Every file under ``folder`` as a sorted relative POSIX path, but ``exclude``."""
    folder, skip = Path(folder), set(exclude)
    names = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(n for n in names if n not in skip)


def digests(folder: str | Path, names: Iterable[str]) -> dict[str, str]:
    """``{name: sha256}`` of the files ``names`` (relative to ``folder``), hashed on threads."""
    folder, names = Path(folder), list(names)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1, max(1, len(names)))) as pool:
        return dict(zip(names, pool.map(lambda n: sha256_file(folder / n), names)))


def check_digests(
    folder: str | Path, expected: Mapping[str, str], *, since: str, hint: str = ""
) -> None:
    """A one-line RunError naming the first file (in name order) of ``expected`` that is
    missing or whose contents hash otherwise, ``since`` saying when the digest was taken
    (e.g. "the run finished"), ``hint`` what to do (appended)."""
    tail = f"; {hint}" if hint else ""
    folder = Path(folder)
    names = sorted(expected)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise RunError(
            f"{folder / missing[0]}: missing, but present when {since} "
            f"(sha256 {expected[missing[0]]}); the run is corrupt{tail}"
        )
    found = digests(folder, names)
    for n in names:
        if found[n] != expected[n]:
            raise RunError(
                f"{folder / n}: contents changed since {since} (sha256 {found[n]}, "
                f"expected {expected[n]}); the run is corrupt{tail}"
            )
