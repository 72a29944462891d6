"""Everything a run needs before the first slate: world, catalog, fitted brain, population."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import msgspec
import numpy as np

from recoworld.config import StudyConfig, WorldConfig, replicate_count
from recoworld.errors import ConfigError
from recoworld.items.catalog import Catalog, NewItem, build_catalogs
from recoworld.users.choice import ChoiceModel
from recoworld.users.fit import CalibrationReport, Fitted, fit_choice_model
from recoworld.users.persona import Personas, personas_from_history
from recoworld.users.population import build_population, segment_labels, select
from recoworld.world.fetch import default_data_path
from recoworld.world.loaders import load_world
from recoworld.world.model import World
from recoworld.world.synthetic import synthetic_world


@dataclass(frozen=True, eq=False)
class Prepared:
    """The immutable inputs of every shard of a run."""

    cfg: StudyConfig
    world_name: str
    catalog: Catalog
    model: ChoiceModel
    report: CalibrationReport
    population: Personas
    segments: np.ndarray  # (n,) str per population user
    creator_mask: np.ndarray  # (n_items,) bool
    treated: tuple[np.ndarray, ...]  # per arm, (n,) bool
    replicate: int = 0
    """Which replicate of the study this is: its own placement of the creator's new items in
    ``catalog`` and its own population (uids follow the earlier replicates')."""


def load_world_for(
    cfg: WorldConfig, seed: int, *, base_dir: Path | None = None, cache_dir: Path | None = None
) -> World:
    """The world a study names. A relative ``path`` is taken from ``base_dir`` (the study
    file's folder); no path means the data cache, then ../shared/data."""
    if cfg.dataset == "synthetic":
        return synthetic_world(cfg.synthetic_users, cfg.synthetic_items, seed=seed)
    path: Path | None = None
    if cfg.path:
        path = Path(cfg.path)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
    elif cfg.dataset not in ("recbole", "generic"):
        name = "ml-latest" if cfg.dataset == "ml-latest-small" else cfg.dataset
        path = default_data_path(name, cache_dir)
    return load_world(cfg.dataset, path)


def creator_items(cfg: StudyConfig) -> tuple[NewItem, ...]:
    c = cfg.creator
    if c is None:
        return ()
    return tuple(
        NewItem(
            item_id=it.item_id or f"{c.id}:{k}",
            title=it.title,
            text=it.text,
            tags=tuple(it.tags),
            creator=c.name or c.id,
        )
        for k, it in enumerate(c.items)
    )


def replicate_seed(seed: int, replicate: int) -> int:
    """The seed of a replicate's placement and population draws (replicate 0: the study's)."""
    if replicate == 0:
        return seed
    return int(np.random.SeedSequence([seed, replicate]).generate_state(1)[0])


def prepare(cfg: StudyConfig, world: World) -> Prepared:
    """The first replicate of :func:`prepare_all` (all of a one-replicate study)."""
    return prepare_all(cfg, world, replicates=1)[0]


def prepare_all(
    cfg: StudyConfig, world: World, replicates: int | None = None
) -> tuple[Prepared, ...]:
    """Build the catalog (with the creator's new items), fit the brain, draw the population:
    once per replicate (``replicate_count(cfg)`` unless given) for the placement of the new
    items and the population, once for everything else. ``population.size`` is split between
    the replicates (``0``: every matching real user, in each)."""
    r = replicate_count(cfg) if replicates is None else replicates
    seeds = tuple(replicate_seed(cfg.seed, k) for k in range(r))
    new = creator_items(cfg)
    catalogs = build_catalogs(
        world, dim=cfg.world.embedding_dim, new_items=new, seed=cfg.seed, placement_seeds=seeds
    )
    fitted = fit_choice_model(
        world, catalogs[0], negatives_per_positive=cfg.brain.negatives_per_positive, seed=cfg.seed
    )
    base = personas_from_history(world, catalogs[0])
    size = cfg.population.size
    out: list[Prepared] = []
    offset = 0
    for k, (catalog, seed) in enumerate(zip(catalogs, seeds)):
        pop_cfg = cfg.population
        if size:
            pop_cfg = msgspec.structs.replace(pop_cfg, size=size // r + (k < size % r))
        population = build_population(base, catalog, pop_cfg, seed)
        population = replace(population, uid=population.uid + offset)
        offset += len(population)
        out.append(_replicate(cfg, world, catalog, fitted, population, k))
    return tuple(out)


def _replicate(
    cfg: StudyConfig,
    world: World,
    catalog: Catalog,
    fitted: Fitted,
    population: Personas,
    replicate: int,
) -> Prepared:
    mask = catalog.is_creator_item.copy()
    if cfg.creator is not None and cfg.creator.existing_items:
        ids = catalog.item_ids
        for item_id in cfg.creator.existing_items:
            hit = ids == item_id
            if not hit.any():
                raise ConfigError(
                    f"$.creator.existing_items: item {item_id!r} is not in the world {world.name!r}"
                )
            mask |= hit
    treated = []
    for k, arm in enumerate(cfg.arms):
        if arm.target is None:
            treated.append(np.ones(len(population), dtype=bool))
        else:
            t = np.zeros(len(population), dtype=bool)
            t[select(population, catalog, arm.target, field=f"arms[{k}].target")] = True
            treated.append(t)
    return Prepared(
        cfg=cfg,
        world_name=world.name,
        catalog=catalog,
        model=fitted.model,
        report=fitted.report,
        population=population,
        segments=segment_labels(population, cfg.population.segment_by),
        creator_mask=mask,
        treated=tuple(treated),
        replicate=replicate,
    )
