"""RecoWorld's environments in Gymnasium's registry: ``gymnasium.make("RecoWorld/...")``.

Importing :mod:`recoworld.env` registers the ids below (and does nothing else); Gymnasium also
imports it by itself for ``gymnasium.make("recoworld.env:RecoWorld/Retention-v0")``.

Every id takes the world as keyword arguments: ``prep=`` a :class:`Prepared` (share one between
many environments: preparing fits the brain), or ``study=`` a :class:`StudyConfig` or the path of
a study TOML with an optional ``world=`` (else the study's world is loaded); with none of them a
small synthetic study (:func:`default_study`). The other keywords are the environment's options.

========================================  ==============================================
``RecoWorld/Session-v0``                  :class:`RecoEnv`: one session, catalog rows
``RecoWorld/Retention-v0``                :class:`RetentionEnv`: a life, catalog rows
``RecoWorld/RetentionCandidates-v0``      a life, candidate-set actions (100 from ``mf``)
``RecoWorld/SessionCandidates-v0``        one session, candidate-set actions
``RecoWorld/Text-v0``                     :class:`TextRecoEnv`: prompts in, JSON slates out
========================================  ==============================================

The retention ids have a native vector entry point: ``gymnasium.make_vec(id, num_envs=4096)``
builds :class:`RetentionVectorEnv` (``vectorization_mode="sync"`` builds Gymnasium's loop of
single environments instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym

from recoworld.config import PopulationConfig, StudyConfig, WorldConfig, load_study
from recoworld.env.reco_env import RecoEnv
from recoworld.env.retention import RetentionEnv
from recoworld.env.text import TextRecoEnv
from recoworld.env.vector import RetentionVectorEnv
from recoworld.study.prepare import Prepared, load_world_for, prepare
from recoworld.world.model import World

CANDIDATES = 100
"""The candidate ids' pool size (a study's default ``[recommender] candidates``)."""

ENVS: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    "RecoWorld/Session-v0": ("make_session", None, {}),
    "RecoWorld/Retention-v0": ("make_retention", "make_retention_vector", {}),
    "RecoWorld/RetentionCandidates-v0": (
        "make_retention",
        "make_retention_vector",
        {"candidates": CANDIDATES},
    ),
    "RecoWorld/SessionCandidates-v0": (
        "make_retention",
        "make_retention_vector",
        {"candidates": CANDIDATES, "sessions": 1},
    ),
    "RecoWorld/Text-v0": ("make_text", None, {}),
}
"""id -> (entry point, vector entry point, default keyword arguments), in this module."""


def register_envs() -> None:
    """Register every id of :data:`ENVS` that is not registered yet."""
    for env_id, (entry, vector, kwargs) in ENVS.items():
        if env_id in gym.registry:
            continue
        gym.register(
            env_id,
            entry_point=f"{__name__}:{entry}",
            vector_entry_point=f"{__name__}:{vector}" if vector else None,
            kwargs=kwargs,
        )


def default_study() -> StudyConfig:
    """The study of an environment made without a world: a small synthetic one."""
    return StudyConfig(
        name="env",
        seed=0,
        world=WorldConfig(dataset="synthetic", synthetic_users=200, synthetic_items=300),
        population=PopulationConfig(size=200),
    )


def resolve(
    prep: Prepared | None = None,
    study: StudyConfig | str | Path | None = None,
    world: World | None = None,
) -> Prepared:
    """The :class:`Prepared` an environment runs on (see the module docstring)."""
    if prep is not None:
        return prep
    cfg = load_study(study) if isinstance(study, (str, Path)) else (study or default_study())
    base = Path(study).parent if isinstance(study, (str, Path)) else None
    return prepare(
        cfg, world if world is not None else load_world_for(cfg.world, cfg.seed, base_dir=base)
    )


def make_session(
    prep: Prepared | None = None,
    study: StudyConfig | str | Path | None = None,
    world: World | None = None,
    **options: Any,
) -> gym.Env:
    return RecoEnv(resolve(prep, study, world), **options)


def make_retention(
    prep: Prepared | None = None,
    study: StudyConfig | str | Path | None = None,
    world: World | None = None,
    **options: Any,
) -> gym.Env:
    return RetentionEnv(resolve(prep, study, world), **options)


def make_retention_vector(
    num_envs: int,
    prep: Prepared | None = None,
    study: StudyConfig | str | Path | None = None,
    world: World | None = None,
    **options: Any,
) -> gym.vector.VectorEnv:
    return RetentionVectorEnv(resolve(prep, study, world), num_envs=num_envs, **options)


def make_text(
    prep: Prepared | None = None,
    study: StudyConfig | str | Path | None = None,
    world: World | None = None,
    **options: Any,
) -> gym.Env:
    return TextRecoEnv(resolve(prep, study, world), **options)
