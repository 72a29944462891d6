"""The fidelity protocols, each a pure function of a split, a decider and seeds.

a. :func:`discrimination` (Agent4Rec, SIGIR 2024): per user, held-out positives mixed 1:m
   with never-touched items; the simulated user decides watch or skip on each.
b. :func:`rating_alignment`: RMSE / MAE on held-out ratings; simulated vs. real rating
   distribution (total variation, Wasserstein-1).
c. :func:`behaviour_calibration`: simulated vs. real consumption (items per session,
   popularity Gini and percentile, tag diversity), overall and per trait tier.
d. :func:`hit_at_1` (AFL protocol): 20 candidates (the true next item + 19 never touched);
   each recommender ranks them: Hit@1, NDCG@5.

Every function returns polars frames with one row per reported figure; docs/fidelity.md says
precisely how each is computed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from recoworld.eval.decider import Decider
from recoworld.eval.split import Split
from recoworld.items.catalog import Catalog
from recoworld.rng import generator
from recoworld.users.persona import SITTING_GAP_S, Personas, tier_of
from recoworld.users.sessions import repetition, session_profiles

RATIOS = (1, 3, 9)
LIST_SIZE = 20
LIKED_AT = 4.0
"""On rated data a held-out interaction is a positive when rated >= this (on a 5-point scale)."""
LIKED_WATCH = 1.0
"""On unrated data with watch fractions (feed logs) a held-out view is a positive when watched
to the end: its watch fraction (the watch ratio capped at 1) is >= this."""
HIT_CANDIDATES = 20
TRAITS = ("activity", "conformity", "diversity")


# ---- shared helpers ---------------------------------------------------------------------------

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(users (n,), items (n, k)) -> (n, k) scores, higher is better."""


def positives_mask(split: Split) -> np.ndarray:
    """Held-out interactions that count as positives: liked (rating >= 4 on a 5-point scale,
    scaled to the world's scale) on rated data; watched to the end (:data:`LIKED_WATCH`) on
    unrated data with watch fractions; every interaction otherwise."""
    r = split.test.rating
    if not split.world.has_ratings:
        w = split.test.watch
        if w is not None and not np.isnan(w).all():
            return ~np.isnan(w) & (w >= LIKED_WATCH)
        return np.ones(len(split.test), dtype=bool)
    hi = (split.world.rating_scale or (1.0, 5.0))[1]
    return ~np.isnan(r) & (r >= LIKED_AT * hi / 5.0)


