"""Last.fm HetRec 2011 (hetrec2011-lastfm-2k): listening counts, artist tags, a social graph.

Files (tab-separated, each with a header line; CRLF line ends are fine):

- ``artists.dat`` (UTF-8): ``id name url pictureURL`` -> items. An artist is its own creator,
  so ``title`` and ``creator`` are both the name.
- ``user_artists.dat``: ``userID artistID weight`` -> interactions, ``weight`` = play count
  (> 0), ``rating`` null. Rows naming an artist absent from ``artists.dat`` are dropped, and
  their count reported with a :class:`DataWarning` (the 2011 release has none).
- ``tags.dat`` (Latin-1) and ``user_taggedartists.dat`` (``userID artistID tagID day month
  year``), optional: an artist's ``tags`` are its most-applied tags (up to
  :data:`TAGS_PER_ARTIST`, most frequent first, ties by name); an interaction's ``timestamp``
  is the earliest day (00:00 UTC) on which that user tagged that artist, else null.
  Taggings of artists absent from ``artists.dat`` are ignored (the release has 1,538 such
  artists); a tag id absent from ``tags.dat`` is an error.
- ``user_friends.dat`` (optional): ``userID friendID`` -> friends.

Users are the distinct user ids of ``user_artists.dat`` and ``user_friends.dat``; the release
has no demographics.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from recoworld.world.loaders import _common as c
from recoworld.world.model import World, empty_friends

TAGS_PER_ARTIST = 8
"""How many of an artist's most-applied tags go into ``tags``."""


class DataWarning(UserWarning):
    """A loader dropped or repaired records; the message says which and how many."""


def load_lastfm(path: Path) -> World:
    """Last.fm HetRec 2011 from its folder (see the module docstring for the mapping)."""
    path = c.require_folder(
        path, "the hetrec2011-lastfm-2k folder (artists.dat, user_artists.dat, ...)"
    )
    artists = c.read_fields(
        path / "artists.dat",
        separator="\t",
        names=["item_id", "title", "url", "picture"],
        labels=["id", "name", "url", "pictureURL"],
        header=["id", "name", "url", "pictureURL"],
    )
    artists = c.check_ids(c.require_records(artists, "artist"), "item_id")
    c.check_unique(artists, "item_id", label="artist id")

    plays = c.read_fields(
        path / "user_artists.dat",
        separator="\t",
        names=["user_id", "item_id", "weight"],
        labels=["userID", "artistID", "weight"],
        header=["userID", "artistID", "weight"],
    )
    plays = c.check_ids(c.require_records(plays, "play count"), "user_id", "item_id")
    plays = c.to_number(plays, "weight", pl.Float64(), label="play count", positive=True)
    known = plays.frame.join(artists.frame.select("item_id"), on="item_id", how="semi")
    if dropped := plays.frame.height - known.height:
        warnings.warn(
            f"{plays.path}: dropped {dropped} of {plays.frame.height} rows naming artists "
            f"absent from {artists.path}",
            DataWarning,
            stacklevel=2,
        )

    tag_lists, first_tagged = _taggings(path, artists)
    items = artists.frame.join(
        tag_lists, on="item_id", how="left", maintain_order="left"
    ).with_columns(
        pl.col("tags").fill_null(pl.lit([], dtype=pl.List(pl.String))),
        pl.col("title").str.strip_chars(),
    )
    items = items.with_columns(
        pl.col("title").alias("creator"),
        c.describe(pl.lit("Artist."), c.sentence("Tagged", pl.col("tags"))).alias("text"),
    )
    interactions = known.join(
        first_tagged, on=["user_id", "item_id"], how="left", maintain_order="left"
    )

    friends = _friends(path / "user_friends.dat")
    return World(
        name="lastfm",
        items=c.items_frame(items),
        interactions=c.interactions_frame(interactions),
        users=c.distinct_ids(
            "user_id", plays.frame["user_id"], friends["user_id"], friends["friend_id"]
        ),
        friends=friends,
        rating_scale=None,
        source=str(path),
    ).validate()


def _taggings(path: Path, artists: c.Table) -> tuple[pl.DataFrame, pl.DataFrame]:
    """((item_id, tags) top tags per artist, (user_id, item_id, timestamp) first tagging)."""
    tagged_path = path / "user_taggedartists.dat"
    if not tagged_path.exists():
        return (
            pl.DataFrame(schema={"item_id": pl.String, "tags": pl.List(pl.String)}),
            pl.DataFrame(
                schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64}
            ),
        )
    tags = c.read_fields(
        path / "tags.dat",
        separator="\t",
        encoding="latin-1",
        names=["tag_id", "tag"],
        labels=["tagID", "tagValue"],
        header=["tagID", "tagValue"],
    )
    tags = c.check_ids(tags, "tag_id")
    c.check_unique(tags, "tag_id", label="tag id")
    cols = ["userID", "artistID", "tagID", "day", "month", "year"]
    tagged = c.read_fields(
        tagged_path,
        separator="\t",
        names=["user_id", "item_id", "tag_id", "day", "month", "year"],
        labels=cols,
        header=cols,
    )
    tagged = c.check_ids(tagged, "user_id", "item_id", "tag_id")
    c.check_known(tagged, "tag_id", tags.frame["tag_id"], label="tag id", source=tags.path)
    for col, high in (("day", 31), ("month", 12), ("year", 9999)):
        tagged = c.to_number(tagged, col, pl.Int64(), label=col, low=1, high=high)
    first = (
        tagged.frame.join(_day_seconds(tagged), on=["year", "month", "day"])
        .group_by("user_id", "item_id")
        .agg(pl.col("timestamp").min())
    )

    top = (
        tagged.frame.join(artists.frame.select("item_id"), on="item_id", how="semi")
        .join(tags.frame.select("tag_id", pl.col("tag").str.strip_chars()), on="tag_id")
        .group_by("item_id", "tag")
        .len()
        .sort(["item_id", "len", "tag"], descending=[False, True, False])
        .group_by("item_id", maintain_order=True)
        .agg(pl.col("tag").head(TAGS_PER_ARTIST).alias("tags"))
    )
    return top, first


def _day_seconds(tagged: c.Table) -> pl.DataFrame:
    """(year, month, day, timestamp): unix seconds of each distinct tagging day, 00:00 UTC.

    There are only a few hundred distinct days, so they are checked and converted in Python;
    an impossible date (e.g. 31 April) raises a DataError naming its first line.
    """
    days = tagged.frame.group_by("year", "month", "day").agg(pl.col(c.LINE).min()).sort(c.LINE)
    seconds = []
    for year, month, day, line in days.iter_rows():
        try:
            seconds.append(int(datetime(year, month, day, tzinfo=UTC).timestamp()))
        except ValueError:
            raise tagged.error(
                line, f"no such date: {year}-{month:02d}-{day:02d}", "a valid calendar date"
            ) from None
    return days.select("year", "month", "day", pl.Series("timestamp", seconds, dtype=pl.Int64))


def _friends(path: Path) -> pl.DataFrame:
    if not path.exists():
        return empty_friends()
    friends = c.read_fields(
        path,
        separator="\t",
        names=["user_id", "friend_id"],
        labels=["userID", "friendID"],
        header=["userID", "friendID"],
    )
    return c.check_ids(friends, "user_id", "friend_id").frame.select("user_id", "friend_id")
