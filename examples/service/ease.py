"""The reference service's model: EASE (Steck, 2019) fitted on a RecoWorld world, and the
per-user state the recommender service protocol asks a service to keep.

EASE is a closed-form item-item model: with X the (users x items) 0/1 interaction matrix,
``P = (X'X + lambda I)^-1`` and ``B = I - P / diag(P)`` with a zero diagonal; a user's scores
are ``x_u B``. Here ``x_u`` is the user's real history plus the items it clicked in the
simulation, and its profile ``x_u B`` is kept as a running sum of rows of ``B`` (history rows
in item order, then each click in the order it happened), so a user's slates depend on that
user alone, never on who shares its request: the service is deterministic per user.

Instructions re-weight tags: each ``more_of`` adds one to the tag's weight for that user, each
``less_of`` takes one away (within [-2, 2]); weights halve at each new session. A slate's
scores are ``profile + weight x spread x (tag weights . item tags)``, where ``spread`` is the
standard deviation of the user's unseen items' scores. Items the user has in its history or
was shown (its feedback says what was shown) are not recommended again while others remain.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from recoworld.recommenders.http import (
    PROTOCOL_VERSION,
    RecommendRequest,
    RecommendResponse,
    UserRequest,
)
from recoworld.world.model import World

MAX_EASE_ITEMS = 20_000
"""EASE inverts an (items x items) matrix: beyond this it is the wrong model (memory, time)."""
TAG_WEIGHT_LIMIT = 2.0


class BadRequest(ValueError):
    """A request the service cannot serve (HTTP 400)."""


class EASE:
    """EASE fitted on ``world``'s interactions (every interaction counts once)."""

    def __init__(self, world: World, lam: float = 250.0) -> None:
        items = world.items
        n_items = items.height
        if n_items > MAX_EASE_ITEMS:
            raise ValueError(
                f"EASE inverts an items x items matrix: {n_items} items is over {MAX_EASE_ITEMS}"
            )
        self.item_ids: list[str] = items["item_id"].to_list()
        self.ids = np.asarray(self.item_ids, dtype=object)
        self.row = {item: i for i, item in enumerate(self.item_ids)}
        users = world.users["user_id"].to_list()
        user_row = {u: i for i, u in enumerate(users)}
        inter = world.interactions.select("user_id", "item_id").unique()
        u = np.array([user_row[x] for x in inter["user_id"].to_list()], np.int64)
        i = np.array([self.row[x] for x in inter["item_id"].to_list()], np.int64)
        x = np.zeros((len(users), n_items), np.float64)
        x[u, i] = 1.0
        gram = x.T @ x
        gram[np.diag_indices(n_items)] += lam
        p = np.linalg.inv(gram)
        b = p / -np.diag(p)
        b[np.diag_indices(n_items)] = 0.0
        self.b = b.astype(np.float32)
        self.lam = lam
        self.n_items = n_items
        # each user's real history, sorted by item row
        order = np.lexsort((i, u))
        u, i = u[order], i[order]
        cuts = np.searchsorted(u, np.arange(len(users) + 1))
        self.history = {users[k]: i[cuts[k] : cuts[k + 1]] for k in range(len(users))}
        self.tags: list[str] = sorted({t for ts in items["tags"].to_list() for t in ts})
        tag_col = {t: j for j, t in enumerate(self.tags)}
        self.tag_matrix = np.zeros((n_items, len(self.tags)), np.float32)
        for row, ts in enumerate(items["tags"].to_list()):
            for t in ts:
                self.tag_matrix[row, tag_col[t]] = 1.0 / len(ts)
        self.tag_col = tag_col


@dataclass(eq=False)
class UserState:
    """One simulated user as the service knows it (within one scope)."""

    profile: np.ndarray  # (n_items,) float32: sum of B's rows of the items it consumed
    seen: np.ndarray  # (n_items,) bool: history and everything shown
    tag_w: np.ndarray  # (n_tags,) float32
    session: int = 0
    applied: set[tuple[int, int]] = field(default_factory=set)  # feedback (session, turn)
    instructed: set[tuple[int, int]] = field(default_factory=set)
    last: tuple[int, int, list[str], list[float]] | None = None  # the last slate served


@dataclass
class Stats:
    """What the service did (GET /stats): for benchmarks and tests."""

    requests: int = 0
    users: int = 0
    compute_s: float = 0.0
    """CPU seconds the model spent answering (this thread's: not the time it waited for a
    core on a busy machine; decoding and encoding the JSON excluded)."""
    uncovered: int = 0


