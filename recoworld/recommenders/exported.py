"""Exported recommendations replayed: ``[recommender] kind = "scores"`` and ``kind = "slates"``.

A team exports what its production model would show and replays it to the simulated users.

**scores** — Parquet with columns ``user``, ``item``, ``score`` (others are ignored): the
model's score of an item for a user, higher is better. Each turn a user gets its best-scored
items that it has neither been shown in this run (by the replay, the fallback or a creator
injection: whatever :meth:`observe` reports) nor has in its real history, best first (ties:
catalogue order). A user with fewer such items left than ``slate_size`` gets no slate from
the file at all (a row of ``NO_SLATE``): the declared fallback serves that whole slate, and it
is counted in ``user_metrics.fallback_slates``. Slates are never half file, half fallback.

**slates** — Parquet with columns ``user``, ``session``, ``turn``, ``position``, ``item``: the
exact slate a user is shown in a session and turn (all 0-based, as in the run's ``events``).
Every slate in the file must hold positions ``0 .. slate_size - 1``, once each. A (user,
session, turn) the file does not have is served by the fallback. The slate is replayed as it
is, whatever the user saw before (``repeats = "forbid"`` makes the contract check refuse
repeats).

Both: ``user`` holds the dataset's user id a persona was drawn from (``user_key =
"source_user"``, the default: a model's output for real users) or the simulated user id
(``user_key = "uid"``), as integers or strings; users the file does not have are served by
the fallback (or stop the run when ``fallback = "none"``). ``item`` holds the world's item ids
(``Audience.catalog.item_ids``; integers are read as their decimal text). ``path`` is a file or
a folder of ``*.parquet`` files (read recursively, in name order, hidden and ``_`` files
skipped), relative to the working directory of the process that runs the shard.

Reading is lazy and per batch: a recommender is bound to one batch of users, and reads only
the rows of those users (row groups whose ``user`` statistics exclude every one of them are
skipped; export sorted by user to make that count). Every problem with a file is a one-line
:class:`~recoworld.errors.DataError` naming the file, the column, the row (counting from 0) and
what was expected; it stops the run (nothing a finished shard wrote is lost: ``--resume``).
A changed file under the same path is a different study with the same config: keep exports
immutable (a new name per export), as ``docs/recommenders.md`` says.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recoworld.config import RecommenderConfig, StudyConfig
from recoworld.errors import DataError
from recoworld.recommenders.base import Audience, SyncRecommender
from recoworld.recommenders.guard import NO_SLATE
from recoworld.records import SlateFeedback

SCORES_COLUMNS = ("user", "item", "score")
SLATES_COLUMNS = ("user", "session", "turn", "position", "item")

_KIND = {"user": "key", "item": "id", "score": "number"} | {
    c: "count" for c in ("session", "turn", "position")
}
_EXPECT = {
    "key": "user ids (integers or strings)",
    "id": "item ids (strings, or integers read as their decimal text)",
    "number": "a number per row (float or integer)",
    "count": "an integer >= 0 per row",
}
_LIMIT = 1 << 20  # sessions and turns of a slates file (a study has a handful)


# --- the recommenders ---------------------------------------------------------------------------


class ScoresReplay(SyncRecommender):
    """``kind = "scores"``: each turn, the user's best-scored items it has not seen."""

    def __init__(self, rec: RecommenderConfig, where: str) -> None:
        self.export = _Export(rec.path, "scores", where)
        self.user_key = rec.user_key

    def bind(self, audience: Audience) -> None:
        keys = _Keys(audience, self.user_key)
        rows = self.export.read(SCORES_COLUMNS, keys)
        item = rows.items(audience.catalog.item_ids)
        score = rows.numbers("score")
        _no_duplicates(rows, (rows.key, item), "item", "one user scored twice for one item")
        # each user's items, best first; ties in catalogue order (whatever the files' order)
        order = np.lexsort((item, -score, rows.key))
        self.items = item[order]
        bounds = np.searchsorted(rows.key[order], np.arange(len(keys.values) + 1))
        of = keys.of_user
        self.start = np.where(of >= 0, bounds[:-1][of], 0)
        self.length = np.where(of >= 0, np.diff(bounds)[of], 0)
        self.pos = np.zeros(of.size, np.int64)  # leading entries of its list it may not see
        self.shown = audience.personas.history_of(audience.catalog.n_items).toarray()

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        out = np.full((idx.size, k), NO_SLATE, np.int64)
        todo = np.flatnonzero(self.length[idx] - self.pos[idx] >= k)
        width = 2 * k
        while todo.size:  # a window of each list; widened for users it does not serve
            users = idx[todo]
            length = self.length[users][:, None]
            offs = self.pos[users][:, None] + np.arange(width)
            inside = offs < length
            at = self.start[users][:, None] + np.minimum(offs, length - 1)
            items = self.items[at]
            avail = inside & ~self.shown[users[:, None], items]
            count = np.cumsum(avail, axis=1)
            enough = count[:, -1] >= k
            pick = np.flatnonzero(enough)
            if pick.size:
                take = avail[pick] & (count[pick] <= k)
                slates = items[pick][take].reshape(pick.size, k)
                out[todo[pick]] = slates
                self.shown[np.repeat(users[pick], k), slates.ravel()] = True
                # entries before the first one still available are never looked at again
                left = avail[pick] & ~take
                self.pos[users[pick]] += np.where(left.any(1), left.argmax(1), width)
            # a list spent inside the window leaves NO_SLATE: the fallback serves that slate
            todo = todo[~enough & inside[:, -1]]
            width *= 2
        return out

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        # what was really shown: the fallback's slates and injected creator items too
        self.shown[np.repeat(idx, slates.shape[1]), slates.ravel()] = True

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        """A replay cannot follow instructions: the exported scores are what they are."""


