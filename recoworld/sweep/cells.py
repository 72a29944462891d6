"""The grid: each study x recommender x population x seed is a cell, a study config of its own
with a filesystem-safe id (a recommender table with an options ``grid`` is one recommender per
combination of its values). :func:`load_sweep` reads a sweep file and its studies and expands it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from recoworld.config import StudyConfig, check_study, decode_strict, encode_study, load_study
from recoworld.errors import ConfigError
from recoworld.sweep.config import SweepConfig, decode_sweep, recommender_variants


class Cell(msgspec.Struct, frozen=True, kw_only=True):
    """One study x recommender x population x seed, and the study config it runs."""

    id: str
    """``<study>--<recommender>--<population>--s<seed>``; filesystem-safe."""
    study: str
    """The study's name (its ``name`` field)."""
    study_path: str
    """The study file, resolved; relative dataset paths are taken from its folder."""
    recommender: str
    population: str
    seed: int
    cfg: StudyConfig

    @property
    def run_id(self) -> str:
        return f"cell={self.id}"


def slug(text: str) -> str:
    """A cell-id part: runs of other characters become one '-' (so '--' never occurs)."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-.") or "study"


def cell_id(study: str, recommender: str, population: str, seed: int) -> str:
    return f"{slug(study)}--{recommender}--{population}--s{seed}"


def validate_study(cfg: StudyConfig) -> StudyConfig:
    """The checks a study file passes, applied to a config built in code: a JSON round trip
    (field types) and the study checks (values). Raises ConfigError with the ``$.path``."""
    back = decode_strict(encode_study(cfg), StudyConfig, source="the cell's config", fmt="json")
    check_study(back)  # unprefixed: the caller names the cell
    return back


def expand(
    cfg: SweepConfig, studies: Sequence[tuple[str, StudyConfig]], *, source: str = "<sweep>"
) -> list[Cell]:
    """Every cell, in the order study x recommender x population x seed. ``studies`` are
    (resolved path, config) in the order of ``cfg.studies``. Each cell config is checked."""
    cells: list[Cell] = []
    owner: dict[str, str] = {}
    for path, study in studies:
        sid = slug(study.name)
        if sid in owner and owner[sid] != path:
            raise ConfigError(
                f"{source}: studies {owner[sid]} and {path} both have the name {study.name!r}; "
                "expected distinct study names - at `$.studies`"
            )
        if sid in owner:
            raise ConfigError(f"{source}: study {path} is listed twice - at `$.studies`")
        owner[sid] = path
        for _, r in recommender_variants(cfg):
            for p in cfg.populations:
                pop = study.population
                size = (
                    cfg.users
                    if cfg.users is not None
                    else (p.size if p.size is not None else pop.size)
                )
                pop = msgspec.structs.replace(
                    pop, size=size, target=p.target, source=p.source or pop.source
                )
                for seed in cfg.seeds:
                    cid = cell_id(study.name, r.name, p.name, seed)
                    cell_cfg = msgspec.structs.replace(
                        study, recommender=r.config(), population=pop, seed=seed
                    )
                    try:
                        cell_cfg = validate_study(cell_cfg)
                    except ConfigError as e:
                        where = (
                            f"study {path}, recommender {r.name!r}, "
                            f"population {p.name!r}, seed {seed}"
                        )
                        raise ConfigError(f"{source}: cell {cid} ({where}): {e}") from None
                    cells.append(
                        Cell(
                            id=cid,
                            study=study.name,
                            study_path=path,
                            recommender=r.name,
                            population=p.name,
                            seed=seed,
                            cfg=cell_cfg,
                        )
                    )
    return cells


@dataclass(frozen=True)
class Sweep:
    """A decoded sweep file and its cells."""

    path: Path
    cfg: SweepConfig
    cells: list[Cell]


def load_sweep(path: str | Path) -> Sweep:
    """Read a sweep file and the study files it names (relative to its folder), and expand it."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the sweep file: {e.strerror}") from None
    cfg = decode_sweep(data, source=str(p))
    studies: list[tuple[str, StudyConfig]] = []
    for k, name in enumerate(cfg.studies):
        sp = (p.parent / name).resolve()
        if not sp.is_file():
            raise ConfigError(
                f"{p}: study file {name!r} does not exist (looked at {sp}) - at `$.studies[{k}]`"
            )
        studies.append((str(sp), load_study(sp)))
    return Sweep(path=p, cfg=cfg, cells=expand(cfg, studies, source=str(p)))
