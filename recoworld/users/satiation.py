"""Per-item satiation: what a user consumed before is less appealing again.

Two parts, both logit penalties on an item the user clicked before:

- **lasting**: ``log(repeat_share)``, where ``repeat_share`` is the share of consumptions in the
  world's logs that repeat an item the same user consumed before (a play count above one, or
  the same user-item pair logged again), floored at :data:`MIN_REPEAT_SHARE`. Film ratings hold
  no repeats (a film is seen once: a strong lasting penalty, about -4.6); listening logs are
  mostly repeats (close to none). The items of a persona's real history carry it too.
- **short-term**: ``satiation_weight * exp(-days since / satiation_days)`` on an item clicked
  earlier in the simulation, full within the session (``[brain]`` settings: they have no trace in
  logged data; docs/simulator.md).

What a user consumed in the simulation is kept per user in a ring of the last
:data:`CAPACITY` clicked items with the day of the click; older clicks keep the lasting part
only through the real history (they leave the ring).

Re-showing an item the user *skipped* needs no penalty here: the brain's draws for an item are
keyed by (user, session, item), so within a session the user decides about it as before (its
mindset having moved), instead of getting another independent chance to click.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

from recoworld.users.persona import Personas

CAPACITY = 64
"""Clicked items remembered per user in the simulation (the most recent)."""
MIN_REPEAT_SHARE = 0.01
"""Floor of the lasting factor: even in a world that logs no repeat, a user may go back to an
item about one time in a hundred as readily as to a fresh one of the same appeal."""


def repeat_share(interactions: pl.DataFrame) -> float:
    """Share of consumptions that repeat an item the same user consumed before: each user-item
    pair counts ``sum(max(weight, 1))`` consumptions (weights are play counts, or 1), of which all
    but the first are repeats."""
    if interactions.height == 0:
        return 0.0
    per_pair = interactions.group_by("user_id", "item_id").agg(
        pl.col("weight").fill_null(1.0).clip(lower_bound=1.0).sum().alias("c")
    )
    total = float(per_pair["c"].sum())
    return float((total - per_pair.height) / total) if total > 0 else 0.0


def lasting_penalty(share: float) -> float:
    """The logit penalty (<= 0) of re-consuming an item, from the world's repeat share."""
    return float(np.log(min(max(share, MIN_REPEAT_SHARE), 1.0)))


DENSE_HISTORY_CELLS = 1 << 25
"""Histories are looked up in a dense (templates, items) table up to this many cells (32 MB),
else by binary search over sorted (template, item) keys: the same answers, faster."""