class SlatesReplay(SyncRecommender):
    """``kind = "slates"``: the exported slate of each (user, session, turn)."""

    def __init__(self, rec: RecommenderConfig, where: str) -> None:
        self.export = _Export(rec.path, "slates", where)
        self.user_key = rec.user_key

    def bind(self, audience: Audience) -> None:
        keys = _Keys(audience, self.user_key)
        rows = self.export.read(SLATES_COLUMNS, keys)
        session, turn = rows.counts("session", _LIMIT), rows.counts("turn", _LIMIT)
        position = rows.counts("position", _LIMIT)
        item = rows.items(audience.catalog.item_ids)
        _no_duplicates(
            rows, (rows.key, session, turn, position), "position", "two items in one slot"
        )
        code = (rows.key * _LIMIT + session) * _LIMIT + turn  # one per (user, session, turn)
        order = np.lexsort((position, code))
        code, position = code[order], position[order]
        first = np.flatnonzero(np.r_[True, code[1:] != code[:-1]]) if code.size else code
        size = np.diff(np.r_[first, code.size])
        gap = (position[first] != 0) | (position[first + size - 1] != size - 1)
        if gap.any():
            s = int(np.flatnonzero(gap)[0])
            row = int(order[first[s]])
            rows.fail(
                "position",
                row,
                f"the slate of {rows.slate_name(row)} has positions "
                f"{position[first[s] : first[s] + size[s]].tolist()}",
                "positions 0, 1, 2, ... without a gap in every slate (0 = top)",
            )
        self.codes, self.first, self.size = code[first], first, size
        self.items, self.order, self.rows = item[order], order, rows
        self.of_user = keys.of_user
        self.checked = -1  # the slate_size every slate was checked against

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        if k != self.checked:
            self._check_length(k)
        out = np.full((idx.size, k), NO_SLATE, np.int64)
        if session >= _LIMIT or turn >= _LIMIT or self.codes.size == 0:
            return out
        key = self.of_user[idx]
        want = (key * _LIMIT + session) * _LIMIT + turn
        at = np.minimum(np.searchsorted(self.codes, want), self.codes.size - 1)
        hit = np.flatnonzero((key >= 0) & (self.codes[at] == want))
        out[hit] = self.items[self.first[at[hit]][:, None] + np.arange(k)]
        return out

    def _check_length(self, k: int) -> None:
        wrong = np.flatnonzero(self.size != k)
        if wrong.size:
            row = int(self.order[self.first[wrong[0]]])
            self.rows.fail(
                "position",
                row,
                f"the slate of {self.rows.slate_name(row)} has {self.size[wrong[0]]} items "
                f"({wrong.size} of the {self.size.size} slates read for these users have another "
                f"length than {k})",
                f"slates of the study's [simulation] slate_size = {k} items (positions 0..{k - 1})",
            )
        self.checked = k

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        """A replay learns nothing."""

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        """A replay cannot follow instructions: the exported slates are what they are."""


