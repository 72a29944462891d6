"""What each user heard of from its friends: a few items per user, each with a strength that
fades over days.

A user keeps at most ``memory`` items (``[social] memory``). Hearing of an item adds the
message's strength (``post_strength`` for a post read, ``chat_strength`` for a chat) to what is
left of it, capped at 1; the strength then fades by a factor e every ``fade_days`` days. A new
item takes an empty slot, else the slot of the weakest item if the new one is stronger (ties:
the lower slot). Consuming an item (watching it) ends its awareness: there is nothing left to
look for. Memory: ``users x memory`` slots, linear in users.

What awareness does (docs/social.md): it raises the chance of visiting the recommender (the
round choice), of searching for the item, and the item's click logit (``aware_logit``); and a
user who is away may be pulled back by it (``pull``).

Updates are applied in a canonical order (:func:`hear`'s input is sorted by receiver, item,
sender and kind), so the result does not depend on which shard sent a message first.
"""

from __future__ import annotations

import numpy as np

_F32 = np.float32


class Awareness:
    """The heard-of items of ``n`` users (rows), ``memory`` slots each."""

    def __init__(self, n: int, memory: int, fade_days: float) -> None:
        self.item = np.full((n, memory), -1, np.int64)
        self.strength = np.zeros((n, memory), _F32)  # at ``since``
        self.since = np.zeros((n, memory), np.int32)  # the round the strength was set
        self.first_from = np.full((n, memory), -1, np.int64)  # who told the user first
        self.fade = float(fade_days)
        self.today = 0
        """The round it is (what :meth:`of` is asked on by the click model)."""

    def now(self, rows: np.ndarray, day: int) -> np.ndarray:
        """(len(rows), memory) strengths on round ``day`` (0 in empty slots)."""
        dt = np.maximum(day - self.since[rows], 0).astype(_F32)
        s = self.strength[rows] * np.exp(-dt / _F32(self.fade))
        return np.where(self.item[rows] >= 0, s, _F32(0.0))

    def strongest(self, rows: np.ndarray, day: int) -> tuple[np.ndarray, np.ndarray]:
        """Per row, the item heard of most strongly on ``day`` and its strength (-1, 0 where
        none; ties: the lower slot)."""
        s = self.now(rows, day)
        j = np.argmax(s, axis=1)
        at = np.arange(rows.size)
        best = s[at, j]
        return np.where(best > 0, self.item[rows][at, j], -1), best

    def of(self, rows: np.ndarray, items: np.ndarray, day: int) -> np.ndarray:
        """(len(rows), k) strength of ``items`` (len(rows), k) for each row on ``day``."""
        s = self.now(rows, day)  # (n, M)
        hit = self.item[rows][:, None, :] == items[:, :, None]  # (n, k, M)
        return np.where(hit, s[:, None, :], _F32(0.0)).max(axis=2)

    def heard_from(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Who first told each row of its item (``items`` (len(rows),)); -1 where not heard."""
        hit = self.item[rows] == items[:, None]
        j = np.argmax(hit, axis=1)
        who = self.first_from[rows, j]
        return np.where(hit.any(1), who, -1)

    def forget(self, rows: np.ndarray, items: np.ndarray) -> None:
        """Rows consumed ``items`` (one per row): that awareness ends."""
        if rows.size == 0:
            return
        hit = self.item[rows] == items[:, None]
        r, j = np.nonzero(hit)
        self.item[rows[r], j] = -1
        self.strength[rows[r], j] = 0.0
        self.first_from[rows[r], j] = -1

    def hear(
        self,
        rows: np.ndarray,
        items: np.ndarray,
        strength: np.ndarray,
        senders: np.ndarray,
        day: int,
    ) -> None:
        """Messages heard on round ``day``: row ``rows[i]`` heard of ``items[i]`` with
        ``strength[i]`` from ``senders[i]``. The arrays must be in canonical order (sorted by
        row, item, then sender): strengths of one (row, item) add up in that order and the
        first sender is remembered."""
        if rows.size == 0:
            return
        # one update per (row, item): strengths summed in order, the first sender kept
        new = np.ones(rows.size, bool)
        new[1:] = (rows[1:] != rows[:-1]) | (items[1:] != items[:-1])
        start = np.flatnonzero(new)
        total = np.add.reduceat(strength.astype(_F32), start)
        r, it, frm = rows[start], items[start], senders[start]
        cur = self.now(r, day)  # (P, M)
        slots = self.item[r]
        hit = slots == it[:, None]
        known = hit.any(1)
        # items already held: what is left plus what was heard, capped at 1
        if known.any():
            k = np.flatnonzero(known)
            j = np.argmax(hit[k], axis=1)
            left = cur[k, j]
            self.strength[r[k], j] = np.minimum(left + total[k], _F32(1.0))
            self.since[r[k], j] = day
        # new items: an empty slot, else the weakest if weaker than the new strength; one new
        # item per row at a time (the j-th new item of every row together)
        fresh = np.flatnonzero(~known)
        if fresh.size == 0:
            return
        fr = r[fresh]
        rank = np.zeros(fresh.size, np.int64)
        if fresh.size > 1:
            same = np.zeros(fresh.size, bool)
            same[1:] = fr[1:] == fr[:-1]
            grp = np.cumsum(~same) - 1
            first_of = np.flatnonzero(~same)
            rank = np.arange(fresh.size) - first_of[grp]
        for j in range(int(rank.max()) + 1):
            sel = fresh[rank == j]
            rr = r[sel]
            now = self.now(rr, day)
            empty = self.item[rr] < 0
            weakest = np.where(empty, _F32(-1.0), now)  # an empty slot first
            slot = np.argmin(weakest, axis=1)
            at = np.arange(sel.size)
            take = empty[at, slot] | (now[at, slot] < np.minimum(total[sel], _F32(1.0)))
            rr, slot, sel = rr[take], slot[take], sel[take]
            self.item[rr, slot] = it[sel]
            self.strength[rr, slot] = np.minimum(total[sel], _F32(1.0))
            self.since[rr, slot] = day
            self.first_from[rr, slot] = frm[sel]
