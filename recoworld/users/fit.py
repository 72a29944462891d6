"""Fit the choice model to a dataset and report its calibration.

Design (documented in docs/simulator.md):
1. Per user, interactions ordered by time are split: the first 80% are the *history* the
   persona is built from, the last 20% the *targets* (users with >= 5 interactions).
2. Users are split 80/20 into fit users and calibration users (seeded).
3. Positives are targets; each gets ``negatives_per_positive`` items the user never touched,
   drawn uniformly. Features come from the history-only personas, so the model learns to
   predict *future* engagement from the past — which is what the simulator asks of it.
4. A logistic regression (L-BFGS, small L2) fits the coefficients on fit users; calibration
   (AUC, expected calibration error, predicted vs. observed positive rate) is measured on the
   calibration users. Ratings: user mean + shrunk item bias + affinity slope, fitted the same
   way; the simulated rating distribution is compared with the real one (total variation).
5. The return model's base rate and gap come from sittings (30-minute gaps) in the timestamps.
"""

from __future__ import annotations

import time

import msgspec
import numpy as np
from scipy.optimize import minimize
from scipy.stats import rankdata

from recoworld.items.catalog import Catalog
from recoworld.rng import generator
from recoworld.users.choice import (
    FEATURES,
    ChoiceModel,
    RatingModel,
    ReturnModel,
    features,
)
from recoworld.users.persona import SITTING_GAP_S, Personas, personas_from_history
from recoworld.users.satiation import repeat_share
from recoworld.world.model import World

HISTORY_SHARE = 0.8
MIN_INTERACTIONS = 5
RETURN_HORIZON_DAYS = 30.0
WATCH_INTERCEPT = 0.4  # prior: no dataset here logs watch time
WATCH_SLOPE = 0.6


class CalibrationReport(msgspec.Struct, frozen=True, kw_only=True):
    dataset: str
    fit_pairs: int
    eval_pairs: int
    coef: dict[str, float]
    auc: float
    """Area under the ROC curve on calibration users' targets vs. negatives."""
    ece: float
    """Expected calibration error over 10 probability bins."""
    observed_positive_rate: float
    predicted_positive_rate: float
    log_loss: float
    rating_rmse: float | None
    rating_tv_distance: float | None
    """Total variation distance between simulated and real held-out rating histograms."""
    real_rating_hist: dict[str, float] | None
    sim_rating_hist: dict[str, float] | None
    content_r2: float
    data_return_rate: float
    mean_gap_days: float
    seconds: float


class Fitted(msgspec.Struct, frozen=True, kw_only=True):
    model: ChoiceModel
    report: CalibrationReport


def split_history(world: World) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """(history, targets), each (user, item, rating, weight, timestamp), per-user time split."""
    u, i, r, w, ts = world.coded_interactions()  # ordered by time
    order = np.argsort(u, kind="stable")
    counts = np.bincount(u, minlength=world.users.height)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(u.size, dtype=np.int64)
    rank[order] = np.arange(u.size) - starts[u[order]]
    n_hist = np.where(counts >= MIN_INTERACTIONS, np.ceil(counts * HISTORY_SHARE), counts).astype(
        np.int64
    )
    hist = rank < n_hist[u]
    cols = (u, i, r, w, ts)
    return tuple(c[hist] for c in cols), tuple(c[~hist] for c in cols)


