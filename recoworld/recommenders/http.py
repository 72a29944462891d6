"""A recommender running as a service: ``[recommender] kind = "http"``.

The batch JSON protocol (docs/recommender-service.md; its OpenAPI description,
docs/recommender-service.openapi.yaml, is :func:`openapi_document` of the wire types below):
one ``POST`` to ``[recommender.service] url`` per batch of users, :class:`RecommendRequest` in,
:class:`RecommendResponse` out. A user's feedback on its previous slate and the instructions it
wrote since travel *in* its next recommend request, so a turn costs one round trip per batch;
the first request that names a user in a :attr:`RecommendRequest.scope` carries its history.
The last turn's feedback of a run is never sent: no slate depends on it.

:class:`ServiceRecommender` is the client, the same for both sides of the recommender protocol:
a private event loop on a daemon thread owns one ``httpx.AsyncClient``; :meth:`recommend` (the
batch loop, no event loop running) blocks on it, :meth:`recommend_async` (the per-user
coroutines of language-model studies) awaits it. Users queued by any caller are sent in
requests of at most ``batch_size`` users, at most ``concurrency`` requests in flight: callers
that arrive while the service is busy share the next request.

Failures: connection errors, timeouts, HTTP 429 and 5xx are retried ``retries`` times with
exponential backoff and jitter (``Retry-After`` honoured, up to :data:`RETRY_AFTER_CAP_S`).
What still fails — those after the last retry, any other HTTP error, a response that breaks the
protocol (malformed JSON, a wrong number of slates, a slate of the wrong length, an item id not
in the catalogue, a non-finite score) — raises :class:`ServiceError` naming the URL, the status
and the first bad value; the contract check (:mod:`recoworld.recommenders.guard`) then stops the
run or serves the fallback and counts it. Refused credentials (HTTP 401, 403) and a URL that is
not a recommend endpoint (404, 405) are the study's configuration, not a failed slate: a
:class:`~recoworld.errors.RecommenderError` that stops the run whatever ``on_invalid`` says.

The credential is read from the environment variable ``auth_env`` names when the recommender is
built (in the process that runs the shard) and is written nowhere: not in errors (every text a
server or the transport returns is masked with :func:`recoworld.llm.redact.mask` before it is
cut or formatted), not in ``repr``, not in the run's files.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import math
import os
import random
import threading
import time
import urllib.parse
import uuid
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import msgspec
import numpy as np

from recoworld.config import RecommenderConfig, ServiceConfig
from recoworld.errors import RecommenderError
from recoworld.llm.redact import mask
from recoworld.recommenders.base import Audience
from recoworld.recommenders.guard import NO_SLATE, one_line
from recoworld.records import ACTIONS, SlateFeedback

PROTOCOL_VERSION = 1
"""Sent with every request; a service refuses (HTTP 400) a version it does not speak."""
RETRY_AFTER_CAP_S = 60.0
"""The longest ``Retry-After`` honoured; a longer one waits this long."""
BACKOFF_CAP_S = 30.0
"""The longest wait between two attempts without a ``Retry-After``."""
RETRY_STATUSES = frozenset({408, 429})
"""Retried besides 5xx, connection errors and timeouts."""
STOP_STATUSES = {
    401: "the service refused the credential",
    403: "the service refused the credential",
    404: "no recommend endpoint at this URL",
    405: "no recommend endpoint at this URL (method not allowed)",
}
"""Statuses that say the study is configured wrong: the run stops, whatever ``on_invalid``."""


def _doc(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=" ".join(text.split()))


class _Wire(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base of the wire types: unknown fields are ignored (a newer peer may add some)."""


class Feedback(_Wire, kw_only=True):
    """What the user did with the slate it was shown at (session, turn): the slate as shown
    (after a fallback or a creator injection, which the service may not have proposed)."""

    session: int
    turn: int
    items: Annotated[list[str], _doc("The slate as shown, item ids in slate order.")]
    actions: Annotated[
        list[str],
        _doc(
            "Per item: skip, click, watch or rate (increasing engagement; watch and rate "
            "imply a click)."
        ),
    ]
    watch: Annotated[list[float], _doc("Per item: the fraction watched in [0, 1]; 0 for a skip.")]
    rating: Annotated[
        list[float | None], _doc("Per item: the rating given, on the dataset's scale; null: none.")
    ]


