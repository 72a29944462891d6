"""Everything a run needs before the first slate: world, catalog, fitted brain, population."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recoworld.config import StudyConfig, WorldConfig
from recoworld.errors import ConfigError
from recoworld.items.catalog import Catalog, NewItem, build_catalog
from recoworld.users.choice import ChoiceModel
from recoworld.users.fit import CalibrationReport, fit_choice_model
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


def prepare(cfg: StudyConfig, world: World) -> Prepared:
    """Build the catalog (with the creator's new items), fit the brain, draw the population."""
    new = creator_items(cfg)
    catalog = build_catalog(world, dim=cfg.world.embedding_dim, new_items=new, seed=cfg.seed)
    fitted = fit_choice_model(
        world, catalog, negatives_per_positive=cfg.brain.negatives_per_positive, seed=cfg.seed
    )
    base = personas_from_history(world, catalog)
    population = build_population(base, catalog, cfg.population, cfg.seed)
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
    )
