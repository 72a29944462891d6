"""RecBole atomic files: ``<name>.inter`` with optional ``<name>.item`` and ``<name>.user``.

Each file is tab-separated, UTF-8, with a header of ``name:type`` fields where type is one of
``token``, ``token_seq``, ``float``, ``float_seq`` (``*_seq`` values are space-separated).

Mapping (other fields are ignored):

- ``.inter``: ``user_id``, ``item_id`` (required); ``rating`` and ``timestamp`` (optional,
  ``timestamp`` rounded to integer seconds). Weight is 1.0.
- ``.item``: ``item_id``; title from the first of ``movie_title``/``title``/``name``
  (default: the id); tags from the first of ``class``/``genre``/``tags`` (space-separated);
  creator from ``creator``/``artist``; ``release_year`` (4 digits) goes into ``text``.
- ``.user``: ``user_id``; ``age`` (integer), ``gender``, ``occupation``, ``zip_code`` -> ``zip``.

Without ``.item``/``.user`` the items/users are the ids of ``.inter`` (title = id).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from recoworld.errors import DataError
from recoworld.world.loaders import _common as c
from recoworld.world.model import World

RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")
TITLE_FIELDS = ("movie_title", "title", "name")
TAG_FIELDS = ("class", "genre", "tags")
CREATOR_FIELDS = ("creator", "artist")
USER_FIELDS = {"age": "age", "gender": "gender", "occupation": "occupation", "zip_code": "zip"}

_FIELD = re.compile(r"^([^:\s]+):(\w+)$")


def read_atomic(path: Path, required: list[str]) -> tuple[dict[str, str], c.Table]:
    """Read one atomic file: ({field name: RecBole type}, table with String columns by name).

    The header must be ``name:type`` fields of :data:`RECBOLE_TYPES` including ``required``.
    """
    header, table = c.read_header_table(
        path, separator="\t", what="a RecBole atomic file (tab-separated, name:type header)"
    )
    layout = (
        f"a tab-separated header of name:type fields ({', '.join(RECBOLE_TYPES)}) including "
        + ", ".join(f"{r}:token" for r in required)
    )
    types: dict[str, str] = {}
    for field in header:
        m = _FIELD.match(field)
        if m is None or m.group(2) not in RECBOLE_TYPES:
            raise DataError(
                path, f"header field {field!r} is not name:type", expected=layout, line=1
            )
        if m.group(1) in types:
            raise DataError(
                path,
                f"header names field {m.group(1)!r} twice",
                expected="a header naming each field once",
                line=1,
            )
        types[m.group(1)] = m.group(2)
    table = table.with_frame(table.frame.rename(dict(zip(header, types, strict=True))))
    c.require_columns(table, list(types), required, described=layout)
    return types, table


def _first(types: dict[str, str], candidates: tuple[str, ...]) -> str | None:
    return next((f for f in candidates if f in types), None)


def _find_inter(path: Path) -> tuple[str, Path]:
    """(dataset name, folder) from a folder (``<folder>/<folder name>.inter`` or a single
    ``*.inter``) or from the ``.inter`` file itself."""
    expected = "a folder holding <name>.inter (and optionally <name>.item, <name>.user)"
    if path.is_file() and path.suffix == ".inter":
        return path.stem, path.parent
    c.require_folder(path, expected)
    if (path / f"{path.name}.inter").exists():
        return path.name, path
    found = sorted(path.glob("*.inter"))
    if len(found) != 1:
        what = (
            "no .inter file"
            if not found
            else f"several .inter files ({', '.join(p.name for p in found)})"
        )
        raise DataError(path, what, expected=expected)
    return found[0].stem, path


def load_recbole(
    path: Path, *, name: str | None = None, rating_scale: tuple[float, float] | None = None
) -> World:
    """A World from RecBole atomic files (see the module docstring for the field mapping).

    ``path`` is the folder (or its ``.inter`` file). ``name`` defaults to the files' stem;
    ``rating_scale`` defaults to the (min, max) of the ratings, None without ratings.
    """
    stem, folder = _find_inter(Path(path))
    types, inter = read_atomic(folder / f"{stem}.inter", ["user_id", "item_id"])
    c.require_records(inter, "interaction")
    inter = c.check_ids(inter, "user_id", "item_id")
    if "rating" in types:
        inter = c.to_number(inter, "rating", pl.Float64(), label="rating")
    if "timestamp" in types:
        inter = c.to_number(
            inter,
            "timestamp",
            pl.Float64(),
            label="timestamp",
            required=False,
            low=0,
            high=c.MAX_TIMESTAMP,
            note="unix seconds, up to the year 9999",
        )
        inter = inter.with_frame(
            inter.frame.with_columns(pl.col("timestamp").round(0).cast(pl.Int64))
        )

    items = _items(folder / f"{stem}.item", inter)
    users = _users(folder / f"{stem}.user", inter)
    interactions = c.interactions_frame(inter.frame)
    if rating_scale is None:
        rating_scale = c.observed_scale(interactions["rating"])
    return World(
        name=name or stem,
        items=items,
        interactions=interactions,
        users=users,
        rating_scale=rating_scale,
        source=str(folder),
    ).validate()


def _items(path: Path, inter: c.Table) -> pl.DataFrame:
    if not path.exists():
        return c.items_frame(c.distinct_ids("item_id", inter.frame["item_id"]))
    types, table = read_atomic(path, ["item_id"])
    c.require_records(table, "item")
    table = c.check_ids(table, "item_id")
    c.check_unique(table, "item_id", label="item id")
    c.check_known(inter, "item_id", table.frame["item_id"], label="item id", source=path)
    title, tag_field, creator = (
        _first(types, TITLE_FIELDS),
        _first(types, TAG_FIELDS),
        _first(types, CREATOR_FIELDS),
    )
    tags = (
        c.split_tags(pl.col(tag_field), " ") if tag_field else pl.lit([], dtype=pl.List(pl.String))
    )
    year = (
        pl.col("release_year").str.strip_chars()
        if "release_year" in types
        else pl.lit(None, pl.String)
    )
    frame = table.frame.with_columns(
        (c.title_or_id(pl.col(title)) if title else pl.col("item_id")).alias("title"),
        tags.alias("tags"),
        (pl.col(creator).str.strip_chars() if creator else pl.lit("")).alias("creator"),
    )
    text = c.describe(c.released(year), c.sentence("Genres", pl.col("tags")))
    return c.items_frame(frame.with_columns(text.alias("text")))


def _users(path: Path, inter: c.Table) -> pl.DataFrame:
    if not path.exists():
        return c.distinct_ids("user_id", inter.frame["user_id"])
    types, table = read_atomic(path, ["user_id"])
    c.require_records(table, "user")
    table = c.check_ids(table, "user_id")
    c.check_unique(table, "user_id", label="user id")
    c.check_known(inter, "user_id", table.frame["user_id"], label="user id", source=path)
    present = {f: col for f, col in USER_FIELDS.items() if f in types}
    table = table.with_frame(table.frame.select(c.LINE, "user_id", *present).rename(present))
    if "age" in present:
        table = c.to_number(table, "age", pl.Int64(), label="age", required=False)
    return c.users_frame(table.frame)