class Instruction(_Wire, kw_only=True):
    """What the user asked of the recommender after the slate at (session, turn)."""

    session: int
    turn: int
    more_of: Annotated[str | None, _doc("A tag (genre) the user wants more of; null: none.")] = None
    less_of: Annotated[str | None, _doc("A tag the user wants less of; null: none.")] = None
    text: Annotated[str, _doc("The user's words (a templated sentence for fitted users).")] = ""


class UserRequest(_Wire, kw_only=True):
    """One user of a batch: who, which slate is asked for, and what happened since its last."""

    user: Annotated[
        int, _doc("The simulated user's id (unique in the study; the key of its state).")
    ]
    source_user: Annotated[
        str | None,
        _doc("The dataset user the simulated user was drawn from; null for a synthetic persona."),
    ] = None
    session: Annotated[int, _doc("The session of the slate asked for (0-based).")]
    turn: Annotated[int, _doc("The turn of the slate asked for, within its session (0-based).")]
    history: Annotated[
        list[str] | None,
        _doc(
            "Item ids of the user's real history (in catalogue order), sent with the first "
            "request that names the user in this scope (again if that request failed); null "
            "afterwards. A service that already knows the user ignores it."
        ),
    ] = None
    feedback: Annotated[
        list[Feedback],
        _doc(
            "The user's feedback not yet delivered, oldest first (normally the previous turn's). "
            "Resent if a request failed: a service applies each (session, turn) once."
        ),
    ] = []
    instructions: Annotated[
        list[Instruction],
        _doc("Instructions the user wrote since its last request (likewise applied once)."),
    ] = []


class RecommendRequest(_Wire, kw_only=True):
    """A batch of users who each need a slate of ``k`` items."""

    protocol_version: Annotated[int, _doc("The protocol's version: 1.")]
    scope: Annotated[
        str,
        _doc(
            "An opaque id of the simulation that owns these users' state (one per recommender "
            "instance; a user belongs to one scope per arm). The same user id in two scopes is "
            "two simulated users: key per-user state by (scope, user)."
        ),
    ]
    arm: Annotated[str, _doc("The study arm the users are in.")]
    seed: Annotated[
        int, _doc("The study's root seed: a service that draws at random can key its draws on it.")
    ]
    k: Annotated[int, _doc("Items per slate.")]
    options: Annotated[
        dict[str, Any], _doc("The study's [recommender] options, free-form, passed through.")
    ] = {}
    users: list[UserRequest]


class RecommendResponse(_Wire, kw_only=True):
    """One slate per user of the request, in its order."""

    slates: Annotated[
        list[list[str | int] | None],
        _doc(
            "Per user of the request, in its order: k distinct item ids, best first (an integer "
            "is read as its decimal string); null or [] for a user the service does not know "
            "(the study's fallback serves it)."
        ),
    ]
    scores: Annotated[
        list[list[float] | None] | None,
        _doc("Optional: the score of each item of each slate (finite numbers)."),
    ] = None


class ServiceError(RuntimeError):
    """A request that failed (after its retries) or a response that breaks the protocol.

    Deliberately not a :class:`~recoworld.errors.RecoWorldError`: the contract check treats it as
    the failure of the slates asked for (stop or counted fallback, as the study says), as it
    treats an exception raised by plug-in code."""


