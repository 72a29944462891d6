"""Lingering within a session (recoworld/users/sessions.py, the fit's ``session_repetition``
and the harness's ``session_repetition`` figure): the session profile over a log is the one the
brain keeps online, the fit learns from the logs' sittings whether users linger on a kind of
item, and the brain's clicks follow what was learnt."""

from __future__ import annotations

from dataclasses import replace

import msgspec
import numpy as np
import polars as pl
import pytest

from recoworld.config import BrainConfig
from recoworld.eval import protocols as P
from recoworld.eval.split import holdout_split
from recoworld.items.catalog import build_catalog
from recoworld.users.brain import ParametricBrain
from recoworld.users.fit import fit_choice_model
from recoworld.users.persona import personas_from_history
from recoworld.users.sessions import repetition, session_boredom, session_profiles
from recoworld.world.model import World
from recoworld.world.synthetic import synthetic_world


def test_the_profile_over_a_log_is_the_brains_online_update() -> None:
    rng = np.random.default_rng(2)
    tags = rng.random((30, 6)).astype(np.float32)
    session = np.repeat(np.arange(8), rng.integers(1, 9, 8))
    items = rng.integers(0, 30, session.size)
    rows = np.arange(session.size)
    got = session_profiles(session, items, rows, tags)
    prof = np.zeros(6)
    for j in rows:
        if j == 0 or session[j] != session[j - 1]:
            prof = np.zeros(6)
        np.testing.assert_allclose(got[j], prof, rtol=1e-5, atol=1e-6)
        prof = 0.7 * prof + 0.3 * tags[items[j]]
    rep = repetition(got, tags[items])
    assert (rep[np.r_[True, session[1:] != session[:-1]]] == 0).all()  # a session's first
    assert ((rep >= 0) & (rep <= 1 + 1e-6)).all()


def test_the_boredom_over_a_log_is_the_brains_update_for_consumed_items() -> None:
    """Along each logged session, boredom starts at 0 and moves by the rate toward each
    consumed item's repetition of the profile before it, as the brain's does for a click."""
    rng = np.random.default_rng(3)
    tags = rng.random((30, 6)).astype(np.float32)
    session = np.repeat(np.arange(12), rng.integers(1, 12, 12))
    items = rng.integers(0, 30, session.size)
    rows = np.arange(session.size)
    rate = 0.25
    got = session_boredom(session, items, rows, tags, rate)
    prof, bored = np.zeros(6), 0.0
    for j in rows:
        if j == 0 or session[j] != session[j - 1]:
            prof, bored = np.zeros(6), 0.0
        assert got[j] == pytest.approx(bored, abs=1e-5)
        rep = repetition(prof[None].astype(np.float32), tags[items[j]][None])[0]
        bored += rate * (rep - bored)
        prof = 0.7 * prof + 0.3 * tags[items[j]]
    some = rows[::3]
    np.testing.assert_allclose(session_boredom(session, items, some, tags, rate), got[some])
    assert (session_boredom(session, items, rows, tags[:, :0], rate) == 0).all()  # no tags


def test_the_lingering_is_fitted_net_of_the_brains_boredom() -> None:
    """The brain subtracts boredom x repetition from a click's logit; the lingering fitted with
    that boredom in the offset is larger by what it takes back, so the sum is the logs'."""
    world = _sittings(synthetic_world(300, 200, seed=4), cluster=True)
    cat = build_catalog(world, dim=8, seed=0)
    d = BrainConfig()

    def lingering(weight: float | None) -> float:
        boredom = None if weight is None else (d.boredom_rate, weight)
        return fit_choice_model(world, cat, seed=0, boredom=boredom).model.session_repetition

    plain, net = lingering(0.0), lingering(d.boredom_weight)
    assert lingering(None) == net  # the brain's settings by default
    assert net > plain + 0.3, (plain, net)


