"""Build the recommender an arm of a study uses."""

from __future__ import annotations

import numpy as np

from recoworld.config import ArmConfig, RecommenderConfig
from recoworld.recommenders.base import PoolRecommender, Source
from recoworld.recommenders.baselines import MFSource, PopularSource, RandomSource
from recoworld.recommenders.treatments import CreatorBoost, CreatorInjector, InstructionReranker


def base_source(kind: str) -> Source:
    match kind:
        case "random":
            return RandomSource()
        case "popular":
            return PopularSource()
        case "mf":
            return MFSource()
    raise ValueError(f"unknown recommender kind {kind!r}; expected random, popular or mf")


def build_recommender(
    rec: RecommenderConfig, arm: ArmConfig, creator_mask: np.ndarray
) -> PoolRecommender:
    """The arm's recommender: base source, creator boost, instruction re-ranker, injector."""
    rec = arm.recommender or rec
    source: Source = base_source(rec.kind)
    post = ()
    match arm.treatment:
        case "boost":
            source = CreatorBoost(source, creator_mask, arm.boost)
        case "inject":
            post = (CreatorInjector(arm.position, arm.rate, np.flatnonzero(creator_mask)),)
        case "none":
            pass
    adjusters = (InstructionReranker(rec.instruction_weight),) if rec.follow_instructions else ()
    return PoolRecommender(source, adjusters, post, candidates=rec.candidates)
