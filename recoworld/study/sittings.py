"""How long simulated sittings last, fitted to the logs by simulation.

The logs say how many items a user consumes in a sitting (``ChoiceModel.sitting_items``: the
mean over the whole sittings of each user's most recent interactions, ``recoworld.users.fit``).
The brain's leaving has dynamics the logs do not show (satisfaction, fatigue, patience; the
``[brain] leave_*`` settings); its level is what they do show. :func:`fit_leaving` finds the
level (one monotone scale, :func:`level`) at which simulated users consume that many items per
session (sessions with at least one) under the exposure the logs came from, as the choice model
assumes it (``recoworld.recommenders.browse.CatalogueBrowsing``: slates drawn from the
catalogue in proportion to ``(1 + n_j) ** logged_exposure``, the exposure the choice among shown
items was fitted against), with no turn budget to speak of (:data:`SITTING_TURNS`: a real
sitting has none). Fitting the length under a recommender instead (the MF one, before) would
assume the logs' users were served as well as it serves them, and would leave sittings under the
logs' own exposure far shorter than the logs' (1.8 items against 5 on ML-100K). At or under 0
the level is an offset on every leave logit and a factor ``exp(level)`` on the pace of fatigue
(users stay longer, and tire more slowly, than the dynamics alone keep them); above it, the
chance of having had enough after each consumed item, which ends the sitting mid-slate
(sittings shorter than the dynamics give: a user may consume several items of one slate). A
seeded sample of the world's users is simulated at each step of a bisection (common random
numbers: every step draws the same users' same uniforms), so the fit is deterministic.

A recommender then yields longer or shorter sittings than the logs (the what-if: a good one,
longer), and a study's own turn budget (``[simulation] turns``) may cut them. Where the logs
have no sittings (an undated world) nothing is fitted: the settings alone set how long sessions
last.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Callable

import msgspec
import numpy as np
import scipy.sparse as sp

from recoworld.config import BrainConfig, SimulationConfig, StudyConfig
from recoworld.items.catalog import Catalog
from recoworld.recommenders.browse import browse_config
from recoworld.records import WATCH, TurnRecord
from recoworld.rng import generator
from recoworld.study.prepared import Prepared
from recoworld.study.simulate import simulate_arm
from recoworld.users.choice import ChoiceModel
from recoworld.users.fit import Fitted
from recoworld.users.persona import Personas
from recoworld.users.population import segment_labels

SITTING_TURNS = 50
"""Slates a calibration session may last (and the fidelity harness's sessions): far more than
any sitting needs, so that users, not a budget, end them."""
SITTING_USERS = 1000
"""Users simulated at each step of the fit (a seeded sample of the world's)."""
SITTING_SESSIONS = 2
"""Sessions per simulated user in the fit (the second carries the first's satisfaction)."""
LEVEL_RANGE = (-3.0, 5.0)
"""The levels :func:`level` searches. At the lowest, -3, the odds of leaving are e^3 (20)
times under the dynamics' own, and fatigue grows 20 times as slowly, so that a dissatisfied
user still leaves (at satisfaction 0.1, about 6% after each slate); where the logs' sittings
are longer than that reaches, the report says so. 5: a 99% chance of having had enough after
each item."""
PROBE_USERS = 200
"""Users of the sample the lowest level is tried on first: where even it leaves sittings
clearly shorter than the logs' (:data:`PROBE_MARGIN`), the search is not run (the costliest
simulation is that one, users hardly leaving)."""
PROBE_MARGIN = 0.1
STEPS = 12
"""Most simulations of the search between the two bounds."""
TOLERANCE = 0.01
"""The search stops within this share of the target."""
MEMO_SIZE = 32
"""Fits remembered in this process (:func:`fit_leaving` is deterministic in its inputs: a
sweep's arms, or a study's replicates of one seed, prepare the same world and fit the same
level)."""
_memo: OrderedDict[str, tuple[float, float]] = OrderedDict()


def simulated_sitting_items(
    model: ChoiceModel,
    catalog: Catalog,
    personas: Personas,
    brain: BrainConfig,
    seed: int,
    *,
    sessions: int = SITTING_SESSIONS,
    slate_size: int = SimulationConfig().slate_size,
) -> float:
    """Mean items consumed (watched or rated) per session with any, of every user of
    ``personas`` simulated under the logs' exposure
    (``recoworld.recommenders.browse.CatalogueBrowsing`` with the brain's ``logged_exposure``)
    for ``sessions`` sessions of up to :data:`SITTING_TURNS` slates of ``slate_size`` (at most
    the catalogue's size)."""
    cfg = StudyConfig(
        name="sittings",
        seed=seed,
        brain=brain,
        recommender=browse_config(brain.logged_exposure),
        simulation=SimulationConfig(
            sessions=sessions, turns=SITTING_TURNS, slate_size=min(slate_size, catalog.n_items)
        ),
    )
    n = len(personas)
    prep = Prepared(
        cfg=cfg,
        world_name="sittings",
        catalog=catalog,
        model=model,
        report=None,  # type: ignore[arg-type]  # the loop never reads it
        population=personas,
        segments=segment_labels(personas, "none"),
        creator_mask=np.zeros(catalog.n_items, bool),
        treated=(np.ones(n, bool),),
    )
    consumed = np.zeros((n, sessions), np.int64)

    def observe(rec: object) -> None:
        if isinstance(rec, TurnRecord):
            np.add.at(consumed, (rec.rows, rec.session), (rec.feedback.action >= WATCH).sum(1))

    simulate_arm(prep, 0, np.arange(n), observe)
    some = consumed[consumed > 0]
    return float(some.mean()) if some.size else 0.0


def fit_leaving(
    fitted: Fitted,
    catalog: Catalog,
    personas: Personas,
    brain: BrainConfig,
    seed: int,
    *,
    slate_size: int = SimulationConfig().slate_size,
) -> Fitted:
    """``fitted`` with its level of leaving (``leave_offset`` and ``enough``, :func:`level`)
    fitted on a seeded sample of ``personas`` (the world's users) shown slates of
    ``slate_size`` (see the module docstring), and the report saying what it reached.
    Unchanged where the logs have no sitting length."""
    model = fitted.model
    target = model.sitting_items
    if target <= 0 or len(personas) == 0:
        return fitted
    key = _digest(model, catalog, personas, brain, seed, slate_size)
    if key in _memo:
        _memo.move_to_end(key)
        theta, got = _memo[key]
    else:
        theta, got = _fit_level(model, catalog, personas, brain, seed, slate_size)
        _memo[key] = (theta, got)
        while len(_memo) > MEMO_SIZE:
            _memo.popitem(last=False)
    model = msgspec.structs.replace(model, **level(theta))
    report = msgspec.structs.replace(
        fitted.report,
        sitting_items=target,
        leave_offset=model.leave_offset,
        enough=model.enough,
        simulated_sitting_items=got,
    )
    return Fitted(model=model, report=report)


def _fit_level(
    model: ChoiceModel,
    catalog: Catalog,
    personas: Personas,
    brain: BrainConfig,
    seed: int,
    slate_size: int,
) -> tuple[float, float]:
    """(level, items per session there): the search of :func:`fit_leaving`."""
    target = model.sitting_items
    rng = generator(seed, "sittings")
    order = rng.permutation(len(personas))
    sample = personas.take(np.sort(order[:SITTING_USERS]))
    probe = personas.take(np.sort(order[:PROBE_USERS]))  # a part of the sample

    def items(m: ChoiceModel) -> float:
        return simulated_sitting_items(m, catalog, sample, brain, seed, slate_size=slate_size)

    def with_level(theta: float) -> ChoiceModel:
        return msgspec.structs.replace(model, **level(theta))

    low = simulated_sitting_items(
        with_level(LEVEL_RANGE[0]), catalog, probe, brain, seed, slate_size=slate_size
    )
    if low < (1.0 - PROBE_MARGIN) * target:  # out of reach: no search on the whole sample
        theta, got = LEVEL_RANGE[0], low
    else:  # a probe of the whole sample (a small world) is the search's lower bound already
        known = low if len(probe) == len(sample) else None
        theta, got = _solve(lambda t: items(with_level(t)), target, at_low=known)
    return theta, got


def _digest(*parts: object) -> str:
    """A content hash of everything :func:`_fit_level` reads (structs, dataclasses of arrays)."""
    h = hashlib.sha256(b"recoworld-sittings-1")

    def feed(x: object) -> None:
        if isinstance(x, msgspec.Struct):
            h.update(msgspec.json.encode(x, order="sorted"))
        elif dataclasses.is_dataclass(x) and not isinstance(x, type):
            h.update(type(x).__name__.encode())
            for f in dataclasses.fields(x):
                h.update(f.name.encode())
                feed(getattr(x, f.name))
        elif isinstance(x, np.ndarray):
            h.update(f"{x.dtype}{x.shape}".encode())
            if x.dtype == object:
                h.update("\x1f".join(map(str, x.ravel().tolist())).encode())
            else:
                h.update(np.ascontiguousarray(x).tobytes())
        elif sp.issparse(x):
            m = sp.csr_matrix(x)
            for a in (m.data, m.indices, m.indptr, np.array(m.shape)):
                feed(a)
        elif isinstance(x, (tuple, list)):
            h.update(f"seq{len(x)}".encode())
            for y in x:
                feed(y)
        else:
            h.update(repr(x).encode())
        h.update(b"|")

    for part in parts:
        feed(part)
    return h.hexdigest()


def _solve(
    items: Callable[[float], float], target: float, *, at_low: float | None = None
) -> tuple[float, float]:
    """(level, items there): the level in :data:`LEVEL_RANGE` where ``items`` (falling with
    the level) meets ``target``, or the bound nearest it where it is out of reach. The
    Illinois variant of regula falsi on the bracket (a handful of simulations where bisection
    takes a dozen), until within :data:`TOLERANCE` of the target or :data:`STEPS` steps.
    ``at_low``: ``items`` at the lowest level where it is known."""
    lo, hi = LEVEL_RANGE
    f_lo = (items(lo) if at_low is None else at_low) - target
    if f_lo <= 0:  # even the longest-staying users consume fewer: as long as it goes
        return lo, f_lo + target
    f_hi = items(hi) - target
    if f_hi >= 0:
        return hi, f_hi + target
    best = (lo, f_lo) if abs(f_lo) < abs(f_hi) else (hi, f_hi)
    side = 0
    for _ in range(STEPS):
        mid = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
        f_mid = items(mid) - target
        if abs(f_mid) < abs(best[1]):
            best = (mid, f_mid)
        if abs(f_mid) <= TOLERANCE * target or hi - lo < 1e-3:
            break
        if f_mid > 0:  # still too many items: leave more
            lo, f_lo = mid, f_mid
            if side == 1:
                f_hi /= 2
            side = 1
        else:
            hi, f_hi = mid, f_mid
            if side == -1:
                f_lo /= 2
            side = -1
    return best[0], best[1] + target


def level(theta: float) -> dict[str, float]:
    """The leaving of level ``theta`` (one monotone scale): at or under 0, the leave logit's
    offset ``theta``, and so fatigue growing ``exp(theta)`` times as fast
    (``ChoiceModel.fatigue_scale``, derived from the offset: users stay longer, and
    tire more slowly, the lower it is: the odds of leaving and the pace of tiring fall by one
    factor); above it, a chance ``1 - exp(-theta)`` of having had enough after each consumed
    item (sittings shorter than the dynamics give)."""
    if theta <= 0:
        return {"leave_offset": float(theta), "enough": 0.0}
    return {"leave_offset": 0.0, "enough": float(-np.expm1(-theta))}
