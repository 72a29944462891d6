"""The generic layout: a folder of Parquet or CSV tables named by role.

=====================  ==========================  =============================================
file                   required columns            optional columns
=====================  ==========================  =============================================
``interactions.*``     ``user_id``, ``item_id``    ``rating``, ``weight`` (> 0, default 1.0),
                                                   ``timestamp`` (integer seconds; a Parquet
                                                   datetime column is converted)
``items.*``            ``item_id``                 ``title`` (default: the id), ``text``,
                                                   ``tags`` (Parquet: list of strings or
                                                   '|'-separated text; CSV: '|'-separated),
                                                   ``creator``, ``embedding`` (Parquet only:
                                                   a list of numbers per item, the platform's
                                                   own encoder), ``image`` (path or URI)
``users.*``            ``user_id``                 ``age`` (integer), ``gender``,
                                                   ``occupation``, ``zip``
``friends.*``          ``user_id``, ``friend_id``
=====================  ==========================  =============================================

``*`` is ``parquet`` or ``csv`` (UTF-8, comma-separated, header line, double-quote quoting);
Parquet wins when both exist. Only ``interactions`` is required: without ``items``/``users``
they are the ids seen in the interactions. Ids are read as strings whatever their type in
the file. Other columns are ignored. Errors name the CSV line, or the Parquet row (1-based).
The rating scale is the (min, max) of the ratings.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recoworld.errors import DataError
from recoworld.world.loaders import _common as c
from recoworld.world.model import World, empty_friends

TABLES: dict[str, tuple[list[str], list[str]]] = {
    "interactions": (["user_id", "item_id"], ["rating", "weight", "timestamp"]),
    "items": (["item_id"], ["title", "text", "tags", "creator", "embedding", "image"]),
    "users": (["user_id"], ["age", "gender", "occupation", "zip"]),
    "friends": (["user_id", "friend_id"], []),
}
"""Role -> (required columns, optional columns)."""

TAG_SEPARATOR = "|"

KINDS: dict[str, str] = {
    "user_id": "text",
    "item_id": "text",
    "friend_id": "text",
    "rating": "number",
    "weight": "number",
    "timestamp": "time",
    "title": "text",
    "text": "text",
    "tags": "text list",
    "creator": "text",
    "embedding": "number list",
    "image": "text",
    "age": "integer",
    "gender": "text",
    "occupation": "text",
    "zip": "text",
}
"""Column -> what a Parquet column of that name may hold (see ``_common.check_dtype``)."""


def read_table(folder: Path, role: str) -> c.Table | None:
    """``<role>.parquet`` or ``<role>.csv`` with its known columns (ids as stripped strings), or
    None when neither exists. Missing required columns raise a DataError."""
    required, optional = TABLES[role]
    described = (
        f"columns {', '.join(required)} (optionally {', '.join(optional)})"
        if optional
        else (f"columns {', '.join(required)}")
    )
    parquet, csv = folder / f"{role}.parquet", folder / f"{role}.csv"
    if parquet.exists():
        try:
            frame = pl.read_parquet(parquet)
        except Exception as exc:  # noqa: BLE001 (polars and pyarrow raise several kinds)
            raise DataError(
                parquet, f"unreadable Parquet ({exc})", expected=f"a Parquet file with {described}"
            ) from None
        table = c.Table(
            parquet,
            frame.with_row_index(c.LINE, offset=1),
            f"a Parquet file with {described}",
            unit="row",
        )
        header = frame.columns
    elif csv.exists():
        header, table = c.read_header_table(csv, what=f"a CSV file with {described}")
    else:
        return None
    c.require_columns(
        table,
        header,
        required,
        described=f"{'a Parquet file' if table.unit == 'row' else 'comma-separated'} {described}",
    )
    keep = [col for col in required + optional if col in header]
    if table.unit == "row":
        for col in keep:
            if KINDS[col] == "number list":
                _check_numbers(table, col)
            else:
                c.check_dtype(table, col, KINDS[col])
    elif "embedding" in keep:
        raise table.error(
            None, "an embedding column in a CSV file", "embedding in items.parquet (list of floats)"
        )
    ids = [col for col in keep if col.endswith("_id")]
    frame = table.frame.select(c.LINE, *keep).with_columns(pl.col(i).cast(pl.String) for i in ids)
    return c.check_ids(table.with_frame(frame), *ids)


def _timestamps(table: c.Table) -> c.Table:
    dtype = table.frame.schema["timestamp"]
    if isinstance(dtype, pl.Datetime):
        table = table.with_frame(table.frame.with_columns(pl.col("timestamp").dt.epoch("s")))
    elif isinstance(dtype, pl.Date):
        table = table.with_frame(
            table.frame.with_columns(pl.col("timestamp").cast(pl.Datetime("ms")).dt.epoch("s"))
        )
    return c.to_timestamp(table)


def load_generic(path: Path) -> World:
    """A World from the generic layout in folder ``path`` (see the module docstring)."""
    folder = c.require_folder(path, "a folder holding interactions.parquet or interactions.csv")
    inter = read_table(folder, "interactions")
    if inter is None:
        raise DataError(
            folder,
            "no interactions.parquet or interactions.csv",
            expected="a folder holding one of them",
        )
    c.require_records(inter, "interaction")
    if "rating" in inter.frame.columns:
        inter = c.to_number(inter, "rating", pl.Float64(), label="rating", required=False)
    if "weight" in inter.frame.columns:
        inter = c.to_number(
            inter, "weight", pl.Float64(), label="weight", required=False, positive=True
        )
        inter = inter.with_frame(inter.frame.with_columns(pl.col("weight").fill_null(1.0)))
    if "timestamp" in inter.frame.columns:
        inter = _timestamps(inter)

    items = read_table(folder, "items")
    if items is None:
        items_df = c.items_frame(c.distinct_ids("item_id", inter.frame["item_id"]))
    else:
        c.require_records(items, "item")
        c.check_unique(items, "item_id", label="item id")
        c.check_known(inter, "item_id", items.frame["item_id"], label="item id", source=items.path)
        items_df = c.items_frame(items.frame.with_columns(_tags(items.frame), *_title(items.frame)))
        items_df = items_df.hstack(_item_extras(items.frame))

    friends = read_table(folder, "friends")
    users = read_table(folder, "users")
    if users is None:
        # As for Last.fm: a friend who never interacted is still a user.
        ids = [inter.frame["user_id"]]
        if friends is not None:
            ids += [friends.frame["user_id"], friends.frame["friend_id"]]
        users_df = c.distinct_ids("user_id", *ids)
    else:
        c.require_records(users, "user")
        c.check_unique(users, "user_id", label="user id")
        if friends is not None:
            for col in ("user_id", "friend_id"):
                c.check_known(
                    friends, col, users.frame["user_id"], label="user id", source=users.path
                )
        c.check_known(inter, "user_id", users.frame["user_id"], label="user id", source=users.path)
        if "age" in users.frame.columns:
            users = c.to_number(users, "age", pl.Int64(), label="age", required=False)
        users_df = c.users_frame(users.frame)

    friends_df = (
        empty_friends() if friends is None else friends.frame.select("user_id", "friend_id")
    )
    interactions = c.interactions_frame(inter.frame)
    return World(
        name=folder.name,
        items=items_df,
        interactions=interactions,
        users=users_df,
        friends=friends_df,
        rating_scale=c.observed_scale(interactions["rating"]),
        source=str(folder),
    ).validate()


def _title(frame: pl.DataFrame) -> list[pl.Expr]:
    if "title" not in frame.columns:
        return []
    return [c.title_or_id(pl.col("title").cast(pl.String)).alias("title")]


def _tags(frame: pl.DataFrame) -> pl.Expr:
    if "tags" not in frame.columns:
        return pl.lit([], dtype=pl.List(pl.String)).alias("tags")
    if isinstance(frame.schema["tags"], pl.List):
        tags = (
            pl.col("tags").list.eval(pl.element().cast(pl.String).str.strip_chars()).fill_null([])
        )
        return tags.list.eval(
            pl.element().filter(pl.element().is_not_null() & (pl.element() != ""))
        ).alias("tags")
    return c.split_tags(pl.col("tags").cast(pl.String), TAG_SEPARATOR).alias("tags")


def _check_numbers(table: c.Table, column: str) -> None:
    """A Parquet column of number lists (list or fixed-size array of integers or floats)."""
    dtype = table.frame.schema[column]
    if not (isinstance(dtype, pl.List | pl.Array) and dtype.inner.is_numeric()):
        raise table.error(None, f"column {column!r} has type {dtype}", f"{column} as number lists")


def _item_extras(frame: pl.DataFrame) -> list[pl.Series]:
    """The optional item columns (``world.model.OPTIONAL_ITEM_COLUMNS``) present, typed; their
    values are checked where they are used (``recoworld/items``)."""
    out = []
    if "embedding" in frame.columns:
        emb = frame["embedding"]
        if isinstance(emb.dtype, pl.Array):
            emb = emb.arr.to_list()
        out.append(emb.cast(pl.List(pl.Float64())))
    if "image" in frame.columns:
        out.append(frame["image"].cast(pl.String))
    return out