def service_name(url: str) -> str:
    """``url`` as errors and the run's files name it: without user info, query or fragment
    (where credentials may hide)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<an unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass
class ServiceStats:
    """What one client did: requests sent (attempts included), retries, failed requests."""

    requests: int = 0
    retries: int = 0
    failed: int = 0
    users: int = 0


class ServiceRecommender:
    """The recommender protocol over a recommender service (see the module docstring).

    ``rec`` is the study's (or arm's) ``[recommender]``, ``where`` its config path (errors),
    ``arm`` the arm's name (sent with every request). A missing credential is a one-line
    :class:`~recoworld.errors.RecommenderError` here, naming the variable.
    """

    def __init__(self, rec: RecommenderConfig, where: str, *, arm: str) -> None:
        svc = rec.service
        self.svc, self.options, self.arm, self.where = svc, dict(rec.options), arm, where
        self.url = svc.url
        self.name = service_name(svc.url)
        self.__secret = _credential(svc, where)
        parts = urllib.parse.urlsplit(svc.url)
        # Other places a credential may hide: the URL's password and query.
        self.__hidden = tuple(s for s in (self.__secret, parts.password, parts.query) if s)
        self._io: _Transport | None = None
        self.stats = ServiceStats()

    def __repr__(self) -> str:
        key = f"from ${self.svc.auth_env}" if self.__secret else "none"
        return f"ServiceRecommender(url={self.name!r}, arm={self.arm!r}, credential={key})"

    # --- the protocol -------------------------------------------------------------------------

    def bind(self, audience: Audience) -> None:
        self.aud = audience
        n, cat = len(audience.personas), audience.catalog
        self.ids = np.asarray([str(i) for i in cat.item_ids], dtype=object)
        self.row_of = {item: row for row, item in enumerate(self.ids.tolist())}
        self.tags = tuple(cat.tags)
        self._history = audience.personas.history_of(cat.n_items)
        self._met = np.zeros(n, bool)  # the service has this user's history
        self._at = np.zeros((n, 2), np.int64)  # (session, turn) of each user's last slate
        self._codec = _Codec(
            name=self.name,
            scope=uuid.uuid4().hex,
            arm=self.arm,
            seed=int(audience.seed),
            options=self.options,
            row_of=self.row_of,
        )
        self._feedback: list[list[Feedback]] = [[] for _ in range(n)]
        self._instructions: list[list[Instruction]] = [[] for _ in range(n)]

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        users = self._users(idx, session, turn)
        rows = self._transport().submit(users, k, self._codec).result()
        return self._accept(idx, users, k, rows)

    async def recommend_async(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        users = self._users(idx, session, turn)
        rows = await asyncio.wrap_future(self._transport().submit(users, k, self._codec))
        return self._accept(idx, users, k, rows)

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        items = self.ids[slates].tolist()
        actions = np.asarray(ACTIONS, dtype=object)[feedback.action].tolist()
        watch = np.round(feedback.watch.astype(np.float64), 6).tolist()
        rating = feedback.rating.astype(np.float64)
        ratings = np.where(np.isnan(rating), None, np.round(rating, 6)).tolist()
        for j, (r, (session, turn)) in enumerate(zip(idx.tolist(), self._at[idx].tolist())):
            self._feedback[r].append(
                Feedback(
                    session=session,
                    turn=turn,
                    items=items[j],
                    actions=actions[j],
                    watch=watch[j],
                    rating=ratings[j],
                )
            )

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        tag = lambda t: self.tags[t] if 0 <= t < len(self.tags) else None
        for j, (r, (session, turn)) in enumerate(zip(idx.tolist(), self._at[idx].tolist())):
            self._instructions[r].append(
                Instruction(
                    session=session,
                    turn=turn,
                    more_of=tag(int(more_of[j])),
                    less_of=tag(int(less_of[j])),
                    text=str(texts[j]),
                )
            )

    # --- requests -------------------------------------------------------------------------------

    def _users(self, idx: np.ndarray, session: int, turn: int) -> list[UserRequest]:
        p = self.aud.personas
        self._at[idx] = (session, turn)
        out = []
        uids, sources = p.uid[idx].tolist(), p.source_user[idx].tolist()
        for r, uid, source, met in zip(idx.tolist(), uids, sources, self._met[idx].tolist()):
            history = None
            if not met:
                lo, hi = self._history.indptr[r], self._history.indptr[r + 1]
                history = self.ids[np.sort(self._history.indices[lo:hi])].tolist()
            out.append(
                UserRequest(
                    user=uid,
                    source_user=str(source) or None,
                    session=session,
                    turn=turn,
                    history=history,
                    feedback=list(self._feedback[r]),
                    instructions=list(self._instructions[r]),
                )
            )
        return out

    def _accept(
        self, idx: np.ndarray, users: list[UserRequest], k: int, rows: list[np.ndarray | None]
    ) -> np.ndarray:
        """The slates of a successful call; what it delivered is no longer pending."""
        slates = np.full((idx.size, k), NO_SLATE, np.int64)
        for j, (r, u, row) in enumerate(zip(idx.tolist(), users, rows)):
            self._met[r] = True
            del self._feedback[r][: len(u.feedback)]
            del self._instructions[r][: len(u.instructions)]
            if row is not None:
                slates[j] = row
        return slates

    def _transport(self) -> _Transport:
        if self._io is None or self._io.pid != os.getpid():  # a forked copy starts its own
            headers = {"accept": "application/json", "content-type": "application/json"}
            if self.__secret:
                scheme = self.svc.auth_scheme.strip()
                value = f"{scheme} {self.__secret}" if scheme else self.__secret
                headers[self.svc.auth_header] = value
            self._io = _Transport(
                self.url,
                self.name,
                headers,
                self.svc,
                self.__hidden,
                self.stats,
                recommender=f"recommender {self.name} (arm {self.arm!r})",
                auth_env=self.svc.auth_env,
            )
            weakref.finalize(self, self._io.close)  # the transport holds nothing of self
        return self._io


@dataclass(frozen=True, eq=False, kw_only=True)
class _Codec:
    """What one binding's requests say and how its responses are read (no reference to the
    recommender, so that the transport holding it does not keep the recommender alive)."""

    name: str
    scope: str  # an opaque id, not a simulation draw: nothing simulated depends on it
    arm: str
    seed: int
    options: dict[str, Any]
    row_of: dict[str, int]

    def body(self, users: list[UserRequest], k: int) -> bytes:
        return msgspec.json.encode(
            RecommendRequest(
                protocol_version=PROTOCOL_VERSION,
                scope=self.scope,
                arm=self.arm,
                seed=self.seed,
                k=k,
                options=self.options,
                users=users,
            )
        )

    def read(
        self, users: list[UserRequest], k: int, body: bytes, show: str
    ) -> list[np.ndarray | None]:
        """Each user's slate as catalogue rows (None: not covered), or a :class:`ServiceError`
        naming the first value that breaks the protocol. ``show`` is the masked body."""
        where = f"the response of POST {self.name}"
        try:
            out = msgspec.json.decode(body, type=RecommendResponse)
        except msgspec.ValidationError as e:
            raise ServiceError(f"{where} breaks the protocol: {e}") from None
        except msgspec.DecodeError as e:
            at = str(e).rpartition("(byte ")[2].rstrip(")")
            if at.isdigit():
                near = f" near {show[max(int(at) - 20, 0) : int(at) + 20]!r}"
            else:
                near = f", got {one_line(show, 120)!r}"
            raise ServiceError(
                f'{where} is not JSON ({e}){near}; expected {{"slates": [[item id, ...], ...]}} '
                "(NaN and Infinity are not JSON numbers)"
            ) from None
        n = len(users)
        if len(out.slates) != n:
            raise ServiceError(
                f"{where} holds {len(out.slates)} slates for {n} users; expected one per user of "
                "the request, in its order (null for a user the service does not know)"
            )
        if out.scores is not None and len(out.scores) != n:
            raise ServiceError(f"{where} holds {len(out.scores)} score lists for {n} users")
        rows: list[np.ndarray | None] = []
        get = self.row_of.get
        for j, (u, slate) in enumerate(zip(users, out.slates)):
            if not slate:
                rows.append(None)
                continue
            who = f"user {u.user} (slates[{j}])"
            if len(slate) != k:
                raise ServiceError(
                    f"{where}: the slate of {who} has {len(slate)} items; expected k = {k}"
                )
            row = [get(x) if type(x) is str else get(str(x)) for x in slate]
            if None in row:
                pos = row.index(None)
                raise ServiceError(
                    f"{where}: item id {one_line(str(slate[pos]), 80)!r} in the slate of {who}, "
                    f"position {pos}, is not in the catalogue"
                )
            scores = out.scores[j] if out.scores is not None else None
            if scores is not None and len(scores) != k:
                raise ServiceError(
                    f"{where}: {len(scores)} scores for the {k} items of the slate of {who}"
                )
            rows.append(np.array(row, np.int64))
        if out.scores is not None:  # JSON has no NaN or Infinity; this guards other decoders
            flat = np.array([v for s in out.scores if s for v in s], np.float64)
            if not np.isfinite(flat).all():
                bad = flat[~np.isfinite(flat)][0]
                raise ServiceError(f"{where}: score {bad} is not a finite number")
        return rows


def mask_all(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every form of every secret masked (:func:`recoworld.llm.redact.mask`)."""
    for s in secrets:
        text = mask(text, s)
    return text


