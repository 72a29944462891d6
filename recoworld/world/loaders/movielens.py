"""MovieLens loaders: ML-100K (raw or RecBole atomic), ML-1M, and the 'latest' CSV releases.

Common mapping: ``title`` is the title without its trailing '(1995)'; ``text`` is a short
description from what the release has ('Released 1995. Genres: Action, Comedy.');
``creator`` is '' (MovieLens names no directors); ratings are floats with weight 1.0 and
timestamps in integer seconds. Every interaction must name a known user and movie: an unknown
id is an error naming the ratings file and line.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recoworld.errors import DataError
from recoworld.world.loaders import _common as c
from recoworld.world.loaders.recbole import load_recbole
from recoworld.world.model import World

ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]
"""The 19 genre flags of ``u.item``, in file order (the order of ``u.genre``)."""

ML1M_OCCUPATIONS = [
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
]
"""ML-1M occupation codes 0..20, by code (from the ML-1M README)."""

ML1M_AGES = (1, 18, 25, 35, 45, 50, 56)
"""ML-1M age bucket codes (1 = under 18, 18 = 18-24, ..., 56 = 56+); kept as the age."""

LATEST_TAGS_PER_MOVIE = 5
"""How many of a movie's most frequent user tags (tags.csv) follow its genres in ``tags``."""

_NO_GENRES = "(no genres listed)"
_RATING_LABELS = ["user id", "item id", "rating", "timestamp"]


def _ratings(table: c.Table, low: float, high: float) -> c.Table:
    """Typed (user_id, item_id, rating, timestamp) records with line-numbered checks."""
    c.require_records(table, "rating")
    table = c.check_ids(table, "user_id", "item_id")
    table = c.to_number(table, "rating", pl.Float64(), label="rating", low=low, high=high)
    return c.to_timestamp(table, required=True)


def _movies(
    table: c.Table,
    genres: pl.Expr,
    *,
    year_fallback: pl.Expr | None = None,
    user_tags: pl.Expr | None = None,
) -> pl.DataFrame:
    """Items from (item_id, title) records, a list expression of genres and optional user tags.

    ``year_fallback`` (String) is used where the title carries no '(year)'.
    """
    title, year = c.title_and_year(pl.col("title"))
    if year_fallback is not None:
        year = pl.coalesce(
            year, pl.when(year_fallback.str.contains(r"^\d{4}$")).then(year_fallback)
        )
    frame = table.frame.with_columns(
        title.alias("title"),
        year.alias("_year"),
        genres.alias("_genres"),
        (user_tags if user_tags is not None else pl.lit([], dtype=pl.List(pl.String))).alias(
            "_user_tags"
        ),
    )
    return c.items_frame(
        frame.with_columns(
            pl.col("_genres").list.concat(pl.col("_user_tags")).alias("tags"),
            c.describe(
                c.released(pl.col("_year")),
                c.sentence("Genres", pl.col("_genres")),
                c.sentence("Tagged", pl.col("_user_tags")),
            ).alias("text"),
        )
    )


def _world(
    name: str,
    path: Path,
    items: pl.DataFrame,
    ratings: c.Table,
    items_table: c.Table,
    users: c.Table | None,
    scale: tuple[float, float],
) -> World:
    """Check the ratings' references (line-numbered), then assemble and validate the World."""
    c.check_known(
        ratings, "item_id", items_table.frame["item_id"], label="item id", source=items_table.path
    )
    if users is not None:
        c.check_known(
            ratings, "user_id", users.frame["user_id"], label="user id", source=users.path
        )
        users_df = c.users_frame(users.frame)
    else:
        users_df = c.distinct_ids("user_id", ratings.frame["user_id"])
    return World(
        name=name,
        items=items,
        interactions=c.interactions_frame(ratings.frame),
        users=users_df,
        rating_scale=scale,
        source=str(path),
    ).validate()


# ---- ML-100K ---------------------------------------------------------------------------------


