"""Fit the choice model to a dataset and report its calibration.

Design (documented in docs/simulator.md):
1. Per user, interactions ordered by time are split: the first 80% are the *history* the
   persona is built from, the last 20% the *targets* (users with >= 5 interactions).
2. Users are split 80/20 into fit users and calibration users (seeded).
3. Positives are targets; each gets ``negatives_per_positive`` items the user never touched.
   Features come from the history-only personas, so the model learns to predict *future*
   engagement from the past — which is what the simulator asks of it. Negatives are drawn
   twice, giving two models (``ChoiceModel.coef`` and ``logged_coef``):
   - the *choice* model's, as the logs' exposure would have shown them: in proportion to
     ``1 + n_j`` (``n_j`` the item's interactions; the exposure model of
     ``recoworld.recommenders.browse.CatalogueBrowsing``). Its coefficients say how a user chooses
     among what it is shown; popularity enters only as far as it sways that choice. The
     simulator uses it: in a study the recommender supplies the exposure, and a model fitted
     against uniform negatives would count the logs' exposure a second time (measured: the
     popularity Gini of simulated consumption 0.84-0.95 against 0.61-0.76 real);
   - the *logged-world* model's, drawn uniformly: what a user consumed anywhere, exposure and
     choice together. The fidelity protocols' deciders use it (their lists' negatives are
     uniform draws of never-touched items).
4. A logistic regression (Newton's method, small L2) fits each model on fit users; calibration
   (AUC, expected calibration error, predicted vs. observed positive rate) is measured on the
   calibration users, for the logged-world model against uniform negatives. The recent
   taste's half-life (``recoworld.users.persona``) is chosen among ``HALF_LIVES`` by the
   logged-world model's held-out log loss on a seeded sample of the design; in an undated
   world (fewer than half the interactions timed) every item weighs alike (``NO_RECENCY``).
   Ratings: the user's mean (shrunk toward the global mean by pseudo-ratings estimated from the
   within- and between-user variances) + shrunk item bias + affinity slope, fitted the same
   way; the simulated rating distribution is compared with the real one (total variation).
5. The return model's base rate and gap come from sittings (30-minute gaps) in the timestamps
   (the gap from the targets' sittings: :func:`_fit_returns`).
6. The lingering within a sitting (``ChoiceModel.session_repetition``): the logit per unit of
   an item's repetition of what the user consumed earlier in the sitting
   (``recoworld.users.sessions``), fitted on a sample of the targets against the choice
   model's negatives, with the choice model's logit and the brain's boredom along the logged
   sitting as an offset (dated, tagged worlds only).
7. The length of a sitting (``ChoiceModel.sitting_items``): the mean over the whole sittings
   among the targets (dated worlds only); ``recoworld.study.sittings`` fits the level of
   leaving to it by simulation, once the personas exist.
"""

from __future__ import annotations

import time
from dataclasses import replace

import msgspec
import numpy as np
from scipy.stats import rankdata

from recoworld.config import BrainConfig
from recoworld.items.catalog import Catalog
from recoworld.rng import generator
from recoworld.users.choice import (
    FEATURES,
    ChoiceModel,
    RatingModel,
    ReturnModel,
    features,
    static_logit,
)
from recoworld.users.era import ERA_WIDTHS, own_counts, timeliness, user_windows
from recoworld.users.neighbours import item_neighbours
from recoworld.users.persona import (
    HALF_LIVES,
    NO_RECENCY,
    SITTING_GAP_S,
    Personas,
    personas_from_history,
    recent_taste,
)
from recoworld.users.satiation import repeat_share
from recoworld.users.sessions import repetition, session_boredom, session_profiles
from recoworld.world.model import MIN_DATED_SHARE, World

HISTORY_SHARE = 0.8
MIN_INTERACTIONS = 5
RETURN_HORIZON_DAYS = 30.0
REC = FEATURES.index("recent_affinity")
ERA = FEATURES.index("timeliness")
SELECT_ROWS = 100_000
"""Rows of each side of the fit's design the recency half-life is chosen on."""
WATCH_INTERCEPT = 0.4  # prior: no dataset here logs watch time
WATCH_SLOPE = 0.6