def _no_duplicates(rows: _Rows, columns: tuple[np.ndarray, ...], column: str, what: str) -> None:
    """Fail on the first pair of rows with the same values of ``columns``."""
    if columns[0].size < 2:
        return
    order = np.lexsort(columns[::-1])
    same = np.ones(order.size - 1, bool)
    for c in columns:
        s = c[order]
        same &= s[1:] == s[:-1]
    if same.any():
        j = int(np.flatnonzero(same)[0])
        a, b = sorted((int(order[j]), int(order[j + 1])))
        rows.fail(
            column,
            b,
            f"{what}: rows {int(rows.row[a])} and {int(rows.row[b])} "
            f"({int(same.sum())} such rows among those read for these users)",
            f"one row per ({', '.join(rows.key_columns[:-1])})",
        )


# --- reading the export ------------------------------------------------------------------------


class _Keys:
    """The audience's users as the export names them: ``names`` (n,) the text of each one's
    id ("" = none: a persona drawn from no dataset user matches no row), ``values`` the sorted
    distinct names, ``of_user`` (n,) each user's position in ``values`` (-1: none). Integer
    columns are compared by their decimal text."""

    def __init__(self, audience: Audience, user_key: str) -> None:
        p = audience.personas
        if user_key == "uid":
            names = np.array([str(int(u)) for u in p.uid], dtype=object)
        else:
            names = np.array([str(u) for u in p.source_user], dtype=object)
        self.names, self.user_key = names, user_key
        self.values = pa.array(sorted(set(names.tolist()) - {""}), pa.string())
        index = pc.index_in(pa.array(names.tolist(), pa.string()), value_set=self.values)
        self.of_user = np.asarray(index.fill_null(-1).to_numpy(), np.int64)
        ints = [int(v) for v in self.values.to_pylist() if _canonical_int(v)]
        self.ints = pa.array(sorted(ints), pa.int64())


def _canonical_int(text: str) -> bool:
    digits = text[1:] if text.startswith("-") else text
    return digits.isdigit() and str(int(text)) == text and abs(int(text)) < 1 << 63


@dataclass(frozen=True)
class _Export:
    """The Parquet file or folder at ``path`` that a ``kind`` recommender replays."""

    path: str
    kind: str
    where: str

    def files(self) -> list[Path]:
        p = Path(self.path)
        about = f"the export a {self.kind} recommender replays ({self.where}.path)"
        if p.is_file():
            return [p]
        if not p.exists():
            here = "" if p.is_absolute() else f", relative to the working directory {os.getcwd()}"
            raise DataError(
                p, f"does not exist{here}", expected=f"{about}: a Parquet file or folder"
            )
        found = sorted(
            f
            for f in p.rglob("*.parquet")
            if f.is_file()
            and not any(part.startswith((".", "_")) for part in f.relative_to(p).parts)
        )
        if not found:
            raise DataError(p, "is a folder without .parquet files", expected=about)
        return found

    def read(self, columns: Sequence[str], keys: _Keys) -> _Rows:
        """The rows (of ``columns``) whose ``user`` is one of ``keys``, from every file."""
        parts: list[_Part] = []
        for f in self.files():
            try:
                pf = pq.ParquetFile(f)
            except (pa.ArrowException, OSError) as e:
                raise DataError(
                    f,
                    f"cannot be read as Parquet ({type(e).__name__}: {' '.join(str(e).split())})",
                    expected=f"a Parquet file of {', '.join(columns)} ({self.where}.path)",
                ) from None
            schema = pf.schema_arrow
            for c in columns:
                _check_type(f, schema, c, columns, self.where)
            if part := _user_rows(f, pf, columns, keys):
                parts.append(part)
        return _Rows(self, tuple(columns), parts)