def load_ml100k(path: Path) -> World:
    """MovieLens 100K from a folder with ``u.data``, ``u.item``, ``u.user`` (the raw release).

    A folder holding the RecBole atomic form instead (``ml-100k.inter``/``.item``/``.user``,
    what :func:`recoworld.world.fetch.fetch_dataset` produces) goes to the RecBole loader.
    The 'unknown' genre flag is not kept as a tag: it means that no genre is known.
    """
    path = Path(path)
    if not (path / "u.data").exists() and (path / "ml-100k.inter").exists():
        return load_recbole(path, name="ml-100k", rating_scale=(1.0, 5.0))
    path = c.require_folder(path, "a MovieLens 100K folder (u.data, u.item, u.user)")

    genre_names = _ml100k_genres(path / "u.genre")
    flags = [f"_g{i}" for i in range(len(genre_names))]
    items = c.read_fields(
        path / "u.item",
        separator="|",
        encoding="latin-1",
        names=["item_id", "title", "release_date", "video_date", "url", *flags],
        labels=[
            "movie id",
            "title",
            "release date",
            "video release date",
            "IMDb URL",
            *genre_names,
        ],
    )
    items = c.check_ids(c.require_records(items, "movie"), "item_id")
    c.check_unique(items, "item_id", label="item id")
    bad = items.first_where(pl.any_horizontal(~pl.col(f).is_in(["0", "1"]) for f in flags))
    if bad is not None:
        raise items.error(
            bad[c.LINE], f"genre flags {''.join(bad[f] for f in flags)!r}", "genre flags of 0 or 1"
        )
    genres = pl.concat_list(
        pl.when(pl.col(f) == "1").then(pl.lit(g))
        for f, g in zip(flags, genre_names, strict=True)
        if g != "unknown"
    ).list.drop_nulls()
    # The year in the title is the film's; the release date's year fills in where the title
    # has none.
    items_df = _movies(
        items, genres, year_fallback=pl.col("release_date").str.strip_chars().str.slice(-4)
    )

    users = c.read_fields(
        path / "u.user",
        separator="|",
        encoding="latin-1",
        names=["user_id", "age", "gender", "occupation", "zip"],
        labels=["user id", "age", "gender", "occupation", "zip code"],
    )
    users = c.to_number(
        c.check_ids(c.require_records(users, "user"), "user_id"),
        "age",
        pl.Int64(),
        label="age",
        low=0,
        high=130,
    )
    c.check_unique(users, "user_id", label="user id")

    ratings = c.read_fields(
        path / "u.data",
        separator="\t",
        names=["user_id", "item_id", "rating", "timestamp"],
        labels=_RATING_LABELS,
    )
    return _world("ml-100k", path, items_df, _ratings(ratings, 1, 5), items, users, (1.0, 5.0))


def _ml100k_genres(path: Path) -> list[str]:
    """Genre names from ``u.genre`` ('name|index' lines) when present, else the standard 19."""
    if not path.exists():
        return ML100K_GENRES
    table = c.read_fields(path, separator="|", encoding="latin-1", names=["genre", "index"])
    table = c.to_number(table, "index", pl.Int64(), label="genre index")
    frame = table.frame.sort("index")
    if frame["index"].to_list() != list(range(frame.height)):
        raise DataError(
            path,
            f"genre indices {frame['index'].to_list()}",
            expected="the indices 0, 1, 2, ... once each",
        )
    return frame["genre"].str.strip_chars().to_list()


# ---- ML-1M -----------------------------------------------------------------------------------


def load_ml1m(path: Path) -> World:
    """MovieLens 1M from a folder with ``ratings.dat`` and, optionally, ``movies.dat`` and
    ``users.dat``.

    '::'-separated, Latin-1. Occupation codes become the README's names
    (:data:`ML1M_OCCUPATIONS`); the age stays the bucket code (:data:`ML1M_AGES`). Without
    ``movies.dat`` the items are the rated movie ids (title = the id, no tags); without
    ``users.dat`` the users are the raters (no demographics). Where a file is there, every
    rating must name a movie (user) it lists.
    """
    path = c.require_folder(
        path, "a MovieLens 1M folder (ratings.dat; movies.dat and users.dat optional)"
    )
    ratings = c.read_fields(
        path / "ratings.dat",
        separator="::",
        encoding="latin-1",
        names=["user_id", "item_id", "rating", "timestamp"],
        labels=_RATING_LABELS,
    )
    ratings = _ratings(ratings, 1, 5)
    if (path / "movies.dat").exists():
        items = c.read_fields(
            path / "movies.dat",
            separator="::",
            encoding="latin-1",
            names=["item_id", "title", "genres"],
            labels=["movie id", "title", "genres"],
        )
        items = c.check_ids(c.require_records(items, "movie"), "item_id")
        c.check_unique(items, "item_id", label="item id")
        items_df = _movies(items, c.split_tags(pl.col("genres"), "|"))
    else:
        ids = c.distinct_ids("item_id", ratings.frame["item_id"])
        items = c.Table(path / "ratings.dat", ids, "rated movie ids")
        items_df = c.items_frame(ids)
    users = _ml1m_users(path / "users.dat") if (path / "users.dat").exists() else None
    return _world("ml-1m", path, items_df, ratings, items, users, (1.0, 5.0))


