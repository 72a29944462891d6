"""`recoworld eval fidelity`: split, fit on the training part only, run the four protocols.

1. split the world per user (recent interactions held out; :mod:`recoworld.eval.split`) and
   check the split for leakage;
2. on the training world only: catalog (embeddings, popularity), the choice / rating / return
   models, personas, recommenders;
3. the deciders: the evaluated brain, and chance (``random``) as the floor;
4. protocols a-d (:mod:`recoworld.eval.protocols`), behaviour simulated with the real core
   loop (:func:`recoworld.study.simulate.simulate_arm`) for protocol c;
5. tables -> Parquet + a Markdown report (:mod:`recoworld.eval.report`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import msgspec
import numpy as np
import polars as pl

from recoworld.errors import ConfigError
from recoworld.eval import protocols as P
from recoworld.eval.decider import Decider, ParametricDecider, RandomDecider
from recoworld.eval.split import Split, check_split, holdout_split
from recoworld.items.catalog import Catalog, build_catalog
from recoworld.users.fit import CalibrationReport, Fitted, fit_choice_model
from recoworld.users.persona import Personas, personas_from_history
from recoworld.world.model import World

BRAINS = ("parametric", "hybrid", "llm")


class FidelitySettings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything that shapes an evaluation (kept with its results)."""

    brain: str = "parametric"
    seed: int = 0
    holdout_share: float = 0.2
    min_interactions: int = 5
    split_order: str = "auto"
    """auto (time where the world has times, else random) | time | random."""
    ratios: tuple[int, ...] = P.RATIOS
    list_size: int = P.LIST_SIZE
    hit_candidates: int = P.HIT_CANDIDATES
    embedding_dim: int = 32
    simulate: bool = True
    """Run the simulator (protocol c); off for quick checks."""


@dataclass(frozen=True, eq=False)
class Fitting:
    """What the training part yields; nothing here has seen a held-out interaction."""

    split: Split
    catalog: Catalog
    fitted: Fitted
    personas: Personas


@dataclass(frozen=True, eq=False)
class FidelityResult:
    dataset: str
    settings: FidelitySettings
    meta: dict
    tables: dict[str, pl.DataFrame]


def fit_on_training(world: World, s: FidelitySettings) -> Fitting:
    """Steps 1-2: the split (checked) and everything fitted on its training part."""
    split = holdout_split(
        world, holdout_share=s.holdout_share, min_interactions=s.min_interactions, seed=s.seed, order=s.split_order
    )
    check_split(split)
    catalog = build_catalog(split.train, dim=s.embedding_dim, seed=s.seed)
    fitted = fit_choice_model(split.train, catalog, seed=s.seed)
    personas = personas_from_history(split.train, catalog)
    return Fitting(split=split, catalog=catalog, fitted=fitted, personas=personas)


def make_decider(kind: str, f: Fitting, seed: int, *, llm_config: str | None = None) -> Decider:
    """The decider of brain ``kind``. ``hybrid`` makes its choices with the parametric brain
    (its LLM writes words only), so it is evaluated through the parametric decider."""
    match kind:
        case "parametric" | "hybrid":
            d = ParametricDecider(f.fitted.model, f.catalog, f.personas, seed)
            d.name = kind
            return d
        case "llm":
            return _llm_decider(f, seed, llm_config)
    raise ConfigError(f"--brain: expected one of {', '.join(BRAINS)}, got {kind!r}")


def _llm_decider(f: Fitting, seed: int, llm_config: str | None) -> Decider:
    if not llm_config:
        raise ConfigError(
            "--brain llm needs an [llm] config: pass --config STUDY.toml whose [llm] table names the model "
            "(see recoworld/config.py, LLMConfig)"
        )
    try:
        from recoworld.users import llm_brain  # the lead's LLM brain
    except ImportError:
        llm_brain = None
    factory = getattr(llm_brain, "fidelity_decider", None)
    if factory is None:
        raise ConfigError(
            f"--brain llm with {llm_config}: no LLM decider is available yet (expected "
            "recoworld.users.llm_brain.fidelity_decider(study_cfg, catalog, personas, seed) -> Decider)"
        )
    from recoworld.config import load_study

    cfg = load_study(llm_config)
    if cfg.llm is None:
        raise ConfigError(f"{llm_config}: --brain llm needs an [llm] config; the file has no [llm] table")
    return factory(cfg, f.catalog, f.personas, seed)


