"""The fitted choice, rating and return models (recoworld/users/fit.py, choice.py).

Calibration is checked on MovieLens 100K (real data, skipped without it) and on synthetic
worlds; on synthetic worlds the generating model is known, so the fitted coefficients must
point the way the truth does and follow it when it changes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pytest

import recoworld.world.synthetic as synthetic
from recoworld.items.catalog import Catalog, NewItem, build_catalog
from recoworld.users.choice import FEATURES
from recoworld.users.fit import (
    CalibrationReport,
    Fitted,
    _logistic_fit,
    fit_choice_model,
    simulate_ratings,
    split_history,
)
from recoworld.users.persona import personas_from_history
from recoworld.world.loaders import load_world
from recoworld.world.model import World
from recoworld.world.synthetic import synthetic_world

DAY = 86_400


def check_calibration(report: CalibrationReport, *, min_auc: float, max_tv: float) -> None:
    assert report.auc > min_auc
    assert report.observed_positive_rate == pytest.approx(0.1, abs=0.005)  # 9 negatives each
    assert abs(report.predicted_positive_rate / report.observed_positive_rate - 1) < 0.1
    assert report.ece < 0.03
    assert report.rating_tv_distance is not None and report.rating_tv_distance < max_tv
    for hist in (report.real_rating_hist, report.sim_rating_hist):
        assert hist is not None and list(hist) == ["1", "2", "3", "4", "5"]
        assert sum(hist.values()) == pytest.approx(1.0)
    assert list(report.coef) == list(FEATURES)


@pytest.fixture(scope="module")
def ml100k(shared_data: Path) -> tuple[World, Catalog, Fitted]:
    world = load_world("ml-100k", shared_data / "ml-100k")
    catalog = build_catalog(world, dim=32)
    return world, catalog, fit_choice_model(world, catalog, seed=0)


@pytest.fixture(scope="module")
def synth() -> tuple[World, Catalog, Fitted]:
    # The synthetic world's users chose among every item (uniform exposure): say so.
    world = synthetic_world(400, 300, seed=1)
    catalog = build_catalog(world, dim=8)
    return world, catalog, fit_choice_model(world, catalog, seed=0, logged_exposure=0.0)


def test_ml100k_model_is_calibrated(ml100k: tuple[World, Catalog, Fitted]) -> None:
    _, _, fitted = ml100k
    check_calibration(fitted.report, min_auc=0.8, max_tv=0.05)
    logged, choice = fitted.report.logged_coef, fitted.report.coef
    assert logged["affinity"] > 1 and logged["popularity"] > 0.5
    # Against negatives drawn as the logs' exposure shows them, popularity explains much less
    # of the choice: the logs' exposure is not counted into it (users/fit.py, step 3).
    assert choice["affinity"] > 1 and choice["popularity"] < logged["popularity"] - 0.5
    # the return model: a share of sittings followed by another within 30 days, and its gap
    returns = fitted.model.returns
    assert 0.3 < returns.data_return_rate < 0.9 and 1 < returns.mean_gap_days < 30
    assert returns.base_logit == pytest.approx(
        np.log(returns.data_return_rate / (1 - returns.data_return_rate))
    )


def test_ml100k_ratings_cover_its_scale(ml100k: tuple[World, Catalog, Fitted]) -> None:
    _, _, fitted = ml100k
    rating = fitted.model.rating
    assert rating is not None
    assert (rating.scale_min, rating.scale_max, rating.step) == (1.0, 5.0, 1.0)
    assert rating.levels == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert len(rating.thresholds) == 4 and np.all(np.diff(rating.thresholds) > 0)
    assert rating.gamma > 0  # users rate what matches their taste higher


def test_synthetic_model_is_calibrated(synth: tuple[World, Catalog, Fitted]) -> None:
    check_calibration(synth[2].report, min_auc=0.75, max_tv=0.1)


def test_fitted_coefficients_have_the_truths_signs(synth: tuple[World, Catalog, Fitted]) -> None:
    # The generating model: P(choice) rises with affinity (4.0) and popularity (1.0); users like
    # one or two tag clusters; ratings rise with affinity (slope 2.0).
    coef = synth[2].report.coef
    assert coef["affinity"] > 2.0
    assert coef["tag_match"] > 0.3
    assert coef["popularity"] > 0.3
    assert synth[2].model.rating is not None and synth[2].model.rating.gamma > 1.0
    # Told the logs' exposure was uniform, the choice model is the logged-world one.
    assert synth[2].model.coef == synth[2].model.logged_coef


def test_an_assumed_popular_exposure_takes_popularity_out_of_the_choice(
    synth: tuple[World, Catalog, Fitted],
) -> None:
    # Logs cannot tell exposure from taste for the popular: assuming a popularity-proportional
    # exposure credits it with part of what the uniform fit gave to the choice.
    world, catalog, uniform = synth
    assumed = fit_choice_model(world, catalog, seed=0, logged_exposure=1.0)
    assert assumed.model.logged_coef == uniform.model.logged_coef
    assert assumed.report.coef["popularity"] < uniform.report.coef["popularity"] - 0.3


@pytest.mark.parametrize(
    ("constant", "feature"), [("POPULARITY_WEIGHT", "popularity"), ("AFFINITY_WEIGHT", "affinity")]
)
def test_fitted_coefficients_follow_the_truth(
    monkeypatch: pytest.MonkeyPatch, constant: str, feature: str
) -> None:
    def fitted(weight: float) -> float:
        monkeypatch.setattr(synthetic, constant, weight)
        world = synthetic_world(400, 300, seed=2)
        return fit_choice_model(
            world, build_catalog(world, dim=8), logged_exposure=0.0
        ).report.coef[feature]

    truth = getattr(synthetic, constant)
    assert fitted(2.0 * truth) > fitted(0.25 * truth) + 0.5


def test_negatives_per_positive_sets_the_base_rate(synth: tuple[World, Catalog, Fitted]) -> None:
    world, catalog, _ = synth
    fitted = fit_choice_model(world, catalog, negatives_per_positive=4, seed=0)
    assert fitted.model.base_rate == pytest.approx(0.2)
    assert fitted.report.observed_positive_rate == pytest.approx(0.2, abs=0.01)
    assert (
        abs(fitted.report.predicted_positive_rate / fitted.report.observed_positive_rate - 1) < 0.1
    )


def test_fit_is_deterministic_given_the_seed(synth: tuple[World, Catalog, Fitted]) -> None:
    world, catalog, first = synth
    again = fit_choice_model(world, catalog, seed=0, logged_exposure=0.0)
    assert msgspec.json.encode(again.model) == msgspec.json.encode(first.model)
    assert again.report.auc == first.report.auc and again.report.fit_pairs == first.report.fit_pairs
    other = fit_choice_model(world, catalog, seed=1, logged_exposure=0.0)
    assert other.model.coef != first.model.coef


def test_creator_items_in_the_catalog_do_not_change_the_fit(
    synth: tuple[World, Catalog, Fitted],
) -> None:
    # New items follow the world's items in the catalog; negatives are world items the user never
    # touched, whatever the catalog holds beyond them.
    world, _, plain = synth
    new = (
        NewItem("nova:0", "Star Harbor", "", ("sci-fi",), "Nova"),
        NewItem("nova:1", "Hum", "", ("synthwave",), "Nova"),
    )
    with_creator = fit_choice_model(
        world, build_catalog(world, dim=8, new_items=new), seed=0, logged_exposure=0.0
    )
    assert with_creator.model.coef == plain.model.coef
    assert with_creator.report.fit_pairs == plain.report.fit_pairs


def test_split_keeps_the_first_80_percent_of_each_history(
    synth: tuple[World, Catalog, Fitted],
) -> None:
    world = synth[0]
    (hu, _, _, _, hts), (tu, _, _, _, tts) = split_history(world)
    n = np.bincount(hu, minlength=world.users.height) + np.bincount(
        tu, minlength=world.users.height
    )
    np.testing.assert_array_equal(np.bincount(hu, minlength=world.users.height), np.ceil(0.8 * n))
    last_hist = np.full(world.users.height, -1)
    np.maximum.at(last_hist, hu, hts)
    assert (tts > last_hist[tu]).all()  # targets come after the whole history


def test_simulated_ratings_are_levels_and_rise_with_affinity(
    synth: tuple[World, Catalog, Fitted],
) -> None:
    rating = synth[2].model.rating
    assert rating is not None
    n = 20_000
    items = np.random.default_rng(0).integers(len(rating.item_bias), size=n)
    noise = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    mean_u = np.full(n, np.nan, np.float32)  # unknown user mean: the global mean stands in
    low = simulate_ratings(rating, mean_u, items, np.full(n, -0.5, np.float32), noise)
    high = simulate_ratings(rating, mean_u, items, np.full(n, 0.9, np.float32), noise)
    assert np.isin(low, rating.levels).all() and np.isin(high, rating.levels).all()
    assert (high >= low).all() and high.mean() > low.mean() + 0.5


def with_sittings(world: World, gaps_days: tuple[float, ...]) -> World:
    """``world`` with each user's interactions one per sitting, the gaps cycling through
    ``gaps_days``."""
    inter = world.interactions.sort("timestamp").with_columns(
        pl.int_range(pl.len()).over("user_id").alias("k")
    )
    cycle = np.asarray(gaps_days) * DAY
    k = inter["k"].to_numpy()
    offset = (k // len(cycle)) * cycle.sum() + np.concatenate([[0.0], np.cumsum(cycle)])[
        k % len(cycle)
    ]
    ts = 1_600_000_000 + offset.astype(np.int64)
    return replace(world, interactions=inter.drop("k").with_columns(pl.Series("timestamp", ts)))


def test_return_model_reads_sittings_from_timestamps(synth: tuple[World, Catalog, Fitted]) -> None:
    world, catalog, _ = synth
    alternating = fit_choice_model(with_sittings(world, (2.0, 40.0)), catalog).model.returns
    # every other sitting is followed by another 2 days later, the rest only after 40 > 30 days
    assert alternating.mean_gap_days == pytest.approx(2.0)
    assert alternating.data_return_rate == pytest.approx(0.5, abs=0.05)
    assert alternating.horizon_days == 30.0
    never = fit_choice_model(with_sittings(world, (45.0,)), catalog).model.returns
    assert never.data_return_rate == 0.01  # none returns within 30 days; clipped away from 0
    assert never.mean_gap_days == 7.0  # the fallback gap when nobody returns


def test_the_gap_of_a_return_is_read_from_the_recent_sittings(
    synth: tuple[World, Catalog, Fitted],
) -> None:
    """Users who come back daily at first and weekly lately: the gap is the recent one (the
    future resembles the recent past), the rate the whole log's; with too few recent returns,
    the whole log's gap."""
    world, catalog, _ = synth
    inter = world.interactions.sort("timestamp").with_columns(
        pl.int_range(pl.len()).over("user_id").alias("k"), pl.len().over("user_id").alias("n")
    )
    k, n = inter["k"].to_numpy(), inter["n"].to_numpy()
    late = k >= np.ceil(0.8 * n)  # the targets' sittings: 8 days apart, the history's 1 day
    days = np.where(late, 8.0, 1.0)
    start = np.zeros(k.size)
    for user in np.unique(inter["user_id"].to_numpy()):
        m = np.flatnonzero(inter["user_id"].to_numpy() == user)
        start[m] = np.cumsum(np.r_[0.0, days[m][1:]])
    ts = (1_600_000_000 + start * DAY).astype(np.int64)
    slowing = replace(
        world, interactions=inter.drop("k", "n").with_columns(pl.Series("timestamp", ts))
    )
    returns = fit_choice_model(slowing, catalog).model.returns
    assert returns.mean_gap_days == pytest.approx(8.0, rel=0.05)
    assert returns.data_return_rate > 0.9  # every sitting but each user's last is followed
    few = slowing.interactions.filter(pl.col("user_id").is_in(world.users["user_id"][:3].to_list()))
    whole_log = fit_choice_model(replace(slowing, interactions=few), catalog).model.returns
    assert whole_log.mean_gap_days < 3.0  # 3 users' recent returns are too few to read


