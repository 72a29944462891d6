"""The messages of the language-model interface: typed, frozen, msgpack/JSON-serialisable
(they cross process boundaries to Ray replica actors)."""

from __future__ import annotations

import hashlib

import msgspec


class Sampling(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Sampling parameters of one request."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 256
    stop: tuple[str, ...] = ()


class CallKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Who asked the model, for what: the identity of one call of a run, as fields. The call log
    takes its ``user``, ``session``, ``turn``, ``purpose`` and ``attempt`` columns from here;
    :attr:`call_id` is derived from it once (the replay lookup key), never parsed back."""

    arm: str
    user: int
    """The user's uid (also the routing key: a user's prompts go to the same replica)."""
    session: int
    turn: int
    purpose: str
    """slate | summary | language | rerank | repair-<purpose> | fallback-<purpose>"""
    attempt: int = 0

    @property
    def call_id(self) -> str:
        """``<arm>/<user>/<session>/<turn>/<purpose>/<attempt>``: unique within a run."""
        return f"{self.arm}/{self.user}/{self.session}/{self.turn}/{self.purpose}/{self.attempt}"

    def order(self) -> tuple[str, int, int, int, str, int]:
        """The sort key of the call log's rows: (arm, user, session, turn, purpose, attempt)."""
        return (self.arm, self.user, self.session, self.turn, self.purpose, self.attempt)


class LLMRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One completion request.

    ``prompt`` is plain text laid out for prefix reuse (shared instructions first, the varying
    part last). ``schema`` is a JSON Schema (as JSON text) the output must satisfy, enforced by
    the backend's structured outputs where it has them; "" = free text. ``seed`` makes sampling
    reproducible; it is derived from the run's root seed and (arm, user, session, turn, purpose,
    attempt), never from batch position. ``user`` is the routing key (a user's prompts go to the
    same replica, so its cached prefix is reused); -1 = none.

    ``key``: the call's identity as fields, for the requests of a run (build them with
    :meth:`of`: ``id``, ``user`` and ``purpose`` are then derived from it, and a request whose
    fields disagree with its key is refused). None for an ad-hoc request (a benchmark, an
    engine test), which the call log records with -1 for user, session and turn.
    """

    id: str
    prompt: str
    seed: int
    sampling: Sampling = Sampling()
    schema: str = ""
    user: int = -1
    purpose: str = "slate"
    key: CallKey | None = None
    images: tuple[str, ...] = ()
    """Images attached after the prompt's text, for multimodal models: ``data:`` URIs (built
    by ``recoworld.items.images``) or http(s) URLs the server fetches. Sent as OpenAI-style
    ``image_url`` content parts of the one user message (:func:`user_message`), so they need
    the chat path (``engine.chat_template``; for an OpenAI server, ``chat``). Not part of
    :attr:`prompt_hash`: a replay keys on the text."""

    def __post_init__(self) -> None:
        k = self.key
        if k is not None and (self.id, self.user, self.purpose) != (k.call_id, k.user, k.purpose):
            raise ValueError(
                f"LLMRequest: id, user and purpose ({self.id!r}, {self.user}, {self.purpose!r}) "
                f"disagree with its key {k.call_id!r}; build it with LLMRequest.of(key, ...)"
            )

    @classmethod
    def of(
        cls,
        key: CallKey,
        *,
        prompt: str,
        seed: int,
        sampling: Sampling = Sampling(),
        schema: str = "",
        images: tuple[str, ...] = (),
    ) -> LLMRequest:
        """The request of call ``key``: its id, routing user and purpose taken from the key."""
        return cls(
            id=key.call_id,
            prompt=prompt,
            seed=seed,
            sampling=sampling,
            schema=schema,
            user=key.user,
            purpose=key.purpose,
            key=key,
            images=images,
        )

    @property
    def prompt_hash(self) -> str:
        """16 hex digits of sha256(prompt + NUL + schema): the replay key (with the seed)."""
        return prompt_hash(self.prompt, self.schema)


def user_message(req: LLMRequest) -> dict[str, object]:
    """The request as one chat message: the prompt as plain content, or, with images, a text
    part followed by one ``image_url`` part per image (the OpenAI / vLLM chat format)."""
    if not req.images:
        return {"role": "user", "content": req.prompt}
    parts: list[dict[str, object]] = [{"type": "text", "text": req.prompt}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in req.images]
    return {"role": "user", "content": parts}


def prompt_hash(prompt: str, schema: str) -> str:
    return hashlib.sha256(prompt.encode() + b"\x00" + schema.encode()).hexdigest()[:16]


class LLMResult(msgspec.Struct, frozen=True, kw_only=True):
    """The completion of one request. A failed request has ``finish_reason == "error"`` and the
    reason in ``error`` (backends do not raise for one bad request in a batch)."""

    id: str
    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    cached_tokens: int = -1
    """Prompt tokens served from the prefix cache (-1: the backend does not say)."""
    finish_reason: str = "stop"
    """stop | length | error | replay"""
    latency_s: float = 0.0
    model: str = ""
    replica: int = -1
    """The Ray replica that served it (-1: in-process or HTTP)."""
    error: str = ""
    retryable: bool = False
    """For errors: may the same request succeed if sent again (timeout, HTTP 429/5xx, replica
    died)? A malformed request or a refused key is not retryable."""

    @property
    def ok(self) -> bool:
        return self.finish_reason != "error"
