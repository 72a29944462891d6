"""Loaders of the formats the literature uses (Amazon review 5-core, ML-1M ratings only,
KuaiRec, KuaiRand) on small generated files: what each field becomes, and every malformed
input refused with one line naming the file, the line and the expected format."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from recoworld.errors import DataError
from recoworld.world.loaders import load_world
from recoworld.world.model import World

# ---- generators -------------------------------------------------------------------------------


def review_lines(users: int = 6, per_user: int = 5) -> list[str]:
    out = []
    for u in range(users):
        for k in range(per_user):
            out.append(
                json.dumps(
                    {
                        "reviewerID": f"A{u}",
                        "asin": f"B{(u + k) % 9:03d}",
                        "reviewerName": "someone",
                        "overall": float(1 + (u + 2 * k) % 5),
                        "reviewText": "fine, really",
                        "unixReviewTime": 1_300_000_000 + 86_400 * (u + 3 * k),
                    }
                )
            )
    return out


META_2014 = [  # Python literals, as the 2014 release writes its metadata
    str(
        {
            "asin": f"B{i:03d}",
            "title": f"Puzzle {i} &amp; Co",
            "categories": [["Toys & Games", "Puzzles", "Jigsaw"], ["Toys & Games", "Games"]],
            "brand": "Acme" if i % 2 else "",
            "salesRank": {"Toys & Games": 100 + i},
        }
    )
    for i in range(8)  # B008 has no metadata
]
META_2018 = [
    json.dumps({"asin": f"B{i:03d}", "title": f"Game {i}", "category": ["Toys", "Board Games"]})
    for i in range(9)
]


def amazon_folder(
    root: Path, reviews: str | bytes, meta: str | None = None, name: str = "reviews_Toys_5.json"
) -> Path:
    folder = root / "amazon"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(reviews if isinstance(reviews, bytes) else reviews.encode())
    if meta is not None:
        (folder / "meta_Toys.json").write_text(meta)
    return folder


def ml1m_folder(root: Path, ratings: str, movies: str | None = None) -> Path:
    folder = root / "ml1m"
    folder.mkdir(exist_ok=True)
    (folder / "ratings.dat").write_text(ratings, encoding="latin-1")
    if movies is not None:
        (folder / "movies.dat").write_text(movies, encoding="latin-1")
    return folder


def ml1m_ratings(users: int = 4, per_user: int = 6) -> str:
    return "".join(
        f"{u + 1}::{10 + (u + k) % 8}::{1 + (u * k) % 5}::{978_300_000 + 60 * k + u}\n"
        for u in range(users)
        for k in range(per_user)
    )


KUAIREC_HEADER = "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio"


def kuairec_lines(users: int = 4, per_user: int = 6) -> list[str]:
    out = []
    for u in range(users):
        for k in range(per_user):
            play, dur = 1000 * (1 + (u + k) % 7), 5000
            ts = 1_593_898_068.378 + 30 * k + 3600 * u
            out.append(
                f"{u},{100 + (u + k) % 9},{play},{dur},2020-07-05 05:27:48.378,20200705,"
                f"{ts},{play / dur}"
            )
    return out


def kuairec_folder(root: Path, lines: list[str], header: str = KUAIREC_HEADER) -> Path:
    folder = root / "kuairec"
    folder.mkdir(exist_ok=True)
    (folder / "big_matrix.csv").write_text("\n".join([header, *lines]) + "\n")
    return folder


KUAIRAND_HEADER = (
    "user_id,video_id,date,hourmin,time_ms,is_click,is_like,long_view,play_time_ms,duration_ms,tab"
)


def kuairand_lines(users: int = 4, per_user: int = 7) -> list[str]:
    out = []
    for u in range(users):
        for k in range(per_user):
            play = 0 if k == 0 else 1500 * k  # the first impression of each user is not played
            out.append(
                f"{u},{200 + (u + k) % 9},20220408,1200,{1_649_376_000_000 + 45_000 * k + u},"
                f"{int(play > 0)},0,0,{play},6000,1"
            )
    return out


def kuairand_folder(root: Path, lines: list[str], header: str = KUAIRAND_HEADER) -> Path:
    folder = root / "kuairand"
    folder.mkdir(exist_ok=True)
    (folder / "log_standard_4_08_to_4_21_pure.csv").write_text("\n".join([header, *lines]) + "\n")
    return folder


def refused(dataset: str, folder: Path) -> str:
    with pytest.raises(DataError) as err:
        load_world(dataset, folder)
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# ---- Amazon -----------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("meta", [None, "2014", "2018"])
def test_amazon_reviews_become_rated_interactions(
    tmp_path: Path, gz: bool, meta: str | None
) -> None:
    text = "\n".join(review_lines()) + "\n"
    data = gzip.compress(text.encode()) if gz else text.encode()
    name = "reviews_Toys_5.json" + (".gz" if gz else "")
    meta_text = {"2014": "\n".join(META_2014), "2018": "\n".join(META_2018), None: None}[meta]
    w = load_world("amazon", amazon_folder(tmp_path, data, meta_text, name=name))
    assert (w.name, w.rating_scale) == ("amazon", (1.0, 5.0))
    assert w.interactions.height == 30 and w.users.height == 6
    assert w.interactions["weight"].unique().to_list() == [1.0]
    first = w.interactions.row(0, named=True)
    assert first == {
        "user_id": "A0",
        "item_id": "B000",
        "rating": 1.0,
        "weight": 1.0,
        "timestamp": 1_300_000_000,
    }
    assert sorted(w.items["item_id"]) == [f"B{i:03d}" for i in range(9)]
    item = {r["item_id"]: r for r in w.items.iter_rows(named=True)}
    if meta is None:
        assert item["B001"]["title"] == "B001" and item["B001"]["tags"] == []
        assert w.tag_vocabulary == []
    elif meta == "2014":
        assert item["B001"]["title"] == "Puzzle 1 & Co"
        assert item["B001"]["tags"] == ["Puzzles", "Jigsaw", "Games"]
        assert item["B001"]["creator"] == "Acme" and item["B002"]["creator"] == ""
        assert item["B001"]["text"] == "Brand: Acme. Categories: Puzzles, Jigsaw, Games."
        assert item["B008"]["title"] == "B008" and item["B008"]["tags"] == []
    else:
        assert item["B008"]["title"] == "Game 8" and item["B008"]["tags"] == ["Board Games"]


def test_amazon_keeps_a_repeated_review_and_ignores_unreviewed_metadata(tmp_path: Path) -> None:
    lines = review_lines()
    meta = [*META_2018, json.dumps({"asin": "Z999", "title": "never reviewed"})]
    w = load_world(
        "amazon", amazon_folder(tmp_path, "\n".join([*lines, lines[0]]), "\n".join(meta))
    )
    assert w.interactions.height == 31
    assert "Z999" not in w.items["item_id"].to_list()


AMAZON_LAYOUT = (
    "one JSON object per line with reviewerID (text), asin (text), overall (a number from 1 to "
    "5), unixReviewTime (integer unix seconds)"
)

_DROP = object()


def edit(lines: list[str], row: int, **changes: object) -> str:
    """The review lines with line ``row`` (0-based) changed (``_DROP``: the field removed)."""
    rec = json.loads(lines[row])
    for k, v in changes.items():
        if v is _DROP:
            del rec[k]
        else:
            rec[k] = v
    return "\n".join([*lines[:row], json.dumps(rec), *lines[row + 1 :]])


# (corruption of the review lines, the file's content) -> the message after "<file>"
AMAZON_CORRUPTIONS: list[tuple[str, Callable[[list[str]], str | bytes], str]] = [
    (
        "truncated line",
        lambda ls: "\n".join([*ls[:3], ls[3][:40], *ls[4:]]),
        ", line 4: the JSON object is cut short: "
        + repr(review_lines()[3][:40])
        + f"; expected {AMAZON_LAYOUT}",
    ),
    (
        "rating as text",
        lambda ls: edit(ls, 2, overall="two"),
        f", line 3: Expected `float`, got `str` - at `$.overall`; expected {AMAZON_LAYOUT}",
    ),
    (
        "time as text",
        lambda ls: edit(ls, 0, unixReviewTime="soon"),
        f", line 1: Expected `int`, got `str` - at `$.unixReviewTime`; expected {AMAZON_LAYOUT}",
    ),
    (
        "missing field",
        lambda ls: edit(ls, 5, overall=_DROP),
        f", line 6: Object missing required field `overall`; expected {AMAZON_LAYOUT}",
    ),
    (
        "fractional time",
        lambda ls: edit(ls, 0, unixReviewTime=1300000000.5),
        f", line 1: Expected `int`, got `float` - at `$.unixReviewTime`; expected {AMAZON_LAYOUT}",
    ),
    (
        "rating out of range",
        lambda ls: edit(ls, 1, overall=7),
        ", line 2: overall 7.0 is out of range; expected a number from 1 to 5",
    ),
    (
        "empty reviewer",
        lambda ls: edit(ls, 0, reviewerID=" "),
        ", line 1: empty reviewerID; expected a non-empty reviewerID",
    ),
    (
        "not an object",
        lambda ls: "\n".join([*ls[:1], "[1, 2]", *ls[1:]]),
        f", line 2: Expected `object`, got `array`; expected {AMAZON_LAYOUT}",
    ),
    (
        "truncated gzip",
        lambda ls: gzip.compress("\n".join(ls).encode())[:-30],
        ": the gzip stream is truncated; expected a complete gzip file",
    ),
    ("empty file", lambda ls: "", ": no records after the header; expected at least one review"),
]


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [(c, m) for _, c, m in AMAZON_CORRUPTIONS],
    ids=[n for n, _, _ in AMAZON_CORRUPTIONS],
)
def test_amazon_malformed_reviews_are_refused_in_one_line(
    tmp_path: Path, corrupt: Callable[[list[str]], str | bytes], message: str
) -> None:
    folder = amazon_folder(tmp_path, corrupt(review_lines()), "\n".join(META_2018))
    got = refused("amazon", folder)
    assert got.startswith(str(folder / "reviews_Toys_5.json") + message), got


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (
            '{"asin": "B001", "categories": "Toys"}',
            ", line 1: Expected `array | null`, got `str` - at `$.categories`",
        ),
        ('{"title": "no asin"}', ", line 1: Object missing required field `asin`"),
        ("{'asin': 'B001', 'title': ", ", line 1: the record is cut short"),
        ('{"asin": "B001"}\n{"asin": "\\u0007x"}', ", line 2: asin '\\x07x' holds control"),
    ],
    ids=["categories as text", "missing asin", "truncated literal", "control character"],
)
def test_amazon_malformed_metadata_is_refused(tmp_path: Path, meta: str, message: str) -> None:
    folder = amazon_folder(tmp_path, "\n".join(review_lines()), meta)
    got = refused("amazon", folder)
    assert got.startswith(str(folder / "meta_Toys.json") + message), got


def test_amazon_folder_needs_exactly_one_reviews_file(tmp_path: Path) -> None:
    folder = tmp_path / "amazon"
    folder.mkdir()
    assert refused("amazon", folder) == (
        f"{folder}: 0 review files (none); expected exactly one reviews file (.json, .jsonl, "
        ".json.gz, .jsonl.gz) whose name does not start with 'meta'"
    )
    (folder / "a.json").write_text("\n".join(review_lines()))
    (folder / "b.jsonl").write_text("\n".join(review_lines()))
    assert "2 review files (a.json, b.jsonl)" in refused("amazon", folder)


# ---- ML-1M ------------------------------------------------------------------------------------


def test_ml1m_with_ratings_only(tmp_path: Path) -> None:
    w = load_world("ml-1m", ml1m_folder(tmp_path, ml1m_ratings()))
    assert (w.name, w.rating_scale) == ("ml-1m", (1.0, 5.0))
    assert w.interactions.height == 24 and w.users.columns == ["user_id"]
    assert sorted(w.items["item_id"].to_list()) == [str(10 + k) for k in range(8)]
    assert (w.items["title"] == w.items["item_id"]).all() and w.tag_vocabulary == []
    assert w.interactions.row(0) == ("1", "10", 1.0, 1.0, 978_300_000)


def test_ml1m_with_movies_but_no_users(tmp_path: Path) -> None:
    movies = "".join(f"{10 + k}::Film {k} (1999)::Drama|Comedy\n" for k in range(8))
    w = load_world("ml-1m", ml1m_folder(tmp_path, ml1m_ratings(), movies))
    assert w.items.row(0, named=True)["tags"] == ["Drama", "Comedy"]
    assert w.items.row(0, named=True)["title"] == "Film 0"


@pytest.mark.parametrize(
    ("ratings", "movies", "message"),
    [
        ("1::10::5\n", None, "ratings.dat, line 1: found 3 fields: '1::10::5'"),
        ("1::10::five::978300000\n", None, "ratings.dat, line 1: rating 'five' is not a number"),
        ("1::10::5::\n", None, "ratings.dat, line 1: timestamp is missing"),
        ("1::10::5::97830000.5\n", None, "ratings.dat, line 1: timestamp '97830000.5' is not"),
        ("", None, "ratings.dat: no records after the header; expected at least one rating"),
        (
            "1::10::5::978300000\n1::99::4::978300001\n",
            "10::Film (1999)::Drama\n",
            "ratings.dat, line 2: item id '99' is not in",
        ),
    ],
    ids=[
        "truncated line",
        "rating as text",
        "missing time",
        "fractional time",
        "empty",
        "unknown movie",
    ],
)
def test_ml1m_malformed_ratings_are_refused(
    tmp_path: Path, ratings: str, movies: str | None, message: str
) -> None:
    folder = ml1m_folder(tmp_path, ratings, movies)
    got = refused("ml-1m", folder)
    assert got.startswith(f"{folder}/{message}"), got


# ---- KuaiRec ----------------------------------------------------------------------------------


def test_kuairec_watch_ratio_becomes_the_watch_fraction(tmp_path: Path) -> None:
    lines = kuairec_lines()
    lines.append("3,100,7000,5000,,,NaN,1.4")  # a looped view without a time
    folder = kuairec_folder(tmp_path, lines)
    (folder / "item_categories.csv").write_text('video_id,feat\n100,[8]\n101,"[27, 9]"\n102,[]\n')
    w = load_world("kuairec", folder)
    assert (w.name, w.rating_scale, w.has_ratings) == ("kuairec", None, False)
    assert w.has_watch_fractions
    assert w.interactions.height == 25
    first = w.interactions.row(0, named=True)
    assert first == {
        "user_id": "0",
        "item_id": "100",
        "rating": None,
        "weight": 1.0,
        "timestamp": 1_593_898_068,
        "watch_fraction": 0.2,
    }
    last = w.interactions.row(-1, named=True)
    assert (last["timestamp"], last["watch_fraction"]) == (None, 1.0)
    item = {r["item_id"]: r for r in w.items.iter_rows(named=True)}
    assert item["101"]["tags"] == ["category 27", "category 9"]
    assert item["102"]["tags"] == [] and item["105"]["tags"] == []
    # in coded (time) order, the fractions follow the interactions
    u, i, _, _, ts = w.coded_interactions()
    wf = w.coded_column("watch_fraction")
    assert wf.shape == u.shape and ts[-1] == -1 and wf[-1] == 1.0


def test_kuairec_durations_without_watch_ratio(tmp_path: Path) -> None:
    lines = [",".join(x.split(",")[:4]) for x in kuairec_lines()]
    w = load_world(
        "kuairec",
        kuairec_folder(tmp_path, lines, header="user_id,video_id,play_duration,video_duration"),
    )
    assert w.interactions["watch_fraction"].to_list()[:3] == [0.2, 0.4, 0.6]
    assert w.interactions["timestamp"].null_count() == w.interactions.height


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ls: [*ls[:2], ls[2][:12], *ls[3:]], ", line 4: found 4 fields: '0,102,3000,5'"),
        (
            lambda ls: [ls[0].rsplit(",", 1)[0] + ",abc", *ls[1:]],
            ", line 2: watch_ratio 'abc' is not a number",
        ),
        (
            lambda ls: [ls[0].rsplit(",", 1)[0] + ",-0.5", *ls[1:]],
            ", line 2: watch_ratio '-0.5' is out of range",
        ),
        (lambda ls: [",".join(["", *ls[0].split(",")[1:]]), *ls[1:]], ", line 2: empty user id"),
        (
            lambda ls: [ls[0].replace("1593898068.378", "1593898068378"), *ls[1:]],
            ", line 2: timestamp '1593898068378' is out of range",
        ),
    ],
    ids=["truncated line", "ratio as text", "negative ratio", "missing user", "milliseconds"],
)
def test_kuairec_malformed_logs_are_refused(
    tmp_path: Path, change: Callable[[list[str]], list[str]], message: str
) -> None:
    folder = kuairec_folder(tmp_path, change(kuairec_lines()))
    got = refused("kuairec", folder)
    assert got.startswith(f"{folder}/big_matrix.csv{message}"), got


def test_kuairec_missing_columns_and_bad_categories(tmp_path: Path) -> None:
    folder = kuairec_folder(tmp_path, ["1,2,3"], header="user_id,video,watch_ratio")
    assert refused("kuairec", folder) == (
        f"{folder}/big_matrix.csv, line 1: header lacks column 'video_id' (found 'user_id', "
        "'video', 'watch_ratio'); expected comma-separated columns user_id, video_id, "
        "watch_ratio (optionally timestamp)"
    )
    folder = kuairec_folder(tmp_path, kuairec_lines())
    (folder / "item_categories.csv").write_text("video_id,feat\n100,[8]\n101,eight\n")
    assert refused("kuairec", folder) == (
        f"{folder}/item_categories.csv, line 3: feat 'eight'; expected a list of category ids "
        "such as [8, 12]"
    )


# ---- KuaiRand ---------------------------------------------------------------------------------


def test_kuairand_played_impressions_become_views(tmp_path: Path) -> None:
    folder = kuairand_folder(tmp_path, kuairand_lines())
    (folder / "log_random_4_22_to_5_08_pure.csv").write_text(
        KUAIRAND_HEADER + "\n9,999,20220422,1200,1650000000000,1,0,0,100,100,1\n"
    )
    (folder / "video_features_basic_pure.csv").write_text(
        'video_id,author_id,video_type,tag\n200,77,NORMAL,"9,28"\n201,78,AD,\n'
    )
    w = load_world("kuairand", folder)
    assert w.name == "kuairand" and w.interactions.height == 4 * 6  # unplayed and random left out
    assert "9" not in w.users["user_id"].to_list()
    row = w.interactions.row(0, named=True)
    assert row == {
        "user_id": "0",
        "item_id": "201",
        "rating": None,
        "weight": 1.0,
        "timestamp": 1_649_376_045,
        "watch_fraction": 0.25,
    }
    assert w.interactions["watch_fraction"].max() == 1.0  # 7,500 ms of a 6,000 ms video
    item = {r["item_id"]: r for r in w.items.iter_rows(named=True)}
    assert (item["200"]["creator"], item["200"]["tags"]) == ("77", ["tag 9", "tag 28"])
    assert (item["201"]["creator"], item["201"]["tags"]) == ("78", [])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ls: [*ls[:1], ls[1][:20], *ls[2:]], ", line 3: found 5 fields"),
        (
            lambda ls: [ls[0].replace("1649376000000", "1649376000000.5"), *ls[1:]],
            ", line 2: time_ms '1649376000000.5' is not an integer",
        ),
        (
            lambda ls: [ls[0], ls[1].replace(",1500,6000,", ",soon,6000,"), *ls[2:]],
            ", line 3: play_time_ms 'soon' is not a number",
        ),
        (lambda ls: [], ": no records after the header; expected at least one impression"),
    ],
    ids=["truncated line", "fractional time", "play time as text", "header only"],
)
def test_kuairand_malformed_logs_are_refused(
    tmp_path: Path, change: Callable[[list[str]], list[str]], message: str
) -> None:
    folder = kuairand_folder(tmp_path, change(kuairand_lines()))
    got = refused("kuairand", folder)
    assert got.startswith(f"{folder}/log_standard_4_08_to_4_21_pure.csv{message}"), got


def test_kuairand_needs_its_standard_logs(tmp_path: Path) -> None:
    folder = tmp_path / "kr"
    folder.mkdir()
    assert refused("kuairand", folder) == (
        f"{folder}: no log_standard_*.csv file; expected the standard logs of KuaiRand "
        "(log_standard_4_08_to_4_21_*.csv, ...)"
    )


# ---- the new formats through the whole pipeline -------------------------------------------------


def test_a_feed_log_world_evaluates_with_watched_to_the_end_as_liked(tmp_path: Path) -> None:
    """A KuaiRec-shaped world large enough to fit: its liked held-out views are those watched
    to the end, and the fidelity harness runs on it."""
    from recoworld.eval.fidelity import FidelitySettings, evaluate

    rng = np.random.default_rng(0)
    lines = []
    for u in range(40):
        for k in range(12):
            v = int(rng.integers(0, 150))
            ratio = float(rng.choice([0.1, 0.5, 1.3]))
            lines.append(f"{u},{v},0,0,,,{1_593_898_068 + 600 * k + 86_400 * u},{ratio}")
    w: World = load_world("kuairec", kuairec_folder(tmp_path, lines))
    r = evaluate(w, FidelitySettings(simulate=False, embedding_dim=4, ratios=(1,)))
    d = r.tables["discrimination"]
    assert d.height and d["users"][0] > 0
    assert pl.Series(r.tables["hit"]["users"]).max() > 0