def test_choice_model_features_and_logit(synth: tuple[World, Catalog, Fitted]) -> None:
    world, catalog, fitted = synth
    personas = personas_from_history(world, catalog)
    rows = np.array([0, 1, 2])
    items = np.array([[0, 1], [2, 3], [4, 5]])
    logit, aff = fitted.model.static_logit(personas, rows, items, catalog)
    assert logit.shape == aff.shape == (3, 2) and logit.dtype == np.float32
    np.testing.assert_allclose(
        aff, fitted.model.affinity(personas, rows, items, catalog), rtol=1e-6
    )
    # affinity is the cosine of unit vectors
    assert (np.abs(aff) <= 1 + 1e-5).all()
    # a user's logit for an item rises with its popularity by the popularity coefficients
    c = fitted.model.coef
    bumped = replace(catalog, popularity=catalog.popularity + np.float32(1.0))
    logit2, _ = fitted.model.static_logit(personas, rows, items, bumped)
    expected = c[4] + c[5] * (personas.conformity[rows, None] - 0.5)
    np.testing.assert_allclose(logit2 - logit, np.broadcast_to(expected, (3, 2)), atol=1e-4)


def test_the_logistic_fit_reaches_the_penalised_optimum() -> None:
    """Newton's method lands where the gradient of the penalised log loss vanishes, with
    the intercept unpenalised, from zeros or from a start far off; on a separable column the
    penalty keeps it finite."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(4)
    n, l2 = 20_000, 1e-3
    x = np.column_stack([np.ones(n), rng.normal(size=(n, 4)) * [1.0, 3.0, 0.2, 1.0]])
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(x @ [-2.0, 1.0, -0.4, 2.0, 0.0])))).astype(float)
    x[:, 4] = np.where(y == 1, 1.0, -1.0)  # separates the classes
    reg = np.r_[0.0, np.full(4, l2)]

    def loss(b: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ b
        f = (np.logaddexp(0.0, z) - y * z).mean() + 0.5 * (reg * b * b).sum()
        return float(f), x.T @ (1.0 / (1.0 + np.exp(-z)) - y) / n + reg * b

    for start in (None, np.array([3.0, -2.0, 1.0, 0.5, -4.0])):
        b = _logistic_fit(x, y, l2, start=start)
        assert np.abs(loss(b)[1]).max() < 1e-7
        ref = minimize(loss, np.zeros(5), jac=True, method="L-BFGS-B", options={"gtol": 1e-10}).x
        assert loss(b)[0] <= loss(ref)[0] + 1e-12
        assert np.all(np.isfinite(b)) and abs(b[4]) < 1e3
