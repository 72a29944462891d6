"""Fetching ML-100K from the RecBole wheel (without network except the marked test) and
finding local copies."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from recoworld.errors import DataError, RecoWorldError
from recoworld.world import fetch
from recoworld.world.fetch import data_path_candidates, default_data_path, fetch_dataset
from recoworld.world.loaders import load_world

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "1\t1\t4\t881250949\n2\t1\t5\t881250950\n"
)
ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "1\tToy Story\t1995\tAnimation Comedy\n"
)
USER = (
    "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    "1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n"
)


def fake_wheel(path: Path, *, skip: str | None = None) -> Path:
    """A zip shaped like the recbole wheel, with a small ml-100k."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("recbole/__init__.py", "")
        zf.writestr("recbole/dataset_example/ml-100k/ml-100k.kg", "ignored\n")
        for name, text in (
            ("ml-100k.inter", INTER),
            ("ml-100k.item", ITEM),
            ("ml-100k.user", USER),
        ):
            if name != skip:
                zf.writestr(f"recbole/dataset_example/ml-100k/{name}", text)
    return path


def copying(wheel: Path):
    """A download step that 'downloads' ``wheel`` into the folder it is given."""

    def download(dest: Path) -> Path:
        target = dest / wheel.name
        target.write_bytes(wheel.read_bytes())
        return target

    return download


def no_download(dest: Path) -> Path:
    raise AssertionError("the download step must not run")


def test_cache_hit_needs_no_network(tmp_path: Path) -> None:
    folder = tmp_path / "cache" / "ml-100k"
    folder.mkdir(parents=True)
    for name, text in (("ml-100k.inter", INTER), ("ml-100k.item", ITEM), ("ml-100k.user", USER)):
        (folder / name).write_text(text)
    assert fetch_dataset("ml-100k", tmp_path / "cache", download=no_download) == folder


def test_extracts_from_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = fake_wheel(tmp_path / "src" / "recbole-1.2.1-py3-none-any.whl")
    monkeypatch.setattr(fetch, "download_recbole_wheel", copying(wheel))
    cache = tmp_path / "cache"
    folder = fetch_dataset("ml-100k", cache)
    assert folder == cache / "ml-100k"
    assert sorted(p.name for p in folder.iterdir()) == [
        "ml-100k.inter",
        "ml-100k.item",
        "ml-100k.user",
    ]
    assert (folder / "ml-100k.inter").read_text() == INTER
    assert [p.name for p in cache.iterdir()] == ["ml-100k"]  # no staging folder left behind
    world = load_world("ml-100k", folder, fittable=False)
    assert (world.name, world.interactions.height, world.users.height, world.items.height) == (
        "ml-100k",
        2,
        2,
        1,
    )
    # a second call is a cache hit
    assert fetch_dataset("ml-100k", cache, download=no_download) == folder


def test_replaces_an_incomplete_copy(tmp_path: Path) -> None:
    wheel = fake_wheel(tmp_path / "recbole-1.2.1-py3-none-any.whl")
    (tmp_path / "cache" / "ml-100k").mkdir(parents=True)
    (tmp_path / "cache" / "ml-100k" / "ml-100k.inter").write_text(INTER)
    folder = fetch_dataset("ml-100k", tmp_path / "cache", download=copying(wheel))
    assert (folder / "ml-100k.user").read_text() == USER


def test_wheel_without_the_dataset(tmp_path: Path) -> None:
    wheel = fake_wheel(tmp_path / "recbole-1.2.1-py3-none-any.whl", skip="ml-100k.user")
    with pytest.raises(DataError) as err:
        fetch_dataset("ml-100k", tmp_path / "cache", download=copying(wheel))
    # the message names the copy in the download folder, which is gone by now
    assert str(err.value).endswith(
        "recbole-1.2.1-py3-none-any.whl: lacks recbole/dataset_example/ml-100k/ml-100k.user; "
        "expected the recbole==1.2.1 wheel layout"
    )
    assert list((tmp_path / "cache").iterdir()) == []


def test_pip_failure_says_pypi_must_be_reachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(
            cmd,
            1,
            "",
            "Looking in indexes: x\nERROR: No matching distribution found for recbole==1.2.1\n",
        )

    monkeypatch.setattr(fetch.subprocess, "run", failing_run)
    with pytest.raises(RecoWorldError) as err:
        fetch_dataset("ml-100k", tmp_path / "cache")
    dest = str(err.value).split(" -d ")[1].split("`")[0]
    assert str(err.value) == (
        "downloading recbole==1.2.1 (which carries MovieLens 100K) needs PyPI to be reachable: "
        f"`{sys.executable} -m pip download --no-deps --only-binary=:all: -q recbole==1.2.1 -d "
        f"{dest}` "
        "exited with status 1:\nLooking in indexes: x\nERROR: No matching distribution found for "
        "recbole==1.2.1"
    )
    assert list((tmp_path / "cache").iterdir()) == []


def test_only_ml100k_is_fetchable(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        fetch_dataset("lastfm", tmp_path)
    assert str(err.value) == "lastfm: cannot be fetched; expected one of ml-100k"


def test_default_path_prefers_the_cache(tmp_path: Path) -> None:
    (tmp_path / "cache" / "ml-100k").mkdir(parents=True)
    assert (
        default_data_path("ml-100k", tmp_path / "cache")
        == (tmp_path / "cache" / "ml-100k").resolve()
    )


def test_default_path_finds_shared_data_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared" / "data" / "lastfm-hetrec2011-2k"
    shared.mkdir(parents=True)
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    assert default_data_path("lastfm", tmp_path / "cache") == shared.resolve()


def test_default_path_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    monkeypatch.setattr(fetch, "_repo_root", lambda: tmp_path / "checkout" / "project")
    cache = tmp_path / "cache"
    candidates = [
        cache / "ml-100k",
        tmp_path / "shared" / "data" / "ml-100k",
        tmp_path / "checkout" / "shared" / "data" / "ml-100k",
    ]
    assert data_path_candidates("ml-100k", cache) == candidates
    with pytest.raises(DataError) as err:
        default_data_path("ml-100k", cache)
    assert str(err.value) == (
        f"ml-100k: no local copy (looked in {', '.join(map(str, candidates))}); "
        "expected one of those folders to exist; run `recoworld data fetch ml-100k`, or pass the "
        "dataset's folder"
    )
    with pytest.raises(DataError) as err:
        default_data_path("ml-1m", cache)
    assert str(err.value).endswith(
        "expected one of those folders to exist; pass the dataset's folder"
    )


def test_load_world_uses_the_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "shared" / "data" / "ml-latest-small"
    folder.mkdir(parents=True)
    (folder / "movies.csv").write_text("movieId,title,genres\n1,Toy Story (1995),Comedy\n")
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.5,1\n")
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    monkeypatch.setattr(fetch, "default_cache_dir", lambda: tmp_path / "cache")
    world = load_world("ml-latest-small", fittable=False)
    assert (world.name, world.source) == ("ml-latest-small", str(folder.resolve()))


@pytest.mark.network
@pytest.mark.skipif(
    os.environ.get("RECOWORLD_NETWORK_TESTS") != "1",
    reason="set RECOWORLD_NETWORK_TESTS=1 to reach PyPI",
)
def test_fetch_from_pypi(tmp_path: Path) -> None:
    folder = fetch_dataset("ml-100k", tmp_path)
    world = load_world("ml-100k", folder)
    assert (world.interactions.height, world.users.height, world.items.height) == (
        100_000,
        943,
        1_682,
    )