def _sittings(world: World, cluster: bool, seed: int = 0) -> World:
    """``world`` with each user's interactions re-timed into sittings of 5 (a minute apart,
    a day between sittings), the items of a sitting sharing their first tag (``cluster``) or
    in a random order."""
    rng = np.random.default_rng(seed)
    first = dict(
        zip(world.items["item_id"], (t[0] if t else "" for t in world.items["tags"].to_list()))
    )
    frames = []
    for (_,), g in world.interactions.group_by(["user_id"], maintain_order=True):
        key = [first[i] for i in g["item_id"]] if cluster else list(rng.random(g.height))
        g = g[np.argsort(np.asarray(key), kind="stable")]
        k = np.arange(g.height)
        frames.append(
            g.with_columns(timestamp=pl.Series(1_600_000_000 + (k // 5) * 86_400 + (k % 5) * 60))
        )
    return replace(world, interactions=pl.concat(frames))


def test_the_fit_learns_lingering_where_sittings_keep_to_a_kind() -> None:
    base = synthetic_world(300, 200, seed=4)
    got = {}
    for cluster in (True, False):
        world = _sittings(base, cluster)
        got[cluster] = fit_choice_model(world, build_catalog(world, dim=8, seed=0), seed=0)
    linger, mixed = (got[c].model.session_repetition for c in (True, False))
    assert linger > 1.0 and abs(mixed) < 0.5 * linger, (linger, mixed)
    # nothing to learn without times
    undated = base.interactions.with_columns(timestamp=pl.lit(None, dtype=pl.Int64))
    world = replace(base, interactions=undated)
    fit = fit_choice_model(world, build_catalog(world, dim=8, seed=0), seed=0)
    assert fit.model.session_repetition == 0.0


def test_the_brain_clicks_more_on_what_repeats_the_session_when_users_linger() -> None:
    """Shown a slate of one kind, users click its later items more when the fitted lingering
    is high (the prior boredom still pulls the other way)."""
    world = synthetic_world(200, 120, seed=6)
    cat = build_catalog(world, dim=8, seed=0)
    fitted = fit_choice_model(world, cat, seed=0)
    personas = personas_from_history(world, cat, half_life=fitted.model.recent_half_life)
    kind = cat.tag_matrix.argmax(1)
    same = np.flatnonzero(kind == np.bincount(kind).argmax())[:10]
    rows = np.arange(len(personas))
    clicks = {}
    for lingering in (0.0, 3.0):
        model = msgspec.structs.replace(fitted.model, session_repetition=lingering)
        brain = ParametricBrain(model, BrainConfig(), cat, personas, seed=1)
        clicks[lingering] = 0
        for s in range(20):
            mind = brain.start_session(rows, s)
            fb = brain.react(mind, rows, s, 0, np.tile(same, (rows.size, 1)))
            clicks[lingering] += int(fb.clicked[:, 1:].sum())
    assert clicks[3.0] > 1.2 * clicks[0.0], clicks


def test_the_harness_figure_is_high_for_sessions_of_one_kind() -> None:
    tags = np.eye(4, dtype=np.float32)[[0, 0, 1, 1, 2, 2, 3, 3]]  # items 2k, 2k+1 of kind k
    one_kind = P.Consumption(
        np.zeros(6, np.int64), np.repeat([0, 1], 3), np.array([0, 1, 0, 2, 3, 2])
    )
    mixed = P.Consumption(np.zeros(6, np.int64), np.repeat([0, 1], 3), np.array([0, 2, 4, 1, 3, 6]))
    assert P.session_repetition(one_kind, tags) > 0.6
    assert P.session_repetition(mixed, tags) == pytest.approx(0.0)
    assert np.isnan(P.session_repetition(mixed, np.zeros((8, 0), np.float32)))


def test_without_times_the_real_side_has_no_sessions_to_read() -> None:
    world = synthetic_world(80, 60, seed=3)
    for timed in (True, False):
        w = (
            world
            if timed
            else replace(
                world,
                interactions=world.interactions.with_columns(timestamp=pl.lit(None, pl.Int64)),
            )
        )
        split = holdout_split(w, seed=0)
        cat = build_catalog(split.train, dim=8, seed=0)
        real = P.real_consumption(split)
        sim = P.Consumption(real.user, real.session, real.item)
        cal = P.behaviour_calibration(
            split, cat, personas_from_history(split.train, cat), real, sim, sim_label="same"
        ).filter((pl.col("metric") == "session_repetition") & (pl.col("trait") == "all"))
        assert (cal["real"][0] is not None) == timed
        assert cal["simulated"][0] is not None