def _credential(svc: ServiceConfig, where: str) -> str:
    """The credential from the environment variable ``svc.auth_env`` names ("" without one)."""
    if not svc.auth_env:
        return ""
    value = os.environ.get(svc.auth_env, "")
    if not value:
        raise RecommenderError(
            f"{where}.service.auth_env: the environment variable {svc.auth_env} is not set or "
            "empty; expected the service's credential in it (read when the run starts, written "
            "nowhere)"
        )
    bad = next((i for i, c in enumerate(value) if not " " < c < "\x7f"), None)
    if bad is not None:
        raise RecommenderError(
            f"{where}.service.auth_env: the credential in ${svc.auth_env} has a character that "
            f"is not printable ASCII at position {bad} (of {len(value)}); HTTP headers carry "
            "ASCII only: expected the credential exactly as issued, without spaces or line breaks"
        )
    return value


def retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (seconds or an HTTP date), capped; None if
    absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()
    loop.close()


class _Transport:
    """A private event loop on a daemon thread, one ``httpx.AsyncClient``, and a queue of users
    sent in batches (at most ``batch_size`` users a request, ``concurrency`` requests in
    flight). Holds no reference to its recommender, so that the recommender can be collected
    (and this closed by its finalizer)."""

    def __init__(
        self,
        url: str,
        name: str,
        headers: dict[str, str],
        svc: ServiceConfig,
        secrets: tuple[str, ...],
        stats: ServiceStats,
        *,
        recommender: str,
        auth_env: str,
    ) -> None:
        self.url, self.name, self.svc, self.secrets = url, name, svc, secrets
        self.stats = stats
        self.recommender, self.auth_env = recommender, auth_env
        self.pid = os.getpid()
        # Jitter spreads retries in time only; nothing simulated depends on it.
        self.rng = random.Random()
        self.queue: deque[tuple[UserRequest, int, _Codec, asyncio.Future]] = deque()
        self.inflight = 0
        self.tasks: set[asyncio.Task] = set()
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(svc.timeout_s),
            limits=httpx.Limits(
                max_connections=svc.concurrency, max_keepalive_connections=svc.concurrency
            ),
            follow_redirects=False,
            # plain http has no TLS to verify; not loading the CA bundle saves 0.1 s a client
            verify=url.startswith("https://"),
        )
        self.thread = threading.Thread(
            target=_run_loop, args=(self.loop,), name=f"recoworld-http {name}", daemon=True
        )
        self.thread.start()

    def submit(self, users: list[UserRequest], k: int, codec: _Codec) -> concurrent.futures.Future:
        """Rows (or None) per user, in order; any request's failure fails the call."""
        return asyncio.run_coroutine_threadsafe(self._call(users, k, codec), self.loop)

    def close(self) -> None:
        """Close the client and end the thread, without waiting: a finalizer may run this on
        any thread (the garbage collector's), this transport's own included."""
        if self.pid != os.getpid():
            return

        def stop() -> None:
            done = self.loop.create_task(self.client.aclose())
            done.add_done_callback(lambda _: self.loop.stop())

        try:
            self.loop.call_soon_threadsafe(stop)
        except RuntimeError:  # the loop is closed already
            pass

    async def _call(
        self, users: list[UserRequest], k: int, codec: _Codec
    ) -> list[np.ndarray | None]:
        futures = [self.loop.create_future() for _ in users]
        self.queue.extend((u, k, codec, f) for u, f in zip(users, futures))
        self.loop.call_soon(self._dispatch)  # callers arriving in this tick share requests
        out = await asyncio.gather(*futures, return_exceptions=True)
        failed = next((r for r in out if isinstance(r, BaseException)), None)
        if failed is not None:
            raise failed
        return out  # type: ignore[return-value]

    def _dispatch(self) -> None:
        while self.queue and self.inflight < self.svc.concurrency:
            _, k, codec, _ = head = self.queue[0]
            batch = []
            while (
                self.queue and len(batch) < self.svc.batch_size and self.queue[0][1:3] == head[1:3]
            ):
                batch.append(self.queue.popleft())
            self.inflight += 1
            task = self.loop.create_task(self._send(batch, k, codec))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _send(
        self, batch: list[tuple[UserRequest, int, _Codec, asyncio.Future]], k: int, codec: _Codec
    ) -> None:
        try:
            rows = await self._post([u for u, _, _, _ in batch], k, codec)
        except Exception as e:
            for *_, f in batch:
                if not f.done():
                    f.set_exception(e)
        else:
            for (*_, f), row in zip(batch, rows):
                if not f.done():
                    f.set_result(row)
        finally:
            self.inflight -= 1
            self._dispatch()

    def _mask(self, text: str) -> str:
        return mask_all(text, self.secrets)

    async def _post(
        self, users: list[UserRequest], k: int, codec: _Codec
    ) -> list[np.ndarray | None]:
        """One batch, with its retries."""
        body = codec.body(users, k)
        svc, attempts = self.svc, self.svc.retries + 1
        self.stats.users += len(users)
        why = ""
        for attempt in range(attempts):
            wait: float | None = None
            self.stats.requests += 1
            try:
                async with asyncio.timeout(svc.timeout_s):
                    resp = await self.client.post(self.url, content=body)
                    content = resp.content
            except (TimeoutError, httpx.TimeoutException):
                why = f"no response within timeout_s = {svc.timeout_s:g} s"
            except httpx.TransportError as e:
                why = f"connection failed ({type(e).__name__}: {one_line(self._mask(str(e)))})"
            else:
                status = resp.status_code
                if status == 200:
                    shown = self._mask(content.decode("utf-8", "replace"))
                    try:
                        return codec.read(users, k, content, shown)
                    except ServiceError as e:
                        self.stats.failed += 1
                        raise ServiceError(self._mask(str(e))) from None
                echo = one_line(self._mask(content.decode("utf-8", "replace")), 200)
                if status in STOP_STATUSES:
                    self.stats.failed += 1
                    raise RecommenderError(self._stop(status, echo))
                if status not in RETRY_STATUSES and status < 500:
                    self.stats.failed += 1
                    hint = (
                        f"a redirect to {service_name(resp.headers.get('location', ''))}: "
                        "expected the endpoint itself (redirects are not followed)"
                        if 300 <= status < 400
                        else "only connection errors, timeouts, 408, 429 and 5xx are"
                    )
                    raise ServiceError(
                        f"POST {self.name}: HTTP {status} (not retried: {hint}): {echo!r}"
                    )
                why = f"HTTP {status}: {echo!r}"
                wait = retry_after(resp.headers.get("retry-after"))
            if attempt + 1 == attempts:
                break
            self.stats.retries += 1
            backoff = min(svc.backoff_s * 2**attempt, BACKOFF_CAP_S) * (0.5 + self.rng.random())
            await asyncio.sleep(max(backoff, wait or 0.0))
        self.stats.failed += 1
        raise ServiceError(
            f"POST {self.name}: {why}, after {attempts} attempt{'s' * (attempts > 1)} "
            f"({svc.retries} retries, backoff from {svc.backoff_s:g} s)"
        )

    def _stop(self, status: int, echo: str) -> str:
        what = STOP_STATUSES[status]
        if status in (401, 403):
            how = (
                f"expected a credential it accepts in ${self.auth_env} "
                "([recommender.service] auth_env)"
                if self.auth_env
                else "it asks for one: set [recommender.service] auth_env to the NAME of the "
                "environment variable that holds it"
            )
        else:
            how = "expected [recommender.service] url to be the service's recommend endpoint"
        return (
            f"{self.recommender}: HTTP {status} from POST {self.name}: {what}; {how} "
            f"(not retried; the run stops): {echo!r}"
        )


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3 description of the protocol (docs/recommender-service.openapi.yaml is
    this, written as YAML; tests/test_http_recommender.py keeps them equal)."""
    (req, resp), components = msgspec.json.schema_components(
        [RecommendRequest, RecommendResponse], ref_template="#/components/schemas/{name}"
    )
    said = " Its body (text or JSON) is quoted, masked, in the error."
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "RecoWorld recommender service",
            "version": str(PROTOCOL_VERSION),
            "description": (
                "The batch JSON protocol between RecoWorld's simulated users and a recommender "
                'running as a service ([recommender] kind = "http"). One POST per batch of '
                "users; a user's feedback and instructions travel in its next request. See "
                "docs/recommender-service.md."
            ),
        },
        "paths": {
            "/v1/recommend": {
                "post": {
                    "summary": "Slates for a batch of users",
                    "description": (
                        "The path is whatever [recommender.service] url names; the reference "
                        "service serves it here. Retried by the client on connection errors, "
                        "timeouts, 429 and 5xx: a service applies each user's feedback and "
                        "instructions once per (session, turn), and answers a repeated "
                        "(scope, user, session, turn) with the same slate."
                    ),
                    "operationId": "recommend",
                    "security": [{"bearer": []}, {}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": req}},
                    },
                    "responses": {
                        "200": {
                            "description": "One slate per user, in the request's order.",
                            "content": {"application/json": {"schema": resp}},
                        },
                        "400": {
                            "description": "A request the service cannot read: not retried, "
                            "the slates fail (any other 4xx likewise)." + said
                        },
                        "401": {"description": "No or a wrong credential: the run stops." + said},
                        "403": {"description": "A credential without access: the run stops."},
                        "404": {"description": "Not a recommend endpoint: the run stops."},
                        "429": {
                            "description": "Too many requests: retried after Retry-After (at "
                            f"most {RETRY_AFTER_CAP_S:g} s) or the backoff, whichever is longer.",
                            "headers": {
                                "Retry-After": {
                                    "description": "Seconds (or an HTTP date) to wait.",
                                    "schema": {"type": "string"},
                                }
                            },
                        },
                        "5XX": {"description": "Retried with backoff." + said},
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "Ready to serve (no credential needed)",
                    "operationId": "health",
                    "responses": {"200": {"description": "Ready."}},
                }
            },
        },
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "Authorization: Bearer <credential>, the credential read from the "
                        "environment variable [recommender.service] auth_env names (header and "
                        "scheme configurable: auth_header, auth_scheme)."
                    ),
                }
            },
        },
    }


OPENAPI_HEADER = (
    "# The recommender service protocol (docs/recommender-service.md), generated from its wire\n"
    "# types (recoworld/recommenders/http.py); tests/test_http_recommender.py fails when they\n"
    "# differ. Regenerate: python -m recoworld.recommenders.http > "
    "docs/recommender-service.openapi.yaml\n"
)


def openapi_yaml() -> str:
    """:func:`openapi_document` as the YAML file in docs/ (needs PyYAML, a test dependency)."""
    import yaml

    return OPENAPI_HEADER + yaml.safe_dump(openapi_document(), sort_keys=False, width=100)


if __name__ == "__main__":
    print(openapi_yaml(), end="")
