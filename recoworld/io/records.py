"""Turn the core loop's records into Arrow record batches (vectorised; no per-row Python)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from recoworld.io.schema import EVENTS, LLM_CALLS, SESSIONS, USER_METRICS, with_metadata
from recoworld.records import ACTIONS, WATCH, SessionRecord, TurnRecord, UserMetrics

EVENTS_SCHEMA = with_metadata(EVENTS, "events")
SESSIONS_SCHEMA = with_metadata(SESSIONS, "sessions")
USER_METRICS_SCHEMA = with_metadata(USER_METRICS, "user_metrics")
LLM_CALLS_SCHEMA = with_metadata(LLM_CALLS, "llm_calls")


@dataclass(frozen=True, eq=False)
class RecordEncoder:
    """Encodes one batch of users: ``users`` are population rows of batch rows; ``uids`` the
    population's user ids by row; ``replicate`` the replicate the population belongs to."""

    users: np.ndarray
    uids: np.ndarray
    replicate: int
    segment_codes: np.ndarray  # (population,) int32 into segment_names
    segment_names: pa.Array
    tags: tuple[str, ...]
    creator_mask: np.ndarray  # (n_items,) bool: the study creator's items
    item_dict: pa.Array
    creator_dict: pa.Array
    action_dict: pa.Array
    instruction_dict: pa.Array
    mindset: bool = True
    """Write the mindset columns of events (false: nulls, the lean layout)."""

    @classmethod
    def build(
        cls,
        users: np.ndarray,
        uids: np.ndarray,
        segments: np.ndarray,
        *,
        replicate: int = 0,
        item_ids: np.ndarray,
        creators: np.ndarray,
        tags: tuple[str, ...],
        creator_mask: np.ndarray,
        instruction_words: list[str],
        mindset: bool = True,
    ) -> RecordEncoder:
        """``instruction_words``: the sentence of each coded instruction
        (:func:`recoworld.users.words.instruction_dictionary`); ``mindset``: write the
        mindset columns of events (``[output] mindset``; false leaves them null)."""
        names, codes = np.unique(segments.astype(str), return_inverse=True)
        return cls(
            users=users,
            uids=uids,
            replicate=replicate,
            segment_codes=codes.astype(np.int32),
            segment_names=pa.array(names.tolist(), pa.string()),
            tags=tuple(tags),
            creator_mask=creator_mask,
            item_dict=pa.array(item_ids.tolist(), pa.string()),
            creator_dict=pa.array(creators.tolist(), pa.string()),
            action_dict=pa.array(list(ACTIONS), pa.string()),
            instruction_dict=pa.array(instruction_words, pa.string()),
            mindset=mindset,
        )

    def with_users(self, users: np.ndarray) -> RecordEncoder:
        return replace(self, users=users)

    def _dict(
        self, codes: np.ndarray, dictionary: pa.Array, mask: np.ndarray | None = None
    ) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(
            pa.array(codes.astype(np.int32), mask=mask), dictionary
        )

    def events(self, r: TurnRecord) -> pa.RecordBatch:
        n, k = r.slates.shape
        row = self.users[r.rows]
        uid = self.uids[row]
        rep = lambda a: np.repeat(a, k)  # noqa: E731
        items = r.slates.ravel()
        ins_code = np.full(n, -1, np.int64)
        ins = r.instructions
        if ins.texts is None:
            ins_code[ins.rows] = ins.codes(len(self.tags))
            ins_dict = self.instruction_dict
        else:  # free text (LLM brains): a dictionary of this batch's texts
            ins_code[ins.rows] = np.arange(len(ins.texts))
            ins_dict = pa.array(list(ins.texts), pa.string())
        ins_at = rep(ins_code)
        fb = r.feedback
        action = fb.action.ravel()
        rating = fb.rating.ravel()
        arrays = [
            self._dict(rep(self.segment_codes[row]), self.segment_names),
            pa.array(rep(uid)),
            pa.array(np.full(n * k, r.session, np.int16)),
            pa.array(np.full(n * k, r.turn, np.int16)),
            pa.array(np.tile(np.arange(k, dtype=np.int16), n)),
            pa.array(rep(r.day).astype(np.float32)),
            self._dict(items, self.item_dict),
            self._dict(items, self.creator_dict),
            pa.array(self.creator_mask[items]),
            self._dict(action, self.action_dict),
            pa.array(fb.clicked.ravel()),  # the summary's click: any action but skip
            pa.array(action >= WATCH),
            pa.array(fb.watch.ravel()),
            pa.array(rating, mask=np.isnan(rating)),
            pa.array(rep(r.left)),
            self._dict(np.maximum(ins_at, 0), ins_dict, mask=ins_at < 0),
            *(
                pa.array(fb.mind[j].ravel()) if self.mindset else pa.nulls(n * k, pa.float32())
                for j in range(4)
            ),
            pa.array(
                fb.feelings.ravel() if fb.feelings is not None else pa.nulls(n * k, pa.string()),
                pa.string(),
            ),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=EVENTS_SCHEMA)

    def sessions(self, s: SessionRecord) -> pa.RecordBatch:
        row = self.users[s.rows]
        uid = self.uids[row]
        top = [self.tags[j] if j >= 0 else None for j in s.top_tag.tolist()]
        gap = np.where(np.isfinite(s.gap_days), s.gap_days, np.nan).astype(np.float32)
        arrays = [
            self._dict(self.segment_codes[row], self.segment_names),
            pa.array(uid),
            pa.array(np.full(uid.size, s.session, np.int16)),
            pa.array(s.day.astype(np.float32)),
            pa.array(s.turns.astype(np.int16)),
            pa.array(s.left),
            pa.array(s.clicks.astype(np.int32)),
            pa.array(s.watched.astype(np.int32)),
            pa.array(s.watch_time.astype(np.float32)),
            pa.array(s.instructions.astype(np.int32)),
            pa.array(s.satisfaction_end.astype(np.float32)),
            pa.array(top, pa.string()),
            pa.array(s.returned),
            pa.array(gap, mask=np.isnan(gap)),
            pa.array(s.summaries, pa.string()),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=SESSIONS_SCHEMA)

    def user_metrics(self, m: UserMetrics) -> pa.RecordBatch:
        names = np.asarray(self.segment_names.to_pylist(), dtype=object)
        arrays = [
            pa.array(names[self.segment_codes[self.users]].tolist(), pa.string()),
            pa.array(self.uids[self.users]),
            pa.array(np.full(self.users.size, self.replicate, np.int16)),
        ]
        arrays += [pa.array(getattr(m, f).astype(np.float64)) for f in USER_METRICS.names[3:]]
        return pa.RecordBatch.from_arrays(arrays, schema=USER_METRICS_SCHEMA)