class CalibrationReport(msgspec.Struct, frozen=True, kw_only=True):
    dataset: str
    fit_pairs: int
    eval_pairs: int
    coef: dict[str, float]
    """The choice model (against negatives drawn as the logs' exposure shows them)."""
    logged_coef: dict[str, float] = {}
    """The logged-world model (against uniform negatives), which the figures below measure."""
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
    sitting_items: float = 0.0
    """Mean items per whole sitting of the logs' most recent part (0: the logs have none)."""
    leave_offset: float = 0.0
    """The leave logit's fitted offset (``recoworld.study.sittings``; 0: not fitted)."""
    enough: float = 0.0
    """The fitted chance of having had enough after a consumed item (0: none)."""
    simulated_sitting_items: float | None = None
    """Items per simulated session at the fitted level, on the fit's sample browsing the
    catalogue (None: not fitted); short of ``sitting_items`` where the logs' sittings are out
    of reach."""


class Fitted(msgspec.Struct, frozen=True, kw_only=True):
    model: ChoiceModel
    report: CalibrationReport


def split_history(world: World) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """(history, targets), each (user, item, rating, weight, timestamp), per-user time split."""
    u, i, r, w, ts = world.coded_interactions()  # ordered by time
    hist = _history_mask(u, world.users.height)
    cols = (u, i, r, w, ts)
    return tuple(c[hist] for c in cols), tuple(c[~hist] for c in cols)


