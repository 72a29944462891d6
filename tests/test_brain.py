"""ParametricBrain: action semantics, position bias, mindset dynamics, reflective instructions,
leaving, the return model, and batch invariance (draws keyed by user, session, turn, position).

Every test runs the brain fitted to a small synthetic world over a few thousand jittered
personas; comparisons between two brain settings reuse the same users and random numbers, so
most effects are checked user by user rather than only on average.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import msgspec
import numpy as np
import pytest

from recoworld.config import BrainConfig, PopulationConfig
from recoworld.items.catalog import Catalog, build_catalog
from recoworld.rng import uniforms
from recoworld.users.brain import (
    ACTIONS,
    CLICK,
    RATE,
    SKIP,
    WATCH,
    Instructions,
    Mindset,
    ParametricBrain,
    SlateFeedback,
)
from recoworld.users.choice import ChoiceModel
from recoworld.users.fit import fit_choice_model
from recoworld.users.persona import Personas, personas_from_history
from recoworld.users.population import build_population
from recoworld.users.words import TemplateTexts
from recoworld.world.synthetic import synthetic_world

K = 10
N_USERS = 3000
SEED = 3
NO_DYNAMICS = {"fatigue_weight": 0.0, "boredom_weight": 0.0, "curiosity_weight": 0.0}


@dataclass(frozen=True)
class Setup:
    catalog: Catalog
    model: ChoiceModel
    pop: Personas


@pytest.fixture(scope="module")
def setup() -> Setup:
    world = synthetic_world(300, 200, seed=5)
    catalog = build_catalog(world, dim=8)
    # the synthetic world's users chose among every item: uniform exposure behind its logs
    model = fit_choice_model(world, catalog, logged_exposure=0.0).model
    base = personas_from_history(world, catalog, half_life=model.recent_half_life)
    pop = build_population(base, catalog, PopulationConfig(size=N_USERS), seed=1)
    return Setup(catalog, model, pop)


def brain(s: Setup, pop: Personas | None = None, **cfg: float) -> ParametricBrain:
    return ParametricBrain(
        s.model, BrainConfig(**cfg), s.catalog, s.pop if pop is None else pop, seed=SEED
    )


def unsatiated(s: Setup) -> Setup:
    """``s`` in a world whose logs are all repeats: no lasting satiation with history items."""
    return replace(s, model=msgspec.structs.replace(s.model, repeat_share=1.0))


def random_slates(n: int, n_items: int, seed: int = 0) -> np.ndarray:
    """(n, K) distinct random items per user."""
    return np.argsort(np.random.default_rng(seed).random((n, n_items)), axis=1)[:, :K]


def shuffled(items: np.ndarray, n: int) -> np.ndarray:
    """The same K items for every user, in a random order per user (no item-position link)."""
    perm = np.argsort(np.random.default_rng(1).random((n, items.size)), axis=1)
    return items[perm]


def react(b: ParametricBrain, slates: np.ndarray) -> tuple[Mindset, SlateFeedback]:
    rows = np.arange(slates.shape[0])
    mind = b.start_session(rows, 0)
    return mind, b.react(mind, rows, 0, 0, slates)


def single_tag_items(cat: Catalog) -> tuple[np.ndarray, np.ndarray]:
    """(items carrying exactly one tag, that tag)."""
    single = np.flatnonzero(cat.tag_matrix.max(1) == 1.0)
    return single, cat.tag_matrix[single].argmax(1)


def test_action_codes_are_ordered_skip_click_watch_rate() -> None:
    assert ACTIONS == ("skip", "click", "watch", "rate")
    assert (SKIP, CLICK, WATCH, RATE) == (0, 1, 2, 3)


def test_actions_agree_with_watch_fractions_and_ratings(setup: Setup) -> None:
    threshold = 0.6  # high enough that bounces and watches both occur
    b = brain(setup, watch_threshold=threshold)
    _, fb = react(b, random_slates(N_USERS, setup.catalog.n_items))
    a, watch, rating = fb.action, fb.watch, fb.rating
    assert a.shape == watch.shape == rating.shape == (N_USERS, K)
    assert set(np.unique(a).tolist()) == {SKIP, CLICK, WATCH, RATE}
    assert (watch[a == SKIP] == 0).all()
    assert ((watch >= 0) & (watch <= 1)).all()
    assert (watch[a == CLICK] < threshold).all()
    assert (watch[a >= WATCH] >= threshold).all()
    np.testing.assert_array_equal(fb.clicked, a != SKIP)
    # ratings exactly where rated, on the fitted scale's levels
    np.testing.assert_array_equal(~np.isnan(rating), a == RATE)
    levels = np.asarray(setup.model.rating.levels, dtype=np.float32)
    assert np.isin(rating[a == RATE], levels).all()
    assert setup.model.rating.scale_min <= rating[a == RATE].min()
    assert rating[a == RATE].max() <= setup.model.rating.scale_max


def test_rate_probability_decides_who_rates_among_watchers(setup: Setup) -> None:
    slates = random_slates(N_USERS, setup.catalog.n_items)
    _, always = react(brain(setup, rate_probability=1.0), slates)
    _, never = react(brain(setup, rate_probability=0.0), slates)
    assert (always.action == RATE).any() and not (always.action == WATCH).any()
    assert (never.action == WATCH).any() and not (never.action == RATE).any()
    assert np.isnan(never.rating).all()


def test_position_bias_lowers_click_rates_at_later_positions(setup: Setup) -> None:
    slates = random_slates(N_USERS, setup.catalog.n_items)
    _, biased = react(brain(setup, **NO_DYNAMICS), slates)
    _, flat = react(brain(setup, **NO_DYNAMICS, position_bias=0.0), slates)
    # Same users, same random numbers, no mindset feedback on the logit: the first position is
    # untouched and a biased click anywhere is also a click without the bias.
    np.testing.assert_array_equal(biased.clicked[:, 0], flat.clicked[:, 0])
    assert (biased.clicked <= flat.clicked).all()
    ctr_biased, ctr_flat = biased.clicked.mean(0), flat.clicked.mean(0)
    assert ctr_biased[-3:].mean() < 0.7 * ctr_biased[0]
    assert ctr_flat[-3:].mean() > 0.8 * ctr_flat[0]
    assert ctr_biased[5:].mean() < 0.75 * ctr_biased[:5].mean()


def test_fatigue_grows_with_every_item_and_more_with_watching(setup: Setup) -> None:
    cfg = BrainConfig()
    mind, fb = react(brain(setup), random_slates(N_USERS, setup.catalog.n_items))
    fatigue = np.concatenate([np.zeros((N_USERS, 1), np.float32), fb.mind[1]], axis=1)
    step = np.diff(fatigue, axis=1)
    np.testing.assert_allclose(
        step, cfg.fatigue_per_item + cfg.fatigue_per_watch * fb.watch, atol=1e-6
    )
    np.testing.assert_array_equal(
        mind.fatigue, fb.mind[1, :, -1]
    )  # the mindset is updated in place


def test_a_level_that_keeps_users_longer_slows_their_fatigue_by_its_factor(setup: Setup) -> None:
    """The fitted level of leaving under 0 (``recoworld.study.sittings.level``) also scales the
    fatigue each item adds: a user who stays longer tires more slowly in the same proportion."""
    from recoworld.study.sittings import level

    slates = random_slates(N_USERS, setup.catalog.n_items)
    slow = replace(setup, model=msgspec.structs.replace(setup.model, **level(-1.5)))
    assert slow.model.fatigue_scale == pytest.approx(np.exp(-1.5))
    cfg = BrainConfig(**NO_DYNAMICS)  # no mindset feedback on clicks: the same watches
    _, base = react(brain(setup, **NO_DYNAMICS), slates)
    _, kept = react(brain(slow, **NO_DYNAMICS), slates)
    np.testing.assert_array_equal(base.watch, kept.watch)
    step = np.diff(np.concatenate([np.zeros((N_USERS, 1), np.float32), kept.mind[1]], 1), axis=1)
    np.testing.assert_allclose(
        step, np.exp(-1.5) * (cfg.fatigue_per_item + cfg.fatigue_per_watch * kept.watch), atol=1e-6
    )
    # leaving sooner does not make users tire faster
    assert msgspec.structs.replace(setup.model, **level(0.5)).fatigue_scale == 1.0


def test_fatigue_lowers_clicks(setup: Setup) -> None:
    slates = random_slates(N_USERS, setup.catalog.n_items)
    _, tired = react(brain(setup, fatigue_weight=6.0), slates)
    _, fresh = react(brain(setup, fatigue_weight=0.0), slates)
    np.testing.assert_array_equal(tired.clicked[:, 0], fresh.clicked[:, 0])  # no fatigue yet
    assert tired.clicked[:, -3:].mean() < 0.85 * fresh.clicked[:, -3:].mean()


def test_repeating_one_tag_bores_and_lowers_clicks_unlike_a_diverse_slate(setup: Setup) -> None:
    items, tag = single_tag_items(setup.catalog)
    common = np.bincount(tag).argmax()
    repetitive = items[tag == common][:K]
    diverse = np.array([items[tag == t][0] for t in np.unique(tag)])[:K]
    assert repetitive.size == K and diverse.size >= 8

    def clicks_and_boredom(slate: np.ndarray, weight: float) -> tuple[float, float]:
        _, fb = react(brain(setup, boredom_weight=weight), shuffled(slate, N_USERS))
        return float(fb.clicked.mean()), float(fb.mind[2, :, -1].mean())

    (rep_on, rep_bored), (rep_off, _) = (
        clicks_and_boredom(repetitive, 2.5),
        clicks_and_boredom(repetitive, 0.0),
    )
    (div_on, div_bored), (div_off, _) = (
        clicks_and_boredom(diverse, 2.5),
        clicks_and_boredom(diverse, 0.0),
    )
    assert rep_bored > 0.1 and div_bored < 0.02  # no two diverse items share a tag
    assert rep_on < 0.95 * rep_off  # boredom costs clicks on the repetitive slate...
    assert div_on > 0.99 * div_off  # ...and (next to) none on the diverse one
    assert (rep_off - rep_on) / rep_off > (div_off - div_on) / div_off + 0.04


def test_curiosity_follows_diversity_and_fades_with_boredom(setup: Setup) -> None:
    items, tag = single_tag_items(setup.catalog)
    common = np.bincount(tag).argmax()
    diverse = np.array([items[tag == t][0] for t in np.unique(tag)])[:K]
    diversity = setup.pop.diversity.astype(np.float32)
    _, fb = react(brain(setup), shuffled(diverse, N_USERS))
    # never bored: curiosity starts at the diversity trait and stays there
    np.testing.assert_allclose(
        fb.mind[3], np.broadcast_to(diversity[:, None], (N_USERS, K)), atol=1e-6
    )
    # (items of the users' real histories are satiated, hence seldom clicked: not here)
    _, fb = react(brain(unsatiated(setup)), shuffled(items[tag == common][:K], N_USERS))
    bored = fb.mind[2, :, -1] > 0.05
    assert bored.mean() > 0.5
    curious = bored & (diversity > 0)  # a user with no taste for variety has nothing to lose
    assert (fb.mind[3, curious, -1] < diversity[curious]).all()


def test_boredom_penalises_repeats_not_a_novel_item_after_them(setup: Setup) -> None:
    items, tag = single_tag_items(setup.catalog)
    common = np.bincount(tag).argmax()
    same = items[tag == common]
    other = items[tag != common][0]
    n = N_USERS

    def last_clicks(last: int, weight: float) -> np.ndarray:
        slates = np.column_stack([shuffled(same[: K - 1], n), np.full(n, last)])
        quiet = {"fatigue_weight": 0.0, "curiosity_weight": 0.0}
        return react(brain(setup, boredom_weight=weight, **quiet), slates)[1].clicked[:, -1]

    # Boredom x repetition: an item sharing nothing with the session is not penalised at all...
    np.testing.assert_array_equal(last_clicks(other, 2.5), last_clicks(other, 0.0))
    # ...while one more of the same is.
    bored, fresh = last_clicks(same[K - 1], 2.5), last_clicks(same[K - 1], 0.0)
    assert (bored <= fresh).all() and bored.mean() < 0.9 * fresh.mean()


def test_satisfaction_falls_on_skips_and_bad_ratings_and_rises_on_top_ratings(setup: Setup) -> None:
    mind0 = brain(setup).start_session(np.arange(N_USERS), 0)
    _, fb = react(brain(setup, rate_probability=1.0), random_slates(N_USERS, setup.catalog.n_items))
    before = np.concatenate([mind0.satisfaction[:, None], fb.mind[0, :, :-1]], axis=1)
    after = fb.mind[0]
    assert ((after >= 0) & (after <= 1)).all()
    skip = fb.action == SKIP
    assert (
        after[skip] < before[skip]
    ).all()  # satisfaction starts >= 0.05 and one slate cannot empty it
    levels = setup.model.rating.levels
    worst, best = fb.rating == levels[0], fb.rating == levels[-1]
    assert worst.any() and best.any()
    assert (after[worst] < before[worst]).all()
    assert (after[best] > before[best]).all()


def test_sessions_start_near_the_carried_satisfaction(setup: Setup) -> None:
    b, rows = brain(setup), np.arange(N_USERS)
    low = b.start_session(rows, 1, carry=np.full(N_USERS, 0.1, np.float32)).satisfaction
    high = b.start_session(rows, 1, carry=np.full(N_USERS, 0.9, np.float32)).satisfaction
    fresh = b.start_session(rows, 1).satisfaction
    np.testing.assert_allclose(high - low, 0.3 * 0.8, atol=1e-5)  # same noise, carried 0.3 x gap
    assert abs(fresh.mean() - 0.5) < 0.01 and ((fresh >= 0.05) & (fresh <= 0.95)).all()


def sad(mind: Mindset) -> Mindset:
    mind.satisfaction[:] = 0.1
    return mind


def test_unsatisfied_users_ask_for_their_taste_gap_and_less_of_what_they_skipped(
    setup: Setup,
) -> None:
    cat = setup.catalog
    items, tag = single_tag_items(cat)
    shown_tag, wanted_tag = np.bincount(tag).argmax(), np.bincount(tag).argsort()[-2]
    n = 300
    # Users who like the shown tag most, but get nothing of the other tag they like.
    taste = np.zeros((n, cat.tag_matrix.shape[1]), np.float32)
    taste[:, shown_tag], taste[:, wanted_tag] = 0.6, 0.4
    pop = replace(setup.pop.take(np.arange(n)), taste=taste)
    b = brain(setup, pop=pop, instruct_probability=1.0)
    rows, slates = np.arange(n), shuffled(items[tag == shown_tag][:K], n)
    mind = sad(b.start_session(rows, 0))
    fb = b.react(mind, rows, 0, 0, slates)
    out = b.after_slate(sad(mind), rows, 0, 0, slates, fb)
    ins = out.instructions
    np.testing.assert_array_equal(ins.rows, rows)  # all under the threshold, probability 1
    assert (ins.more_of == wanted_tag).all()  # the gap, not the favourite
    # less of the shown tag only where the user skipped it beyond its taste (by over 0.15)
    skipped_share = (~fb.clicked).mean(1)
    np.testing.assert_array_equal(ins.less_of, np.where(skipped_share - 0.6 > 0.15, shown_tag, -1))
    assert 0.2 < (ins.less_of == shown_tag).mean() < 1.0
    shown, wanted = cat.tags[shown_tag], cat.tags[wanted_tag]
    for text, less in zip(TemplateTexts(cat.tags, ins.more_of, ins.less_of), ins.less_of.tolist()):
        if less >= 0:
            assert text == f"Too much {shown} lately. Show me more {wanted}."
        else:
            assert text == f"Nothing here grabs me. Something different: more {wanted}, please."


def test_instruction_texts_render_both_forms() -> None:
    ins = Instructions(rows=np.array([0, 3]), more_of=np.array([1, 2]), less_of=np.array([0, -1]))
    assert TemplateTexts(("Drama", "Sci-Fi", "Comedy"), ins.more_of, ins.less_of)[:] == [
        "Too much Drama lately. Show me more Sci-Fi.",
        "Nothing here grabs me. Something different: more Comedy, please.",
    ]


def test_satisfied_users_do_not_instruct(setup: Setup) -> None:
    b, rows = brain(setup, instruct_probability=1.0), np.arange(N_USERS)
    slates = random_slates(N_USERS, setup.catalog.n_items)
    mind = b.start_session(rows, 0)
    fb = b.react(mind, rows, 0, 0, slates)
    mind.satisfaction[:] = BrainConfig().instruct_below + 0.01
    assert b.after_slate(mind, rows, 0, 0, slates, fb).instructions.rows.size == 0


def test_instructions_come_at_most_once_every_two_turns(setup: Setup) -> None:
    n = 300
    b, rows = brain(setup, instruct_probability=1.0), np.arange(n)
    slates = random_slates(n, setup.catalog.n_items)
    mind = b.start_session(rows, 0)
    instructed = []
    for turn in range(5):
        fb = b.react(sad(mind), rows, 0, turn, slates)
        instructed.append(
            b.after_slate(sad(mind), rows, 0, turn, slates, fb).instructions.rows.size
        )
    assert instructed == [n, 0, n, 0, n]
    np.testing.assert_array_equal(mind.last_instruct_turn, 4)


def leave_rate(setup: Setup, satisfaction: float, **cfg: float) -> np.ndarray:
    b, rows = brain(setup, **cfg), np.arange(N_USERS)
    slates = random_slates(N_USERS, setup.catalog.n_items)
    mind = b.start_session(rows, 0)
    fb = b.react(mind, rows, 0, 0, slates)
    mind.satisfaction[:] = satisfaction
    return b.after_slate(mind, rows, 0, 0, slates, fb).leave


def test_unsatisfied_users_leave_more(setup: Setup) -> None:
    low = leave_rate(setup, 0.1, instruct_probability=0.0)
    high = leave_rate(setup, 0.9, instruct_probability=0.0)
    assert (high <= low).all()  # same random numbers, higher probability
    assert low.mean() > high.mean() + 0.3


def test_instructing_halves_the_chance_of_leaving(setup: Setup) -> None:
    silent = leave_rate(setup, 0.1, instruct_probability=0.0)
    vocal = leave_rate(setup, 0.1, instruct_probability=1.0)
    assert (vocal <= silent).all()
    assert 0.35 < vocal.mean() / silent.mean() < 0.65


def test_more_satisfied_users_return_more_and_active_users_sooner(setup: Setup) -> None:
    # The synthetic world's users nearly always come back: make the neutral user a coin flip.
    returns = msgspec.structs.replace(setup.model.returns, base_logit=0.0)
    model = msgspec.structs.replace(setup.model, returns=returns)
    b, rows = (
        ParametricBrain(model, BrainConfig(), setup.catalog, setup.pop, seed=SEED),
        np.arange(N_USERS),
    )
    low = b.end_session(np.full(N_USERS, 0.1, np.float32), rows, 0)
    high = b.end_session(np.full(N_USERS, 0.9, np.float32), rows, 0)
    assert (low.returns <= high.returns).all()
    assert high.returns.mean() > low.returns.mean() + 0.3
    for d in (low, high):
        assert np.isinf(d.gap_days[~d.returns]).all()
        assert (np.isfinite(d.gap_days[d.returns]) & (d.gap_days[d.returns] >= 0)).all()
    act, gap = setup.pop.activity[high.returns], high.gap_days[high.returns]
    assert gap[act > 2 / 3].mean() < 0.8 * gap[act < 1 / 3].mean()
    mean_gap = setup.model.returns.mean_gap_days
    assert 0.7 * mean_gap < gap.mean() < 1.3 * mean_gap


def simulate(
    b: ParametricBrain, rows: np.ndarray, sessions: int = 3, turns: int = 4
) -> dict[int, list]:
    """Everything each user does (keyed by uid): users leave the batch as they leave, and only
    those the return model brings back start the next session."""
    n_items = b.cat.n_items
    out: dict[int, list] = {int(u): [] for u in b.p.uid[rows]}
    carry = None
    for session in range(sessions):
        final = np.zeros(rows.size, np.float32)  # satisfaction when each user stopped
        active = np.arange(rows.size)  # positions into ``rows``
        mind = b.start_session(rows, session, carry)
        for turn in range(turns):
            batch = rows[active]
            uid = b.p.uid[batch]
            keys = uniforms(99, 0, uid[:, None], session, turn, np.arange(n_items)[None, :])
            slates = np.argsort(keys, axis=1)[:, :K]  # each user's own slates, keyed by uid
            fb = b.react(mind, batch, session, turn, slates)
            res = b.after_slate(mind, batch, session, turn, slates, fb)
            asked = np.full(batch.size, -2)
            asked[res.instructions.rows] = res.instructions.more_of * 100 + res.instructions.less_of
            for j, u in enumerate(uid.tolist()):
                out[u].append(
                    (fb.action[j], fb.watch[j], fb.rating[j], fb.mind[:, j], asked[j], res.leave[j])
                )
            final[active] = mind.satisfaction
            keep = ~res.leave
            active, mind = active[keep], mind.take(keep)
        ret = b.end_session(final, rows, session)
        for j, u in enumerate(b.p.uid[rows].tolist()):
            out[u].append((ret.returns[j], ret.gap_days[j]))
        rows, carry = rows[ret.returns], final[ret.returns]
        if rows.size == 0:
            break
    return out


def test_a_user_decides_the_same_alone_or_in_any_batch(setup: Setup) -> None:
    batch = np.arange(400)
    together = simulate(brain(setup), batch)
    order = np.random.default_rng(7).permutation(batch)
    # A shard holds other users, at other rows: only the uid may key the draws.
    parts = [
        simulate(brain(setup, pop=setup.pop.take(np.array([u]))), np.array([0])) for u in order[:5]
    ]
    parts.append(simulate(brain(setup, pop=setup.pop.take(order[:150])), np.arange(150)))
    for part in parts:
        for u, record in part.items():
            assert len(record) == len(together[u])
            for mine, theirs in zip(record, together[u]):
                for x, y in zip(mine, theirs):
                    np.testing.assert_array_equal(x, y)
    assert len({len(r) for r in together.values()}) > 2  # users left early, or did not return
