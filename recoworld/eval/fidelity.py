"""`recoworld eval fidelity`: split, fit on the training part only, run the four protocols.

1. split the world per user (recent interactions held out; :mod:`recoworld.eval.split`) and
   check the split for leakage;
2. on the training world only: catalog (embeddings, popularity), the choice / rating / return
   models, personas, recommenders;
3. the evaluated users: every user with a held-out interaction, or a seeded sample of
   ``users`` of them (``--users N``; an LLM on a CPU is slow);
4. the deciders: the evaluated brain, and chance (``random``) as the floor;
5. protocols a-d (:mod:`recoworld.eval.protocols`), behaviour simulated with the real core
   loop for protocol c (:func:`recoworld.study.simulate.simulate_arm`; the llm brain:
   :func:`recoworld.study.llm_loop.simulate_arm_llm` with the same model);
6. tables (and, for the llm brain, every model call: ``llm_calls``) -> Parquet + a Markdown
   report (:mod:`recoworld.eval.report`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import msgspec
import numpy as np
import polars as pl

from recoworld.config import BrainConfig
from recoworld.errors import ConfigError
from recoworld.eval import protocols as P
from recoworld.eval.decider import Decider, ParametricDecider, RandomDecider
from recoworld.eval.ease import LAMBDA, Ease
from recoworld.eval.headline import headline_table
from recoworld.eval.split import Split, check_split, holdout_split, read_given_pairs
from recoworld.items.catalog import Catalog, build_catalog
from recoworld.llm.base import LanguageModel
from recoworld.rng import generator
from recoworld.study.sittings import SITTING_TURNS, fit_leaving
from recoworld.users.fit import CalibrationReport, Fitted, fit_choice_model
from recoworld.users.persona import Personas, personas_from_history
from recoworld.world.model import World

BRAINS = ("parametric", "hybrid", "llm")


@dataclass(frozen=True)
class Protocol:
    """A published way of asking simulated users to discriminate (docs/fidelity.md)."""

    name: str
    ratios: tuple[int, ...]
    positives: str  # recoworld.eval.protocols.POSITIVES
    split: str  # the split order "auto" means under this protocol
    headline_priors: tuple[str, ...]  # the priors the headline reports, the protocol's first


PROTOCOLS: dict[str, Protocol] = {
    "recoworld": Protocol("recoworld", P.RATIOS, "liked", "auto", ("told", "blind")),
    "agent4rec": Protocol("agent4rec", (1, 2, 3, 9), "all", "auto", ("blind", "told")),
    "afl": Protocol("afl", (1,), "all", "last-k", ("blind", "told")),
}
"""recoworld: liked held-out positives (rating >= 4; on feed logs watched to the end) at 1:1,
1:3, 1:9, told and blind. agent4rec (Zhang et al., SIGIR 2024): every held-out interaction is a
positive, ``k = min(|positives|, 20 // (m + 1))`` of them with ``m`` never-interacted negatives
each, m in {1, 2, 3, 9}, the decider not told the ratio (blind is its headline). afl (Cai et
al., SIGIR 2025): each user's last 10 interactions held out, lists of those 10 and 10
never-interacted items, precision / recall / F1 micro and macro, Hit@1 of the next item among
20 candidates."""


class FidelitySettings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything that shapes an evaluation (kept with its results)."""

    brain: str = "parametric"
    seed: int = 0
    protocol: str = "recoworld"
    """recoworld | agent4rec | afl (:data:`PROTOCOLS`)."""
    holdout_share: float = 0.2
    min_interactions: int = 5
    split_order: str = "auto"
    """auto (the protocol's: afl last-k; else time where the world has times, random
    otherwise) | time | random | last-k | given (``given_path``)."""
    last_k: int = 10
    """last-k: interactions held out per user."""
    given_path: str = ""
    """given: the file of held-out (user_id, item_id) pairs (:func:`read_given_pairs`)."""
    ratios: tuple[int, ...] = ()
    """Ratios 1:m of the discrimination lists; empty = the protocol's."""
    exposures: tuple[str, ...] = ()
    """Exposures of protocol c (:data:`EXPOSURES`); empty = mf and browse (llm brain: mf)."""
    ease: bool = True
    """Fit EASE on the training part and print it beside every ranked figure."""
    list_size: int = P.LIST_SIZE
    hit_candidates: int = P.HIT_CANDIDATES
    embedding_dim: int = 32
    simulate: bool = True
    """Run the simulator (protocol c); off for quick checks."""
    users: int = 0
    """Evaluate a seeded sample of this many users (among those with a held-out interaction);
    0 = all of them. Fitting always uses every user's training part."""
    llm_samples: int = 1
    """llm brain: answers per slate (different seeds); > 1 gives watch probabilities (the share
    of positive answers) and so expected / mode / ranked decisions, at that many times the calls."""


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
    llm_calls: object = None
    """llm brain: every model call (a pyarrow Table with the ``llm_calls`` schema), else None."""


def fit_on_training(world: World, s: FidelitySettings) -> Fitting:
    """Steps 1-2: the split (checked) and everything fitted on its training part."""
    given = read_given_pairs(s.given_path, world) if s.split_order == "given" else None
    split = holdout_split(
        world,
        holdout_share=s.holdout_share,
        min_interactions=s.min_interactions,
        seed=s.seed,
        order=split_order(s),
        last_k=s.last_k,
        given=given,
    )
    check_split(split)
    catalog = build_catalog(split.train, dim=s.embedding_dim, seed=s.seed)
    fitted = fit_choice_model(split.train, catalog, seed=s.seed)
    personas = personas_from_history(
        split.train,
        catalog,
        half_life=fitted.model.recent_half_life,
        era_width=fitted.model.era_width,
    )
    fitted = fit_leaving(fitted, catalog, personas, BrainConfig(), s.seed)
    return Fitting(split=split, catalog=catalog, fitted=fitted, personas=personas)


def protocol_of(s: FidelitySettings) -> Protocol:
    if s.protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol: expected one of {', '.join(PROTOCOLS)}, got {s.protocol!r}")
    return PROTOCOLS[s.protocol]


def split_order(s: FidelitySettings) -> str:
    """The split order the settings ask for (``auto`` resolved by the protocol)."""
    return protocol_of(s).split if s.split_order == "auto" else s.split_order


def make_decider(
    kind: str,
    f: Fitting,
    seed: int,
    *,
    llm_config: str | None = None,
    model: LanguageModel | None = None,
    llm_samples: int = 1,
) -> Decider:
    """The decider of brain ``kind``. ``hybrid`` makes its choices with the parametric brain
    (its LLM writes words only), so it is evaluated through the parametric decider. ``llm``
    reads the ``[llm]`` table and slate size of study file ``llm_config`` and opens its model,
    unless ``model`` is given (the caller owns it)."""
    match kind:
        case "parametric" | "hybrid":
            d = ParametricDecider(f.fitted.model, f.catalog, f.personas, seed)
            d.name = kind
            return d
        case "llm":
            return _llm_decider(f, seed, llm_config, model, llm_samples)
    raise ConfigError(f"--brain: expected one of {', '.join(BRAINS)}, got {kind!r}")


def _llm_decider(
    f: Fitting, seed: int, llm_config: str | None, model: LanguageModel | None, samples: int
) -> Decider:
    if not llm_config:
        raise ConfigError(
            "--brain llm needs an [llm] config: pass --config STUDY.toml whose [llm] table names "
            "the model "
            "(see recoworld/config.py, LLMConfig, and docs/fidelity.md)"
        )
    from recoworld.config import load_study
    from recoworld.eval.llm_decider import LLMDecider

    cfg = load_study(llm_config)
    if cfg.llm is None:
        raise ConfigError(
            f"{llm_config}: --brain llm needs an [llm] config; the file has no [llm] table"
        )
    if samples < 1:
        raise ConfigError(f"--llm-samples: expected an integer >= 1, got {samples}")
    return LLMDecider.from_study(
        cfg, f.catalog, f.personas, f.fitted.model, seed, model=model, samples=samples
    )


def sample_users(split: Split, n: int, seed: int) -> Split:
    """The split with its held-out part limited to a seeded sample of ``n`` of the users who
    have one (``n <= 0`` or at least that many: unchanged). An evaluation view, taken after
    :func:`check_split`: training is untouched, so everything fitted is the same."""
    users = np.unique(split.test.user)
    if n <= 0 or n >= users.size:
        return split
    keep = np.sort(generator(seed, "fidelity-users").choice(users, n, replace=False))
    return replace(split, test=split.test.take(np.isin(split.test.user, keep)))


EXPOSURES = ("mf", "browse")
"""How simulated users are exposed to items for protocol c
(:mod:`recoworld.recommenders.browse`)."""


def simulated_consumption(
    f: Fitting,
    users: np.ndarray,
    seed: int,
    llm: Decider | None = None,
    *,
    exposure: str = "mf",
) -> P.Consumption:
    """Users ``users`` (rows of ``f.personas``) run through the simulator's core loop with the
    default study settings (3 sessions of slates of 10), each session lasting until the user
    leaves (at most :data:`SITTING_TURNS` slates, as the fit of its length assumed; the llm
    brain's at most 5, the default turn budget: every slate is a call); consumed = watched or
    rated.
    ``exposure``: ``mf`` (the MF recommender following instructions, a study's default) or
    ``browse`` (:class:`recoworld.recommenders.browse.CatalogueBrowsing`, a model of the exposure
    behind the logs). With ``llm`` (an :class:`LLMDecider`), the llm brain's loop with its
    model and call log (arm ``fidelity-sessions``)."""

    from recoworld.config import ArmConfig, RecommenderConfig, SimulationConfig, StudyConfig
    from recoworld.recommenders.browse import browse_config
    from recoworld.records import WATCH, TurnRecord
    from recoworld.study.prepare import Prepared
    from recoworld.study.simulate import simulate_arm
    from recoworld.users.population import segment_labels

    if exposure not in EXPOSURES:
        raise ConfigError(f"--exposure: expected one of {', '.join(EXPOSURES)}, got {exposure!r}")
    rec = RecommenderConfig() if exposure == "mf" else browse_config(BrainConfig().logged_exposure)
    if llm is None:  # sessions run until users leave, as a sitting does
        cfg = StudyConfig(
            name="fidelity",
            seed=seed,
            recommender=rec,
            simulation=SimulationConfig(turns=SITTING_TURNS),
        )
    else:
        cfg = StudyConfig(
            name="fidelity",
            seed=seed,
            brain=BrainConfig(kind="llm"),
            llm=llm.llm,  # type: ignore[attr-defined]
            arms=[ArmConfig(name="fidelity-sessions")],
            recommender=rec,
        )
    n = len(f.personas)
    prep = Prepared(
        cfg=cfg,
        world_name=f.split.world.name,
        catalog=f.catalog,
        model=f.fitted.model,
        report=f.fitted.report,
        population=f.personas,
        segments=segment_labels(f.personas, "none"),
        creator_mask=np.zeros(f.catalog.n_items, bool),
        treated=(np.ones(n, bool),),
    )
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def observe(rec: object) -> None:
        if isinstance(rec, TurnRecord):
            r, c = np.nonzero(rec.feedback.action >= WATCH)  # row-major: slate position order
            parts.append(
                (
                    users[rec.rows[r]],
                    np.full(r.size, rec.session),
                    rec.slates[r, c],
                    np.asarray(rec.day, np.float64)[r],
                )
            )

    if llm is None:
        simulate_arm(prep, 0, users, observe)
    else:
        from recoworld.study.llm_loop import simulate_arm_llm

        llm.timed(simulate_arm_llm(prep, 0, users, observe, llm.model, llm.log))  # type: ignore[attr-defined]
        llm.log.flush()  # type: ignore[attr-defined]
    if not parts:
        z = np.zeros(0, np.int64)
        return P.Consumption(z, z, z, np.zeros(0))
    u, s, i, d = (np.concatenate(x) for x in zip(*parts))
    o = np.lexsort((np.arange(u.size), u))  # per user, in consumption order
    return P.Consumption(u[o], s[o], i[o], d[o])


def evaluate(
    world: World,
    s: FidelitySettings,
    *,
    llm_config: str | None = None,
    model: LanguageModel | None = None,
) -> FidelityResult:
    """Run every protocol for brain ``s.brain`` on ``world``. ``llm_config``: the study file
    whose ``[llm]`` table configures the llm brain; ``model``: a model to use instead of opening
    that one (the caller closes it)."""
    t0 = time.perf_counter()
    f = fit_on_training(world, s)
    t_fit = time.perf_counter() - t0
    brain = make_decider(
        s.brain, f, s.seed, llm_config=llm_config, model=model, llm_samples=s.llm_samples
    )
    try:
        return _evaluate(world, s, f, brain, t0, t_fit)
    finally:
        close = getattr(brain, "close", None)
        if close is not None:
            close()


def _evaluate(
    world: World, s: FidelitySettings, f: Fitting, brain: Decider, t0: float, t_fit: float
) -> FidelityResult:
    eligible = int(np.unique(f.split.test.user).size)
    f = replace(f, split=sample_users(f.split, s.users, s.seed))
    is_llm = hasattr(brain, "calls_table")
    levels = tuple(f.fitted.model.rating.levels) if f.fitted.model.rating else None
    chance = RandomDecider(s.seed, levels)
    deciders: list[Decider] = [brain, chance]
    tables: dict[str, pl.DataFrame] = {}
    proto = protocol_of(s)
    ease, ease_note = _ease(f, s)
    rankers = {} if ease is None else {ease.name: ease.score}
    summary, per_user = P.discrimination(
        f.split,
        deciders,
        f.personas,
        ratios=s.ratios or proto.ratios,
        list_size=s.list_size,
        seed=s.seed,
        positives=proto.positives,
        rankers=rankers,
    )
    tables["discrimination"] = summary
    tables["discrimination_tiers"] = P.tier_breakdown(per_user, f.personas)
    tables["ratings"] = P.rating_alignment(f.split, deciders, f.personas, seed=s.seed)
    tables["rating_hist"] = P.rating_histograms(f.split, [brain])
    if s.simulate:
        real = P.real_consumption(f.split)
        users = np.unique(real.user)
        frames = []
        for exposure in s.exposures or (("mf",) if is_llm else EXPOSURES):
            sim = simulated_consumption(
                f, users, s.seed, brain if is_llm else None, exposure=exposure
            )
            frames.append(
                P.behaviour_calibration(
                    f.split, f.catalog, f.personas, real, sim, sim_label=brain.name, seed=s.seed
                ).with_columns(pl.lit(exposure).alias("exposure"))
            )
        tables["calibration"] = pl.concat(frames)
    scorers = _scorers(f, brain, s.seed)
    if ease is not None:
        scorers[ease.name] = ease.score
    tables["hit"] = P.hit_at_1(f.split, scorers, candidates=s.hit_candidates, seed=s.seed)
    report: CalibrationReport = f.fitted.report
    meta = {
        "dataset": world.name,
        "world_key": world.key,
        "brain": s.brain,
        "brain_note": (
            "hybrid: choices and ratings by the parametric brain (its LLM writes words only)"
        )
        if s.brain == "hybrid"
        else "",
        "protocol": proto.name,
        "split_order": f.split.order,
        "users": world.users.height,
        "eligible_users": eligible,
        "evaluated_users": int(np.unique(f.split.test.user).size),
        "rated_users": int(np.unique(f.split.test.user[~np.isnan(f.split.test.rating)]).size),
        "ease": ease_note,
        "train_interactions": len(f.split.train_coded),
        "test_interactions": len(f.split.test),
        "fit_auc": report.auc,
        "fit_ece": report.ece,
        "fit_seconds": t_fit,
        "seconds": time.perf_counter() - t0,
        "settings": msgspec.to_builtins(s),
    }
    calls = None
    if is_llm:
        brain.close()  # type: ignore[attr-defined]
        calls = brain.calls_table()  # type: ignore[attr-defined]
        meta["llm"] = brain.stats()  # type: ignore[attr-defined]
        meta["brain_note"] = (
            "llm: every candidate list put to the language model slate by slate (no memory, a "
            "neutral mindset); "
            "answers that stayed invalid after one repair count as skips (fallbacks, in meta.llm)"
            + (
                "; protocol c ran the llm brain's own session loop with the same model"
                if s.simulate
                else ""
            )
        )
        meta["seconds"] = time.perf_counter() - t0
    tables["headline"] = headline_table(tables, meta, proto)
    for name, df in tables.items():
        if df.height:
            tables[name] = df.with_columns(pl.lit(world.name).alias("dataset")).select(
                "dataset", *[c for c in df.columns if c != "dataset"]
            )
    return FidelityResult(dataset=world.name, settings=s, meta=meta, tables=tables, llm_calls=calls)


def _ease(f: Fitting, s: FidelitySettings) -> tuple[Ease | None, str]:
    """EASE fitted on the training part, or None (and why) when off or too large."""
    if not s.ease:
        return None, "off"
    try:
        return Ease(f.split), f"EASE, lambda {LAMBDA:g}, fitted on the training part"
    except ValueError as e:
        return None, str(e)


def _scorers(f: Fitting, brain: Decider, seed: int) -> dict[str, P.Scorer]:
    """The built-in recommenders' sources (bound to the training personas) and, for
    reference, the simulated user's own choice probability as a ranker."""
    from recoworld.recommenders.base import Audience
    from recoworld.recommenders.factory import base_source

    aud = Audience(
        personas=f.personas, catalog=f.catalog, seed=seed, treated=np.zeros(len(f.personas), bool)
    )
    out: dict[str, P.Scorer] = {}
    for kind in ("random", "popular", "mf"):
        src = base_source(kind)
        src.bind(aud)
        out[kind] = src.score
    prob = getattr(brain, "probability", None)
    if prob is not None:
        out[f"{brain.name} user model (reference)"] = lambda u, it: prob(u, it, None)
    return out
