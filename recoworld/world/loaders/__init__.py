"""Loaders: each turns one dataset layout into a validated :class:`~recoworld.world.model.World`.

- ``ml-100k``: the raw folder (u.data, u.item, u.user) or the RecBole atomic form
  -> :func:`.movielens.load_ml100k`
- ``ml-1m``: ratings.dat (movies.dat, users.dat optional) -> :func:`.movielens.load_ml1m`
- ``ml-latest`` / ``ml-latest-small``: ratings.csv, movies.csv, tags.csv
  -> :func:`.movielens.load_ml_latest`
- ``lastfm``: the hetrec2011-lastfm-2k folder -> :func:`.lastfm.load_lastfm`
- ``amazon``: an Amazon review 5-core JSON-lines file (+ metadata), gzip or not
  -> :func:`.amazon.load_amazon`
- ``kuairec``: KuaiRec's data folder (big_matrix.csv, item_categories.csv)
  -> :func:`.kuai.load_kuairec`
- ``kuairand``: a KuaiRand folder (log_standard_*.csv, video_features_basic_*.csv)
  -> :func:`.kuai.load_kuairand`
- ``recbole``: a folder holding ``<name>.inter`` (+ .item, .user) -> :func:`.recbole.load_recbole`
- ``generic``: a folder of role-named Parquet/CSV tables -> :func:`.generic.load_generic`

Every malformed input raises :class:`~recoworld.errors.DataError` naming the file, the line
(or, for Parquet, the row or column) and the expected format, in one line: duplicate header
columns, badly typed Parquet columns, empty or header-only files, control characters in ids,
undecodable bytes, truncated or corrupt gzip streams, JSON lines that do not decode (the
field's ``$.path`` named), missing columns, non-finite ratings, duplicate ids, timestamps that are
negative, fractional or beyond the year 9999 (milliseconds). :func:`load_world` also refuses a
world too small to fit (:meth:`~recoworld.world.model.World.require_fittable`).

A world without tags is valid (a generic folder with only interactions, Last.fm without
``user_taggedartists.dat``, ML-100K with every genre flag 0): every item's ``tags`` is the
empty list and ``World.tag_vocabulary`` is ``[]``. Its catalog has ``tags == ()`` and a
``tag_matrix`` of shape ``(n_items, 0)`` (zero tag columns, no placeholder tag): a placeholder
would leak into prompts, targeting and reports as if it were a real tag, so consumers of
``tag_matrix`` must handle zero columns.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from recoworld.errors import DataError
from recoworld.world.fetch import default_data_path
from recoworld.world.loaders.amazon import load_amazon
from recoworld.world.loaders.generic import load_generic
from recoworld.world.loaders.kuai import load_kuairand, load_kuairec
from recoworld.world.loaders.lastfm import DataWarning, load_lastfm
from recoworld.world.loaders.movielens import load_ml1m, load_ml100k, load_ml_latest
from recoworld.world.loaders.recbole import load_recbole
from recoworld.world.model import World

LOADERS: dict[str, Callable[[Path], World]] = {
    "ml-100k": load_ml100k,
    "ml-1m": load_ml1m,
    "ml-latest": load_ml_latest,
    "ml-latest-small": lambda p: load_ml_latest(p, name="ml-latest-small"),
    "lastfm": load_lastfm,
    "amazon": load_amazon,
    "kuairec": load_kuairec,
    "kuairand": load_kuairand,
    "recbole": load_recbole,
    "generic": load_generic,
}
"""Dataset name -> loader of its folder."""

_NEEDS_PATH = ("recbole", "generic")


def load_world(dataset: str, path: str | Path | None = None, *, fittable: bool = True) -> World:
    """Load ``dataset`` (a key of :data:`LOADERS`) from ``path``.

    With ``fittable`` (the default) a world too small to build a catalog and fit the choice
    model is refused here, with one line saying the minimum
    (:meth:`~recoworld.world.model.World.require_fittable`), rather than deep inside the fit.

    Without ``path``, the named datasets are looked up with
    :func:`~recoworld.world.fetch.default_data_path` (the cache, then ``../shared/data``);
    ``recbole`` and ``generic`` need a path.
    """
    loader = LOADERS.get(dataset)
    if loader is None:
        raise DataError(dataset, "unknown dataset", expected=f"one of {', '.join(LOADERS)}")
    if path is None:
        if dataset in _NEEDS_PATH:
            raise DataError(
                dataset, "no path given", expected=f"the folder holding the {dataset} files"
            )
        path = default_data_path("ml-latest" if dataset == "ml-latest-small" else dataset)
    world = loader(Path(path))
    return world.require_fittable() if fittable else world


__all__ = [
    "LOADERS",
    "DataWarning",
    "load_amazon",
    "load_generic",
    "load_kuairand",
    "load_kuairec",
    "load_lastfm",
    "load_ml1m",
    "load_ml100k",
    "load_ml_latest",
    "load_recbole",
    "load_world",
]
