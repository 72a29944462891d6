"""The sweep file: its structs, decoded strictly like a study (unknown fields are errors naming
the file and the ``$.path``), and the checks its values pass."""

from __future__ import annotations

import datetime
import itertools
import math
import re
from typing import Any, Literal

import msgspec

from recoworld.config import SEED_MAX, RecommenderConfig, Strict, Targeting, decode_strict
from recoworld.errors import ConfigError


class RecommenderVariant(RecommenderConfig, kw_only=True):
    """A named recommender: ``name`` plus the fields of a study's ``[recommender]``. Fields left
    out take RecommenderConfig's defaults (not the study's), so a variant is fully given here."""

    name: str
    """Variant name, part of the cell id: letters, digits, '_', '.', single '-' between them."""
    grid: dict[str, Any] = {}
    """python, http: values of ``options`` to cross, e.g. ``{ factors = [16, 64], alpha =
    [1.0, 10.0] }``. Each combination (one value per key) is a variant of its own, named
    ``<name>.<key>-<value>`` for each key in order (``als.factors-16.alpha-1``), whose options
    are ``options`` with those values set; the pooled table then has one row per combination.
    A key may not also be in ``options``. Empty: this one variant."""

    def config(self) -> RecommenderConfig:
        return RecommenderConfig(
            **{f: getattr(self, f) for f in RecommenderConfig.__struct_fields__}
        )

    def expand(self) -> list[RecommenderVariant]:
        """The variants ``grid`` stands for (``[self]`` when it is empty), in the order of the
        grid's keys and values (the last key varies fastest)."""
        if not self.grid:
            return [self]
        keys = list(self.grid)
        out = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            name = ".".join([self.name, *(f"{k}-{value_name(v)}" for k, v in zip(keys, values))])
            options = {**self.options, **dict(zip(keys, values))}
            out.append(msgspec.structs.replace(self, name=name, options=options, grid={}))
        return out


def value_name(v: object) -> str:
    """An option value as a part of a variant name: numbers as written (``0.05``, ``1e-05``;
    a minus is ``m``), true/false, text with runs of other characters than letters, digits,
    '_' and '.' turned into one '-'."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int | float):
        text = f"{v:g}" if isinstance(v, float) else str(v)
        return text.replace("-", "m", 1) if text.startswith("-") else text
    return re.sub(r"[^A-Za-z0-9_.]+", "-", str(v)).strip("-.") or "x"


def recommender_variants(cfg: SweepConfig) -> list[tuple[int, RecommenderVariant]]:
    """Every recommender variant of the sweep, grids expanded, with the index of the
    ``[[recommenders]]`` table it comes from."""
    return [(k, v) for k, r in enumerate(cfg.recommenders) for v in r.expand()]


class PopulationVariant(Strict):
    """A named population; replaces the study's ``size``, ``target`` (and ``source`` when given).
    The study's ``segment_by`` and ``jitter`` are kept."""

    name: str
    """Population name, part of the cell id (same characters as a recommender name)."""
    size: int | None = None
    """Simulated users per arm; unset = the study's population.size."""
    source: Literal["dataset", "synthetic"] | None = None
    """dataset | synthetic personas; unset = the study's population.source."""
    target: Targeting = Targeting()
    """Who is simulated; unset = everyone (the study's own target is not kept)."""


class SweepOutput(Strict):
    dir: str = "runs/sweeps"
    """Sweeps go to <dir>/<name>/date=YYYY-MM-DD/ (relative to the working directory, like a
    study's output.dir); `--out` overrides it."""


