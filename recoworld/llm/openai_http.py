"""A client of any OpenAI-compatible server (``vllm serve``, a Ray Serve LLM deployment, ...).

:class:`OpenAIHTTPModel` sends each request of a batch as its own HTTP request
(``POST /v1/completions``, or ``/v1/chat/completions`` with one user message when ``chat``),
at most ``concurrency`` at a time per client; the server batches them (continuous batching).

- **Structured outputs**: a request's JSON schema goes in vLLM's ``structured_outputs``
  field (``{"json": schema, "disable_any_whitespace": ...}``), or, with
  ``structured_field="response_format"``, as the OpenAI-standard ``response_format =
  {"type": "json_schema", ...}`` that vLLM and most other servers also accept.
- **Seeds**: sent per request (``seed``); vLLM accepts signed 64-bit values.
- **Failures** come back as error results, never exceptions, and are not retried here (the
  retry wrapper does that, with backoff): timeouts, connection errors, HTTP 429 and 5xx, and a
  200 whose body is not a completion are ``retryable=True``; any other 4xx is ``False``.
- **API key**: read once, at construction, from the environment variable named by
  ``api_key_env`` and sent as ``Authorization: Bearer``; it is never logged and never put in an
  error message or ``repr``: any echo of it in a server's error body or an exception — raw,
  ``repr()``-ed, JSON-escaped, or a piece of it — is masked (:func:`recoworld.llm.redact.mask`)
  before the text is cut or formatted, and the finished message once more. A key with a
  character outside printable ASCII is refused at construction with a one-line error that
  names the variable and the position, not the key (HTTP header values are ASCII). No
  variable or an empty one = no header (a local ``vllm serve`` without ``--api-key``).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence
from typing import Any, Literal

import httpx

from recoworld.config import LLMConfig
from recoworld.errors import LLMError
from recoworld.llm.redact import mask
from recoworld.llm.types import LLMRequest, LLMResult, user_message


class OpenAIHTTPModel:
    """An OpenAI-compatible completions endpoint as a :class:`LanguageModel`."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 64,
        timeout_s: float = 120.0,
        chat: bool = False,
        structured_field: Literal["structured_outputs", "response_format"] = "structured_outputs",
        disable_any_whitespace: bool = True,
        name: str = "",
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise LLMError(f"llm.base_url: expected an http(s) URL ending in /v1, got {base_url!r}")
        if concurrency < 1:
            raise LLMError(f"llm.concurrency: expected >= 1, got {concurrency}")
        if timeout_s <= 0:
            raise LLMError(f"llm.timeout_s: expected > 0, got {timeout_s}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = name or model
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.chat = chat
        self.structured_field = structured_field
        self.disable_any_whitespace = disable_any_whitespace
        self.api_key_env = api_key_env
        self.__key = os.environ.get(api_key_env, "") if api_key_env else ""
        bad = next((i for i, c in enumerate(self.__key) if not " " < c < "\x7f"), None)
        if bad is not None:
            raise LLMError(
                f"llm.api_key_env: the API key in ${api_key_env} has a character that is not "
                f"printable ASCII at position {bad} (of {len(self.__key)}); HTTP headers carry "
                "ASCII only: expected the key exactly as issued, without spaces or line breaks"
            )
        self._client: httpx.AsyncClient | None = None
        self._sem: asyncio.Semaphore | None = None
        self._closed = False

    @classmethod
    def from_config(cls, config: LLMConfig) -> OpenAIHTTPModel:
        return cls(
            config.base_url,
            config.model,
            api_key_env=config.api_key_env,
            concurrency=config.concurrency,
            timeout_s=config.timeout_s,
            chat=config.engine.chat_template,
            structured_field=config.structured_field,
            disable_any_whitespace=config.engine.disable_any_whitespace,
        )

    def __repr__(self) -> str:
        key = f"from ${self.api_key_env}" if self.__key else "none"
        return (
            f"OpenAIHTTPModel(base_url={self.base_url!r}, model={self.model!r}, "
            f"concurrency={self.concurrency}, timeout_s={self.timeout_s}, key={key})"
        )

    @property
    def has_api_key(self) -> bool:
        return bool(self.__key)

    def _mask(self, text: str) -> str:
        return mask(text, self.__key)

    def _http(self) -> httpx.AsyncClient:
        if self._closed:
            raise LLMError(f"{self!r}: generate after close")
        if self._client is None:
            headers = {"Authorization": f"Bearer {self.__key}"} if self.__key else {}
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=headers,
                timeout=httpx.Timeout(self.timeout_s),
                limits=httpx.Limits(
                    max_connections=self.concurrency, max_keepalive_connections=self.concurrency
                ),
            )
            self._sem = asyncio.Semaphore(self.concurrency)
        return self._client

    def _body(self, req: LLMRequest) -> tuple[str, dict[str, Any]]:
        s = req.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": req.seed,
        }
        if s.stop:
            body["stop"] = list(s.stop)
        if req.schema:
            schema = json.loads(req.schema)
            if self.structured_field == "structured_outputs":
                body["structured_outputs"] = {
                    "json": schema,
                    "disable_any_whitespace": self.disable_any_whitespace,
                }
            else:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": req.purpose or "output",
                        "schema": schema,
                        "strict": True,
                    },
                }
        if self.chat:
            body["messages"] = [user_message(req)]
            return "/chat/completions", body
        if req.images:
            raise ValueError("images need the chat endpoint (engine.chat_template = true)")
        body["prompt"] = req.prompt
        return "/completions", body

    def _error(self, req: LLMRequest, t0: float, error: str, retryable: bool) -> LLMResult:
        return LLMResult(
            id=req.id,
            text="",
            finish_reason="error",
            latency_s=time.perf_counter() - t0,
            model=self.name,
            error=self._mask(error)[:2000],  # the pieces were masked before formatting too
            retryable=retryable,
        )

    async def _one(self, req: LLMRequest) -> LLMResult:
        client = self._http()
        assert self._sem is not None
        try:
            path, body = self._body(req)
        except json.JSONDecodeError as e:
            return self._error(req, time.perf_counter(), f"request schema is not JSON: {e}", False)
        except ValueError as e:  # a request this endpoint cannot carry (images, no chat)
            return self._error(req, time.perf_counter(), str(e), False)
        async with self._sem:
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(self.timeout_s):
                    resp = await client.post(path, json=body)
            except (TimeoutError, httpx.TimeoutException):
                return self._error(
                    req, t0, f"timeout after {self.timeout_s:g} s: POST {self.base_url}{path}", True
                )
            except httpx.TransportError as e:
                return self._error(
                    req,
                    t0,
                    f"connection error: POST {self.base_url}{path}: {type(e).__name__}: "
                    f"{self._mask(str(e))}",
                    True,
                )
        if resp.status_code != 200:
            retry = resp.status_code == 429 or resp.status_code >= 500
            echo = self._mask(resp.text)  # before the cut: no piece of a key is left behind
            return self._error(
                req,
                t0,
                f"HTTP {resp.status_code} from POST {self.base_url}{path}: {echo[:1000]}",
                retry,
            )
        try:
            return self._result(req, resp.json(), time.perf_counter() - t0)
        except (ValueError, KeyError, IndexError, TypeError) as e:
            echo = self._mask(resp.text)  # before the cut and the repr()
            return self._error(
                req,
                t0,
                f"unexpected response from POST {self.base_url}{path} "
                f"({type(e).__name__}: {self._mask(str(e))}); "
                f"expected an OpenAI completion with choices[0]; got {echo[:300]!r}",
                True,
            )

    def _result(self, req: LLMRequest, data: dict[str, Any], latency: float) -> LLMResult:
        choice = data["choices"][0]
        text = choice["message"]["content"] if self.chat else choice["text"]
        if not isinstance(text, str):
            raise TypeError(f"completion text is {type(text).__name__}, expected str")
        finish = choice.get("finish_reason") or "stop"
        if finish == "abort":
            raise ValueError("the server aborted the request")
        usage = data.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens")
        return LLMResult(
            id=req.id,
            text=text,
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0),
            cached_tokens=-1 if cached is None else int(cached),
            finish_reason="length" if finish == "length" else "stop",
            latency_s=latency,
            model=self.name,
        )

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        """Results for ``requests`` in order (at most ``concurrency`` HTTP requests in flight
        per client, across every concurrent caller)."""
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
