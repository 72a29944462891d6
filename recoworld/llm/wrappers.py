"""Wrappers around a :class:`~recoworld.llm.base.LanguageModel`: retry, recording, replay.

They compose: ``RecordingModel(RetryModel(engine), log)`` records the final outcome of every
request; ``RetryModel(RecordingModel(engine, log))`` would record every attempt.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import pyarrow as pa

from recoworld.errors import LLMError
from recoworld.llm.base import LanguageModel
from recoworld.llm.types import CallKey, LLMRequest, LLMResult
from recoworld.rng import stable_hash64

if TYPE_CHECKING:
    import polars as pl


def request_seed(
    root: int, uid: int, session: int, turn: int, purpose: str, attempt: int = 0
) -> int:
    """The seed of one request: a stable hash of the run's root seed and what the request is
    for. Not of the arm: the same user at the same turn samples with the same seed in every arm
    (common random numbers). 31 bits: every backend accepts it."""
    return stable_hash64("llm", root, uid, session, turn, purpose, attempt) & 0x7FFFFFFF


class RetryModel:
    """Sends again the requests whose result is a retryable error, up to ``retries`` times, after
    ``backoff_s * 2**attempt`` seconds (x a jitter in [0.5, 1.5) drawn from ``seed``)."""

    def __init__(
        self, inner: LanguageModel, *, retries: int = 3, backoff_s: float = 0.5, seed: int = 0
    ) -> None:
        self.inner, self.retries, self.backoff_s = inner, retries, backoff_s
        self.name = inner.name
        self._rng = random.Random(seed)
        self.retried = 0

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        results = list(await self.inner.generate(requests))
        for attempt in range(self.retries):
            again = [i for i, r in enumerate(results) if not r.ok and r.retryable]
            if not again:
                break
            self.retried += len(again)
            await asyncio.sleep(self.backoff_s * 2**attempt * (0.5 + self._rng.random()))
            fresh = await self.inner.generate([requests[i] for i in again])
            for i, r in zip(again, fresh):
                results[i] = r
        return results

    async def close(self) -> None:
        await self.inner.close()


class CallRow(msgspec.Struct, kw_only=True):
    """One ``llm_calls`` row (the columns of :data:`recoworld.io.records.LLM_CALLS_SCHEMA`, in
    order). Identity comes from the request's :class:`CallKey` fields; ``call_id`` is derived
    from them once, as a column (replay looks calls up by it)."""

    call_id: str
    user: int
    session: int
    turn: int
    purpose: str
    attempt: int
    model: str = ""
    replica: int = -1
    seed: int = 0
    prompt_hash: str = ""
    prompt: str = ""
    schema: str = ""
    completion: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cached_tokens: int = -1
    latency_s: float = 0.0
    finish_reason: str = "none"
    parse_status: str = "unchecked"
    error: str = ""
    order: tuple = ()
    """The sort key within a write (not a column): the key's order, or ("", -1, ...) + id."""

    @classmethod
    def keyed(cls, key: CallKey | None, call_id: str, purpose: str, **cols: Any) -> CallRow:
        """A row for the call ``key`` (None: an ad-hoc request, -1 for user, session, turn)."""
        if key is None:
            return cls(
                call_id=call_id,
                user=-1,
                session=-1,
                turn=-1,
                purpose=purpose,
                attempt=0,
                order=("", -1, -1, -1, purpose, 0, call_id),
                **cols,
            )
        return cls(
            call_id=key.call_id,
            user=key.user,
            session=key.session,
            turn=key.turn,
            purpose=key.purpose,
            attempt=key.attempt,
            order=(*key.order(), ""),
            **cols,
        )


