"""Loaders: real datasets (skipped without ../shared/data), small written files, and the exact
messages of malformed input."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
import pytest

from recoworld.errors import DataError
from recoworld.world.loaders import DataWarning, load_world
from recoworld.world.model import INTERACTION_SCHEMA, ITEM_SCHEMA, World

# ---- helpers ---------------------------------------------------------------------------------


def write(path: Path, content: str | bytes, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path


def real(shared_data: Path, folder: str) -> Path:
    path = shared_data / folder
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


def assert_contract(world: World) -> None:
    assert dict(world.items.schema) == ITEM_SCHEMA
    assert dict(world.interactions.schema) == INTERACTION_SCHEMA
    assert world.users.schema["user_id"] == pl.String
    assert dict(world.friends.schema) == {"user_id": pl.String, "friend_id": pl.String}


def timed_load(dataset: str, path: Path) -> tuple[World, float]:
    start = time.perf_counter()
    world = load_world(dataset, path)
    return world, time.perf_counter() - start


def item(world: World, item_id: str) -> dict[str, object]:
    return world.items.filter(pl.col("item_id") == item_id).row(0, named=True)


GENRE_FLAGS_TOY_STORY = "|".join("0001110000000000000")  # Animation, Children's, Comedy
GENRE_FLAGS_NONE = "|".join("1000000000000000000")  # only 'unknown'


def ml100k_folder(root: Path, *, data: str | None = None, items: str | None = None) -> Path:
    folder = root / "ml-100k"
    write(
        folder / "u.item",
        items
        if items is not None
        else (
            f"1|Toy Story (1995)|01-Jan-1995||http://x|{GENRE_FLAGS_TOY_STORY}\n"
            f"2|Misérables, Les (1995)|01-Jan-1995||http://x|{GENRE_FLAGS_NONE}\n"
            f"3|Land Before Time III (1995) (V)|01-Jan-1996||http://x|{GENRE_FLAGS_TOY_STORY}\n"
        ),
        encoding="latin-1",
    )
    write(folder / "u.user", "1|24|M|technician|85711\n2|53|F|other|T8H1N\n")
    write(
        folder / "u.data",
        data if data is not None else "1\t1\t5\t881250949\n2\t2\t3\t881250950\n1\t3\t4\t1\n",
    )
    return folder


# ---- real data -------------------------------------------------------------------------------


def test_ml100k_real(shared_data: Path) -> None:
    world, seconds = timed_load("ml-100k", real(shared_data, "ml-100k"))
    assert_contract(world)
    assert (world.interactions.height, world.users.height, world.items.height) == (
        100_000,
        943,
        1_682,
    )
    assert world.rating_scale == (1.0, 5.0)
    assert world.interactions["rating"].value_counts().sort("rating")["count"].to_list() == [
        6110,
        11370,
        27145,
        34174,
        21201,
    ]
    assert item(world, "1") == {
        "item_id": "1",
        "title": "Toy Story",
        "text": "Released 1995. Genres: Animation, Children's, Comedy.",
        "tags": ["Animation", "Children's", "Comedy"],
        "creator": "",
    }
    assert item(world, "267")["tags"] == []  # the 'unknown' genre flag is not a tag
    assert item(world, "1412")["title"] == "Land Before Time III: The Time of the Great Giving"
    assert world.users.columns == ["user_id", "age", "gender", "occupation", "zip"]
    assert world.users.row(0) == ("1", 24, "M", "technician", "85711")
    assert seconds < 1.0


def test_ml100k_default_path(shared_data: Path) -> None:
    real(shared_data, "ml-100k")
    world = load_world("ml-100k")
    assert (world.interactions.height, world.users.height, world.items.height) == (
        100_000,
        943,
        1_682,
    )


def test_ml_latest_small_real(shared_data: Path) -> None:
    world, seconds = timed_load("ml-latest-small", real(shared_data, "ml-latest-small"))
    assert_contract(world)
    assert world.name == "ml-latest-small"
    assert (world.interactions.height, world.users.height, world.items.height) == (
        100_004,
        671,
        9_125,
    )
    assert world.users.columns == ["user_id"]
    assert world.rating_scale == (0.5, 5.0)
    assert world.interactions["rating"].min() == 0.5
    toy = item(world, "1")
    assert toy["title"] == "Toy Story"
    assert toy["tags"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy", "pixar"]
    assert (
        toy["text"]
        == "Released 1995. Genres: Adventure, Animation, Children, Comedy, Fantasy. Tagged: pixar."
    )
    assert item(world, "108583")["title"] == "Fawlty Towers"  # '(1975-1979)'
    assert item(world, "143410") == {  # no year, '(no genres listed)'
        "item_id": "143410",
        "title": "Hyena Road",
        "text": "",
        "tags": [],
        "creator": "",
    }
    assert world.items.filter(pl.col("tags").list.contains("(no genres listed)")).height == 0
    assert world.items["tags"].list.len().max() <= 20 + 5
    assert seconds < 2.0


def test_lastfm_real(shared_data: Path) -> None:
    world, seconds = timed_load("lastfm", real(shared_data, "lastfm-hetrec2011-2k"))
    assert_contract(world)
    assert world.users.height == 1_892
    assert world.interactions.height == 92_834  # the 2011 release names no missing artist
    assert world.friends.height == 25_434
    assert world.items.height == 17_632
    assert world.interactions["rating"].null_count() == 92_834
    assert world.interactions["weight"].min() >= 1
    assert world.rating_scale is None and not world.has_ratings
    # Only 20,665 user-artist pairs were also tagged by that user.
    assert world.interactions["timestamp"].is_not_null().sum() == 20_665
    assert world.interactions.row(1, named=True) == {
        "user_id": "2",
        "item_id": "52",
        "rating": None,
        "weight": 11690.0,
        "timestamp": 1238544000,
    }
    assert (world.items["creator"] == world.items["title"]).all()
    assert world.items["tags"].list.len().max() == 8
    britney = item(world, "289")
    assert britney["tags"][:3] == ["pop", "dance", "female vocalists"]
    assert britney["text"].startswith("Artist. Tagged: pop, dance, female vocalists, ")
    assert "die Ärzte" in world.tag_vocabulary  # tags.dat is Latin-1
    assert seconds < 3.0


# ---- MovieLens 100K on small files -----------------------------------------------------------


def test_ml100k_small(tmp_path: Path) -> None:
    world = load_world("ml-100k", ml100k_folder(tmp_path), fittable=False)
    assert_contract(world)
    assert world.items.rows() == [
        (
            "1",
            "Toy Story",
            "Released 1995. Genres: Animation, Children's, Comedy.",
            ["Animation", "Children's", "Comedy"],
            "",
        ),
        ("2", "Misérables, Les", "Released 1995.", [], ""),
        (
            "3",
            "Land Before Time III",
            "Released 1995. Genres: Animation, Children's, Comedy.",
            ["Animation", "Children's", "Comedy"],
            "",
        ),
    ]
    assert world.interactions.rows() == [
        ("1", "1", 5.0, 1.0, 881250949),
        ("2", "2", 3.0, 1.0, 881250950),
        ("1", "3", 4.0, 1.0, 1),
    ]
    assert world.users.rows() == [
        ("1", 24, "M", "technician", "85711"),
        ("2", 53, "F", "other", "T8H1N"),
    ]
    assert world.source == str(tmp_path / "ml-100k")


def test_ml100k_recbole_form(tmp_path: Path) -> None:
    folder = tmp_path / "ml-100k"
    write(
        folder / "ml-100k.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t1\t4\t881250949\n",
    )
    write(
        folder / "ml-100k.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "1\tToy Story\t1995\tAnimation Children's Comedy\n2\tunkonwn\tunkonwn\tunknown\n",
    )
    write(
        folder / "ml-100k.user",
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
        "1\t24\tM\ttechnician\t85711\n",
    )
    world = load_world("ml-100k", folder, fittable=False)
    assert (world.name, world.rating_scale) == ("ml-100k", (1.0, 5.0))
    assert world.items.rows() == [
        (
            "1",
            "Toy Story",
            "Released 1995. Genres: Animation, Children's, Comedy.",
            ["Animation", "Children's", "Comedy"],
            "",
        ),
        ("2", "unkonwn", "Genres: unknown.", ["unknown"], ""),
    ]
    assert world.interactions.rows() == [("1", "1", 4.0, 1.0, 881250949)]
    assert world.users.rows() == [("1", 24, "M", "technician", "85711")]


def test_ml100k_comma_separated_data(tmp_path: Path) -> None:
    folder = ml100k_folder(tmp_path, data="1\t1\t5\t881250949\n2\t2\t3\t881250950\n1,2,3,4\n")
    with pytest.raises(DataError) as err:
        load_world("ml-100k", folder, fittable=False)
    assert str(err.value) == (
        f"{folder / 'u.data'}, line 3: found 1 field: '1,2,3,4'; "
        "expected 4 tab-separated fields (user id, item id, rating, timestamp)"
    )
    assert (err.value.line, err.value.path) == (3, str(folder / "u.data"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            "1\t1\t5\t881250949\n2\t2\tfive\t881250950\n",
            "{f}/u.data, line 2: rating 'five' is not a number; expected a number from 1 to 5",
            id="non-numeric rating",
        ),
        pytest.param(
            "1\t1\t5\t881250949\n\n2\t2\t6\t881250950\n",  # blank line 2 skipped, counted
            "{f}/u.data, line 3: rating '6' is out of range; expected a number from 1 to 5",
            id="rating out of range",
        ),
        pytest.param(
            "1\t1\t5\t881250949\n2\t99\t3\t881250950\n1\t98\t3\t881250950\n",
            "{f}/u.data, line 2: item id '99' is not in {f}/u.item; "
            "expected every item id in u.data to appear in {f}/u.item",
            id="unknown item",
        ),
        pytest.param(
            "7\t1\t5\t881250949\n",
            "{f}/u.data, line 1: user id '7' is not in {f}/u.user; "
            "expected every user id in u.data to appear in {f}/u.user",
            id="unknown user",
        ),
    ],
)
def test_ml100k_bad_ratings_file(tmp_path: Path, data: str, message: str) -> None:
    folder = ml100k_folder(tmp_path, data=data)
    with pytest.raises(DataError) as err:
        load_world("ml-100k", folder, fittable=False)
    assert str(err.value) == message.format(f=folder)


def test_ml100k_bad_genre_flags(tmp_path: Path) -> None:
    folder = ml100k_folder(
        tmp_path, items=f"1|Toy Story (1995)|01-Jan-1995||http://x|{GENRE_FLAGS_TOY_STORY[:-1]}2\n"
    )
    with pytest.raises(DataError) as err:
        load_world("ml-100k", folder, fittable=False)
    assert str(err.value) == (
        f"{folder / 'u.item'}, line 1: genre flags '0001110000000000002'; expected genre flags of "
        "0 or 1"
    )


def test_ml100k_duplicate_item(tmp_path: Path) -> None:
    line = f"1|Toy Story (1995)|01-Jan-1995||http://x|{GENRE_FLAGS_TOY_STORY}\n"
    folder = ml100k_folder(tmp_path, items=line + line.replace("1|", "2|", 1) + line)
    with pytest.raises(DataError) as err:
        load_world("ml-100k", folder, fittable=False)
    assert (
        str(err.value)
        == f"{folder / 'u.item'}, line 3: duplicate item id '1' (first on line 1); expected unique "
        "item ids"
    )


def test_ml100k_missing_file(tmp_path: Path) -> None:
    folder = ml100k_folder(tmp_path)
    (folder / "u.user").unlink()
    with pytest.raises(DataError) as err:
        load_world("ml-100k", folder, fittable=False)
    assert str(err.value) == (
        f"{folder / 'u.user'}: file not found; "
        "expected 5 pipe-separated fields (user id, age, gender, occupation, zip code)"
    )


def test_ml100k_not_a_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_world("ml-100k", tmp_path / "nowhere", fittable=False)
    assert str(err.value) == (
        f"{tmp_path / 'nowhere'}: folder not found; expected a MovieLens 100K folder (u.data, "
        "u.item, u.user)"
    )


# ---- MovieLens 1M ----------------------------------------------------------------------------


def ml1m_folder(root: Path, users: str = "1::F::1::10::48067\n2::M::56::16::70072\n") -> Path:
    folder = root / "ml-1m"
    write(
        folder / "movies.dat",
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "2::Cité des enfants perdus, La (1995)::Adventure|Sci-Fi\n",
        encoding="latin-1",
    )
    write(folder / "users.dat", users)
    write(folder / "ratings.dat", "1::1::5::978300760\n2::2::3::978302109\n")
    return folder


def test_ml1m_small(tmp_path: Path) -> None:
    world = load_world("ml-1m", ml1m_folder(tmp_path), fittable=False)
    assert_contract(world)
    assert world.name == "ml-1m" and world.rating_scale == (1.0, 5.0)
    assert world.items.rows() == [
        (
            "1",
            "Toy Story",
            "Released 1995. Genres: Animation, Children's, Comedy.",
            ["Animation", "Children's", "Comedy"],
            "",
        ),
        (
            "2",
            "Cité des enfants perdus, La",
            "Released 1995. Genres: Adventure, Sci-Fi.",
            ["Adventure", "Sci-Fi"],
            "",
        ),
    ]
    assert world.users.rows() == [
        ("1", 1, "F", "K-12 student", "48067"),
        ("2", 56, "M", "self-employed", "70072"),
    ]
    assert world.interactions.rows() == [
        ("1", "1", 5.0, 1.0, 978300760),
        ("2", "2", 3.0, 1.0, 978302109),
    ]


@pytest.mark.parametrize(
    ("users", "message"),
    [
        pytest.param(
            "1::F::1::10::48067\n2::M::56::21::70072\n",
            "{f}/users.dat, line 2: occupation code '21' is out of range; "
            "expected an integer from 0 to 20",
            id="occupation code",
        ),
        pytest.param(
            "1::F::30::10::48067\n",
            "{f}/users.dat, line 1: age code 30; expected one of 1, 18, 25, 35, 45, 50, 56",
            id="age bucket",
        ),
    ],
)
def test_ml1m_bad_users_file(tmp_path: Path, users: str, message: str) -> None:
    folder = ml1m_folder(tmp_path, users=users)
    with pytest.raises(DataError) as err:
        load_world("ml-1m", folder, fittable=False)
    assert str(err.value) == message.format(f=folder)


# ---- MovieLens latest ------------------------------------------------------------------------


def latest_folder(root: Path, ratings: str | bytes | None = None) -> Path:
    folder = root / "ml-latest-small"
    write(
        folder / "movies.csv",
        "movieId,title,genres\n1,Toy Story (1995),Adventure|Comedy\n"
        '2,"American President, The (1995)",Romance\n3,Hyena Road,(no genres listed)\n',
    )
    write(
        folder / "tags.csv",
        "userId,movieId,tag,timestamp\n1,1,Pixar,1\n2,1,pixar ,2\n1,1,fun,3\n"
        "1,1,comedy,4\n3,1,a,5\n3,1,b,6\n3,1,c,7\n3,1,d,8\n",
    )
    write(
        folder / "ratings.csv",
        ratings
        if ratings is not None
        else (
            "userId,movieId,rating,timestamp\n"
            "1,1,4.5,1260759144\n2,2,0.5,1260759179\n1,3,3.0,1260759180\n"
        ),
    )
    return folder


def test_ml_latest_small_files(tmp_path: Path) -> None:
    world = load_world("ml-latest", latest_folder(tmp_path), fittable=False)
    assert_contract(world)
    assert world.rating_scale == (0.5, 5.0)
    # user tags: lower-cased, most frequent first, ties by name, at most 5, genres skipped
    assert world.items.rows() == [
        (
            "1",
            "Toy Story",
            "Released 1995. Genres: Adventure, Comedy. Tagged: pixar, a, b, c, d.",
            ["Adventure", "Comedy", "pixar", "a", "b", "c", "d"],
            "",
        ),
        ("2", "American President, The", "Released 1995. Genres: Romance.", ["Romance"], ""),
        ("3", "Hyena Road", "", [], ""),
    ]
    assert world.users.rows() == [("1",), ("2",)]
    assert world.interactions["rating"].to_list() == [4.5, 0.5, 3.0]


@pytest.mark.parametrize(
    ("ratings", "message"),
    [
        pytest.param(
            b"userId,movieId,rating,timestamp\n1,1,4.5,1\n1,2\xff,3.0,2\n",
            "{f}/ratings.csv, line 3: byte 0xff at column 4 is not valid UTF-8; "
            "expected UTF-8 text",
            id="bad encoding",
        ),
        pytest.param(
            "userId,movieId,timestamp\n1,1,1\n",
            "{f}/ratings.csv, line 1: header lacks column 'rating' "
            "(found 'userId', 'movieId', 'timestamp'); "
            "expected comma-separated columns userId, movieId, rating, timestamp",
            id="missing column",
        ),
        pytest.param(
            "userId\tmovieId\trating\ttimestamp\n1\t1\t4.5\t1\n",
            "{f}/ratings.csv, line 1: header lacks columns 'userId', 'movieId', 'rating', "
            "'timestamp' (found 'userId\\tmovieId\\trating\\ttimestamp'); "
            "expected comma-separated columns userId, movieId, rating, timestamp",
            id="tab separated",
        ),
        pytest.param(
            "userId,movieId,rating,timestamp\n1,1,4.5,1\n1,2,,2\n",
            "{f}/ratings.csv, line 3: rating is missing; expected a number from 0.5 to 5",
            id="missing rating",
        ),
    ],
)
def test_ml_latest_bad_ratings_file(tmp_path: Path, ratings: str | bytes, message: str) -> None:
    folder = latest_folder(tmp_path, ratings=ratings)
    with pytest.raises(DataError) as err:
        load_world("ml-latest", folder, fittable=False)
    assert str(err.value) == message.format(f=folder)


def test_ml_latest_quoted_record_line_numbers(tmp_path: Path) -> None:
    folder = latest_folder(tmp_path)
    write(
        folder / "movies.csv",
        'movieId,title,genres\n1,"Two\nline title (1995)",Comedy\n2,"Bad, row",Drama,extra\n',
    )
    with pytest.raises(DataError) as err:
        load_world("ml-latest", folder, fittable=False)
    assert str(err.value) == (
        f"{folder / 'movies.csv'}, line 4: found 4 fields: '2,Bad, row,Drama,extra'; "
        "expected 3 comma-separated fields (movieId, title, genres)"
    )


# ---- Last.fm ---------------------------------------------------------------------------------


def lastfm_folder(root: Path, plays: str) -> Path:
    folder = root / "lastfm"
    write(
        folder / "artists.dat",
        "id\tname\turl\tpictureURL\n1\tMALICE MIZER\thttp://a\thttp://p\n"
        "2\tDie Ärzte\thttp://b\thttp://q\n",
    )
    write(
        folder / "tags.dat",
        "tagID\ttagValue\r\n1\tmetal\r\n2\tdeutschpunk\r\n3\tfußball\r\n",
        encoding="latin-1",
    )
    write(
        folder / "user_taggedartists.dat",
        "userID\tartistID\ttagID\tday\tmonth\tyear\r\n"
        "10\t2\t2\t1\t4\t2009\r\n10\t2\t3\t1\t3\t2009\r\n\r\n11\t2\t2\t1\t5\t2010\r\n"
        "11\t1\t1\t1\t5\t2010\r\n12\t99\t1\t1\t5\t2010\r\n",
    )
    write(folder / "user_artists.dat", plays)
    write(folder / "user_friends.dat", "userID\tfriendID\r\n10\t11\r\n11\t10\r\n")
    return folder


def test_lastfm_small(tmp_path: Path) -> None:
    folder = lastfm_folder(
        tmp_path, "userID\tartistID\tweight\r\n10\t2\t300\r\n11\t1\t5\r\n10\t1\t2\r\n"
    )
    world = load_world("lastfm", folder, fittable=False)
    assert_contract(world)
    assert world.items.rows() == [
        ("1", "MALICE MIZER", "Artist. Tagged: metal.", ["metal"], "MALICE MIZER"),
        (
            "2",
            "Die Ärzte",
            "Artist. Tagged: deutschpunk, fußball.",
            ["deutschpunk", "fußball"],
            "Die Ärzte",
        ),
    ]
    # earliest tagging day of the pair (1 March 2009 00:00 UTC), else null
    assert world.interactions.rows() == [
        ("10", "2", None, 300.0, 1235865600),
        ("11", "1", None, 5.0, 1272672000),
        ("10", "1", None, 2.0, None),
    ]
    assert world.users.rows() == [("10",), ("11",)]
    assert world.friends.rows() == [("10", "11"), ("11", "10")]


def test_lastfm_drops_unknown_artists_with_a_warning(tmp_path: Path) -> None:
    folder = lastfm_folder(tmp_path, "userID\tartistID\tweight\n10\t2\t300\n11\t77\t5\n10\t78\t2\n")
    with pytest.warns(DataWarning) as record:
        world = load_world("lastfm", folder, fittable=False)
    assert str(record[0].message) == (
        f"{folder / 'user_artists.dat'}: dropped 2 of 3 rows naming artists absent from "
        f"{folder / 'artists.dat'}"
    )
    assert world.interactions["item_id"].to_list() == ["2"]
    assert world.users.rows() == [("10",), ("11",)]


@pytest.mark.parametrize(
    ("plays", "message"),
    [
        pytest.param(
            "userID\tartistID\tweight\n10\t2\t300\n11\t1\t0\n",
            "{f}/user_artists.dat, line 3: play count '0' is out of range; expected a number > 0",
            id="zero play count",
        ),
        pytest.param(
            "10\t2\t300\n",
            "{f}/user_artists.dat, line 1: header is '10\\t2\\t300'; "
            "expected header 'userID\\tartistID\\tweight'",
            id="wrong header",
        ),
    ],
)
def test_lastfm_bad_plays_file(tmp_path: Path, plays: str, message: str) -> None:
    folder = lastfm_folder(tmp_path, plays)
    with pytest.raises(DataError) as err:
        load_world("lastfm", folder, fittable=False)
    assert str(err.value) == message.format(f=folder)


@pytest.mark.parametrize(
    ("tagging", "message"),
    [
        pytest.param(
            "10\t2\t2\t31\t4\t2009",
            "{f}/user_taggedartists.dat, line 2: no such date: 2009-04-31; "
            "expected a valid calendar date",
            id="impossible date",
        ),
        pytest.param(
            "10\t2\t9\t1\t4\t2009",
            "{f}/user_taggedartists.dat, line 2: tag id '9' is not in {f}/tags.dat; "
            "expected every tag id in user_taggedartists.dat to appear in {f}/tags.dat",
            id="unknown tag",
        ),
    ],
)
def test_lastfm_bad_taggings_file(tmp_path: Path, tagging: str, message: str) -> None:
    folder = lastfm_folder(tmp_path, "userID\tartistID\tweight\n10\t2\t300\n")
    write(
        folder / "user_taggedartists.dat",
        f"userID\tartistID\ttagID\tday\tmonth\tyear\n{tagging}\n",
    )
    with pytest.raises(DataError) as err:
        load_world("lastfm", folder, fittable=False)
    assert str(err.value) == message.format(f=folder)


# ---- RecBole ---------------------------------------------------------------------------------


def recbole_folder(root: Path, inter: str) -> Path:
    folder = root / "mini"
    write(folder / "mini.inter", inter)
    return folder


def test_recbole_bare_inter(tmp_path: Path) -> None:
    folder = recbole_folder(
        tmp_path, "user_id:token\titem_id:token\tlabel:float\na\tx\t1\nb\ty\t0\na\ty\t1\n"
    )
    world = load_world("recbole", folder, fittable=False)
    assert_contract(world)
    assert (world.name, world.rating_scale, world.source) == ("mini", None, str(folder))
    assert world.items.rows() == [("x", "x", "", [], ""), ("y", "y", "", [], "")]
    assert world.users.rows() == [("a",), ("b",)]
    assert world.interactions.rows() == [
        ("a", "x", None, 1.0, None),
        ("b", "y", None, 1.0, None),
        ("a", "y", None, 1.0, None),
    ]


def test_recbole_with_item_and_user(tmp_path: Path) -> None:
    folder = recbole_folder(
        tmp_path,
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t10\t4.5\t100.4\n2\t11\t2\t\n",
    )
    write(
        folder / "mini.item",
        "item_id:token\ttitle:token_seq\tgenre:token_seq\tartist:token\tscore:float_seq\n"
        "10\tSome Song\trock  indie\tThe Band\t1 2\n11\tOther\t\t\t\n",
    )
    write(folder / "mini.user", "user_id:token\tage:token\tzip_code:token\n1\t30\t0211\n2\t\t\n")
    world = load_world("recbole", folder / "mini.inter", fittable=False)
    assert world.rating_scale == (2.0, 4.5)
    assert world.items.rows() == [
        ("10", "Some Song", "Genres: rock, indie.", ["rock", "indie"], "The Band"),
        ("11", "Other", "", [], ""),
    ]
    assert world.users.rows() == [("1", 30, "0211"), ("2", None, None)]
    assert world.interactions.rows() == [("1", "10", 4.5, 1.0, 100), ("2", "11", 2.0, 1.0, None)]


_RECBOLE_LAYOUT = (
    "expected a tab-separated header of name:type fields (token, token_seq, float, float_seq) "
    "including user_id:token, item_id:token"
)


@pytest.mark.parametrize(
    ("inter", "message"),
    [
        pytest.param(
            "user_id:token\trating:float\n1\t3\n",
            "{f}/mini.inter, line 1: header lacks column 'item_id' (found 'user_id', 'rating'); "
            + _RECBOLE_LAYOUT,
            id="missing item_id",
        ),
        pytest.param(
            "user_id:token\titem_id:id\n1\t3\n",
            "{f}/mini.inter, line 1: header field 'item_id:id' is not name:type; "
            + _RECBOLE_LAYOUT,
            id="bad header type",
        ),
    ],
)
def test_recbole_bad_header(tmp_path: Path, inter: str, message: str) -> None:
    folder = recbole_folder(tmp_path, inter)
    with pytest.raises(DataError) as err:
        load_world("recbole", folder, fittable=False)
    assert str(err.value) == message.format(f=folder)


def test_recbole_unknown_item(tmp_path: Path) -> None:
    folder = recbole_folder(tmp_path, "user_id:token\titem_id:token\n1\t10\n1\t12\n")
    write(folder / "mini.item", "item_id:token\ttitle:token_seq\n10\tA\n11\tB\n")
    with pytest.raises(DataError) as err:
        load_world("recbole", folder, fittable=False)
    item_file = folder / "mini.item"
    assert str(err.value) == (
        f"{folder / 'mini.inter'}, line 3: item id '12' is not in {item_file}; "
        f"expected every item id in mini.inter to appear in {item_file}"
    )


# ---- generic ---------------------------------------------------------------------------------


def test_generic_csv(tmp_path: Path) -> None:
    write(
        tmp_path / "shop" / "interactions.csv",
        "user_id,item_id,weight,timestamp\nu1,7,2,100\nu2,8,,\n",
    )
    write(
        tmp_path / "shop" / "items.csv",
        'item_id,title,tags,creator,price\n7,"Lamp, red",home|light ,Acme,3\n8,,,,\n',
    )
    write(tmp_path / "shop" / "users.csv", "user_id,age,gender\nu1,31,F\nu2,,\n")
    write(tmp_path / "shop" / "friends.csv", "user_id,friend_id\nu1,u2\n")
    world = load_world("generic", tmp_path / "shop", fittable=False)
    assert_contract(world)
    assert (world.name, world.rating_scale) == ("shop", None)
    assert world.items.rows() == [
        ("7", "Lamp, red", "", ["home", "light"], "Acme"),
        ("8", "8", "", [], ""),
    ]
    assert world.interactions.rows() == [("u1", "7", None, 2.0, 100), ("u2", "8", None, 1.0, None)]
    assert world.users.rows() == [("u1", 31, "F"), ("u2", None, None)]
    assert world.friends.rows() == [("u1", "u2")]


def test_generic_parquet_ids_become_strings(tmp_path: Path) -> None:
    folder = tmp_path / "events"
    folder.mkdir()
    pl.DataFrame(
        {
            "user_id": [1, 2],
            "item_id": [10, 11],
            "rating": [4, 5],
            "timestamp": pl.Series(
                ["2020-01-01 00:00:01", "2020-01-02 00:00:00"]
            ).str.to_datetime(),
        }
    ).write_parquet(folder / "interactions.parquet")
    pl.DataFrame({"item_id": [10, 11], "tags": [["a", " b"], None]}).write_parquet(
        folder / "items.parquet"
    )
    write(folder / "items.csv", "not,read\n")  # Parquet wins
    world = load_world("generic", folder, fittable=False)
    assert_contract(world)
    assert world.items.rows() == [("10", "10", "", ["a", "b"], ""), ("11", "11", "", [], "")]
    assert world.interactions.rows() == [
        ("1", "10", 4.0, 1.0, 1577836801),
        ("2", "11", 5.0, 1.0, 1577923200),
    ]
    assert world.users.rows() == [("1",), ("2",)]
    assert world.rating_scale == (4.0, 5.0)


def test_generic_parquet_unknown_item(tmp_path: Path) -> None:
    folder = tmp_path / "events"
    folder.mkdir()
    pl.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "z"]}).write_parquet(
        folder / "interactions.parquet"
    )
    pl.DataFrame({"item_id": ["x", "y"]}).write_parquet(folder / "items.parquet")
    with pytest.raises(DataError) as err:
        load_world("generic", folder, fittable=False)
    items = folder / "items.parquet"
    assert str(err.value) == (
        f"{folder / 'interactions.parquet'}: row 2: item id 'z' is not in {items}; "
        f"expected every item id in interactions.parquet to appear in {items}"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            "user_id,item\n1,2\n",
            "{f}, line 1: header lacks column 'item_id' (found 'user_id', 'item'); "
            "expected comma-separated columns user_id, item_id "
            "(optionally rating, weight, timestamp)",
            id="missing item_id column",
        ),
        pytest.param(
            "user_id,item_id,weight\n1,2,1\n1,3,-2\n",
            "{f}, line 3: weight '-2' is out of range; expected a number > 0",
            id="negative weight",
        ),
        pytest.param(
            "user_id,item_id\n1,2\n ,3\n",
            "{f}, line 3: empty user id; expected a non-empty user id",
            id="empty id",
        ),
    ],
)
def test_generic_bad_interactions_csv(tmp_path: Path, content: str, message: str) -> None:
    path = write(tmp_path / "g" / "interactions.csv", content)
    with pytest.raises(DataError) as err:
        load_world("generic", tmp_path / "g", fittable=False)
    assert str(err.value) == message.format(f=path)


def test_generic_without_interactions(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_world("generic", tmp_path, fittable=False)
    assert (
        str(err.value)
        == f"{tmp_path}: no interactions.parquet or interactions.csv; expected a folder holding "
        "one of them"
    )


# ---- dispatch --------------------------------------------------------------------------------


def test_unknown_dataset() -> None:
    with pytest.raises(DataError) as err:
        load_world("netflix")
    assert str(err.value) == (
        "netflix: unknown dataset; expected one of ml-100k, ml-1m, ml-latest, ml-latest-small, "
        "lastfm, amazon, kuairec, kuairand, recbole, generic"
    )


def test_generic_needs_a_path() -> None:
    with pytest.raises(DataError) as err:
        load_world("generic")
    assert str(err.value) == "generic: no path given; expected the folder holding the generic files"
