"""Loaders against bad input: corruptions of small slices of the real datasets, written to
tmp_path, each refused with one line that names the file (and the line where there is one);
and worlds without tags, which load as valid worlds with an empty tag vocabulary."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recoworld.errors import DataError, RecoWorldError
from recoworld.items.catalog import build_catalog
from recoworld.world.loaders import load_world

HEADER = "user_id,item_id,rating,timestamp"


def real(shared_data: Path, folder: str) -> Path:
    path = shared_data / folder
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture
def ratings_lines(shared_data: Path) -> list[str]:
    """The first 300 ratings of ml-latest-small as generic CSV records (no header)."""
    text = (real(shared_data, "ml-latest-small") / "ratings.csv").read_text()
    return text.splitlines()[1:301]


def generic_folder(root: Path, content: str | bytes, name: str = "interactions.csv") -> Path:
    folder = root / "g"
    folder.mkdir(exist_ok=True)
    data = content if isinstance(content, bytes) else content.encode()
    (folder / name).write_bytes(data)
    return folder


def refused(dataset: str, folder: Path) -> str:
    """The message of the DataError ``load_world`` raises; asserts it is one line."""
    with pytest.raises(DataError) as err:
        load_world(dataset, folder)
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def body(lines: list[str]) -> str:
    return "\n".join([HEADER, *lines]) + "\n"


def _set(lines: list[str], row: int, field: int, value: str) -> list[str]:
    out = list(lines)
    parts = out[row].split(",")
    parts[field] = value
    out[row] = ",".join(parts)
    return out


# (corruption of the records -> file content, expected message after "<file>")
CSV_CORRUPTIONS: list[tuple[str, Callable[[list[str]], str | bytes], str]] = [
    (
        "duplicated header column",
        lambda ls: "user_id,item_id,rating,rating\n" + "\n".join(ls),
        ", line 1: header repeats column 'rating' (columns 3 and 4); "
        "expected a header naming each column once",
    ),
    (
        "duplicated header column, quoted file",
        lambda ls: 'user_id,item_id,user_id\n"1",2,3\n',
        ", line 1: header repeats column 'user_id' (columns 1 and 3); "
        "expected a header naming each column once",
    ),
    ("empty file", lambda ls: b"", ": the file is empty; expected a comma-separated header line"),
    (
        "only a header",
        lambda ls: HEADER + "\n",
        ": no records after the header; expected at least one interaction",
    ),
    (
        "missing required column",
        lambda ls: "user_id,item,rating,timestamp\n" + "\n".join(ls),
        ", line 1: header lacks column 'item_id' (found 'user_id', 'item', 'rating', "
        "'timestamp'); expected comma-separated columns user_id, item_id "
        "(optionally rating, weight, timestamp)",
    ),
    (
        "NUL in an id",
        lambda ls: body(_set(ls, 4, 0, "1\x00")),
        ", line 6: user id '1\\x00' holds control character '\\x00' at character 2; "
        "expected a user id of printable characters",
    ),
    (
        "non-UTF-8 byte",
        lambda ls: body(ls[:9]).encode() + b"1,\xe9t\xe9,4,1\n",
        ", line 11: byte 0xe9 at column 3 is not valid UTF-8; expected UTF-8 text",
    ),
    (
        "NaN rating",
        lambda ls: body(_set(ls, 2, 2, "NaN")),
        ", line 4: rating 'NaN' is not finite; expected a number",
    ),
    (
        "infinite rating",
        lambda ls: body(_set(ls, 2, 2, "-inf")),
        ", line 4: rating '-inf' is not finite; expected a number",
    ),
    (
        "text rating",
        lambda ls: body(_set(ls, 0, 2, "good")),
        ", line 2: rating 'good' is not a number; expected a number",
    ),
    (
        "negative timestamp",
        lambda ls: body(_set(ls, 7, 3, "-1")),
        ", line 9: timestamp '-1' is out of range; expected an integer from 0 to 253402300799 "
        "(unix seconds, up to the year 9999)",
    ),
    (
        "fractional timestamp",
        lambda ls: body(_set(ls, 7, 3, "964982703.5")),
        ", line 9: timestamp '964982703.5' is not an integer; expected an integer from 0 to "
        "253402300799 (unix seconds, up to the year 9999)",
    ),
    (
        "millisecond timestamp",
        lambda ls: body(_set(ls, 7, 3, "964982703000000")),
        ", line 9: timestamp '964982703000000' is out of range; expected an integer from 0 to "
        "253402300799 (unix seconds, up to the year 9999)",
    ),
    (
        "a field too many",
        lambda ls: body([*ls[:3], ls[3] + ",extra", *ls[4:]]),
        ", line 5: found 5 fields",
    ),
    (
        "unbalanced quote",
        lambda ls: body([*ls[:3], '1,"2,3.0,4', *ls[4:]]),
        ", line 5: malformed quoting in the record that starts here (unexpected end of data); "
        "expected CSV with balanced double quotes",
    ),
    ("empty user id", lambda ls: body(_set(ls, 1, 0, " ")), ", line 3: empty user id"),
]


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [pytest.param(f, e, id=name) for name, f, e in CSV_CORRUPTIONS],
)
def test_a_corrupted_interactions_csv_is_refused_in_one_line_naming_the_file(
    tmp_path: Path,
    ratings_lines: list[str],
    corrupt: Callable[[list[str]], str | bytes],
    expected: str,
) -> None:
    folder = generic_folder(tmp_path, corrupt(ratings_lines))
    message = refused("generic", folder)
    assert message.startswith(str(folder / "interactions.csv"))
    assert expected in message


def test_the_uncorrupted_slice_loads(tmp_path: Path, ratings_lines: list[str]) -> None:
    world = load_world("generic", generic_folder(tmp_path, body(ratings_lines)))
    assert world.interactions.height == 300


PARQUET_CORRUPTIONS: list[tuple[str, dict[str, pl.Series], str]] = [
    (
        "list-typed rating",
        {"rating": pl.Series([[4.0]] * 6)},
        ": column 'rating' has type List(Float64); expected rating as numbers",
    ),
    (
        "string-typed rating holding text",
        {"rating": pl.Series(["4", "3.5", "x", "1", "2", "5"])},
        ": row 3: rating 'x' is not a number; expected a number",
    ),
    (
        "NaN rating",
        {"rating": pl.Series([4.0, float("nan"), 1, 2, 3, 4])},
        ": row 2: rating nan is not finite; expected a number",
    ),
    (
        "list-typed user id",
        {"user_id": pl.Series([["1"]] * 6)},
        ": column 'user_id' has type List(String); expected user_id as text",
    ),
    (
        "float user id",
        {"user_id": pl.Series([1.0] * 6)},
        ": column 'user_id' has type Float64; expected user_id as text",
    ),
    (
        "boolean weight",
        {"weight": pl.Series([True] * 6)},
        ": column 'weight' has type Boolean; expected weight as numbers",
    ),
    (
        "fractional timestamp",
        {"timestamp": pl.Series([1.0, 2.0, 2.5, 3.0, 4.0, 5.0])},
        ": row 3: timestamp 2.5 is not an integer",
    ),
    (
        "datetime before 1970",
        {"timestamp": pl.Series(["1969-12-31 00:00:00"] * 6).str.to_datetime()},
        ": row 1: timestamp -86400 is out of range",
    ),
]


def _parquet_world(**overrides: pl.Series) -> pl.DataFrame:
    base = {
        "user_id": pl.Series(["1", "1", "2", "2", "3", "3"]),
        "item_id": pl.Series(["a", "b", "a", "c", "b", "c"]),
        "rating": pl.Series([4.0, 3.0, 5.0, 1.0, 2.0, 4.0]),
    }
    return pl.DataFrame(base | overrides)


@pytest.mark.parametrize(
    ("columns", "expected"),
    [pytest.param(c, e, id=name) for name, c, e in PARQUET_CORRUPTIONS],
)
def test_a_badly_typed_parquet_column_is_refused_naming_the_file_and_column(
    tmp_path: Path, columns: dict[str, pl.Series], expected: str
) -> None:
    folder = tmp_path / "g"
    folder.mkdir()
    _parquet_world(**columns).write_parquet(folder / "interactions.parquet")
    message = refused("generic", folder)
    assert message.startswith(str(folder / "interactions.parquet") + expected)


def test_an_empty_parquet_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "g"
    folder.mkdir()
    _parquet_world().head(0).write_parquet(folder / "interactions.parquet")
    assert refused("generic", folder) == (
        f"{folder / 'interactions.parquet'}: no records (0 rows); expected at least one interaction"
    )


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        pytest.param(
            "item_id,title\n1,A\n2,B\n1,C\n",
            ", line 4: duplicate item id '1' (first on line 2); expected unique item ids",
            id="duplicate item ids",
        ),
        pytest.param(
            "item_id,title\n",
            ": no records after the header; expected at least one item",
            id="header only",
        ),
        pytest.param(
            "item_id,title,title\n1,A,B\n",
            ", line 1: header repeats column 'title' (columns 2 and 3)",
            id="duplicated header column",
        ),
    ],
)
def test_a_bad_items_file_is_refused(tmp_path: Path, items: str, expected: str) -> None:
    folder = generic_folder(tmp_path, "user_id,item_id\n1,1\n1,2\n")
    (folder / "items.csv").write_text(items)
    assert refused("generic", folder).startswith(str(folder / "items.csv") + expected)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_a_world_too_small_to_fit_is_refused_at_load_time(
    tmp_path: Path, ratings_lines: list[str], n: int
) -> None:
    folder = generic_folder(tmp_path, body(ratings_lines[:n]))
    message = refused("generic", folder)
    assert message.startswith(f"{folder}: the world is too small to fit: 1 user, {n} item")
    assert message.endswith(
        "; expected at least 3 users, 3 items and one user with >= 5 interactions"
    )
    # The parsing itself succeeds: a caller that only reads the file can still have it.
    assert load_world("generic", folder, fittable=False).interactions.height == n


def test_a_corrupted_real_ml100k_ratings_file_names_its_line(
    tmp_path: Path, shared_data: Path
) -> None:
    src = real(shared_data, "ml-100k")
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    for name in ("u.item", "u.user", "u.genre"):
        shutil.copy(src / name, folder / name)
    lines = (src / "u.data").read_bytes().splitlines()[:50]
    lines[9] = b"196\t242\t3\t-881250949"
    (folder / "u.data").write_bytes(b"\n".join(lines) + b"\n")
    assert refused("ml-100k", folder) == (
        f"{folder / 'u.data'}, line 10: timestamp '-881250949' is out of range; "
        "expected an integer from 0 to 253402300799 (unix seconds, up to the year 9999)"
    )


def test_a_lastfm_plays_file_with_only_its_header_is_refused(
    tmp_path: Path, shared_data: Path
) -> None:
    src = real(shared_data, "lastfm-hetrec2011-2k")
    folder = tmp_path / "lastfm"
    folder.mkdir()
    shutil.copy(src / "artists.dat", folder / "artists.dat")
    (folder / "user_artists.dat").write_text("userID\tartistID\tweight\r\n")
    assert refused("lastfm", folder) == (
        f"{folder / 'user_artists.dat'}: no records after the header; "
        "expected at least one play count"
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    garbage=st.binary(max_size=40),
    at=st.integers(min_value=0, max_value=400),
)
def test_random_bytes_spliced_into_a_real_file_load_or_fail_in_one_line(
    tmp_path_factory: pytest.TempPathFactory, garbage: bytes, at: int
) -> None:
    src = Path(__file__).parent.parent.parent / "shared" / "data" / "ml-latest-small"
    if not src.is_dir():
        pytest.skip(f"{src} is absent")
    data = b"\n".join((src / "ratings.csv").read_bytes().splitlines()[:40]) + b"\n"
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "interactions.csv").write_bytes(data[:at] + garbage + data[at:])
    try:
        load_world("generic", folder)
    except RecoWorldError as exc:
        message = str(exc)
        assert "\n" not in message
        assert message.startswith(str(folder))


# ---- worlds without tags -------------------------------------------------------------------


def _assert_tagless_catalog(world_tags: list[list[str]], catalog_world) -> None:  # noqa: ANN001
    assert all(t == [] for t in world_tags)
    assert catalog_world.tag_vocabulary == []
    catalog = build_catalog(catalog_world, dim=8)
    # The documented shape of "no tags": an empty vocabulary and zero tag columns.
    assert catalog.tags == ()
    assert catalog.tag_matrix.shape == (catalog_world.items.height, 0)
    assert catalog.tag_matrix.dtype == np.float32
    assert all(t == () for t in catalog.item_tags)


def test_a_generic_folder_with_only_interactions_is_a_tagless_world(
    tmp_path: Path, ratings_lines: list[str]
) -> None:
    world = load_world("generic", generic_folder(tmp_path, body(ratings_lines)))
    _assert_tagless_catalog(world.items["tags"].to_list(), world)


def test_ml100k_with_every_genre_flag_zero_is_a_tagless_world(
    tmp_path: Path, shared_data: Path
) -> None:
    src = real(shared_data, "ml-100k")
    folder = tmp_path / "ml-100k"
    shutil.copytree(src, folder, ignore=shutil.ignore_patterns("u[0-9a-z]*.base", "*.test"))
    records = (src / "u.item").read_bytes().splitlines()
    zeroed = [b"|".join(r.split(b"|")[:5] + [b"0"] * 19) for r in records]
    (folder / "u.item").write_bytes(b"\n".join(zeroed) + b"\n")
    world = load_world("ml-100k", folder)
    assert world.items.height == 1682
    _assert_tagless_catalog(world.items["tags"].to_list(), world)


def test_lastfm_without_taggings_is_a_tagless_world(tmp_path: Path, shared_data: Path) -> None:
    src = real(shared_data, "lastfm-hetrec2011-2k")
    folder = tmp_path / "lastfm"
    folder.mkdir()
    for name in ("artists.dat", "user_artists.dat", "user_friends.dat"):
        shutil.copy(src / name, folder / name)
    world = load_world("lastfm", folder)
    assert world.interactions["timestamp"].null_count() == world.interactions.height
    assert world.tag_vocabulary == []
    assert all(t == [] for t in world.items["tags"].to_list())
