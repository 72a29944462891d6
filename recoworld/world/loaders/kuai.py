"""Kuaishou short-video feed logs: KuaiRec (Gao et al., CIKM 2022) and KuaiRand (Gao et al.,
CIKM 2022). Comma-separated files with a header line, UTF-8.

Every logged *view* is an interaction (``rating`` null, ``weight`` 1.0) and carries a
``watch_fraction`` (the watch ratio, played time over the video's duration, capped at 1: a
ratio above 1 means the video looped). A view watched to its end counts as a liked one in the
fidelity harness, as a rating >= 4 does on rated data (``recoworld.eval.protocols``). Real feed
sessions are not marked in either release; the harness cuts them at inactivity gaps
(docs/fidelity.md).

KuaiRec (``kuairec``), the folder ``KuaiRec 2.0/data``:

- ``big_matrix.csv`` (or, without it, ``small_matrix.csv``, the fully observed block):
  ``user_id``, ``video_id``, and ``watch_ratio`` or ``play_duration`` and ``video_duration``
  (milliseconds); optional ``timestamp`` (unix seconds, fractional; empty or NaN where unknown
  -> null).
- ``item_categories.csv`` (optional): ``video_id``, ``feat`` (a list of category ids such as
  ``[8, 12]``) -> ``tags`` ``category 8``, ``category 12``.

KuaiRand (``kuairand``), a KuaiRand-Pure / -1K / -27K folder:

- ``log_standard_*.csv`` (every such file, in name order): ``user_id``, ``video_id``,
  ``time_ms`` (unix milliseconds), ``play_time_ms``, ``duration_ms``. Impressions that were
  not played (``play_time_ms`` 0) are not interactions. The random-exposure logs
  (``log_random_*.csv``) are left out: they are a separate, randomised exposure policy.
- ``video_features_basic_*.csv`` (optional, the first in name order): ``video_id`` and
  optionally ``author_id`` (-> ``creator``), ``video_type``, ``tag`` (comma-separated tag ids
  -> ``tags`` ``tag 12``).

Users are the distinct user ids of the logs (the user feature files hold anonymous one-hot
features, not demographics).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recoworld.errors import DataError
from recoworld.world.loaders import _common as c
from recoworld.world.model import World

_MISSING = ("", "nan", "NaN", "NAN", "null", "None")


def _csv(path: Path, required: list[str], optional: tuple[str, ...] = ()) -> c.Table:
    described = f"comma-separated columns {', '.join(required)}" + (
        f" (optionally {', '.join(optional)})" if optional else ""
    )
    header, table = c.read_header_table(path, what=f"a CSV file with {described}")
    c.require_columns(table, header, required, described=described)
    keep = [*required, *(o for o in optional if o in header)]
    return table.with_frame(table.frame.select(c.LINE, *keep))


def _blank_missing(table: c.Table, column: str) -> c.Table:
    """'' for the spellings of a missing value (NaN, null, ...) in a String column."""
    col = pl.col(column).str.strip_chars()
    return table.with_frame(
        table.frame.with_columns(
            pl.when(col.is_in(_MISSING)).then(pl.lit("")).otherwise(col).alias(column)
        )
    )


def _world(name: str, path: Path, views: c.Table, items: pl.DataFrame) -> World:
    inter = c.interactions_frame(views.frame).with_columns(
        views.frame["watch_fraction"].cast(pl.Float64)
    )
    return World(
        name=name,
        items=c.items_frame(items),
        interactions=inter,
        users=c.distinct_ids("user_id", views.frame["user_id"]),
        source=str(path),
    ).validate()


def _fraction(played: pl.Expr, duration: pl.Expr) -> pl.Expr:
    """played / duration capped at 1; null where the duration is not > 0."""
    return pl.when(duration > 0).then(pl.min_horizontal(played / duration, pl.lit(1.0)))


# ---- KuaiRec ----------------------------------------------------------------------------------


def load_kuairec(path: Path) -> World:
    """KuaiRec from its ``data`` folder (see the module docstring)."""
    path = c.require_folder(path, "the KuaiRec data folder (big_matrix.csv or small_matrix.csv)")
    log = path / "big_matrix.csv"
    if not log.exists() and (path / "small_matrix.csv").exists():
        log = path / "small_matrix.csv"
    header_has = _header(log)
    if "watch_ratio" in header_has:
        table = _csv(log, ["user_id", "video_id", "watch_ratio"], ("timestamp",))
    else:
        table = _csv(
            log, ["user_id", "video_id", "play_duration", "video_duration"], ("timestamp",)
        )
    table = c.require_records(table, "view")
    table = table.with_frame(table.frame.rename({"video_id": "item_id"}))
    table = c.check_ids(table, "user_id", "item_id", labels={"item_id": "video id"})
    if "watch_ratio" in table.frame.columns:
        table = c.to_number(table, "watch_ratio", pl.Float64(), label="watch_ratio", low=0)
        frac = pl.min_horizontal(pl.col("watch_ratio"), pl.lit(1.0))
    else:
        for col in ("play_duration", "video_duration"):
            table = c.to_number(table, col, pl.Float64(), label=col, low=0)
        frac = _fraction(pl.col("play_duration"), pl.col("video_duration"))
    if "timestamp" in table.frame.columns:
        table = c.to_number(
            _blank_missing(table, "timestamp"),
            "timestamp",
            pl.Float64(),
            label="timestamp",
            required=False,
            low=0,
            high=c.MAX_TIMESTAMP,
            note="unix seconds",
        )
        table = table.with_frame(
            table.frame.with_columns(pl.col("timestamp").floor().cast(pl.Int64))
        )
    table = table.with_frame(table.frame.with_columns(frac.alias("watch_fraction")))
    ids = c.distinct_ids("item_id", table.frame["item_id"])
    items = _kuairec_items(path / "item_categories.csv", ids)
    return _world("kuairec", path, table, items)


def _header(path: Path) -> list[str]:
    text = c.read_bytes(path, what="a CSV file with a header line")[:65536].decode(
        "utf-8", "replace"
    )
    return [h.strip() for h in text.lstrip("\ufeff").split("\n", 1)[0].split(",")]


def _kuairec_items(path: Path, ids: pl.DataFrame) -> pl.DataFrame:
    if not path.exists():
        return ids
    table = _csv(path, ["video_id", "feat"])
    table = c.check_ids(
        table.with_frame(table.frame.rename({"video_id": "item_id"})),
        "item_id",
        labels={"item_id": "video id"},
    )
    c.check_unique(table, "item_id", label="video id")
    feat = pl.col("feat").str.strip_chars()
    bad = table.first_where(~feat.str.contains(r"^\[\s*(\d+\s*(,\s*\d+\s*)*)?\]$"))
    if bad is not None:
        raise table.error(
            bad[c.LINE], f"feat {bad['feat']!r}", "a list of category ids such as [8, 12]"
        )
    tags = (
        feat.str.strip_chars("[]")
        .str.split(",")
        .list.eval(pl.element().str.strip_chars())
        .list.eval(pl.element().filter(pl.element() != ""))
        .list.eval(pl.lit("category ") + pl.element())
    )
    cats = table.frame.select("item_id", tags.alias("tags"))
    return _with_tags(ids, cats)


def _with_tags(ids: pl.DataFrame, extra: pl.DataFrame) -> pl.DataFrame:
    joined = ids.join(extra, on="item_id", how="left", maintain_order="left")
    empty = pl.lit([], dtype=pl.List(pl.String))
    return joined.with_columns(
        pl.col("tags").fill_null(empty),
        c.describe(c.sentence("Categories", pl.col("tags").fill_null(empty))).alias("text"),
    )


# ---- KuaiRand ---------------------------------------------------------------------------------


def load_kuairand(path: Path) -> World:
    """KuaiRand (Pure, 1K or 27K) from its folder (see the module docstring)."""
    path = c.require_folder(path, "a KuaiRand folder (log_standard_*.csv, video_features_*.csv)")
    logs = sorted(path.glob("log_standard_*.csv"))
    if not logs:
        raise DataError(
            path,
            "no log_standard_*.csv file",
            expected="the standard logs of KuaiRand (log_standard_4_08_to_4_21_*.csv, ...)",
        )
    frames = []
    for log in logs:
        table = _csv(log, ["user_id", "video_id", "time_ms", "play_time_ms", "duration_ms"])
        table = c.require_records(table, "impression")
        table = table.with_frame(table.frame.rename({"video_id": "item_id"}))
        table = c.check_ids(table, "user_id", "item_id", labels={"item_id": "video id"})
        table = c.to_number(
            table,
            "time_ms",
            pl.Int64(),
            label="time_ms",
            low=0,
            high=c.MAX_TIMESTAMP * 1000,
            note="unix milliseconds",
        )
        for col in ("play_time_ms", "duration_ms"):
            table = c.to_number(table, col, pl.Float64(), label=col, low=0)
        frames.append(
            table.frame.filter(pl.col("play_time_ms") > 0).select(
                "user_id",
                "item_id",
                (pl.col("time_ms") // 1000).alias("timestamp"),
                _fraction(pl.col("play_time_ms"), pl.col("duration_ms")).alias("watch_fraction"),
            )
        )
    views = pl.concat(frames)
    if views.height == 0:
        raise DataError(
            path, "no impression was played", expected="impressions with play_time_ms > 0"
        )
    table = c.Table(logs[0], views, "KuaiRand views")
    ids = c.distinct_ids("item_id", views["item_id"])
    features = sorted(path.glob("video_features_basic*.csv"))
    items = _kuairand_items(features[0], ids) if features else ids
    return _world("kuairand", path, table, items)


def _kuairand_items(path: Path, ids: pl.DataFrame) -> pl.DataFrame:
    table = _csv(path, ["video_id"], ("author_id", "video_type", "tag"))
    table = c.check_ids(
        table.with_frame(table.frame.rename({"video_id": "item_id"})),
        "item_id",
        labels={"item_id": "video id"},
    )
    c.check_unique(table, "item_id", label="video id")
    f = table.frame
    tags = (
        c.split_tags(pl.col("tag"), ",").list.eval(pl.lit("tag ") + pl.element())
        if "tag" in f.columns
        else pl.lit([], dtype=pl.List(pl.String))
    )
    creator = pl.col("author_id").str.strip_chars() if "author_id" in f.columns else pl.lit("")
    extra = f.select("item_id", tags.alias("tags"), creator.fill_null("").alias("creator"))
    out = _with_tags(ids, extra)
    return out.with_columns(pl.col("creator").fill_null(""))