class FailureBudget:
    """How many questions to the model may end without a usable answer (a parametric fallback
    stands in) before the run stops: ``max_rate`` of them, judged from ``min_asks`` questions
    on (and by :meth:`check` at the end). The error names ``endpoint`` and the first failures."""

    def __init__(self, max_rate: float, endpoint: str, min_asks: int = 20) -> None:
        self.max_rate, self.endpoint, self.min_asks = max_rate, endpoint, min_asks
        self.asks = self.failures = 0
        self.first: list[str] = []

    def count(self, failed: bool, why: str = "") -> None:
        """One question answered (``failed``: not usably); raises LLMError over budget."""
        self.asks += 1
        if failed:
            self.failures += 1
            if len(self.first) < 3:
                self.first.append(why[:200] or "no usable answer")
        if self.asks >= self.min_asks:
            self.check()

    def check(self) -> None:
        """LLMError if the share of failed questions so far is over the budget (only once a few
        were asked, or when every one failed)."""
        if not self.failures or (self.asks < min(self.min_asks, 5) and self.failures < self.asks):
            return
        if self.failures / self.asks > self.max_rate:
            raise LLMError(
                f"language model at {self.endpoint}: {self.failures} of {self.asks} questions got "
                f"no usable answer ({self.failures / self.asks:.0%}, over the failure budget "
                f"[llm] max_failure_rate = {self.max_rate:g}); the run stops. First failures: "
                + "; ".join(self.first)
            )


class CallLog:
    """The ``llm_calls`` rows of one arm of one shard: recorded by :class:`RecordingModel`,
    each given its parse status by the consumer (:meth:`resolve`), written by :meth:`flush` (or
    :meth:`flush_if`, to bound memory), each write in (arm, user, session, turn, purpose,
    attempt) order.

    ``sink(table)`` receives the rows as an Arrow table with the ``llm_calls`` schema; totals
    are computed from the rows (:func:`call_totals`).
    """

    def __init__(self, sink=None, budget: FailureBudget | None = None) -> None:  # noqa: ANN001
        """``sink``: Callable[[pa.Table], None] | None; ``budget``: stops the run when too many
        questions fail (None: never)."""
        self.sink, self.budget = sink, budget
        self._pending: dict[str, CallRow] = {}
        self._done: list[CallRow] = []

    def add(self, req: LLMRequest, res: LLMResult) -> None:
        self._pending[req.id] = CallRow.keyed(
            req.key,
            req.id,
            req.purpose,
            model=res.model,
            replica=res.replica,
            seed=req.seed,
            prompt_hash=req.prompt_hash,
            prompt=req.prompt,
            schema=req.schema,
            completion=res.text,
            tokens_in=res.tokens_in,
            tokens_out=res.tokens_out,
            cached_tokens=res.cached_tokens,
            latency_s=res.latency_s,
            finish_reason=res.finish_reason,
            parse_status="error" if not res.ok else "unchecked",
            error=res.error,
        )

    def resolve(self, request_id: str, status: str) -> None:
        """Give a recorded call its parse status (ok | invalid | rejected_id | error) and move it
        to the rows to write. A request never recorded (no RecordingModel) is ignored."""
        row = self._pending.pop(request_id, None)
        if row is None:
            return
        if row.parse_status != "error":
            row.parse_status = status
        self._done.append(row)

    def note(self, key: CallKey, status: str, error: str = "") -> None:
        """A row that is no model call: a ``fallback`` to the parametric decision, or a
        ``repaired`` marker, so that every such case is counted in ``llm_calls``."""
        self._done.append(
            CallRow.keyed(key, key.call_id, key.purpose, parse_status=status, error=error)
        )

    def flush_if(self, rows: int) -> int:
        """:meth:`flush` the resolved rows once there are at least ``rows`` of them (bounds
        memory)."""
        return self._write(self._done) if len(self._done) >= rows else 0

    def flush(self) -> int:
        """Write the resolved rows (and any left unresolved, as ``unchecked``); returns rows
        written."""
        for rid in list(self._pending):
            self.resolve(rid, "unchecked")
        return self._write(self._done)

    def _write(self, rows: list[CallRow]) -> int:
        self._done = []
        if not rows or self.sink is None:
            return len(rows)
        rows.sort(key=lambda r: r.order)
        self.sink(rows_to_table(rows))
        return len(rows)


def rows_to_table(rows: Sequence[CallRow]) -> pa.Table:
    from recoworld.io.records import LLM_CALLS_SCHEMA

    cols = {}
    for f in LLM_CALLS_SCHEMA:
        vals = [getattr(r, f.name) for r in rows]
        if pa.types.is_dictionary(f.type):
            cols[f.name] = pa.array(vals, pa.string()).dictionary_encode()
        else:
            cols[f.name] = pa.array(vals, f.type)
    return pa.Table.from_pydict(cols).cast(LLM_CALLS_SCHEMA)