def simulated_consumption(f: Fitting, users: np.ndarray, seed: int) -> P.Consumption:
    """Users ``users`` (rows of ``f.personas``) run through the simulator's core loop with the
    default study settings (3 sessions of up to 5 slates of 10, the MF recommender following
    instructions); consumed = watched or rated."""
    from recoworld.config import StudyConfig
    from recoworld.study.prepare import Prepared
    from recoworld.study.simulate import TurnRecord, simulate_arm
    from recoworld.users.brain import WATCH
    from recoworld.users.population import segment_labels

    cfg = StudyConfig(name="fidelity", seed=seed)
    n = len(f.personas)
    prep = Prepared(
        cfg=cfg, world_name=f.split.world.name, catalog=f.catalog, model=f.fitted.model, report=f.fitted.report,
        population=f.personas, segments=segment_labels(f.personas, "none"),
        creator_mask=np.zeros(f.catalog.n_items, bool), treated=(np.ones(n, bool),),
    )  # fmt: skip
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def observe(rec: object) -> None:
        if isinstance(rec, TurnRecord):
            r, c = np.nonzero(rec.feedback.action >= WATCH)  # row-major: slate position order
            parts.append((users[rec.rows[r]], np.full(r.size, rec.session), rec.slates[r, c]))

    simulate_arm(prep, 0, users, observe)
    if not parts:
        return P.Consumption(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    u, s, i = (np.concatenate(x) for x in zip(*parts))
    o = np.lexsort((np.arange(u.size), u))  # per user, in consumption order
    return P.Consumption(u[o], s[o], i[o])


def evaluate(world: World, s: FidelitySettings, *, llm_config: str | None = None) -> FidelityResult:
    """Run every protocol for brain ``s.brain`` on ``world``."""
    t0 = time.perf_counter()
    f = fit_on_training(world, s)
    t_fit = time.perf_counter() - t0
    brain = make_decider(s.brain, f, s.seed, llm_config=llm_config)
    levels = tuple(f.fitted.model.rating.levels) if f.fitted.model.rating else None
    chance = RandomDecider(s.seed, levels)
    deciders: list[Decider] = [brain, chance]
    tables: dict[str, pl.DataFrame] = {}
    summary, per_user = P.discrimination(
        f.split, deciders, f.personas, ratios=s.ratios, list_size=s.list_size, seed=s.seed
    )
    tables["discrimination"] = summary
    tables["discrimination_tiers"] = P.tier_breakdown(per_user, f.personas)
    tables["ratings"] = P.rating_alignment(f.split, deciders, f.personas, seed=s.seed)
    tables["rating_hist"] = P.rating_histograms(f.split, [brain])
    if s.simulate:
        real = P.real_consumption(f.split)
        users = np.unique(real.user)
        sim = simulated_consumption(f, users, s.seed)
        tables["calibration"] = P.behaviour_calibration(
            f.split, f.catalog, f.personas, real, sim, sim_label=brain.name, seed=s.seed
        )
    tables["hit"] = P.hit_at_1(f.split, _scorers(f, brain, s.seed), candidates=s.hit_candidates, seed=s.seed)
    report: CalibrationReport = f.fitted.report
    meta = {
        "dataset": world.name,
        "brain": s.brain,
        "brain_note": "hybrid: choices and ratings by the parametric brain (its LLM writes words only)"
        if s.brain == "hybrid"
        else "",
        "split_order": f.split.order,
        "users": world.users.height,
        "evaluated_users": int(np.unique(f.split.test.user).size),
        "train_interactions": len(f.split.train_coded),
        "test_interactions": len(f.split.test),
        "fit_auc": report.auc,
        "fit_ece": report.ece,
        "fit_seconds": t_fit,
        "seconds": time.perf_counter() - t0,
        "settings": msgspec.to_builtins(s),
    }
    for name, df in tables.items():
        if df.height:
            tables[name] = df.with_columns(pl.lit(world.name).alias("dataset")).select(
                "dataset", *[c for c in df.columns if c != "dataset"]
            )
    return FidelityResult(dataset=world.name, settings=s, meta=meta, tables=tables)


def _scorers(f: Fitting, brain: Decider, seed: int) -> dict[str, P.Scorer]:
    """The built-in recommenders' sources (bound to the training personas) and, for
    reference, the simulated user's own choice probability as a ranker."""
    from recoworld.recommenders.base import Audience
    from recoworld.recommenders.factory import base_source

    aud = Audience(personas=f.personas, catalog=f.catalog, seed=seed, treated=np.zeros(len(f.personas), bool))
    out: dict[str, P.Scorer] = {}
    for kind in ("random", "popular", "mf"):
        src = base_source(kind)
        src.bind(aud)
        out[kind] = src.score
    prob = getattr(brain, "probability", None)
    if prob is not None:
        out[f"{brain.name} user model (reference)"] = lambda u, it: prob(u, it, None)
    return out
