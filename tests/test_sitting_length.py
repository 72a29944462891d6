"""How long a sitting lasts (the fit's ``sitting_items``, the brain's stopping hazard per
consumed item): fitted on the whole sittings of the logs' most recent part, not the long first
sittings of new users, and followed by the simulated users."""

from __future__ import annotations

from dataclasses import replace

import msgspec
import numpy as np
import polars as pl
import pytest

from recoworld.config import BrainConfig
from recoworld.items.catalog import build_catalog
from recoworld.records import WATCH
from recoworld.study.sittings import LEVEL_RANGE, fit_leaving, simulated_sitting_items
from recoworld.users.brain import ParametricBrain
from recoworld.users.choice import ChoiceModel
from recoworld.users.fit import Fitted, fit_choice_model
from recoworld.users.persona import personas_from_history
from recoworld.world.model import World
from recoworld.world.synthetic import synthetic_world


def _timed(world: World, length: int, first: int = 0) -> World:
    """``world`` with each user's interactions re-timed into sittings of ``length`` (a minute
    apart, a day between sittings), the first sitting holding ``first`` of them when > 0."""
    frames = []
    for (_,), g in world.interactions.group_by(["user_id"], maintain_order=True):
        k = np.arange(g.height)
        sitting = np.where(k < first, 0, (k - first) // length + (first > 0))
        at = np.where(k < first, k, (k - first) % length)
        ts = 1_600_000_000 + sitting * 86_400 + at * 60
        frames.append(g.with_columns(timestamp=pl.Series(ts)))
    return replace(world, interactions=pl.concat(frames))


def _fit(world: World) -> float:
    return fit_choice_model(world, build_catalog(world, dim=8, seed=0), seed=0).model.sitting_items


def test_the_fit_reads_the_length_of_recent_whole_sittings() -> None:
    base = synthetic_world(300, 200, seed=4)
    for length in (2, 6):
        got = _fit(_timed(base, length))
        # each user's last sitting may be cut short by the end of its log: at most the length
        assert length - 1.0 <= got <= length, (length, got)
    # a long first sitting (a new user rating what it has seen) is not a later visit
    onboarding = _fit(_timed(base, 3, first=15))
    assert 2.0 <= onboarding <= 3.0, onboarding
    # a sparse log (a single target per user): the log's later sittings, first and last left out
    sparse = synthetic_world(300, 200, seed=4, interactions_per_user=(6, 9))
    assert _fit(_timed(sparse, 2, first=4)) == pytest.approx(2.0, abs=0.01)
    undated = base.interactions.with_columns(timestamp=pl.lit(None, dtype=pl.Int64))
    assert _fit(replace(base, interactions=undated)) == 0.0


def _fitted(world: World) -> tuple:
    cat = build_catalog(world, dim=8, seed=0)
    fitted = fit_choice_model(world, cat, seed=0)
    personas = personas_from_history(world, cat, half_life=fitted.model.recent_half_life)
    return cat, fitted, personas


def test_simulated_sittings_last_as_long_as_the_logs_say() -> None:
    """The leaving fitted on one seed's sample gives the logs' sitting length to the whole
    population under another seed's draws: sittings shorter than the dynamics give end
    mid-slate (``enough``), longer ones by a lower leave logit; one longer than the dynamics
    can reach (fatigue ends clicking) is reported as such."""
    cat, fitted, personas = _fitted(_timed(synthetic_world(300, 200, seed=4), 1))
    at_zero = simulated_sitting_items(fitted.model, cat, personas, BrainConfig(), seed=0)
    cases = {
        "short": fitted.model.sitting_items,  # 1 item per sitting
        "long": at_zero * 1.04,
    }
    got = {}
    for name, target in cases.items():
        model = msgspec.structs.replace(fitted.model, sitting_items=target)
        fit = fit_leaving(replace_model(fitted, model), cat, personas, BrainConfig(), seed=0)
        assert fit.report.sitting_items == target
        assert fit.report.simulated_sitting_items == pytest.approx(target, rel=0.03), name
        sim = simulated_sitting_items(fit.model, cat, personas, BrainConfig(), seed=1)
        assert sim == pytest.approx(target, rel=0.1), (name, target, sim)
        got[name] = fit.model
    assert got["short"].enough > 0.5 and got["short"].leave_offset == 0
    assert got["long"].enough == 0 and got["long"].leave_offset < 0
    far = msgspec.structs.replace(fitted.model, sitting_items=10 * at_zero)
    fit = fit_leaving(replace_model(fitted, far), cat, personas, BrainConfig(), seed=0)
    assert fit.report.simulated_sitting_items < 0.5 * far.sitting_items  # said, not hidden
    assert fit.model.leave_offset == pytest.approx(LEVEL_RANGE[0], abs=1e-3)


def replace_model(fitted: Fitted, model: ChoiceModel) -> Fitted:
    return Fitted(model=model, report=fitted.report)


def test_a_user_who_has_had_enough_stops_mid_slate_and_leaves() -> None:
    world = synthetic_world(200, 120, seed=6)
    cat, fitted, personas = _fitted(world)
    rows = np.arange(len(personas))
    everything = np.tile(np.arange(cat.n_items), (rows.size, 1))
    logit, _ = fitted.model.static_logit(personas, rows, everything, cat)
    slates = np.argsort(-logit, axis=1)[:, :10]  # what each likes best
    for enough in (0.0, 1.0):
        model = msgspec.structs.replace(fitted.model, enough=enough)
        brain = ParametricBrain(model, BrainConfig(), cat, personas, seed=1)
        mind = brain.start_session(rows, 0)
        d = brain.decide(mind, rows, 0, 0, slates)
        consumed = d.feedback.action >= WATCH
        if enough == 0:
            assert (consumed.sum(1) > 1).any()
            continue
        assert (consumed.sum(1) <= 1).all()
        hit = consumed.any(1)
        assert hit.any() and d.leave[hit].all()
        first = consumed.argmax(1)
        for r in np.flatnonzero(hit):  # nothing after the item: not clicked, mindset still
            p = first[r]
            assert not d.feedback.clicked[r, p + 1 :].any()
            log = d.feedback.mind[:, r, p:]
            assert np.allclose(log, log[:, :1]), r


def test_a_fit_is_remembered_only_for_the_same_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """``fit_leaving`` remembers its level by the content of its inputs: the same world, model,
    users and settings fit once in a process; any change (a seed, a user's taste, the target)
    fits again, and a remembered fit equals a fresh one."""
    import recoworld.study.sittings as S

    cat, fitted, personas = _fitted(_timed(synthetic_world(120, 80, seed=5), 2))
    monkeypatch.setattr(S, "_memo", type(S._memo)())
    calls = []
    real = S.simulated_sitting_items
    monkeypatch.setattr(
        S, "simulated_sitting_items", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    first = fit_leaving(fitted, cat, personas, BrainConfig(), seed=0)
    n = len(calls)
    assert n >= 1
    again = fit_leaving(fitted, cat, personas, BrainConfig(), seed=0)
    assert len(calls) == n and again.model == first.model and again.report == first.report
    fit_leaving(fitted, cat, personas, BrainConfig(), seed=1)
    assert len(calls) > n
    n = len(calls)
    pref = personas.pref.copy()
    pref[0] = pref[1]
    fit_leaving(fitted, cat, replace(personas, pref=pref), BrainConfig(), seed=0)
    assert len(calls) > n
    n = len(calls)
    target = msgspec.structs.replace(fitted.model, sitting_items=fitted.model.sitting_items + 0.5)
    fit_leaving(replace_model(fitted, target), cat, personas, BrainConfig(), seed=0)
    assert len(calls) > n
    monkeypatch.setattr(S, "_memo", type(S._memo)())  # a fresh process: the same level
    fresh = fit_leaving(fitted, cat, personas, BrainConfig(), seed=0)
    assert fresh.model == first.model