def _ml1m_users(path: Path) -> c.Table:
    users = c.read_fields(
        path,
        separator="::",
        encoding="latin-1",
        names=["user_id", "gender", "age", "occupation", "zip"],
        labels=["user id", "gender", "age", "occupation", "zip code"],
    )
    users = c.check_ids(c.require_records(users, "user"), "user_id")
    c.check_unique(users, "user_id", label="user id")
    users = c.to_number(users, "age", pl.Int64(), label="age")
    bad = users.first_where(~pl.col("age").is_in(ML1M_AGES))
    if bad is not None:
        raise users.error(
            bad[c.LINE], f"age code {bad['age']}", f"one of {', '.join(map(str, ML1M_AGES))}"
        )
    users = c.to_number(users, "occupation", pl.Int64(), label="occupation code", low=0, high=20)
    return users.with_frame(
        users.frame.with_columns(
            pl.col("occupation").replace_strict(dict(enumerate(ML1M_OCCUPATIONS)))
        )
    )


# ---- MovieLens latest (CSV) ------------------------------------------------------------------


def _csv(path: Path, required: list[str]) -> c.Table:
    header, table = c.read_header_table(path, what=f"a CSV file with columns {', '.join(required)}")
    c.require_columns(
        table, header, required, described=f"comma-separated columns {', '.join(required)}"
    )
    return table.with_frame(table.frame.select(c.LINE, *required))


def load_ml_latest(path: Path, *, name: str = "ml-latest") -> World:
    """MovieLens 'latest' / 'latest-small' from ``ratings.csv``, ``movies.csv``, ``tags.csv``.

    UTF-8 CSV with headers. Genres '(no genres listed)' give no genre tags. The movie's most
    frequent user tags from ``tags.csv`` (optional file; lower-cased, ties by name, up to
    :data:`LATEST_TAGS_PER_MOVIE`, those equal to a genre skipped) follow its genres in
    ``tags``. Users are the distinct ``userId`` of ``ratings.csv`` (no demographics).
    """
    path = c.require_folder(path, "a MovieLens latest folder (ratings.csv, movies.csv, tags.csv)")
    items = _latest_movies(path)
    c.check_unique(items, "item_id", label="movie id")
    genres = c.split_tags(pl.col("genres"), "|").list.eval(
        pl.element().filter(pl.element() != _NO_GENRES)
    )
    user_tags = _latest_tags(path / "tags.csv", items.frame.with_columns(genres.alias("_genres")))
    items_table = items.with_frame(
        items.frame.join(user_tags, on="item_id", how="left", maintain_order="left")
    )
    items_df = _movies(
        items_table,
        genres,
        user_tags=pl.col("_top_tags").fill_null(pl.lit([], dtype=pl.List(pl.String))),
    )

    ratings = _csv(path / "ratings.csv", ["userId", "movieId", "rating", "timestamp"])
    ratings = ratings.with_frame(ratings.frame.rename({"userId": "user_id", "movieId": "item_id"}))
    return _world(name, path, items_df, _ratings(ratings, 0.5, 5), items, None, (0.5, 5.0))


def _latest_movies(path: Path) -> c.Table:
    movies = c.require_records(_csv(path / "movies.csv", ["movieId", "title", "genres"]), "movie")
    return c.check_ids(movies.with_frame(movies.frame.rename({"movieId": "item_id"})), "item_id")


def _latest_tags(path: Path, movies: pl.DataFrame) -> pl.DataFrame:
    """(item_id, _top_tags): each movie's most frequent user tags, lower-cased, minus genres."""
    if not path.exists():
        return pl.DataFrame(schema={"item_id": pl.String, "_top_tags": pl.List(pl.String)})
    tags = _csv(path, ["movieId", "tag"])
    tags = c.check_ids(tags.with_frame(tags.frame.rename({"movieId": "item_id"})), "item_id")
    genre_words = movies.select(
        "item_id", pl.col("_genres").list.eval(pl.element().str.to_lowercase()).alias("_gl")
    )
    counted = (
        tags.frame.select("item_id", pl.col("tag").str.strip_chars().str.to_lowercase())
        .filter(pl.col("tag") != "")
        .group_by("item_id", "tag")
        .len()
        .join(genre_words, on="item_id", how="left")
        .filter(~pl.col("_gl").list.contains(pl.col("tag")).fill_null(False))
        .sort(["item_id", "len", "tag"], descending=[False, True, False])
    )
    return counted.group_by("item_id", maintain_order=True).agg(
        pl.col("tag").head(LATEST_TAGS_PER_MOVIE).alias("_top_tags")
    )
