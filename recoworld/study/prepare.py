"""Everything a run needs before the first slate: world, catalog, fitted brain, population."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import msgspec
import numpy as np

from recoworld.config import StudyConfig, WorldConfig, replicate_count
from recoworld.errors import ConfigError
from recoworld.items.catalog import Catalog, NewItem, build_catalog
from recoworld.recommenders.exported import pin_exports
from recoworld.rng import generator
from recoworld.study.prepared import Prepared
from recoworld.study.sittings import fit_leaving
from recoworld.users.fit import Fitted, fit_choice_model
from recoworld.users.persona import Personas, personas_from_history
from recoworld.users.population import (
    PopulationDraw,
    population_draw,
    segment_labels,
    select_blocks,
)
from recoworld.world.fetch import default_data_path
from recoworld.world.loaders import load_world
from recoworld.world.model import World
from recoworld.world.synthetic import synthetic_world


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
            embedding=tuple(it.embedding),
            image=it.image,
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
    cfg: StudyConfig,
    world: World,
    replicates: int | None = None,
    *,
    stream_above: int | None = None,
) -> tuple[Prepared, ...]:
    """The study's replicates (``replicate_count(cfg)`` unless given): each is the study drawn
    again at its own seed (:func:`replicate_seed`; replicate 0 at the study's): the catalog's
    embedding and the placement of the creator's new items, the fitted brain, the population.
    Every draw that a different seed would change is redrawn, so the spread between replicates
    is the spread between seeds (``benchmarks/bench_calibration.py`` checks the intervals this
    gives against many seeds). ``population.size`` is split between the replicates (``0``:
    every matching real user, in each); uids run on across replicates. A replicate of more
    than ``stream_above`` users is streamed (:data:`STREAM_USERS`; None: every population is
    held whole, for callers that read ``population``)."""
    cfg = pin_exports(cfg)  # the study's identity covers the exports it replays
    r = replicate_count(cfg) if replicates is None else replicates
    seeds = tuple(replicate_seed(cfg.seed, k) for k in range(r))
    new = creator_items(cfg)
    size = cfg.population.size
    out: list[Prepared] = []
    offset = 0
    for k, seed in enumerate(seeds):
        catalog = build_catalog(
            world,
            dim=cfg.world.embedding_dim,
            new_items=new,
            seed=seed,
            items_cfg=cfg.items,
            representation=cfg.llm.item_representation if cfg.llm is not None else "text",
        )
        fitted = fit_choice_model(
            world,
            catalog,
            negatives_per_positive=cfg.brain.negatives_per_positive,
            seed=seed,
            logged_exposure=cfg.brain.logged_exposure,
            boredom=(cfg.brain.boredom_rate, cfg.brain.boredom_weight),
        )
        base = personas_from_history(
            world,
            catalog,
            half_life=fitted.model.recent_half_life,
            era_width=fitted.model.era_width,
        )
        fitted = fit_leaving(
            fitted, catalog, base, cfg.brain, seed, slate_size=cfg.simulation.slate_size
        )
        pop_cfg = cfg.population
        if size:
            pop_cfg = msgspec.structs.replace(pop_cfg, size=size // r + (k < size % r))
        draw = replace(population_draw(base, catalog, pop_cfg, seed), offset=offset)
        offset += draw.size
        streamed = stream_above is not None and draw.size > stream_above
        out.append(_replicate(cfg, world, catalog, fitted, draw, k, streamed))
    return tuple(out)


STREAM_USERS = 100_000
"""A run (:func:`recoworld.study.runner.run_study`) never holds a population of more users than
this (per replicate): shards draw their users by block
(:class:`~recoworld.users.population.PopulationDraw`), the run keeps only each user's segment
and treatment flags, and ``users.parquet`` is written block by block. Up to it, the population
is drawn whole once (the same users: every draw is keyed by the row)."""

STREAM_BLOCK = 65_536
"""Users drawn at a time where the population is streamed."""


def _replicate(
    cfg: StudyConfig,
    world: World,
    catalog: Catalog,
    fitted: Fitted,
    draw: PopulationDraw,
    replicate: int,
    streamed: bool,
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
    placebo = np.zeros(0, np.int64)
    arm_items = [mask] * len(cfg.arms)
    if any(arm.placebo_of for arm in cfg.arms):
        placebo = match_placebo(catalog, mask, replicate_seed(cfg.seed, replicate))
        placebo_mask = np.zeros_like(mask)
        placebo_mask[placebo] = True
        arm_items = [placebo_mask if arm.placebo_of else mask for arm in cfg.arms]
    population = None if streamed else draw.rows(np.arange(draw.size))

    def blocks() -> Iterator[Personas]:
        if population is not None:
            yield population
        else:
            yield from (p for _, p in draw.blocks(STREAM_BLOCK))

    treated = []
    for k, arm in enumerate(cfg.arms):
        if arm.target is None:
            treated.append(np.ones(draw.size, dtype=bool))
        else:
            treated.append(select_blocks(blocks(), catalog, arm.target, field=f"arms[{k}].target"))
    by = cfg.population.segment_by
    codes, names = None, ()
    if streamed:
        seen = [np.unique(segment_labels(p, by).astype(str), return_inverse=True) for p in blocks()]
        names = tuple(np.unique(np.concatenate([u for u, _ in seen])).tolist())
        codes = np.concatenate([np.searchsorted(names, u)[i].astype(np.int16) for u, i in seen])
    return Prepared(
        cfg=cfg,
        world_name=world.name,
        catalog=catalog,
        model=fitted.model,
        report=fitted.report,
        population=population,
        segments=None if streamed else segment_labels(population, by),
        creator_mask=mask,
        treated=tuple(treated),
        replicate=replicate,
        arm_items=tuple(arm_items),
        placebo=placebo,
        draw=draw,
        segment_codes=codes,
        segment_list=names,
    )


PLACEBO_CANDIDATES = 5
"""Existing items a placebo is drawn from, per creator item (see :func:`match_placebo`)."""
PLACEBO_CALIPER = 0.1
"""Widest gap in popularity percentile between a creator item and its placebo, while at least
:data:`PLACEBO_CANDIDATES` items lie within it (else doubled until they do)."""


def match_placebo(
    catalog: Catalog, creator_mask: np.ndarray, seed: int, k: int = PLACEBO_CANDIDATES
) -> np.ndarray:
    """The existing item matched to each item of ``creator_mask`` (in index order), all
    distinct: a world item that is not the creator's, drawn uniformly among ``k`` candidates by
    ``generator(seed, "placebo", item_id)``. The candidates are, among the items within
    :data:`PLACEBO_CALIPER` of its popularity percentile (a new item has the catalog median:
    :func:`build_catalog`; an existing one its own), those with the most similar tag set
    (cosine of tag indicators; the same tags where any has them), at most ``k`` of them, the
    nearest in popularity. Popularity is a caliper, not a tie-break: the choice model rewards
    it and real users have seen popular items (which are then not recommended to them), so a
    hit with the same tags would be no placebo of a new item. Drawn by the replicate's seed,
    the placebo varies across replicates as the placement of the new items does, wherever
    several items tie for the best tag set."""
    items = np.flatnonzero(creator_mask)
    free = ~creator_mask & ~catalog.is_creator_item
    if free.sum() < items.size:
        raise ConfigError(
            f"Expected at least {items.size} existing items that are not the creator's to match "
            f"a placebo to each creator item, got {int(free.sum())} - at `$.arms[*].placebo_of`"
        )
    tags = catalog.tag_matrix.astype(np.float64)
    tags /= np.maximum(np.linalg.norm(tags, axis=1, keepdims=True), 1e-12)
    out: list[int] = []
    for i in items:
        distance = np.abs(catalog.pop_percentile - catalog.pop_percentile[i]).astype(np.float64)
        caliper = PLACEBO_CALIPER
        while (free & (distance <= caliper)).sum() < min(k, free.sum()):
            caliper *= 2
        pool = np.flatnonzero(free & (distance <= caliper))
        # Rounded so that equal tag sets tie exactly and popularity decides between them.
        sim = np.round(tags[pool] @ tags[i], 9)
        best = pool[sim == sim.max()]
        near = best[np.argsort(distance[best], kind="stable")[:k]]
        # One uniform per item, the smallest among the candidates wins (as cold-start donors).
        u = generator(seed, "placebo", str(catalog.item_ids[i])).random(catalog.n_items)
        pick = int(near[np.argmin(u[near])])
        out.append(pick)
        free[pick] = False
    return np.array(out, np.int64)
