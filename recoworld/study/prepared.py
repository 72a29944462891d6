"""What every shard of a run reads: the prepared study (:func:`recoworld.study.prepare.prepare`
makes it)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recoworld.config import StudyConfig
from recoworld.items.catalog import Catalog
from recoworld.users.choice import ChoiceModel
from recoworld.users.fit import CalibrationReport
from recoworld.users.persona import Personas
from recoworld.users.population import PopulationDraw


@dataclass(frozen=True, eq=False)
class Prepared:
    """The immutable inputs of every shard of a run."""

    cfg: StudyConfig
    world_name: str
    catalog: Catalog
    model: ChoiceModel
    report: CalibrationReport
    population: Personas | None
    """The users, held whole; None where they are streamed (drawn by block from :attr:`draw`:
    a population above :data:`STREAM_USERS`)."""
    segments: np.ndarray | None  # (n,) str per population user; None where streamed
    creator_mask: np.ndarray  # (n_items,) bool
    treated: tuple[np.ndarray, ...]  # per arm, (n,) bool
    replicate: int = 0
    """Which replicate of the study this is: its own placement of the creator's new items in
    ``catalog`` and its own population (uids follow the earlier replicates')."""
    arm_items: tuple[np.ndarray, ...] = ()
    """Per arm, the (n_items,) bool mask of the items its treatment applies to and its creator
    metrics count (``creator_reach``, ``creator_engagement``, events' ``is_creator_item``): the
    creator's items, or for a placebo arm (``placebo_of``) the matched :attr:`placebo`. Left
    out: ``creator_mask`` for every arm."""
    placebo: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """The existing item matched to each of the creator's items (``np.flatnonzero(creator_mask)``,
    in order) by :func:`match_placebo`; empty when the study has no placebo arm."""

    draw: PopulationDraw | None = None
    """How the population is drawn (any rows alone); where :attr:`population` is None, the
    only copy of it."""
    segment_codes: np.ndarray | None = None
    """Where streamed: (n,) int16, each user's segment in :attr:`segment_list`."""
    segment_list: tuple[str, ...] = ()
    """Where streamed: the population's segments, sorted."""

    def __post_init__(self) -> None:
        if not self.arm_items:  # frozen: the one place a default is derived from other fields
            object.__setattr__(self, "arm_items", (self.creator_mask,) * len(self.cfg.arms))

    @property
    def size(self) -> int:
        """Users in the population."""
        return len(self.population) if self.population is not None else self.draw.size  # type: ignore[union-attr]

    def personas(self, users: np.ndarray) -> Personas:
        """The population's users at rows ``users`` (drawn, where the population is streamed)."""
        if self.population is not None:
            return self.population.take(users)
        return self.draw.rows(users)  # type: ignore[union-attr]

    def uids(self, users: np.ndarray) -> np.ndarray:
        """The user ids of rows ``users``."""
        if self.population is not None:
            return self.population.uid[users]
        return np.asarray(users, dtype=np.int64) + self.draw.offset  # type: ignore[union-attr]

    def segment_names(self) -> list[str]:
        """The population's segments, sorted."""
        if self.segments is not None:
            return np.unique(self.segments.astype(str)).tolist()
        return list(self.segment_list)

    def segment_codes_in(self, names: list[str], users: np.ndarray) -> np.ndarray:
        """(len(users),) int64: the segment of each user of rows ``users``, as its index in
        ``names`` (sorted, holding every segment of the population)."""
        if self.segments is not None:
            labels = self.segments[users].astype(str)
        else:
            labels = np.asarray(self.segment_list)[self.segment_codes[users]]  # type: ignore[index]
        return np.searchsorted(np.asarray(names), labels).astype(np.int64)