class RecordingModel:
    """Records every request and its result in ``log`` (prompt, completion, hash, tokens,
    latency, finish reason, seed); the consumer adds the parse status with ``log.resolve``."""

    def __init__(self, inner: LanguageModel, log: CallLog) -> None:
        self.inner, self.log, self.name = inner, log, inner.name

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        results = await self.inner.generate(requests)
        for req, res in zip(requests, results):
            self.log.add(req, res)
        return results

    async def close(self) -> None:
        await self.inner.close()


class ReplayModel:
    """Serves the completions recorded in a run's ``llm_calls``: no model at all.

    A request is looked up by its id (``arm/user/session/turn/purpose/attempt``) and must carry
    the same prompt hash as the recorded one: a study, persona, memory or prompt template that
    changed since the recording is refused with the call named, never answered with a completion
    recorded for another prompt.
    """

    def __init__(self, run_dir: str | Path) -> None:
        from recoworld.io.runs import scan_table

        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise LLMError(f"{self.run_dir}: no such run folder to replay (llm.replay_from)")
        try:
            df = (
                scan_table(self.run_dir, "llm_calls")
                .select(
                    "call_id",
                    "prompt_hash",
                    "completion",
                    "tokens_in",
                    "tokens_out",
                    "cached_tokens",
                    "finish_reason",
                    "model",
                )
                .collect()
            )
        except Exception as e:  # noqa: BLE001 - RunError or polars errors: say what is missing
            raise LLMError(f"{self.run_dir}: cannot replay: {e}") from None
        df = df.filter(df["finish_reason"].cast(str) != "none")
        self._calls = {r[0]: r[1:] for r in df.iter_rows()}
        models = sorted({m for m in df["model"].cast(str).to_list() if m})
        self.name = "replay:" + ("+".join(models) or "none")
        self.served = 0

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        out = []
        for r in requests:
            rec = self._calls.get(r.id)
            if rec is None:
                raise LLMError(
                    f"{self.run_dir}: replay has no recorded call {r.id!r} "
                    f"(purpose {r.purpose}, prompt {r.prompt_hash}); "
                    "the replayed study must be the recorded one"
                )
            h, text, tin, tout, cached, finish, model = rec
            if h != r.prompt_hash:
                raise LLMError(
                    f"{self.run_dir}: replay call {r.id!r}: the prompt differs from the recorded "
                    f"one (hash {r.prompt_hash}, recorded {h}); the study or the prompt templates "
                    "changed since the recording"
                )
            out.append(
                LLMResult(
                    id=r.id,
                    text=text,
                    tokens_in=tin,
                    tokens_out=tout,
                    cached_tokens=cached,
                    finish_reason="error" if finish == "error" else finish,
                    latency_s=0.0,
                    model=model,
                    error="recorded error" if finish == "error" else "",
                )
            )
        self.served += len(out)
        return out

    async def close(self) -> None:
        return None


def call_totals(calls: pl.DataFrame) -> dict:
    """Totals of ``llm_calls`` rows: calls by purpose, rows by parse status (fallbacks and
    rejected ids are never silent), tokens, the prefix cache's share of prompt tokens, latency.
    The run manifest and the fidelity evaluation both report these."""
    import polars as pl

    if calls.height == 0:
        return {"calls": 0}
    df = calls.with_columns(
        pl.col(c).cast(pl.String) for c in ("purpose", "parse_status", "finish_reason")
    )
    made = df.filter(pl.col("finish_reason") != "none")  # fallback rows are no call
    known = made.filter(pl.col("cached_tokens") >= 0)
    tin = int(known["tokens_in"].sum())
    count = lambda frame, col: {
        k: int(v) for k, v in frame.group_by(col).len().sort(col).iter_rows()
    }  # noqa: E731
    return {
        "calls": made.height,
        "by_purpose": count(made, "purpose"),
        "by_status": count(df, "parse_status"),
        "tokens_in": int(made["tokens_in"].sum()),
        "tokens_out": int(made["tokens_out"].sum()),
        "prefix_cache_hit_rate": round(int(known["cached_tokens"].sum()) / tin, 4) if tin else None,
        "mean_latency_s": round(float(made["latency_s"].mean()), 4) if made.height else None,
    }