def _history_mask(u: np.ndarray, n_users: int) -> np.ndarray:
    """Over interactions in time order (users ``u``): True on each user's history (its first
    ``HISTORY_SHARE``, every one of a user with under ``MIN_INTERACTIONS``), False on its
    targets."""
    order = np.argsort(u, kind="stable")
    counts = np.bincount(u, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(u.size, dtype=np.int64)
    rank[order] = np.arange(u.size) - starts[u[order]]
    n_hist = np.where(counts >= MIN_INTERACTIONS, np.ceil(counts * HISTORY_SHARE), counts).astype(
        np.int64
    )
    return rank < n_hist[u]


def _fit_session_repetition(
    world: World,
    coded: tuple[np.ndarray, np.ndarray, np.ndarray],
    catalog: Catalog,
    personas: Personas,
    coef: np.ndarray,
    taken: np.ndarray,
    rng: np.random.Generator,
    exposure: np.ndarray | None,
    per: int,
    boredom: tuple[float, float],
) -> float:
    """The logit per unit of *repetition* (an item's cosine with the session profile of what
    the user consumed earlier in the sitting, ``recoworld.users.sessions``; the brain's
    ``repetition``), given the choice model ``coef``: a logistic fit of the targets (at most
    ``SELECT_ROWS``, seeded) against ``per`` negatives each, drawn as the choice model's were
    (``exposure``, or uniformly), every negative taking its positive's profile, with the
    choice model's logit as a fixed offset. What the logs say about lingering on a kind of
    item within a sitting (or moving on from it); 0 where nothing is learnt (no tags).
    ``coded``: the world's (user, item, timestamp) rows in time order.

    ``boredom``: the brain's ``(boredom_rate, boredom_weight)``. The brain's click logit
    carries ``(lingering - boredom_weight * boredom) * repetition``, boredom gathered along the
    session; the offset carries the boredom a user would have gathered along its logged
    sitting (:func:`recoworld.users.sessions.session_boredom`), so that the fitted lingering
    is the pull the logs show *net of that push*, and the brain's sum is the logs' (measured
    on ML-100K under the logs' exposure: repetition within a session 0.33 with the lingering
    fitted without it, 0.41 with, against 0.43 real)."""
    u, i, ts = coded
    is_target = ~_history_mask(u, world.users.height) & (ts >= 0)
    by_user = np.argsort(u, kind="stable")  # each user's interactions together, in time order
    u, i, ts, is_target = u[by_user], i[by_user], ts[by_user], is_target[by_user]
    targets = np.flatnonzero(is_target)
    if targets.size == 0:
        return 0.0
    targets = np.sort(rng.permutation(targets)[:SELECT_ROWS])
    tags = catalog.tag_matrix
    new = np.ones(u.size, dtype=bool)
    new[1:] = (u[1:] != u[:-1]) | (ts[1:] - ts[:-1] > SITTING_GAP_S) | (ts[1:] < 0)
    label = np.cumsum(new)
    profile = session_profiles(label, i, targets, tags)
    rate, weight = boredom
    bored = session_boredom(label, i, targets, tags, rate) if weight else np.zeros(targets.size)
    nu, ni, src = _sample_negatives(u[targets], world.items.height, per, taken, rng, exposure)
    users = np.r_[u[targets], nu]
    items = np.r_[i[targets], ni]
    prof = np.r_[profile, profile[src]]
    y = np.r_[np.ones(targets.size), np.zeros(nu.size)]
    rep = repetition(prof, tags[items])
    if not rep.any():
        return 0.0
    feats = [f[:, 0] for f in features(personas, users, items[:, None], catalog)]
    feats[ERA - 1][: targets.size] = _target_timeliness(
        catalog, personas.era, coded, u[targets], i[targets]
    )
    base = static_logit(coef, *feats).astype(np.float64) - weight * np.r_[bored, bored[src]] * rep
    b = _logistic_fit(np.column_stack([np.ones(y.size), rep]), y, offset=base)
    return float(b[1])


def _boredom(boredom: tuple[float, float] | None) -> tuple[float, float]:
    if boredom is not None:
        return boredom
    d = BrainConfig()
    return d.boredom_rate, d.boredom_weight


def _target_timeliness(
    catalog: Catalog,
    windows: np.ndarray | None,
    logs: tuple[np.ndarray, np.ndarray, np.ndarray],
    users: np.ndarray,
    items: np.ndarray,
) -> np.ndarray:
    """(n,) float64 the timeliness of logged interactions (``users``, ``items``) of ``logs``
    (user, item, timestamp: the world the catalog counted) with the user's own interactions
    with the item taken out of the counts (they would give the answer away)."""
    if windows is None or catalog.era is None:
        return np.zeros(users.size)
    own_w, own_t = own_counts(catalog.era, windows, logs, users, items)
    return timeliness(
        catalog.era,
        windows[users],
        items[:, None],
        own_window=own_w[:, None],
        own_total=own_t[:, None],
    )[:, 0].astype(np.float64)


def _fit_sitting_items(coded: tuple[np.ndarray, np.ndarray], is_target: np.ndarray) -> float:
    """Mean consumptions per sitting (``SITTING_GAP_S`` gaps) over the *whole* sittings among
    the targets (each user's most recent interactions): those seen from start to end, neither
    going on from a history sitting (the sitting a split cuts is likelier a long one) nor
    perhaps cut by the end of the log (another sitting of the user follows: a log split by
    time ends most users mid-sitting). Sittings long against a user's recent window fit in it
    whole less often, so the mean leans short where users have few interactions. The most
    recent part, not the whole log: a user's first sittings on a platform are longer
    (MovieLens users rate tens of films on joining) and shorten with tenure, and a simulated
    session is a later visit. Where the targets hold no whole sitting (a user or two
    interactions each), the whole log's sittings that are neither a user's first nor its last.
    0.0 where there is none (undated world). ``coded``: (user, timestamp) in time order;
    ``is_target``: over the same rows."""
    u, ts = coded
    order = np.lexsort((ts, u))
    u, ts, tgt = u[order], ts[order].astype(np.float64), (is_target & (coded[1] >= 0))[order]
    new = np.ones(u.size, dtype=bool)  # starts a sitting
    new[1:] = (u[1:] != u[:-1]) | (ts[1:] - ts[:-1] > SITTING_GAP_S)
    starts = np.flatnonzero(new)
    lengths = np.diff(np.r_[starts, u.size])
    su = u[starts]
    begun = tgt[starts]  # its first interaction a target: not going on from the history
    ended = np.r_[su[1:] == su[:-1], False]  # another sitting follows
    whole = begun & ended
    if not whole.any():  # too few targets per user: the log's later sittings
        later = np.r_[False, su[1:] == su[:-1]]  # not the user's first (joining) sitting
        whole = later & ended & (ts[starts] >= 0)
    return float(lengths[whole].mean()) if whole.any() else 0.0


def _sample_negatives(
    users: np.ndarray,
    n_items: int,
    per: int,
    taken: np.ndarray,
    rng: np.random.Generator,
    weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``per`` items per entry of ``users`` that the user never touched (``taken`` = sorted
    codes), drawn uniformly or, with ``weight`` (n_items,), in proportion to it; with the entry
    of ``users`` each was drawn for."""
    p = None if weight is None else weight / weight.sum()

    def draw(size: int) -> np.ndarray:
        if p is None:
            return rng.integers(0, n_items, size=size)
        return rng.choice(n_items, size=size, p=p)

    src = np.repeat(np.arange(users.size), per)
    uu = users[src]
    ii = draw(uu.size)
    for _ in range(5):
        clash = np.isin(uu * n_items + ii, taken, assume_unique=False)
        if not clash.any():
            break
        ii[clash] = draw(int(clash.sum()))
    keep = ~np.isin(uu * n_items + ii, taken)
    return uu[keep], ii[keep], src[keep]


def _logistic_fit(
    x: np.ndarray,
    y: np.ndarray,
    l2: float = 1e-3,
    start: np.ndarray | None = None,
    *,
    offset: np.ndarray | float = 0.0,
    tol: float = 1e-12,
    max_iter: int = 100,
) -> np.ndarray:
    """The L2-penalised (all but the intercept, column 0) logistic regression of ``y`` on ``x``
    by Newton's method with a backtracking line search: a handful of passes over the design
    (its objective is convex), where a quasi-Newton method took over a hundred. Stops when half
    the squared Newton decrement is under ``tol``. ``offset``: a fixed part of each row's
    logit (a model fitted before, whose coefficients stay as they are)."""
    n, d = x.shape
    reg = np.full(d, l2)
    reg[0] = 0.0
    b = np.zeros(d) if start is None else np.array(start, dtype=np.float64)

    def objective(b: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ b + offset
        return float((np.logaddexp(0.0, z) - y * z).mean() + 0.5 * (reg * b * b).sum()), z

    f, z = objective(b)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-z))
        g = x.T @ (p - y) / n + reg * b
        h = (x.T @ (x * (p * (1.0 - p))[:, None])) / n + np.diag(reg + 1e-12)
        step = np.linalg.solve(h, g)
        decrement = float(g @ step)
        if decrement / 2 < tol:
            break
        t = 1.0
        while True:
            bn = b - t * step
            fn, zn = objective(bn)
            if fn <= f - 1e-4 * t * decrement or t < 1e-10:
                break
            t *= 0.5
        b, f, z = bn, fn, zn
    return b


def _auc(p: np.ndarray, y: np.ndarray) -> float:
    r = rankdata(p)
    npos = y.sum()
    nneg = len(y) - npos
    return float((r[y == 1].sum() - npos * (npos + 1) / 2) / max(npos * nneg, 1))


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    return float(-(y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12)).mean())


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


def user_means(model: RatingModel, mean_u: np.ndarray, n: np.ndarray | None) -> np.ndarray:
    """The users' rating levels the model starts from: each user's mean rating ``mean_u``
    shrunk toward the global mean by ``model.user_prior`` pseudo-ratings, ``n`` being how many
    ratings the mean is of (None: no shrinkage); the global mean where a user has none."""
    g = model.global_mean
    mu = np.where(np.isnan(mean_u), g, mean_u)
    if n is None or model.user_prior <= 0:
        return mu
    n = np.asarray(n, dtype=np.float64)
    return ((n * mu + model.user_prior * g) / (n + model.user_prior)).astype(mu.dtype)


def _user_prior(u: np.ndarray, r: np.ndarray, n_users: int) -> float:
    """Pseudo-ratings of the user-mean shrinkage: within-user variance over the variance of the
    users' true means (method of moments over users with >= 2 ratings); large where the users'
    means differ by no more than their noise."""
    c = np.bincount(u, minlength=n_users).astype(np.float64)
    s1 = np.bincount(u, weights=r, minlength=n_users)
    s2 = np.bincount(u, weights=r * r, minlength=n_users)
    ok = c >= 2
    if ok.sum() < 2:
        return 0.0
    m = s1[ok] / c[ok]
    within = float((s2[ok] - c[ok] * m * m).sum() / (c[ok] - 1).sum())
    between = float(m.var(ddof=1) - np.mean(within / c[ok]))
    if between <= 1e-9:
        return 1e6
    return within / between


_ARRAYS: dict[int, tuple[RatingModel, np.ndarray, np.ndarray, np.ndarray]] = {}
"""The rating models' item biases, levels and thresholds as arrays, by model (a model is
frozen; the few a process holds are kept with their arrays)."""


def _arrays(model: RatingModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item_bias float32, levels float32, thresholds float64) of ``model``, converted once."""
    hit = _ARRAYS.get(id(model))
    if hit is None or hit[0] is not model:
        if len(_ARRAYS) >= 16:
            _ARRAYS.clear()
        hit = (
            model,
            np.asarray(model.item_bias, dtype=np.float32),
            np.asarray(model.levels, dtype=np.float32),
            np.asarray(model.thresholds, dtype=np.float64),
        )
        _ARRAYS[id(model)] = hit
    return hit[1], hit[2], hit[3]


def simulate_ratings(
    model: RatingModel,
    mean_u: np.ndarray,
    items: np.ndarray,
    aff: np.ndarray,
    noise: np.ndarray,
    n: np.ndarray | None = None,
) -> np.ndarray:
    """Ratings from the rating model given standard-normal ``noise`` (same shapes); ``n``: the
    number of ratings behind each user's mean (:func:`user_means`)."""
    mu = user_means(model, mean_u, n)
    item_bias, levels, thresholds = _arrays(model)
    raw = mu + item_bias[items] + model.gamma * (aff - model.affinity_mean)
    raw = raw + model.noise_sd * noise
    return levels[np.searchsorted(thresholds, raw)]


def rating_distribution(
    model: RatingModel,
    mean_u: np.ndarray,
    items: np.ndarray,
    aff: np.ndarray,
    n: np.ndarray | None = None,
) -> np.ndarray:
    """(n, levels) probabilities of each rating level under the ordinal model (the
    distribution :func:`simulate_ratings` draws from), for (n,) users' means, items, affinities."""
    from scipy.stats import norm

    mu = user_means(model, mean_u, n).astype(np.float64)
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


RECENT_GAPS = 30
"""Returns among the targets' sittings the gap is read from; with fewer, the whole log's."""


def _fit_returns(world: World) -> ReturnModel:
    """The return model from the logs' sittings (``SITTING_GAP_S`` apart). The base rate: the
    share of sittings followed by another of the user's within ``RETURN_HORIZON_DAYS``, over
    the whole log (sittings the end of the data might have cut short of a return left out).
    The mean gap of a return: over the sittings that begin among the targets, each user's most
    recent interactions, as the sitting length is (users come back more slowly with tenure:
    ML-100K's returns within the horizon average 5.0 days over the whole log, 6.5 over the
    targets, and the held-out part's median gap is longer still), where at least
    :data:`RECENT_GAPS` of them return; else over the whole log. The rate stays whole-log: a
    split by time ends each user's log where its held-out part begins, so its most recent
    sittings would look like departures."""
    u, _, _, _, ts = world.coded_interactions()
    is_target = ~_history_mask(u, world.users.height)
    ok = ts >= 0
    if not ok.any():
        rate, gap = 0.5, 7.0
    else:
        u, ts, tgt = u[ok], ts[ok], is_target[ok]
        order = np.lexsort((ts, u))
        uu, tt, tg = u[order], ts[order], tgt[order]
        new = np.ones(uu.size, dtype=bool)
        new[1:] = (uu[1:] != uu[:-1]) | (tt[1:] - tt[:-1] > SITTING_GAP_S)
        su, st, recent = uu[new], tt[new], tg[new]
        nxt_same = np.r_[su[1:] == su[:-1], False]
        gap_days = np.where(nxt_same, (np.r_[st[1:], 0] - st) / 86400.0, np.inf)
        horizon = RETURN_HORIZON_DAYS
        eligible = st <= tt.max() - horizon * 86400  # not censored by the end of the data
        if eligible.sum() < 10:
            eligible = np.ones_like(eligible)
        returned = gap_days <= horizon
        rate = float(returned[eligible].mean())
        gaps = gap_days[returned & eligible & recent]
        if gaps.size < RECENT_GAPS:
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
    world: World,
    catalog: Catalog,
    *,
    negatives_per_positive: int = 9,
    seed: int = 0,
    logged_exposure: float = 1.0,
    boredom: tuple[float, float] | None = None,
) -> Fitted:
    """Fit the choice, rating and return models of ``world`` and measure their calibration.
    ``logged_exposure``: the exponent of the logs' assumed exposure, ``(1 + n_j) ** it``
    (``[brain] logged_exposure``); ``boredom``: the brain's ``(boredom_rate, boredom_weight)``
    the lingering is fitted under (None: ``[brain]``'s defaults)."""
    t0 = time.perf_counter()
    rng = generator(seed, "fit", world.key)  # content, not name: same data, same fit
    hist, targ = split_history(world)
    n_users, n_world_items = world.users.height, world.items.height
    if catalog.neighbours is not None:  # the histories' own: a target must not count toward
        # its own similarity to the user's items (recoworld.users.neighbours)
        catalog = replace(
            catalog, neighbours=item_neighbours(hist[0], hist[1], n_users, n_world_items)
        )
    all_u, all_i, _, _, all_ts = world.coded_interactions()  # in time order
    taken = np.unique(all_u * n_world_items + all_i)  # codes as _sample_negatives forms them

    calib_user = rng.random(n_users) < 0.2
    tu, ti = targ[0], targ[1]

    def target_era(windows: np.ndarray | None) -> np.ndarray:
        return _target_timeliness(catalog, windows, (all_u, all_i, all_ts), tu, ti)

    def design(personas: Personas, nu: np.ndarray, ni: np.ndarray) -> tuple[np.ndarray, ...]:
        users = np.concatenate([tu, nu])
        items = np.concatenate([ti, ni])
        y = np.concatenate([np.ones(tu.size), np.zeros(nu.size)])
        feats = features(personas, users, items[:, None], catalog)
        x = np.column_stack([np.ones(users.size)] + [f[:, 0].astype(np.float64) for f in feats])
        x[: tu.size, ERA] = target_era(personas.era)
        return x, y, calib_user[users], users, items

    # The logged-world model at each candidate half-life of the recent taste (only its feature
    # changes); the one whose calibration users' held-out log loss is lowest is kept.
    negatives = _sample_negatives(tu, n_world_items, negatives_per_positive, taken, rng)[:2]
    personas = personas_from_history(world, catalog, interactions=hist, half_life=HALF_LIVES[0])
    x, y, is_cal, du, di = design(personas, *negatives)
    yc = y[is_cal]
    # The half-life is chosen on a seeded sample of the design's rows (at most SELECT_ROWS of
    # each side): the choice needs far fewer rows than the coefficients.
    fit_rows, cal_rows = np.flatnonzero(~is_cal), np.flatnonzero(is_cal)
    fit_rows = np.sort(rng.permutation(fit_rows)[:SELECT_ROWS])
    cal_rows = np.sort(rng.permutation(cal_rows)[:SELECT_ROWS])

    def era_column(windows: np.ndarray) -> np.ndarray:
        col = timeliness(catalog.era, windows[du], di[:, None])[:, 0].astype(np.float64)
        col[: tu.size] = target_era(windows)
        return col

    def recent_column(half_life: float) -> np.ndarray:
        recent = recent_taste(hist[0], hist[1], n_users, catalog, half_life, personas.pref)
        return np.einsum("nd,nd->n", recent[du], catalog.emb[di])

    # An undated world's order is file order: recency means nothing there.
    dated = bool(hist[4].size) and float(np.mean(hist[4] >= 0)) >= MIN_DATED_SHARE

    def held_out_loss(b: np.ndarray) -> float:
        return _log_loss(1.0 / (1.0 + np.exp(-(x[cal_rows] @ b))), y[cal_rows])

    best: tuple[float, float, np.ndarray] | None = None
    for half_life in HALF_LIVES if dated else (NO_RECENCY,):
        x[:, REC] = recent_column(half_life)
        b = _logistic_fit(x[fit_rows], y[fit_rows])
        loss = held_out_loss(b)
        if best is None or loss < best[0] - 1e-9:
            best = (loss, half_life, b)
    assert best is not None
    _, half_life, start = best
    x[:, REC] = recent_column(half_life)
    # The era's width (none, or ERA_WIDTHS bins either side of the user's), the same way.
    era_width, era_windows = 0, None
    if dated and catalog.era is not None:
        best_era = (held_out_loss(start), 0, None, start)
        for width in ERA_WIDTHS:
            windows = user_windows(catalog.era, hist[0], hist[4], n_users, width)
            assert windows is not None
            x[:, ERA] = era_column(windows)
            b = _logistic_fit(x[fit_rows], y[fit_rows])
            loss = held_out_loss(b)
            if loss < best_era[0] - 1e-9:
                best_era = (loss, width, windows, b)
        _, era_width, era_windows, start = best_era
        x[:, ERA] = 0.0 if era_windows is None else era_column(era_windows)
    logged = _logistic_fit(x[~is_cal], y[~is_cal], start=start)
    p = 1.0 / (1.0 + np.exp(-(x[is_cal] @ logged)))
    personas = replace(
        personas,
        recent=recent_taste(hist[0], hist[1], n_users, catalog, half_life, personas.pref),
        era=era_windows,
    )
    if logged_exposure == 0:  # uniform exposure: the choice among shown is the logged model
        coef = logged
        appeal = x[(y == 1) & ~is_cal] @ coef
    else:
        exposure = (1.0 + np.bincount(all_i, minlength=n_world_items).astype(np.float64)) ** float(
            logged_exposure
        )
        xe, ye, cal_e, _, _ = design(
            personas,
            *_sample_negatives(tu, n_world_items, negatives_per_positive, taken, rng, exposure)[:2],
        )
        coef = _logistic_fit(xe[~cal_e], ye[~cal_e], start=logged)
        appeal = xe[(ye == 1) & ~cal_e] @ coef
    # Within a sitting, how much the user leans to items like those it just consumed.
    session_rep = 0.0
    if dated and catalog.tag_matrix.shape[1]:
        session_rep = _fit_session_repetition(
            world,
            (all_u, all_i, all_ts),
            catalog,
            personas,
            np.asarray(coef),
            taken,
            rng,
            None if logged_exposure == 0 else exposure,
            negatives_per_positive,
            _boredom(boredom),
        )

    rating, rmse, tv, real_h, sim_h = None, None, None, None, None
    if world.has_ratings:
        rating, rmse, tv, real_h, sim_h = _fit_ratings(
            world, catalog, personas, hist, targ, calib_user, rng
        )
    returns = _fit_returns(world)
    sitting = 0.0
    if dated:
        sitting = _fit_sitting_items((all_u, all_ts), ~_history_mask(all_u, n_users))
    model = ChoiceModel(
        coef=[float(c) for c in coef],
        base_rate=1.0 / (1.0 + negatives_per_positive),
        watch_intercept=WATCH_INTERCEPT,
        watch_slope=WATCH_SLOPE,
        rating=rating,
        returns=returns,
        repeat_share=repeat_share(world.interactions),
        logged_coef=[float(c) for c in logged],
        recent_half_life=half_life,
        era_width=era_width,
        appeal_center=float(appeal.mean()) if appeal.size else None,
        session_repetition=session_rep,
        sitting_items=sitting,
    )
    report = CalibrationReport(
        dataset=world.name,
        fit_pairs=int((~is_cal).sum()),
        eval_pairs=int(is_cal.sum()),
        coef=dict(zip(FEATURES, model.coef)),
        logged_coef=dict(zip(FEATURES, model.logged_coef)),
        auc=_auc(p, yc),
        ece=_ece(p, yc),
        observed_positive_rate=float(yc.mean()),
        predicted_positive_rate=float(p.mean()),
        log_loss=_log_loss(p, yc),
        rating_rmse=rmse,
        rating_tv_distance=tv,
        real_rating_hist=real_h,
        sim_rating_hist=sim_h,
        content_r2=catalog.content_r2,
        data_return_rate=returns.data_return_rate,
        mean_gap_days=returns.mean_gap_days,
        seconds=time.perf_counter() - t0,
        sitting_items=sitting,
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
    prior = _user_prior(hu, hr, personas.mean_rating.size)
    n_rated = np.bincount(hu, minlength=personas.mean_rating.size).astype(np.float64)
    raw_mean = np.where(np.isnan(personas.mean_rating), gmean, personas.mean_rating)
    mean_u = (n_rated * raw_mean + prior * gmean) / (n_rated + prior)
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
        user_prior=float(prior),
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