class Recommender:
    """Serves the protocol with :class:`EASE`: per-(scope, user) state, at most ``max_scopes``
    scopes (the least recently used is forgotten first)."""

    def __init__(self, model: EASE, *, max_scopes: int = 4096) -> None:
        self.model = model
        self.max_scopes = max_scopes
        self.scopes: OrderedDict[str, dict[int, UserState]] = OrderedDict()
        self.stats = Stats()

    def handle(self, req: RecommendRequest) -> RecommendResponse:
        t0 = time.thread_time()
        if req.protocol_version != PROTOCOL_VERSION:
            raise BadRequest(
                f"protocol_version {req.protocol_version} is not served; expected "
                f"{PROTOCOL_VERSION}"
            )
        if not 1 <= req.k <= self.model.n_items:
            raise BadRequest(f"k = {req.k}: expected 1..{self.model.n_items}")
        weight = float(req.options.get("instruction_weight", 1.0))
        users = self.scopes.pop(req.scope, None) or {}
        self.scopes[req.scope] = users  # most recently used last
        while len(self.scopes) > self.max_scopes:
            self.scopes.popitem(last=False)
        slates: list[list[str | int] | None] = [None] * len(req.users)
        scores: list[list[float] | None] = [None] * len(req.users)
        fresh: list[tuple[int, UserRequest, UserState]] = []
        for j, u in enumerate(req.users):
            state = self._update(users, u)
            if state is None:
                continue
            if state.last is not None and state.last[:2] == (u.session, u.turn):
                slates[j], scores[j] = state.last[2], state.last[3]  # a retried request
            else:
                fresh.append((j, u, state))
        if fresh:
            for (j, u, state), (items, values) in zip(fresh, self._rank(fresh, req.k, weight)):
                state.last = (u.session, u.turn, items, values)
                slates[j], scores[j] = items, values
        self.stats.requests += 1
        self.stats.users += len(req.users)
        self.stats.compute_s += time.thread_time() - t0
        return RecommendResponse(slates=slates, scores=scores)

    def _update(self, users: dict[int, UserState], u: UserRequest) -> UserState | None:
        """The user's state after its feedback and instructions (None: an unknown user)."""
        m = self.model
        state = users.get(u.user)
        if state is None:
            if u.history is not None:
                hist = np.unique([m.row[i] for i in u.history if i in m.row]).astype(np.int64)
            elif u.source_user is not None and u.source_user in m.history:
                hist = m.history[u.source_user]
            else:
                hist = np.zeros(0, np.int64)
            if hist.size == 0:  # nothing to go on: the study's fallback serves this user
                self.stats.uncovered += 1
                return None
            seen = np.zeros(m.n_items, bool)
            seen[hist] = True
            state = UserState(
                profile=m.b[hist].sum(0),
                seen=seen,
                tag_w=np.zeros(len(m.tags), np.float32),
            )
            users[u.user] = state
        for fb in u.feedback:  # each (session, turn) once: a retried request resends it
            if (fb.session, fb.turn) in state.applied:
                continue
            state.applied.add((fb.session, fb.turn))
            for item, action in zip(fb.items, fb.actions):
                row = m.row.get(item)
                if row is None:  # an item the service does not carry (a creator's new item)
                    continue
                state.seen[row] = True
                if action != "skip":
                    state.profile += m.b[row]
        for ins in u.instructions:
            if (ins.session, ins.turn) in state.instructed:
                continue
            state.instructed.add((ins.session, ins.turn))
            for tag, step in ((ins.more_of, 1.0), (ins.less_of, -1.0)):
                if tag in m.tag_col:
                    j = m.tag_col[tag]
                    state.tag_w[j] = np.clip(
                        state.tag_w[j] + step, -TAG_WEIGHT_LIMIT, TAG_WEIGHT_LIMIT
                    )
        if u.session != state.session:
            state.tag_w *= 0.5 ** (u.session - state.session)
            state.session = u.session
        return state

    def _rank(
        self, fresh: list[tuple[int, UserRequest, UserState]], k: int, weight: float
    ) -> list[tuple[list[str], list[float]]]:
        """Each user's best ``k`` items, best first, with their scores. Vectorised over the
        request's users with row-wise operations only (a row's result never depends on the
        other rows; a matrix product's could, through its blocking): deterministic per user."""
        m = self.model
        scores = np.stack([st.profile for _, _, st in fresh]).astype(np.float64)
        seen = np.stack([st.seen for _, _, st in fresh])
        for r, (_, _, st) in enumerate(fresh):
            if weight and st.tag_w.any():
                unseen = scores[r][~seen[r]]
                spread = unseen.std() if unseen.size > 1 else 1.0
                scores[r] += weight * (spread or 1.0) * (m.tag_matrix @ st.tag_w)
        # seen items rank below every unseen one (they fill a slate only when nothing is left)
        low = scores - (np.abs(scores).max(1, keepdims=True) + 1.0) * 2
        ranked = np.where(seen, low, scores)
        if k < ranked.shape[1]:
            part = np.argpartition(-ranked, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(k), (len(fresh), k))
        vals = np.take_along_axis(ranked, part, 1)
        order = np.lexsort((part, -vals), axis=1)  # best first, ties in catalogue order
        top = np.take_along_axis(part, order, 1)
        values = np.round(np.take_along_axis(vals, order, 1), 6).tolist()
        return list(zip(m.ids[top].tolist(), values))
