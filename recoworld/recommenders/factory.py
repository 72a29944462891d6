"""Build the recommender an arm of a study uses: the one builder, for every loop."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recoworld.config import EXTERNAL_KINDS, ArmConfig, LLMConfig, RecommenderConfig
from recoworld.errors import LLMError
from recoworld.llm.base import LanguageModel
from recoworld.llm.wrappers import CallLog
from recoworld.recommenders.agentic import AgenticRecommender
from recoworld.recommenders.base import PoolRecommender, PostProcessor, Recommender, Source
from recoworld.recommenders.baselines import MFSource, PopularSource, RandomSource
from recoworld.recommenders.guard import CheckedRecommender
from recoworld.recommenders.treatments import CreatorBoost, CreatorInjector, InstructionReranker


@dataclass(frozen=True, eq=False)
class Voice:
    """What a recommender that speaks through a language model needs (the agentic one)."""

    model: LanguageModel
    llm: LLMConfig
    log: CallLog
    seed: int


def base_source(kind: str, retrieval: str = "auto") -> Source:
    match kind:
        case "random":
            return RandomSource()
        case "popular":
            return PopularSource()
        case "mf":
            return MFSource(retrieval=retrieval)  # type: ignore[arg-type]
    raise ValueError(f"unknown recommender kind {kind!r}; expected random, popular or mf")


def build_recommender(
    default: RecommenderConfig,
    arm: ArmConfig,
    creator_mask: np.ndarray,
    voice: Voice | None = None,
) -> Recommender:
    """The arm's recommender (its own ``[arms.recommender]``, else ``default``): a base source,
    the creator treatment (boost in ranking, or injection into the final slate) of the items of
    ``creator_mask`` (the arm's ``Prepared.arm_items``: the creator's, or a placebo arm's matched
    existing items), the instruction re-ranker; for ``agentic``, a language model re-ranks the
    base's candidates (needs ``voice``)."""
    rec = arm.recommender or default
    if rec.kind in EXTERNAL_KINDS:
        where = f"arms[{arm.name}].recommender" if arm.recommender else "recommender"
        return _external(rec, arm, creator_mask, where)
    source: Source = base_source(rec.base if rec.kind == "agentic" else rec.kind, rec.retrieval)
    post: tuple[PostProcessor, ...] = ()
    match arm.treatment:
        case "boost":
            source = CreatorBoost(source, creator_mask, arm.boost)
        case "inject":
            post = (CreatorInjector(arm.position, arm.rate, np.flatnonzero(creator_mask)),)
        case "none":
            pass
    adjusters = (InstructionReranker(rec.instruction_weight),) if rec.follow_instructions else ()
    if rec.kind != "agentic":
        return PoolRecommender(source, adjusters, post, candidates=rec.candidates)
    if voice is None:
        raise LLMError(
            f"arm {arm.name!r}: the agentic recommender needs a language model; "
            "none was opened (expected an [llm] block and a model)"
        )
    base = PoolRecommender(source, adjusters, (), candidates=rec.candidates)
    return AgenticRecommender(
        base,
        post,
        voice.model,
        voice.llm,
        voice.log,
        arm=arm.name,
        seed=voice.seed,
        m=rec.rerank_candidates,
    )


def _external(
    rec: RecommenderConfig, arm: ArmConfig, creator_mask: np.ndarray, where: str
) -> Recommender:
    """A bring-your-own recommender behind the contract check, with its declared fallback and
    the arm's injection (boost is refused for these kinds when the study is decoded)."""
    inner: Recommender
    match rec.kind:
        case "python":
            from recoworld.recommenders.plugin import load_plugin

            inner, name = load_plugin(rec.target, rec.options, where), f"python:{rec.target}"
        case "scores":
            from recoworld.recommenders.exported import ScoresReplay

            inner, name = ScoresReplay(rec, where), f"scores:{rec.path}"
        case "slates":
            from recoworld.recommenders.exported import SlatesReplay

            inner, name = SlatesReplay(rec, where), f"slates:{rec.path}"
        case _:  # "http"
            from recoworld.recommenders.http import ServiceRecommender, service_name

            inner = ServiceRecommender(rec, where, arm=arm.name)
            name = service_name(rec.service.url)  # "http://host:port/path"
    fallback = None
    if rec.fallback != "none":
        follow = (InstructionReranker(rec.instruction_weight),) if rec.follow_instructions else ()
        fallback = PoolRecommender(
            base_source(rec.fallback, rec.retrieval), follow, candidates=rec.candidates
        )
    post: tuple[PostProcessor, ...] = ()
    if arm.treatment == "inject":
        post = (CreatorInjector(arm.position, arm.rate, np.flatnonzero(creator_mask)),)
    return CheckedRecommender(inner, rec, name=name, arm=arm.name, fallback=fallback, post=post)