def _text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _base(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _check_type(
    f: Path, schema: pa.Schema, column: str, columns: Sequence[str], where: str
) -> None:
    if column not in schema.names:
        raise DataError(
            f,
            f"has no column {column!r} (columns: {', '.join(schema.names) or 'none'})",
            expected=f"columns {', '.join(columns)} ({where}.path)",
        )
    t = schema.field(column).type
    base, kind = _base(t), _KIND[column]
    ok = {
        "key": pa.types.is_integer(base) or _text(base),
        "id": pa.types.is_integer(base) or _text(base),
        "number": pa.types.is_integer(base) or pa.types.is_floating(base),
        "count": pa.types.is_integer(base),
    }[kind]
    if not ok:
        got = f"lists ({t})" if pa.types.is_nested(base) else f"values of type {t}"
        raise DataError(
            f, f"column {column!r} holds {got}", expected=_EXPECT[kind] + " (one value per row)"
        )


@dataclass(frozen=True)
class _Part:
    """The rows one file holds for the audience."""

    file: Path
    table: pa.Table
    row: np.ndarray  # (rows,) row numbers in the file
    key: np.ndarray  # (rows,) position of the row's user in _Keys.values


def _user_rows(f: Path, pf: pq.ParquetFile, columns: Sequence[str], keys: _Keys) -> _Part | None:
    """The rows of ``f`` whose user is one of ``keys``, with their row numbers in the file.
    Row groups whose min/max statistics of ``user`` exclude every key are not read."""
    numeric = pa.types.is_integer(_base(pf.schema_arrow.field("user").type))
    wanted = keys.ints if numeric else keys.values
    if numeric and len(keys.values) and not len(wanted):
        example = keys.values[0].as_py()
        raise DataError(
            f,
            f"column 'user' holds integers, and no user of this batch has an integer id "
            f"(user_key = {keys.user_key!r} gives ids such as {example!r})",
            expected='the ids of user_key ("source_user": the dataset\'s user ids, as text if '
            'they are text; "uid": the simulated user ids)',
        )
    if len(wanted) == 0:
        return None
    ui = pf.schema_arrow.get_field_index("user")
    tables, rows, key, offset = [], [], [], 0
    meta = pf.metadata
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if _excluded(meta.row_group(g), ui, wanted):
            offset += n
            continue
        users = pf.read_row_group(g, columns=["user"]).column("user")
        users = users.cast(_base(users.type)).cast(pa.string())
        index = pc.index_in(users, value_set=keys.values).fill_null(-1).to_numpy()
        hit = np.flatnonzero(index >= 0)
        if hit.size:
            tables.append(pf.read_row_group(g, columns=list(columns)).take(pa.array(hit)))
            rows.append(hit + offset)
            key.append(index[hit].astype(np.int64))
        offset += n
    if not tables:
        return None
    table = pa.concat_tables(tables)
    return _Part(file=f, table=table, row=np.concatenate(rows), key=np.concatenate(key))


def _excluded(rg: pq.RowGroupMetaData, ui: int, wanted: pa.Array) -> bool:
    """True when the row group's statistics of the user column rule out every wanted key."""
    try:
        st = rg.column(ui).statistics
        if st is None or not st.has_min_max:
            return False
        mn, mx = st.min, st.max
        if isinstance(mn, bytes):
            mn, mx = mn.decode(), mx.decode()
        inside = pc.and_(pc.greater_equal(wanted, mn), pc.less_equal(wanted, mx))
        return not pc.any(inside).as_py()
    except (pa.ArrowException, TypeError, ValueError, UnicodeDecodeError):
        return False  # statistics we cannot read prune nothing


class _Rows:
    """The rows read for one audience, with the file and row each came from (for errors)."""

    def __init__(self, export: _Export, key_columns: tuple[str, ...], parts: list[_Part]) -> None:
        self.export, self.key_columns, self.parts = export, key_columns, parts
        sizes = [p.table.num_rows for p in parts]
        self.n = sum(sizes)
        self.part = np.repeat(np.arange(len(parts)), sizes)
        self.offset = np.r_[0, np.cumsum(sizes)].astype(np.int64)
        self.row = np.concatenate([p.row for p in parts]) if parts else np.zeros(0, np.int64)
        self.key = np.concatenate([p.key for p in parts]) if parts else np.zeros(0, np.int64)

    def column(self, name: str) -> pa.ChunkedArray:
        chunks: list[pa.Array] = []
        for p in self.parts:
            c = p.table.column(name)
            chunks.extend(c.cast(_base(c.type)).chunks)
        return pa.chunked_array(chunks) if chunks else pa.chunked_array([], pa.int64())

    def _nulls(self, name: str, values: pa.ChunkedArray) -> None:
        if values.null_count:
            j = int(np.flatnonzero(pc.is_null(values).to_numpy(zero_copy_only=False))[0])
            self.fail(name, j, "is null", _EXPECT[_KIND[name]])

    def items(self, item_ids: np.ndarray) -> np.ndarray:
        """Each row's catalogue row; an id the world does not have fails on the first."""
        values = self.column("item")
        self._nulls("item", values)
        if not self.n:
            return np.zeros(0, np.int64)
        values = values.cast(pa.string())
        catalog = pa.array([str(i) for i in item_ids], pa.string())
        index = pc.index_in(values, value_set=catalog)
        if index.null_count:
            unknown = pc.is_null(index).to_numpy(zero_copy_only=False)
            j = int(np.flatnonzero(unknown)[0])
            self.fail(
                "item",
                j,
                f"item {values[j].as_py()!r} is not an item of the world ({int(unknown.sum())} "
                f"of the {self.n} rows read for these users have an unknown item)",
                f"the world's item ids (e.g. {', '.join(repr(str(i)) for i in item_ids[:3])})",
            )
        return np.asarray(index.to_numpy(), np.int64)

    def numbers(self, name: str) -> np.ndarray:
        values = self.column(name)
        self._nulls(name, values)
        a = np.asarray(values.to_numpy(), np.float64) if self.n else np.zeros(0)
        bad = ~np.isfinite(a)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            self.fail(
                name,
                j,
                f"is {float(a[j])!r} ({int(bad.sum())} of the {self.n} rows read are not finite)",
                "a finite number",
            )
        return a

    def counts(self, name: str, limit: int) -> np.ndarray:
        values = self.column(name)
        self._nulls(name, values)
        a = np.asarray(values.to_numpy(), np.int64) if self.n else np.zeros(0, np.int64)
        bad = (a < 0) | (a >= limit)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            self.fail(name, j, f"is {int(a[j])}", f"an integer in 0..{limit - 1} (0-based)")
        return a

    def slate_name(self, j: int) -> str:
        t, r = self._at(j)
        user = t.column("user")[r].as_py()
        return f"user {user!r}, session {t.column('session')[r]}, turn {t.column('turn')[r]}"

    def _at(self, j: int) -> tuple[pa.Table, int]:
        p = int(self.part[j])
        return self.parts[p].table, j - int(self.offset[p])

    def fail(self, column: str, j: int, problem: str, expected: str) -> None:
        """Raise the DataError of row ``j`` (of the rows read) in ``column``."""
        f = self.parts[int(self.part[j])].file if self.parts else Path(self.export.path)
        raise DataError(
            f,
            f"column {column!r}, row {int(self.row[j])} (counting from 0): {problem}",
            expected=f"{expected} ({self.export.where}.path, kind = {self.export.kind!r})",
        )


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex of an export: the file's bytes, or for a folder the relative names and bytes
    of the Parquet files a replay reads, in name order. Same digest, same replay."""
    p = Path(path)
    h = hashlib.sha256()
    for f in _Export(str(p), "export", "recommender").files():
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode() + b"\0")
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def pin_exports(cfg: StudyConfig) -> StudyConfig:
    """``cfg`` with the SHA-256 of every export a scores or slates recommender replays filled
    in (:func:`file_sha256`), so that the study's identity (what ``--resume`` and sweeps
    compare) covers the file's content, not only its path. A digest the study already pins
    must match: a DataError names the file and both digests otherwise."""

    def pinned(rec: RecommenderConfig, where: str) -> RecommenderConfig:
        if rec.kind not in ("scores", "slates"):
            return rec
        _Export(rec.path, rec.kind, where).files()  # a missing export: its one-line error
        digest = file_sha256(rec.path)
        if rec.sha256 and rec.sha256 != digest:
            raise DataError(
                rec.path,
                f"has SHA-256 {digest}, the study pins {rec.sha256} ({where}.sha256)",
                expected="the export the study was made with (or remove the pin)",
            )
        return msgspec.structs.replace(rec, sha256=digest)

    arms = [
        msgspec.structs.replace(a, recommender=pinned(a.recommender, f"arms[{k}].recommender"))
        if a.recommender is not None
        else a
        for k, a in enumerate(cfg.arms)
    ]
    return msgspec.structs.replace(
        cfg, recommender=pinned(cfg.recommender, "recommender"), arms=arms
    )