class SweepConfig(Strict, kw_only=True):
    name: str
    """Sweep name: the folder under output.dir (same characters as a recommender name)."""
    description: str = ""
    date: datetime.date | None = None
    """The date partition, a TOML date without quotes (date = 2025-01-31); unset = today in UTC.
    `--date YYYY-MM-DD` overrides it."""
    studies: list[str]
    """Study files, relative to this sweep file's folder."""
    recommenders: list[RecommenderVariant]
    """Recommender variants ([[recommenders]] tables); each replaces the study's [recommender].
    Arms that set their own recommender keep it. A table with a ``grid`` stands for one
    variant per combination of its option values."""
    populations: list[PopulationVariant]
    """Population variants ([[populations]] tables)."""
    seeds: list[int]
    """Root seeds (0 to 2**32 - 1); each replaces the study's seed (and a synthetic world's)."""
    users: int | None = None
    """Overrides every population's size (e.g. a smaller sweep for CI); unset = keep them."""
    output: SweepOutput = SweepOutput()


_NAME = re.compile(r"[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)*")
_NAME_RULE = "a name of letters, digits, '_', '.' and single '-' between them"


def _bad(path: str, expected: str, got: object) -> ConfigError:
    return ConfigError(f"Expected {expected}, got {got!r} - at `$.{path}`")


def check_sweep(cfg: SweepConfig) -> None:
    """The value checks of a decoded sweep; a ConfigError names the ``$.path``."""
    if not _NAME.fullmatch(cfg.name) or cfg.name.startswith("."):
        raise _bad("name", _NAME_RULE, cfg.name)
    for field in ("studies", "recommenders", "populations", "seeds"):
        if not getattr(cfg, field):
            raise _bad(field, "at least one entry", [])
    for k, r in enumerate(cfg.recommenders):
        _check_grid(r, f"recommenders[{k}]")
    named = {
        "recommenders": [(f"recommenders[{k}]", v) for k, v in recommender_variants(cfg)],
        "populations": [(f"populations[{k}]", v) for k, v in enumerate(cfg.populations)],
    }
    for field, variants in named.items():
        seen: set[str] = set()
        for at, v in variants:
            if not _NAME.fullmatch(v.name):
                raise _bad(f"{at}.name", _NAME_RULE, v.name)
            if v.name in seen:
                raise _bad(f"{at}.name", f"unique {field[:-1]} names", v.name)
            seen.add(v.name)
    for k, p in enumerate(cfg.populations):
        if p.size is not None and p.size < 0:
            raise _bad(f"populations[{k}].size", "an integer >= 0", p.size)
    for k, s in enumerate(cfg.seeds):
        if not 0 <= s <= SEED_MAX:
            raise _bad(f"seeds[{k}]", f"a seed in [0, 2**32 - 1 = {SEED_MAX}]", s)
        if s in cfg.seeds[:k]:
            raise _bad(f"seeds[{k}]", "unique seeds", s)
    if cfg.users is not None and cfg.users < 0:
        raise _bad("users", "an integer >= 0", cfg.users)


def _check_grid(r: RecommenderVariant, at: str) -> None:
    if not r.grid:
        return
    if r.kind not in ("python", "http"):
        raise _bad(
            f"{at}.grid",
            f'no grid: it varies `options`, which only kind = "python" or "http" takes '
            f"(this one is {r.kind!r})",
            r.grid,
        )
    for key, values in r.grid.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise _bad(f"{at}.grid", "option names of letters, digits and '_'", key)
        if key in r.options:
            raise _bad(
                f"{at}.grid.{key}", "an option given in `grid` or in `options`, not in both", key
            )
        if not isinstance(values, list) or not values:
            raise _bad(f"{at}.grid.{key}", "a non-empty list of the option's values", values)
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise _bad(f"{at}.grid.{key}", "finite numbers", v)
            if isinstance(v, dict | list):
                raise _bad(
                    f"{at}.grid.{key}", "plain values (numbers, strings, booleans) to cross", v
                )


def decode_sweep(data: bytes | str, *, source: str = "<string>") -> SweepConfig:
    """Decode and check a sweep from TOML text. Errors name ``source`` and the field path."""
    return decode_strict(data, SweepConfig, source=source, check=check_sweep)


def sweep_date(cfg: SweepConfig, override: datetime.date | None = None) -> datetime.date:
    """``override`` (--date), else the file's date, else today in UTC."""
    return override or cfg.date or datetime.datetime.now(datetime.UTC).date()