def sample_never_touched(
    split: Split, users: np.ndarray, counts: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(len(users), max(counts)) distinct items per user, uniform over the world's items the user
    never interacted with (train or test); row j holds ``counts[j]`` valid entries, then -1."""
    width = int(counts.max()) if counts.size else 0
    out = np.full((users.size, width), -1, dtype=np.int64)
    if width == 0:
        return out
    n_items = split.n_items
    todo = np.arange(users.size)
    filled = np.zeros(users.size, dtype=np.int64)
    for _ in range(50):
        if todo.size == 0:
            break
        need = counts[todo] - filled[todo]
        draw = rng.integers(0, n_items, size=(todo.size, int(need.max()) * 2 + 4))
        ok = split.never_touched(np.repeat(users[todo], draw.shape[1]), draw.ravel()).reshape(
            draw.shape
        )
        for r, t in enumerate(todo):  # small per-user bookkeeping: dedupe and append
            cand = draw[r][ok[r]]
            have = out[t, : filled[t]]
            cand = cand[~np.isin(cand, have)]
            _, first = np.unique(cand, return_index=True)
            cand = cand[np.sort(first)][: counts[t] - filled[t]]
            out[t, filled[t] : filled[t] + cand.size] = cand
            filled[t] += cand.size
        todo = todo[filled[todo] < counts[todo]]
    if todo.size:
        u = split.world.user_ids[users[todo[0]]]
        raise ValueError(
            f"user {u!r} has too few never-touched items for {counts[todo[0]]} negatives"
        )
    return out


def _per_user_groups(users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique users, start index, count) of a user array sorted by user."""
    uniq, start, count = np.unique(users, return_index=True, return_counts=True)
    return uniq, start, count


# ---- a. discrimination ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Lists:
    """One candidate list per eligible user, padded to a rectangle."""

    ratio: int
    users: np.ndarray  # (n,) user rows
    items: np.ndarray  # (n, L) catalog rows (padding repeats a valid item)
    label: np.ndarray  # (n, L) bool: a held-out positive
    valid: np.ndarray  # (n, L) bool: not padding


POSITIVES = ("liked", "all")
"""Which held-out interactions are a list's positives: ``liked`` (:func:`positives_mask`) or
``all`` of them (Agent4Rec and AFL count every interaction)."""


def discrimination_lists(
    split: Split,
    ratio: int,
    *,
    list_size: int = LIST_SIZE,
    seed: int = 0,
    positives: str = "liked",
) -> Lists:
    """Per user with a held-out positive: ``p = min(#positives, list_size // (1 + ratio))``
    positives drawn at random among its held-out positives (``positives``: liked ones or all,
    :data:`POSITIVES`), and ``ratio * p`` items it never interacted with, drawn uniformly;
    shuffled."""
    if ratio < 1 or list_size // (1 + ratio) < 1:
        raise ValueError(f"ratio 1:{ratio} does not fit a list of {list_size} items")
    if positives not in POSITIVES:
        raise ValueError(f"positives must be one of {POSITIVES}, got {positives!r}")
    rng = generator(seed, "discrimination", ratio)
    pos = positives_mask(split) if positives == "liked" else np.ones(len(split.test), bool)
    tu, ti = split.test.user[pos], split.test.item[pos]
    # random order within each user, then the first `cap`
    o = np.lexsort((rng.random(tu.size), tu))
    tu, ti = tu[o], ti[o]
    users, start, count = _per_user_groups(tu)
    cap = list_size // (1 + ratio)
    n_pos = np.minimum(count, cap)
    n_neg = ratio * n_pos
    neg = sample_never_touched(split, users, n_neg, rng)
    width = int((n_pos + n_neg).max()) if users.size else 0
    items = np.zeros((users.size, width), dtype=np.int64)
    label = np.zeros((users.size, width), dtype=bool)
    valid = np.zeros((users.size, width), dtype=bool)
    keys = rng.random((users.size, width))
    for r in range(users.size):
        p, q = n_pos[r], n_neg[r]
        row = np.concatenate([ti[start[r] : start[r] + p], neg[r, :q]])
        lab = np.r_[np.ones(p, bool), np.zeros(q, bool)]
        perm = np.argsort(keys[r, : p + q])
        items[r, : p + q], label[r, : p + q], valid[r, : p + q] = row[perm], lab[perm], True
        items[r, p + q :] = row[0]
    return Lists(ratio=ratio, users=users, items=items, label=label, valid=valid)


def _scores(pred: np.ndarray, label: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """Per-user accuracy, precision, recall, F1 and predicted positive share from (soft or hard)
    predictions in [0, 1]. Precision (and F1) is 0 for a user with no predicted positive."""
    pred = np.where(valid, pred, 0.0)
    y = label & valid
    n = valid.sum(1)
    tp = (pred * y).sum(1)
    fp = (pred * (valid & ~y)).sum(1)
    fn = ((1.0 - pred) * y).sum(1)
    tn = ((1.0 - pred) * (valid & ~y)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    return {
        "accuracy": (tp + tn) / n,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "sim_positive_rate": (tp + fp) / n,
        "real_positive_rate": y.sum(1) / n,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def _micro(s: dict[str, np.ndarray]) -> dict[str, float]:
    """Precision, recall, F1 and accuracy from the confusion counts pooled over users."""
    tp, fp, fn, tn = (float(s[k].sum()) for k in ("tp", "fp", "fn", "tn"))
    return {
        "precision_micro": tp / (tp + fp) if tp + fp > 0 else 0.0,
        "recall_micro": tp / (tp + fn) if tp + fn > 0 else 0.0,
        "f1_micro": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn > 0 else 0.0,
        "accuracy_micro": (tp + tn) / max(tp + fp + fn + tn, 1.0),
    }


MACRO = ("accuracy", "precision", "recall", "f1", "sim_positive_rate", "real_positive_rate")
"""The per-user figures averaged over users (macro); the ``*_micro`` columns pool counts."""


DECISION_MODES = ("sampled", "expected", "mode", "ranked")
"""sampled: one Bernoulli draw per item; expected: confusion counts in expectation over draws
(soft counts from the probabilities); mode: the more likely decision (p >= 0.5); ranked (told
prior only): the user watches the list's share of items, those it is likeliest to watch."""


def _top_share(prob: np.ndarray, valid: np.ndarray, ratio: int) -> np.ndarray:
    """1.0 on each row's ``valid.sum() // (1 + ratio)`` most probable valid items (exact ties
    broken by a fixed random order), else 0.0."""
    out = np.zeros(prob.shape)
    length = valid.sum(1)
    jitter = generator(0, "top-share").random(prob.shape) * 1e-12
    for ln in np.unique(length):
        rows = np.flatnonzero(length == ln)
        order = np.argsort(-(prob[rows, :ln] + jitter[rows, :ln]), axis=1)
        n = max(1, ln // (1 + ratio))
        top = np.zeros((rows.size, ln))
        np.put_along_axis(top, order[:, :n], 1.0, axis=1)
        out[rows, :ln] = top
    return out


def _decide_by_length(
    dec: Decider, lists: Lists, base: float | None, key: int
) -> tuple[np.ndarray | None, np.ndarray]:
    """The decider sees each user's list without padding: users are grouped by list length
    (a decider may judge a list as a whole, as an LLM reading it would). A decider with
    ``decide_lists(users, lists, *, base_rate, key) -> list[Decisions]`` gets every user's
    list in one call instead (an LLM decider keeps them all in flight together)."""
    n, width = lists.items.shape
    prob = np.zeros((n, width))
    sampled = np.zeros((n, width), dtype=bool)
    length = lists.valid.sum(1)
    has_prob = True
    ragged = getattr(dec, "decide_lists", None)
    if ragged is not None:
        got = ragged(
            lists.users, [lists.items[r, : length[r]] for r in range(n)], base_rate=base, key=key
        )
        for r, d in enumerate(got):
            sampled[r, : length[r]] = d.sampled
            if d.prob is None:
                has_prob = False
            else:
                prob[r, : length[r]] = d.prob
        return (prob if has_prob else None), sampled
    for ln in np.unique(length):
        rows = np.flatnonzero(length == ln)
        d = dec.decide(lists.users[rows], lists.items[rows, :ln], base_rate=base, key=key)
        sampled[rows, :ln] = d.sampled
        if d.prob is None:
            has_prob = False
        else:
            prob[rows, :ln] = d.prob
    return (prob if has_prob else None), sampled


def discrimination(
    split: Split,
    deciders: list[Decider],
    personas: Personas,
    *,
    ratios: tuple[int, ...] = RATIOS,
    list_size: int = LIST_SIZE,
    seed: int = 0,
    positives: str = "liked",
    rankers: dict[str, Scorer] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(summary, per_user): summary has one row per decider x ratio x prior x decisions with
    metrics averaged over users (macro) and pooled over them (``*_micro``); per_user keeps every
    user's figures (for tier breakdowns). prior "told": the decider gets the list's positive
    share; "blind": its own prior. ``rankers`` (e.g. EASE) only rank: each gets a ``ranked``
    row (told) on the same lists."""
    rows, per_user = [], []

    def add(name: str, ratio: int, prior: str, mode: str, lists: Lists, pred: np.ndarray) -> None:
        s = _scores(pred, lists.label, lists.valid)
        rows.append(
            {
                "brain": name,
                "ratio": f"1:{ratio}",
                "prior": prior,
                "decisions": mode,
                "users": int(lists.users.size),
                **{k: float(np.mean(s[k])) for k in MACRO},
                **_micro(s),
            }
        )
        per_user.append(
            pl.DataFrame(
                {
                    "brain": name,
                    "ratio": f"1:{ratio}",
                    "prior": prior,
                    "decisions": mode,
                    "user": lists.users,
                    **{k: s[k] for k in MACRO},
                }
            )
        )

    for ratio in ratios:
        lists = discrimination_lists(
            split, ratio, list_size=list_size, seed=seed, positives=positives
        )
        for name, score in (rankers or {}).items():
            sc = np.where(lists.valid, score(lists.users, lists.items), -np.inf)
            add(name, ratio, "told", "ranked", lists, _top_share(sc, lists.valid, ratio))
        for dec in deciders:
            for prior, base in (("told", 1.0 / (1 + ratio)), ("blind", None)):
                prob, sampled = _decide_by_length(dec, lists, base, key=ratio)
                preds = {"sampled": sampled.astype(np.float64)}
                if prob is not None:
                    preds["expected"] = prob
                    preds["mode"] = (prob >= 0.5).astype(np.float64)
                    if base is not None:
                        preds["ranked"] = _top_share(prob, lists.valid, ratio)
                for mode, pred in preds.items():
                    add(dec.name, ratio, prior, mode, lists, pred)
    return pl.DataFrame(rows), pl.concat(per_user) if per_user else pl.DataFrame()


def tier_breakdown(per_user: pl.DataFrame, personas: Personas) -> pl.DataFrame:
    """Per trait tier (activity, conformity, diversity x low/mid/high): the mean of the
    per-user discrimination figures."""
    tiers = pl.DataFrame(
        {"user": np.arange(len(personas)), **{t: tier_of(getattr(personas, t)) for t in TRAITS}}
    )
    df = per_user.join(tiers.with_columns(pl.col(t).cast(pl.String) for t in TRAITS), on="user")
    keys = ["brain", "ratio", "prior", "decisions"]
    out = []
    for t in TRAITS:
        g = df.group_by([*keys, t]).agg(
            pl.len().alias("users"),
            *[
                pl.col(c).mean()
                for c in (
                    "accuracy",
                    "precision",
                    "recall",
                    "f1",
                    "sim_positive_rate",
                    "real_positive_rate",
                )
            ],
        )
        out.append(g.rename({t: "tier"}).with_columns(pl.lit(t).alias("trait")))
    return pl.concat(out, how="diagonal").sort([*keys, "trait", "tier"])


# ---- b. rating alignment ----------------------------------------------------------------------


def _hist(r: np.ndarray, levels: np.ndarray) -> np.ndarray:
    idx = np.abs(r[:, None] - levels[None, :]).argmin(1)
    return np.bincount(idx, minlength=levels.size) / max(r.size, 1)


def rating_alignment(
    split: Split, deciders: list[Decider], personas: Personas, *, seed: int = 0
) -> pl.DataFrame:
    """Per decider on the held-out rated interactions: RMSE and MAE of its expected and of its
    sampled ratings; total-variation and Wasserstein-1 distance (rating points) between the
    sampled and the real rating distributions. Reference rows: the user's training mean and the
    global training mean as predictions. Empty on data without ratings.

    A decider that rates only some pairs (NaN ``sampled`` elsewhere: the llm decider rates
    what it watched in its lists) is scored on the pairs it rated, ``coverage`` says which share
    that is, and a ``user mean (reference, <name> pairs)`` row scores the reference on the same
    pairs (those pairs are a selection: held-out positives it chose to watch)."""
    te = split.test
    ok = ~np.isnan(te.rating)
    if not ok.any():
        return pl.DataFrame()
    u, i, r = te.user[ok], te.item[ok], te.rating[ok]
    lo, hi = split.world.rating_scale or (float(r.min()), float(r.max()))
    step = 0.5 if (np.abs(r - np.round(r)) > 0.01).any() else 1.0
    levels = np.round(np.arange(lo, hi + 1e-9, step), 2)
    rows = []
    everything = np.ones(r.size, dtype=bool)

    def row(
        name: str,
        kind: str,
        pred: np.ndarray,
        sampled: np.ndarray | None,
        m: np.ndarray = everything,
    ) -> dict:
        rr = r[m]
        d = {
            "brain": name,
            "prediction": kind,
            "ratings": int(rr.size),
            "coverage": float(m.mean()),
            "rmse": float(np.sqrt(np.mean((pred[m] - rr) ** 2))),
            "mae": float(np.mean(np.abs(pred[m] - rr))),
            "tv_distance": None,
            "wasserstein": None,
        }
        if sampled is not None:
            real_h, sim_h = _hist(rr, levels), _hist(sampled[m], levels)
            d["tv_distance"] = float(0.5 * np.abs(sim_h - real_h).sum())
            d["wasserstein"] = float(np.abs(np.cumsum(sim_h - real_h)).sum() * step)
        return d

    tr = split.train_coded
    tok = ~np.isnan(tr.rating)
    g = float(tr.rating[tok].mean())
    sums = np.bincount(tr.user[tok], weights=tr.rating[tok], minlength=split.world.users.height)
    cnt = np.bincount(tr.user[tok], minlength=split.world.users.height)
    umean = np.where(cnt > 0, sums / np.maximum(cnt, 1), g)
    for dec in deciders:
        rt = dec.rate(u, i, key=1)
        if rt is None:
            continue
        m = ~np.isnan(rt.sampled)
        if not m.any():
            continue
        if not np.isnan(rt.expected[m]).all():
            rows.append(row(dec.name, "expected", rt.expected, None, m))
        rows.append(row(dec.name, "sampled", rt.sampled, rt.sampled, m))
        if not m.all():
            rows.append(
                row(f"user mean (reference, {dec.name} pairs)", "expected", umean[u], None, m)
            )
    rows.append(row("user mean (reference)", "expected", umean[u], None))
    rows.append(row("global mean (reference)", "expected", np.full(r.size, g), None))
    return pl.DataFrame(
        rows, schema_overrides={"tv_distance": pl.Float64, "wasserstein": pl.Float64}
    )


def rating_histograms(split: Split, deciders: list[Decider]) -> pl.DataFrame:
    """Real vs. sampled rating shares per level (for the report); a decider's shares are over
    the pairs it rated."""
    te = split.test
    ok = ~np.isnan(te.rating)
    if not ok.any():
        return pl.DataFrame()
    u, i, r = te.user[ok], te.item[ok], te.rating[ok]
    lo, hi = split.world.rating_scale or (float(r.min()), float(r.max()))
    step = 0.5 if (np.abs(r - np.round(r)) > 0.01).any() else 1.0
    levels = np.round(np.arange(lo, hi + 1e-9, step), 2)
    frames = [pl.DataFrame({"brain": "real", "level": levels, "share": _hist(r, levels)})]
    for dec in deciders:
        rt = dec.rate(u, i, key=1)
        if rt is not None and not np.isnan(rt.sampled).all():
            frames.append(
                pl.DataFrame(
                    {
                        "brain": dec.name,
                        "level": levels,
                        "share": _hist(rt.sampled[~np.isnan(rt.sampled)], levels),
                    }
                )
            )
    return pl.concat(frames)


# ---- c. behavioural calibration ---------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Consumption:
    """Consumed items: (user, session, item) in consumption order; ``day``: when the session
    started, in days (NaN where unknown)."""

    user: np.ndarray
    session: np.ndarray
    item: np.ndarray
    day: np.ndarray | None = None
    whole: np.ndarray | None = None
    """Per row: whether its session is seen from its start (None: every one is). A real
    held-out session that goes on from the training part's last sitting is not: only its tail
    is held out."""

    def take(self, mask: np.ndarray) -> Consumption:
        return Consumption(
            self.user[mask],
            self.session[mask],
            self.item[mask],
            None if self.day is None else self.day[mask],
            None if self.whole is None else self.whole[mask],
        )


SESSION_GAP_S = SITTING_GAP_S
"""A real session ends after this much inactivity (30 minutes): the held-out interactions of a
user, in time order, are cut wherever two consecutive ones lie further apart."""


def real_consumption(split: Split) -> Consumption:
    """The held-out interactions, sessions cut at :data:`SESSION_GAP_S` of inactivity; a
    session's day is its first interaction's time in days. Without usable times (a random
    split, undated data) each user's held-out part is one session with an unknown day.

    A user's first held-out session that begins within :data:`SESSION_GAP_S` of its last
    training interaction goes on from a training sitting: it is marked not ``whole``. A split
    by time cuts most users in the middle of a sitting, and the sitting it cuts is likelier a
    long one (length-biased sampling): its held-out tail is no sample of a session's length."""
    te = split.test
    if not split.timed:
        return Consumption(te.user, np.zeros(len(te), np.int64), te.item)
    new = np.ones(len(te), dtype=bool)
    new[1:] = (te.user[1:] != te.user[:-1]) | (te.timestamp[1:] - te.timestamp[:-1] > SESSION_GAP_S)
    sid = np.cumsum(new) - 1
    first = np.r_[0, np.flatnonzero(np.diff(te.user)) + 1] if len(te) else np.zeros(0, np.int64)
    base = np.repeat(sid[first], np.diff(np.r_[first, len(te)]))
    start = te.timestamp[np.flatnonzero(new)][sid] / 86_400.0
    tr = split.train_coded
    last = np.full(int(max(te.user.max(initial=-1), tr.user.max(initial=-1))) + 1, -np.inf)
    dated = tr.timestamp >= 0
    np.maximum.at(last, tr.user[dated], tr.timestamp[dated].astype(np.float64))
    session = sid - base
    goes_on = te.timestamp.astype(np.float64) - last[te.user] <= SESSION_GAP_S
    whole = ~((session == 0) & np.repeat(goes_on[first], np.diff(np.r_[first, len(te)])))
    return Consumption(te.user, session, te.item, start, whole)


def session_gaps(c: Consumption) -> np.ndarray:
    """Days between the starts of each user's consecutive sessions (sessions with consumption,
    known days)."""
    if c.day is None or c.user.size == 0:
        return np.zeros(0)
    key = np.unique(np.column_stack([c.user, c.session]), axis=0, return_index=True)[1]
    u, d = c.user[key], c.day[key]
    o = np.lexsort((d, u))
    u, d = u[o], d[o]
    same = u[1:] == u[:-1]
    gaps = (d[1:] - d[:-1])[same]
    return gaps[~np.isnan(gaps)]


def repeat_share(c: Consumption) -> float:
    """Share of consumptions of an item the same user consumed earlier on the same side."""
    if c.user.size == 0:
        return float("nan")
    codes = c.user.astype(np.int64) * (int(c.item.max()) + 1) + c.item
    _, first = np.unique(codes, return_index=True)
    return 1.0 - first.size / codes.size


def session_repetition(c: Consumption, tags: np.ndarray) -> float:
    """Mean repetition of the session (:func:`recoworld.users.sessions.repetition`) over the
    consumptions of ``c`` after their session's first; NaN without tags or such consumptions."""
    if tags.shape[1] == 0 or c.user.size < 2:
        return float("nan")
    label = c.user.astype(np.int64) * 1_000_000 + c.session
    rows = np.flatnonzero(label[1:] == label[:-1]) + 1
    if rows.size == 0:
        return float("nan")
    prof = session_profiles(label, c.item, rows, tags)
    return float(repetition(prof, tags[c.item[rows]]).mean())


def _finite_means(*xs: list[float]) -> tuple[float, ...]:
    """The mean of each list's finite values (NaN where it has none: an untagged world)."""
    out = []
    for x in xs:
        a = np.asarray(x, np.float64)
        a = a[np.isfinite(a)]
        out.append(float(a.mean()) if a.size else float("nan"))
    return tuple(out)


def matched_items(
    real: Consumption, sim: Consumption, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, int]:
    """(real items, simulated items, users): for every user with consumption on both sides,
    ``min(real, simulated)`` of its consumptions drawn at random (seeded) from each side, so
    that each user weighs the same on both; ``users``: how many users the sample covers."""
    n = int(max(real.user.max(initial=-1), sim.user.max(initial=-1))) + 1
    cr = np.bincount(real.user, minlength=n)
    cs = np.bincount(sim.user, minlength=n)
    quota = np.minimum(cr, cs)

    def draw(c: Consumption, counts: np.ndarray) -> np.ndarray:
        o = np.lexsort((rng.random(c.user.size), c.user))  # per user, in random order
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        u = c.user[o]
        rank = np.arange(u.size) - starts[u]
        return c.item[o][rank < quota[u]]

    return draw(real, cr), draw(sim, cs), int((quota > 0).sum())


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0: all equal, -> 1: concentrated)."""
    x = np.sort(counts.astype(np.float64))
    n = x.size
    if n == 0 or x.sum() == 0:
        return 0.0
    return float((2 * np.arange(1, n + 1) - n - 1).dot(x) / (n * x.sum()))


def _entropy_rows(tag_rows: np.ndarray) -> float:
    t = tag_rows.sum(0)
    if t.sum() <= 0:
        return float("nan")
    p = t / t.sum()
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum() / np.log(max(tag_rows.shape[1], 2)))


def behaviour_calibration(
    split: Split,
    catalog: Catalog,
    personas: Personas,
    real: Consumption,
    sim: Consumption,
    *,
    sim_label: str,
    seed: int = 0,
) -> pl.DataFrame:
    """Simulated vs. real consumption of the users whose real consumption is compared (those
    with a held-out interaction, every one of them simulated), overall and per trait tier. Not
    only of those who consumed something in the simulation: which users' real sessions enter a
    figure must not depend on the simulation's draws (one prolific user dropped or kept moved
    ml-latest-small's real items per session from 3.6 to 4.6); a user who consumed nothing
    simply has no session on the simulated side. Per-user figures (tag diversity) pair the
    users both sides have.

    - ``items_per_session``: mean consumed items per session (sessions with >= 1 item); real
      sessions are the held-out sittings seen whole (not one that goes on from training:
      :func:`real_consumption`; None when the world has no times);
    - ``popularity_percentile``: mean training-popularity percentile of consumed items, and
      ``popularity_gini``: Gini of item consumption counts over the world's items, each on a
      sample *matched per user* (:func:`matched_items`): every user both sides have gives each
      side the same number of its consumptions, ``min(real, simulated)``. The held-out part is
      a share of each user's history (a user of 1,000 interactions holds out 200, one of 20
      holds out 4) while the simulation gives every user the same sessions, so the items as
      they come weigh the real side by activity and the simulated side evenly: their
      difference measured the weighting, not the choices (ml-latest-small's real Gini 0.826
      as pooled, 0.883 matched, on the same held-out part). ``popularity_percentile_pooled``
      and ``popularity_gini_pooled`` keep the figures of every consumption as it comes (the
      Gini with both sides subsampled, seeded, to the same count), without a goal;
    - ``tag_diversity``: per user, normalised tag entropy of its first ``c`` consumed items,
      ``c = min(real, simulated count)`` (users with c >= 2), averaged;
    - ``session_gap_days``: median days between the starts of a user's consecutive sessions
      with consumption (real: held-out sessions, :func:`session_gaps`);
    - ``repeat_share``: share of consumptions of an item the user consumed before on the same
      side (:func:`repeat_share`; the split holds a repeated pair out whole, so the real
      side's repeats are all within the held-out part);
    - ``session_repetition``: how much a consumed item repeats what the user consumed earlier
      in the session (the brain's repetition: its tags' cosine with the session profile,
      :mod:`recoworld.users.sessions`), averaged over consumptions after a session's first
      (None without tags; real: None without times, which leave no sessions to read).
    """
    rng = generator(seed, "calibration")
    n_users = len(personas)
    tiers = {t: tier_of(getattr(personas, t)) for t in TRAITS}
    groups: list[tuple[str, str, np.ndarray]] = [("all", "all", np.ones(n_users, bool))]
    for t in TRAITS:
        for lv in ("low", "mid", "high"):
            groups.append((t, lv, tiers[t] == lv))
    rows = []
    n_items = split.n_items
    timed = split.timed and real.day is not None
    has_real = np.zeros(n_users, bool)
    has_real[real.user] = True
    has_sim = np.zeros(n_users, bool)
    has_sim[sim.user] = True
    pct = catalog.pop_percentile[:n_items]

    def mean_pct(items: np.ndarray) -> float:
        return float(pct[items].mean()) if items.size else float("nan")

    def gini_of(items: np.ndarray) -> float:
        return gini(np.bincount(items, minlength=n_items)) if items.size else float("nan")

    for trait, tier, member in groups:
        m = member & has_real
        rsel, ssel = m[real.user], m[sim.user]
        r, s = real.take(rsel), sim.take(ssel)

        def per_session(c: Consumption) -> float:
            if c.whole is not None:
                c = c.take(c.whole)
            if c.user.size == 0:
                return float("nan")
            key = c.user.astype(np.int64) * 100_000 + c.session
            return float(np.unique(key, return_counts=True)[1].mean())

        ips_real = per_session(r) if timed else float("nan")
        gap_r, gap_s = session_gaps(r) if timed else np.zeros(0), session_gaps(s)
        k = min(r.item.size, s.item.size)
        if k > 0:
            gr = gini(np.bincount(rng.choice(r.item, k, replace=False), minlength=n_items))
            gs = gini(np.bincount(rng.choice(s.item, k, replace=False), minlength=n_items))
        else:
            gr = gs = float("nan")
        mr, ms, n_matched = matched_items(r, s, rng)
        div_r, div_s = [], []
        for uu in np.flatnonzero(m & has_sim):
            ri = r.item[r.user == uu]
            si = s.item[s.user == uu]
            c = min(ri.size, si.size)
            if c >= 2:
                div_r.append(_entropy_rows(catalog.tag_matrix[ri[:c]]))
                div_s.append(_entropy_rows(catalog.tag_matrix[si[:c]]))
        n_all = int(m.sum())
        metrics = {
            "items_per_session": (ips_real, per_session(s), n_all),
            "popularity_percentile": (mean_pct(mr), mean_pct(ms), n_matched),
            "popularity_gini": (gini_of(mr), gini_of(ms), n_matched),
            "popularity_percentile_pooled": (mean_pct(r.item), mean_pct(s.item), n_all),
            "popularity_gini_pooled": (gr, gs, n_all),
            "tag_diversity": (*_finite_means(div_r, div_s), int(np.isfinite(div_r).sum())),
            "session_gap_days": (
                float(np.median(gap_r)) if gap_r.size else float("nan"),
                float(np.median(gap_s)) if gap_s.size else float("nan"),
                n_all,
            ),
            "repeat_share": (repeat_share(r), repeat_share(s), n_all),
            "session_repetition": (
                session_repetition(r, catalog.tag_matrix) if timed else float("nan"),
                session_repetition(s, catalog.tag_matrix),
                n_all,
            ),
        }
        for name, (a, b, n_users_of) in metrics.items():
            rows.append(
                {
                    "brain": sim_label,
                    "metric": name,
                    "trait": trait,
                    "tier": tier,
                    "users": n_users_of,
                    "real": None if np.isnan(a) else a,
                    "simulated": None if np.isnan(b) else b,
                    "ratio": None if (np.isnan(a) or np.isnan(b) or a == 0) else b / a,
                }
            )
    return pl.DataFrame(
        rows, schema_overrides={"real": pl.Float64, "simulated": pl.Float64, "ratio": pl.Float64}
    )


# ---- d. Hit@1 ---------------------------------------------------------------------------------


def hit_at_1(
    split: Split, scorers: dict[str, Scorer], *, candidates: int = HIT_CANDIDATES, seed: int = 0
) -> pl.DataFrame:
    """Per user with a held-out interaction: its first held-out item (the true next item) and
    ``candidates - 1`` items it never touched, in random order; each scorer ranks them (ties
    fall in that random order). Hit@1, Hit@5 and NDCG@5 averaged over users."""
    rng = generator(seed, "hit-at-1")
    te = split.test
    users, start, _ = _per_user_groups(te.user)
    true = te.item[start]
    neg = sample_never_touched(split, users, np.full(users.size, candidates - 1), rng)
    items = np.concatenate([true[:, None], neg], axis=1)
    perm = np.argsort(rng.random(items.shape), axis=1)
    items = np.take_along_axis(items, perm, axis=1)
    is_true = perm == 0
    rows = []
    for name, score in scorers.items():
        s = score(users, items)
        order = np.argsort(-s, axis=1, kind="stable")
        rank = np.argmax(np.take_along_axis(is_true, order, axis=1), axis=1) + 1
        ndcg = np.where(rank <= 5, 1.0 / np.log2(rank + 1), 0.0)
        rows.append(
            {
                "recommender": name,
                "users": int(users.size),
                "candidates": candidates,
                "hit_at_1": float(np.mean(rank == 1)),
                "hit_at_5": float(np.mean(rank <= 5)),
                "ndcg_at_5": float(ndcg.mean()),
            }
        )
    return pl.DataFrame(rows)
