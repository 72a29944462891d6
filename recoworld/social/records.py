"""The social layer's records as Arrow batches (``social`` and ``searches`` tables; the
schemas and their descriptions are in ``recoworld/io/schema.py``; files are written by
``recoworld/io/runs.py``'s part writers)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from recoworld.io.schema import SEARCHES, SOCIAL, with_metadata
from recoworld.social.search import QUERY_KINDS
from recoworld.social.talk import KINDS

SOCIAL_SCHEMA = with_metadata(SOCIAL, "social")
SEARCHES_SCHEMA = with_metadata(SEARCHES, "searches")
_KINDS = pa.array(list(KINDS), pa.string())
_QUERY_KINDS = pa.array(list(QUERY_KINDS), pa.string())


def _items(item_ids: np.ndarray, items: np.ndarray) -> pa.Array:
    """(n, m) catalog rows, -1 padded, as lists of item ids."""
    keep = items >= 0
    flat = item_ids[items[keep]].tolist()
    offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.string()))


def social_batch(
    *,
    day: int,
    senders: np.ndarray,
    receivers: np.ndarray,
    audience: np.ndarray,
    kind: np.ndarray,
    items: np.ndarray,
    treated: np.ndarray,
    texts: list[str],
    item_ids: np.ndarray,
) -> pa.RecordBatch:
    """One round's messages: ``senders`` and ``receivers`` are user ids (-1: a post)."""
    n = senders.size
    arrays = [
        pa.array(np.full(n, day, np.int32)),
        pa.array(senders.astype(np.int64)),
        pa.array(receivers.astype(np.int64), mask=receivers < 0),
        pa.array(audience.astype(np.int32)),
        pa.DictionaryArray.from_arrays(pa.array(kind.astype(np.int32)), _KINDS),
        _items(item_ids, items),
        pa.array(np.where(items >= 0, treated[np.maximum(items, 0)], False).any(axis=1)),
        pa.array(texts, pa.string()),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=SOCIAL_SCHEMA)


def searches_batch(
    *,
    day: int,
    users: np.ndarray,
    session: int | np.ndarray,
    turn: int | np.ndarray,
    kind: np.ndarray,
    queries: list[str],
    target: np.ndarray,
    results: np.ndarray,
    shown: np.ndarray,
    item_ids: np.ndarray,
    item_dict: pa.Array | None = None,
) -> pa.RecordBatch:
    """Searches of one round: ``users`` are user ids; ``session`` and ``turn`` the page each
    topped (one for all, or one per search); ``target`` catalog rows (-1: none);
    ``shown`` (n, k) the result items on each page (-1 padded). ``item_dict``: ``item_ids``
    as an Arrow array, when the caller keeps one."""
    n = users.size
    found = (shown == target[:, None]).any(axis=1) & (target >= 0)
    arrays = [
        pa.array(np.full(n, day, np.int32)),
        pa.array(users.astype(np.int64)),
        pa.array(np.broadcast_to(np.asarray(session, np.int16), n)),
        pa.array(np.broadcast_to(np.asarray(turn, np.int16), n)),
        pa.DictionaryArray.from_arrays(pa.array(kind.astype(np.int32)), _QUERY_KINDS),
        pa.array(queries, pa.string()),
        pa.DictionaryArray.from_arrays(
            pa.array(np.maximum(target, 0).astype(np.int32), mask=target < 0),
            item_dict if item_dict is not None else pa.array(item_ids.tolist(), pa.string()),
        ),
        pa.array(results.astype(np.int16)),
        pa.array(found, mask=target < 0),
        _items(item_ids, shown),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=SEARCHES_SCHEMA)