class HistoryIndex:
    """Membership in the real histories of personas, by template (every persona drawn from one
    dataset user shares that user's history; a persona with template -1 has none)."""

    def __init__(self, history: sp.csr_matrix | None, n_items: int) -> None:
        self.n_items = n_items
        h = sp.csr_matrix((0, n_items), dtype=bool) if history is None else history.tocsr()
        if h.shape[1] < n_items:  # items added after the world (a creator's) are in no history
            h = sp.csr_matrix((h.data, h.indices, h.indptr), shape=(h.shape[0], n_items))
        h = h.astype(bool)
        h.eliminate_zeros()
        h.sum_duplicates()  # sorted, distinct column indices per row
        self.counts = np.append(np.diff(h.indptr), 0).astype(np.int64)  # [-1]: no template
        self.empty = h.nnz == 0
        self.dense: np.ndarray | None = None
        if (h.shape[0] + 1) * n_items <= DENSE_HISTORY_CELLS:
            # one spare row of False at the end: template -1 indexes it
            self.dense = np.zeros((h.shape[0] + 1, n_items), bool)
            self.dense[:-1] = h.toarray()
        else:  # (template, item) keys in an open-addressing hash table
            rows = np.repeat(np.arange(h.shape[0], dtype=np.int64), np.diff(h.indptr))
            self.keys = KeySet(rows * n_items + h.indices.astype(np.int64))
        self.csr = h

    def contains(self, template: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Bool like ``items``: item in the history of ``template`` (broadcast against items)."""
        if self.empty:
            return np.zeros(np.shape(items), bool)
        if self.dense is not None:
            return self.dense[template, items]
        t = np.asarray(template, np.int64)
        return self.keys.contains(t * self.n_items + items) & (t >= 0)

    def count(self, template: np.ndarray) -> np.ndarray:
        """Distinct items in the history of each of ``template``."""
        return self.counts[template]

    def rows(self, template: np.ndarray) -> np.ndarray:
        """(len(template), n_items) bool: the histories of ``template``, dense."""
        if self.dense is not None:
            return self.dense[template]
        out = np.zeros((template.size, self.n_items), bool)
        has = np.flatnonzero(template >= 0)
        if has.size:
            sub = self.csr[template[has]]
            out[np.repeat(has, np.diff(sub.indptr)), sub.indices] = True
        return out


class KeySet:
    """A set of non-negative int64 keys asked many at a time: an open-addressing hash table
    (linear probing, at most half full), a probe or two per question where a binary search
    over the sorted keys takes ~log2(n) dependent reads."""

    _MIX = np.uint64(0x9E3779B97F4A7C15)

    def __init__(self, keys: np.ndarray) -> None:
        keys = np.unique(np.asarray(keys, np.int64))
        self.bits = max(10, int(np.ceil(np.log2(max(2 * keys.size, 1)))))
        self.mask = np.int64((1 << self.bits) - 1)
        self.table = np.full(1 << self.bits, -1, np.int64)
        pos, pending = self._slot(keys), keys
        while pending.size:  # each pass seats one key per free slot; the rest probe on
            free = np.flatnonzero(self.table[pos] < 0)
            _, first = np.unique(pos[free], return_index=True)
            won = free[first]
            self.table[pos[won]] = pending[won]
            left = np.ones(pending.size, bool)
            left[won] = False
            pending, pos = pending[left], (pos[left] + 1) & self.mask

    def _slot(self, keys: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            h = keys.astype(np.uint64) * self._MIX
        return (h >> np.uint64(64 - self.bits)).astype(np.int64)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Bool like ``keys``: each key in the set (negative keys never are)."""
        keys = np.asarray(keys, np.int64)
        flat = keys.ravel()
        out = np.zeros(flat.size, bool)
        ask = np.flatnonzero(flat >= 0)
        pos = self._slot(flat[ask])
        while ask.size:
            seen = self.table[pos]
            hit = seen == flat[ask]
            out[ask[hit]] = True
            go = ~hit & (seen >= 0)  # an empty slot ends the probe
            ask, pos = ask[go], (pos[go] + 1) & self.mask
        return out.reshape(keys.shape)


class ItemMemory:
    """What each of ``n`` users (rows of ``personas``) consumed: its real history and its clicks
    in the simulation (with their day).

    ``item``, ``day`` (the ring of the last :data:`CAPACITY` clicks, -1 where empty), ``next``
    (clicks so far) and ``template`` (whose real history counts) are public state: the
    retention environment resets rows of them when lives restart."""

    def __init__(self, personas: Personas, n_items: int, lasting: float) -> None:
        n = len(personas)
        self.n_items, self.lasting = n_items, np.float32(lasting)
        self.item = np.full((n, CAPACITY), -1, np.int32)
        self.day = np.zeros((n, CAPACITY), np.float32)
        self.next = np.zeros(n, np.int64)
        self.template = personas.template
        h = personas.history
        self.history = HistoryIndex(None if lasting == 0.0 else h, n_items)

    def in_history(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(n, k) bool: ``items`` (n, k) in the real history of users ``rows``."""
        return self.history.contains(self.template[rows][:, None], items)

    def clicked_since(self, rows: np.ndarray, items: np.ndarray, day: np.ndarray) -> np.ndarray:
        """(n,) days since users ``rows`` last clicked ``items`` (n,) in the simulation; inf
        where they have not (or it left the ring)."""
        hit = self.item[rows] == items[:, None]
        last = np.where(hit, self.day[rows], -np.inf).max(1)
        return (day - last).astype(np.float32)

    def slate(self, rows: np.ndarray, slates: np.ndarray, day: np.ndarray) -> SlateMemory:
        """:meth:`clicked_since` for every position of ``slates`` (n, k) at once, kept in step
        as the users click along the slate (:meth:`SlateMemory.clicked`)."""
        return SlateMemory(self, rows, slates, day)

    def remember(self, rows: np.ndarray, items: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Users ``rows`` clicked ``items`` on ``day``; returns the items that left their rings
        to make room (-1 where none did)."""
        slot = self.next[rows] % CAPACITY
        evicted = self.item[rows, slot]
        self.item[rows, slot] = items
        self.day[rows, slot] = day
        self.next[rows] += 1
        return evicted


class SlateMemory:
    """Days since each user last clicked each item of its slate (inf: not in its ring), for
    all positions at once: one pass over the rings instead of one per position. The same
    numbers as asking :meth:`ItemMemory.clicked_since` position by position: a click along the
    slate sets later copies of the item to 0 days, and an item pushed out of a full ring is
    looked up again where it comes later in the slate."""

    def __init__(self, memory: ItemMemory, rows: np.ndarray, slates: np.ndarray, day: np.ndarray):
        self.memory, self.rows, self.slates, self.day = memory, rows, slates, day
        n, k = slates.shape
        self.since = np.full((n, k), np.inf, np.float32)
        width = int(min(CAPACITY, memory.next[rows].max())) if rows.size else 0
        if width == 0:
            return
        ring = memory.item[rows, :width]  # slots fill in order: the rest are empty
        hit = ring[:, None, :] == slates[:, :, None]  # (n, k, width)
        r, c = np.nonzero(hit.any(-1))
        if r.size:
            last = np.where(hit[r, c], memory.day[rows[r], :width], -np.inf).max(1)
            self.since[r, c] = day[r] - last

    def clicked(self, p: int, hit: np.ndarray) -> None:
        """Users ``hit`` (indices into the slate rows) clicked their item ``p``."""
        m, rows, slates = self.memory, self.rows[hit], self.slates[hit]
        evicted = m.remember(rows, slates[:, p], self.day[hit])
        later = slates[:, p + 1 :]
        # Later in the slate, the item just clicked and the one that left a full ring to make
        # room for it read differently now: look them up again (rare: the ring holds 64).
        moved = (later == slates[:, p, None]) | (later == evicted[:, None])
        if moved.any():
            r, c = np.nonzero(moved)
            self.since[hit[r], p + 1 + c] = m.clicked_since(rows[r], later[r, c], self.day[hit[r]])

    def at(self, p: int) -> np.ndarray:
        """(n,) days since each user last clicked its item ``p`` (inf: not in its ring)."""
        return self.since[:, p]
