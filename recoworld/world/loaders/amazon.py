"""Amazon product reviews, 5-core (McAuley et al., the 2014 and 2018 releases).

A folder holding (each file JSON lines, gzipped or not: ``.json``, ``.jsonl``, ``.json.gz``,
``.jsonl.gz``):

- one reviews file (any such name not starting with ``meta``), e.g. ``reviews_Books_5.json.gz``
  (2014) or ``Books_5.json.gz`` (2018): per line an object with ``reviewerID`` (text),
  ``asin`` (text), ``overall`` (a number from 1 to 5) and ``unixReviewTime`` (integer unix
  seconds); other fields are ignored -> interactions (``rating`` = overall, ``weight`` 1.0,
  ``timestamp`` = unixReviewTime). A reviewer who reviewed an item twice keeps both reviews.
- optionally one metadata file (its name starts with ``meta``), e.g. ``meta_Books.json.gz``:
  per line ``asin`` and optionally ``title``, ``brand``, and the categories, either
  ``categories`` (2014: a list of category paths) or ``category`` (2018: one path). The 2014
  metadata is written as Python literals rather than JSON; such lines are read with
  :func:`ast.literal_eval` (never evaluated). Items: every reviewed ``asin``; its ``title``
  (default: the asin), ``creator`` = brand, ``tags`` = its category paths without their root
  (the store department, the same for the whole file) in path order, deduplicated, HTML
  entities decoded, at most :data:`TAGS_PER_ITEM`; a path of one level keeps that level.
  Metadata of items nobody reviewed is ignored; a repeated asin keeps its first line.

Users are the distinct reviewers (no demographics); the rating scale is (1, 5). A world
without metadata has no tags (valid: ``recoworld.world.loaders``).
"""

from __future__ import annotations

import html
from pathlib import Path

import msgspec
import polars as pl

from recoworld.errors import DataError
from recoworld.world.loaders import _common as c
from recoworld.world.model import World

TAGS_PER_ITEM = 6
"""How many of an item's categories go into ``tags``."""

SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")

REVIEW_LAYOUT = (
    "one JSON object per line with reviewerID (text), asin (text), overall (a number from 1 "
    "to 5), unixReviewTime (integer unix seconds)"
)
META_LAYOUT = (
    "one JSON object per line with asin (text) and optionally title (text), brand (text), "
    "categories (a list of lists of text) or category (a list of text)"
)


class Review(msgspec.Struct):
    reviewerID: str  # noqa: N815 (the file's field names)
    asin: str
    overall: float
    unixReviewTime: int  # noqa: N815


class Meta(msgspec.Struct):
    asin: str
    title: str | None = None
    brand: str | None = None
    categories: list[list[str]] | None = None
    category: list[str] | None = None


def _is_json_lines(p: Path) -> bool:
    return p.is_file() and p.name.lower().endswith(SUFFIXES)


def find_files(path: Path) -> tuple[Path, Path | None]:
    """(the reviews file, the metadata file or None) of an Amazon folder."""
    files = sorted(p for p in path.iterdir() if _is_json_lines(p))
    meta = [p for p in files if p.name.lower().startswith("meta")]
    reviews = [p for p in files if p not in meta]
    kinds = ", ".join(SUFFIXES)
    if len(reviews) != 1:
        found = "none" if not reviews else ", ".join(p.name for p in reviews)
        raise DataError(
            path,
            f"{len(reviews)} review files ({found})",
            expected=f"exactly one reviews file ({kinds}) whose name does not start with 'meta'",
        )
    if len(meta) > 1:
        raise DataError(
            path,
            f"{len(meta)} metadata files ({', '.join(p.name for p in meta)})",
            expected="at most one metadata file (its name starts with 'meta')",
        )
    return reviews[0], (meta[0] if meta else None)


def load_amazon(path: Path) -> World:
    """An Amazon review 5-core folder (see the module docstring for the mapping)."""
    path = c.require_folder(
        path, "a folder with one Amazon reviews JSON-lines file (and optionally meta_*.json)"
    )
    reviews_path, meta_path = find_files(path)
    records, lines = c.read_json_lines(reviews_path, Review, layout=REVIEW_LAYOUT)
    reviews = c.records_table(
        reviews_path,
        records,
        lines,
        {
            "reviewerID": "user_id",
            "asin": "item_id",
            "overall": "rating",
            "unixReviewTime": "timestamp",
        },
        REVIEW_LAYOUT,
    )
    reviews = c.require_records(reviews, "review")
    reviews = c.check_ids(reviews, "user_id", "item_id", labels={"user_id": "reviewerID"})
    reviews = c.to_number(reviews, "rating", pl.Float64(), label="overall", low=1, high=5)
    reviews = c.to_timestamp(reviews, required=True)

    ids = c.distinct_ids("item_id", reviews.frame["item_id"])
    items = _items(meta_path, ids) if meta_path is not None else ids
    return World(
        name="amazon",
        items=c.items_frame(items),
        interactions=c.interactions_frame(reviews.frame),
        users=c.distinct_ids("user_id", reviews.frame["user_id"]),
        rating_scale=(1.0, 5.0),
        source=str(path),
    ).validate()


def _tags(m: Meta) -> list[str]:
    paths = m.categories if m.categories is not None else ([m.category] if m.category else [])
    out: list[str] = []
    for p in paths:
        levels = [html.unescape(x).strip() for x in p]
        levels = [x for x in levels if x]
        for tag in levels[1:] if len(levels) > 1 else levels:
            if tag not in out:
                out.append(tag)
    return out[:TAGS_PER_ITEM]


def _items(meta_path: Path, ids: pl.DataFrame) -> pl.DataFrame:
    """Reviewed items with their metadata (title, creator, tags, text)."""
    records, lines = c.read_json_lines(meta_path, Meta, layout=META_LAYOUT, python_literals=True)
    table = c.records_table(meta_path, records, lines, {"asin": "item_id"}, META_LAYOUT)
    table = c.check_ids(table, "item_id", labels={"item_id": "asin"})
    asins = table.frame["item_id"].to_list()
    meta = pl.DataFrame(
        {
            "item_id": asins,
            "_title": [html.unescape(m.title).strip() if m.title else None for m in records],
            "creator": [html.unescape(m.brand).strip() if m.brand else "" for m in records],
            "tags": pl.Series([_tags(m) for m in records], dtype=pl.List(pl.String)),
        },
        schema_overrides={"_title": pl.String},
    ).unique("item_id", keep="first", maintain_order=True)
    joined = ids.join(meta, on="item_id", how="left", maintain_order="left")
    return joined.with_columns(
        c.title_or_id(pl.col("_title")).alias("title"),
        pl.col("tags").fill_null(pl.lit([], dtype=pl.List(pl.String))),
        pl.col("creator").fill_null(""),
        c.describe(
            pl.when(pl.col("creator").fill_null("") != "").then(
                pl.lit("Brand: ") + pl.col("creator") + pl.lit(".")
            ),
            c.sentence("Categories", pl.col("tags").fill_null(pl.lit([], pl.List(pl.String)))),
        ).alias("text"),
    ).drop("_title")