def _sample_negatives(
    users: np.ndarray, n_items: int, per: int, taken: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``per`` items per entry of ``users`` that the user never touched
    (``taken`` = sorted codes)."""
    uu = np.repeat(users, per)
    ii = rng.integers(0, n_items, size=uu.size)
    for _ in range(5):
        clash = np.isin(uu * n_items + ii, taken, assume_unique=False)
        if not clash.any():
            break
        ii[clash] = rng.integers(0, n_items, size=int(clash.sum()))
    keep = ~np.isin(uu * n_items + ii, taken)
    return uu[keep], ii[keep]


def _logistic_fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-3) -> np.ndarray:
    def loss(b: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ b
        p = 1.0 / (1.0 + np.exp(-z))
        ll = np.logaddexp(0.0, z) - y * z
        g = x.T @ (p - y) / len(y) + l2 * np.r_[0.0, b[1:]]
        return float(ll.mean() + 0.5 * l2 * (b[1:] ** 2).sum()), g

    res = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B")
    return res.x


def _auc(p: np.ndarray, y: np.ndarray) -> float:
    r = rankdata(p)
    npos = y.sum()
    nneg = len(y) - npos
    return float((r[y == 1].sum() - npos * (npos + 1) / 2) / max(npos * nneg, 1))


def _ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    b = np.minimum((p * bins).astype(int), bins - 1)
    tot = 0.0
    for k in range(bins):
        m = b == k
        if m.any():
            tot += m.sum() * abs(p[m].mean() - y[m].mean())
    return float(tot / len(p))


def _rating_step(r: np.ndarray) -> float:
    frac = np.abs(r - np.round(r))
    return 0.5 if (frac > 0.01).any() else 1.0


def simulate_ratings(
    model: RatingModel, mean_u: np.ndarray, items: np.ndarray, aff: np.ndarray, noise: np.ndarray
) -> np.ndarray:
    """Ratings from the rating model given standard-normal ``noise`` (same shapes)."""
    mu = np.where(np.isnan(mean_u), model.global_mean, mean_u)
    raw = (
        mu
        + np.asarray(model.item_bias, dtype=np.float32)[items]
        + model.gamma * (aff - model.affinity_mean)
    )
    raw = raw + model.noise_sd * noise
    levels = np.asarray(model.levels, dtype=np.float32)
    return levels[np.searchsorted(np.asarray(model.thresholds), raw)]


def rating_distribution(
    model: RatingModel, mean_u: np.ndarray, items: np.ndarray, aff: np.ndarray
) -> np.ndarray:
    """(n, levels) probabilities of each rating level under the ordinal model (the
    distribution :func:`simulate_ratings` draws from), for (n,) users' means, items, affinities."""
    from scipy.stats import norm

    mu = np.where(np.isnan(mean_u), model.global_mean, mean_u).astype(np.float64)
    raw = (
        mu
        + np.asarray(model.item_bias, dtype=np.float64)[items]
        + model.gamma * (aff - model.affinity_mean)
    )
    sd = max(model.noise_sd, 1e-9)
    cuts = np.asarray(model.thresholds, dtype=np.float64)
    cdf = norm.cdf((cuts[None, :] - raw[:, None]) / sd)  # P(latent <= cut)
    cdf = np.concatenate([np.zeros((raw.size, 1)), cdf, np.ones((raw.size, 1))], axis=1)
    return np.diff(cdf, axis=1)


def _fit_returns(world: World) -> ReturnModel:
    u, _, _, _, ts = world.coded_interactions()
    ok = ts >= 0
    if not ok.any():
        rate, gap = 0.5, 7.0
    else:
        u, ts = u[ok], ts[ok]
        order = np.lexsort((ts, u))
        uu, tt = u[order], ts[order]
        new = np.ones(uu.size, dtype=bool)
        new[1:] = (uu[1:] != uu[:-1]) | (tt[1:] - tt[:-1] > SITTING_GAP_S)
        su, st = uu[new], tt[new]
        nxt_same = np.r_[su[1:] == su[:-1], False]
        gap_days = np.where(nxt_same, (np.r_[st[1:], 0] - st) / 86400.0, np.inf)
        horizon = RETURN_HORIZON_DAYS
        eligible = st <= tt.max() - horizon * 86400  # not censored by the end of the data
        if eligible.sum() < 10:
            eligible = np.ones_like(eligible)
        returned = gap_days <= horizon
        rate = float(returned[eligible].mean())
        gaps = gap_days[returned & eligible]
        gap = float(gaps.mean()) if gaps.size else 7.0
    rate = min(max(rate, 0.01), 0.99)
    return ReturnModel(
        base_logit=float(np.log(rate / (1 - rate))),
        mean_gap_days=gap,
        data_return_rate=rate,
        horizon_days=RETURN_HORIZON_DAYS,
    )


def fit_choice_model(
    world: World, catalog: Catalog, *, negatives_per_positive: int = 9, seed: int = 0
) -> Fitted:
    """Fit the choice, rating and return models of ``world`` and measure their calibration."""
    t0 = time.perf_counter()
    rng = generator(seed, "fit", world.key)  # content, not name: same data, same fit
    hist, targ = split_history(world)
    personas = personas_from_history(world, catalog, interactions=hist)
    n_users, n_world_items = world.users.height, world.items.height
    all_u, all_i, *_ = world.coded_interactions()
    taken = np.unique(all_u * n_world_items + all_i)  # codes as _sample_negatives forms them

    calib_user = rng.random(n_users) < 0.2
    tu, ti = targ[0], targ[1]
    nu, ni = _sample_negatives(tu, n_world_items, negatives_per_positive, taken, rng)
    users = np.concatenate([tu, nu])
    items = np.concatenate([ti, ni])
    y = np.concatenate([np.ones(tu.size), np.zeros(nu.size)])
    feats = features(personas, users, items[:, None], catalog)
    x = np.column_stack([np.ones(users.size)] + [f[:, 0].astype(np.float64) for f in feats])
    is_cal = calib_user[users]
    coef = _logistic_fit(x[~is_cal], y[~is_cal])
    p = 1.0 / (1.0 + np.exp(-(x[is_cal] @ coef)))
    yc = y[is_cal]

    rating, rmse, tv, real_h, sim_h = None, None, None, None, None
    if world.has_ratings:
        rating, rmse, tv, real_h, sim_h = _fit_ratings(
            world, catalog, personas, hist, targ, calib_user, rng
        )
    returns = _fit_returns(world)
    model = ChoiceModel(
        coef=[float(c) for c in coef],
        base_rate=1.0 / (1.0 + negatives_per_positive),
        watch_intercept=WATCH_INTERCEPT,
        watch_slope=WATCH_SLOPE,
        rating=rating,
        returns=returns,
        repeat_share=repeat_share(world.interactions),
    )
    report = CalibrationReport(
        dataset=world.name,
        fit_pairs=int((~is_cal).sum()),
        eval_pairs=int(is_cal.sum()),
        coef=dict(zip(FEATURES, model.coef)),
        auc=_auc(p, yc),
        ece=_ece(p, yc),
        observed_positive_rate=float(yc.mean()),
        predicted_positive_rate=float(p.mean()),
        log_loss=float(-(yc * np.log(p + 1e-12) + (1 - yc) * np.log(1 - p + 1e-12)).mean()),
        rating_rmse=rmse,
        rating_tv_distance=tv,
        real_rating_hist=real_h,
        sim_rating_hist=sim_h,
        content_r2=catalog.content_r2,
        data_return_rate=returns.data_return_rate,
        mean_gap_days=returns.mean_gap_days,
        seconds=time.perf_counter() - t0,
    )
    return Fitted(model=model, report=report)


def _fit_ratings(
    world: World,
    catalog: Catalog,
    personas: Personas,
    hist: tuple[np.ndarray, ...],
    targ: tuple[np.ndarray, ...],
    calib_user: np.ndarray,
    rng: np.random.Generator,
) -> tuple[RatingModel, float, float, dict[str, float], dict[str, float]]:
    hu, hi, hr = hist[0], hist[1], hist[2]
    ok = ~np.isnan(hr)
    hu, hi, hr = hu[ok], hi[ok], hr[ok]
    gmean = float(hr.mean())
    mean_u = np.where(np.isnan(personas.mean_rating), gmean, personas.mean_rating)
    resid = hr - mean_u[hu]
    shrink = 10.0
    bias = np.bincount(hi, weights=resid, minlength=catalog.n_items) / (
        np.bincount(hi, minlength=catalog.n_items) + shrink
    )

    tu, ti, tr = targ[0], targ[1], targ[2]
    ok = ~np.isnan(tr)
    tu, ti, tr = tu[ok], ti[ok], tr[ok]
    aff = np.einsum("nd,nd->n", personas.pref[tu], catalog.emb[ti]).astype(np.float64)
    fit = ~calib_user[tu]
    base = mean_u[tu] + bias[ti]
    aff_mean = float(aff[fit].mean())
    a = aff[fit] - aff_mean
    gamma = float((a * (tr[fit] - base[fit])).sum() / max((a * a).sum(), 1e-9))
    sd = float(np.std(tr[fit] - base[fit] - gamma * a))
    lo, hi_ = world.rating_scale or (float(np.nanmin(tr)), float(np.nanmax(tr)))
    step = _rating_step(hr)
    levels = np.round(np.arange(lo, hi_ + 1e-9, step), 2)
    # Ordinal cut points: the latent's quantiles at the real cumulative shares of each level.
    latent = base[fit] + gamma * a + sd * rng.standard_normal(a.size)
    cum = np.array([np.mean(tr[fit] <= v + 1e-9) for v in levels[:-1]])
    thresholds = (
        np.quantile(latent, np.clip(cum, 0.0, 1.0)) if latent.size else levels[:-1] + step / 2
    )
    model = RatingModel(
        scale_min=float(lo),
        scale_max=float(hi_),
        step=step,
        global_mean=gmean,
        gamma=gamma,
        affinity_mean=aff_mean,
        noise_sd=sd,
        item_bias=[float(b) for b in bias],
        levels=[float(v) for v in levels],
        thresholds=[float(t) for t in thresholds],
    )
    cal = ~fit
    pred = base[cal] + gamma * (aff[cal] - aff_mean)
    rmse = float(
        np.sqrt(np.mean((tr[cal] - np.clip(pred, lo, hi_)) ** 2))
    )  # of the mean prediction
    sim = simulate_ratings(
        model, mean_u[tu[cal]], ti[cal], aff[cal], rng.standard_normal(int(cal.sum()))
    )
    real_h = {f"{v:g}": float(np.mean(np.isclose(tr[cal], v))) for v in levels}
    sim_h = {f"{v:g}": float(np.mean(np.isclose(sim, v))) for v in levels}
    tv = 0.5 * sum(abs(real_h[k] - sim_h[k]) for k in real_h)
    return model, rmse, float(tv), real_h, sim_h
