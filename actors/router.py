"""``ReplicaRouter``: the language model a user shard sees on Ray, spreading its requests over
the run's LLM replica actors.

1. **Route** (:class:`RouteTable`, plain logic): a request goes to its user's *home replica* (a
   stable hash of ``request.user``, the same in every shard and run, so the user's prompts meet
   its cached prefix), unless the home has more than ``affinity_slack`` requests in flight
   beyond the least-loaded live replica: then to the least-loaded one. A request with no user
   (``user == -1``) goes to the least-loaded replica. A dead replica gets nothing more; a user
   whose home died is re-homed by the same hash over the live replicas.
2. **Batch**: the requests routed to a replica while the shard's event loop runs one round
   (every user coroutine woken by the previous answers) leave in *one* actor call
   (``await handle.generate.remote(batch)``): a call costs ~1-2 ms of Ray overhead, a batch of
   hundreds the same.
3. **Fail soft**: a replica that dies (its actor gone, or its engine raised) answers its
   requests with *retryable* error results (``RetryModel`` around the router sends them again,
   to a live replica) and is routed around from then on. Only when every replica is dead does
   ``generate`` raise :class:`~recoworld.errors.LLMError`.

In-flight counts are this shard's own (no shared state across shards): each shard balances its
own load, and with the same hash every shard sends a given user to the same replica. A request
counts as in flight from its routing until its caller has the answer (not until its batch came
back), so a replica whose users are about to ask again does not look idle meanwhile.

Ray is imported only by :class:`RayReplica`; the rest runs and is tested without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import msgspec

from recoworld.errors import LLMError
from recoworld.llm.types import LLMRequest, LLMResult
from recoworld.rng import stable_hash64


class ReplicaDied(LLMError):
    """A replica can serve no more requests (actor dead or engine failed); names the replica."""


def home_replica(user: int, replicas: int) -> int:
    """The home replica of ``user`` among ``replicas``: a stable hash, the same in every process."""
    return stable_hash64("llm-replica", user) % replicas


class RoutingCounts(msgspec.Struct, kw_only=True):
    """How requests were routed (for tests, benchmarks and logs)."""

    home: int = 0
    """Sent to the user's home replica."""
    least_loaded: int = 0
    """The home was busier than the least-loaded replica by more than the slack."""
    rehomed: int = 0
    """The home replica was dead: sent to the user's home among the live replicas."""
    unkeyed: int = 0
    """No user on the request: sent to the least-loaded replica."""
    failed: int = 0
    """Came back as retryable errors because their replica died."""

    @property
    def routed(self) -> int:
        return self.home + self.least_loaded + self.rehomed + self.unkeyed

    @property
    def home_share(self) -> float:
        """Share of keyed requests that went home (1.0 when none were routed)."""
        keyed = self.home + self.least_loaded + self.rehomed
        return self.home / keyed if keyed else 1.0


class RouteTable:
    """The routing decision and the in-flight counts of one shard (plain logic, no I/O)."""

    def __init__(self, replicas: int, slack: int) -> None:
        if replicas < 1:
            raise LLMError(f"a router needs at least 1 replica, got {replicas} (llm.replicas)")
        if slack < 0:
            raise LLMError(f"llm.affinity_slack must be >= 0, got {slack}")
        self.slack = slack
        self.in_flight = [0] * replicas
        self.alive = [True] * replicas
        self.counts = RoutingCounts()

    def live(self) -> list[int]:
        return [k for k, ok in enumerate(self.alive) if ok]

    def choose(self, user: int) -> int:
        """The replica for one request of ``user`` (counted as in flight there)."""
        live = self.live()
        if not live:
            raise LLMError(
                f"every one of the {len(self.alive)} LLM replicas is dead; none can serve the study"
            )
        least = min(live, key=lambda k: (self.in_flight[k], k))
        if user < 0:
            k, self.counts.unkeyed = least, self.counts.unkeyed + 1
        else:
            home = home_replica(user, len(self.alive))
            if not self.alive[home]:
                home = live[stable_hash64("llm-rehome", user) % len(live)]
                self.counts.rehomed += 1
                k = home
            elif self.in_flight[home] - self.in_flight[least] > self.slack:
                k, self.counts.least_loaded = least, self.counts.least_loaded + 1
            else:
                k, self.counts.home = home, self.counts.home + 1
        self.in_flight[k] += 1
        return k

    def done(self, replica: int, n: int = 1) -> None:
        self.in_flight[replica] -= n

    def kill(self, replica: int) -> None:
        self.alive[replica] = False


Send = Callable[[int, list[LLMRequest]], Awaitable[list[LLMResult]]]
"""``send(replica, batch)``: the results of ``batch`` from replica ``replica``; raises
:class:`ReplicaDied` when the replica can serve no more."""


class ReplicaRouter:
    """A :class:`~recoworld.llm.base.LanguageModel` over replicas reached by ``send`` (see the
    module docstring). ``max_batch`` bounds the requests of one call to a replica."""

    def __init__(
        self,
        send: Send,
        replicas: int,
        *,
        slack: int = 16,
        name: str = "replicas",
        max_batch: int = 512,
    ) -> None:
        self._send = send
        self.table = RouteTable(replicas, slack)
        self.name = name
        self.max_batch = max_batch
        self.calls = 0
        """Actor calls made (batches sent)."""
        self.died: dict[int, str] = {}
        """Dead replicas and why."""
        self._queued: list[list[tuple[LLMRequest, asyncio.Future]]] = [[] for _ in range(replicas)]
        self._flush_at: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def counts(self) -> RoutingCounts:
        return self.table.counts

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        loop = asyncio.get_running_loop()
        chosen: list[int] = []
        try:
            for r in requests:
                chosen.append(self.table.choose(r.user))
        except LLMError:  # every replica is dead: nothing of this batch was queued
            for k in chosen:
                self.table.done(k)
            raise
        futures = []
        for r, k in zip(requests, chosen):
            fut = loop.create_future()
            self._queued[k].append((r, fut))
            futures.append(fut)
        if futures and self._flush_at is not loop:
            self._flush_at = loop  # one flush per loop round, after every ready coroutine queued
            loop.call_soon(self._flush)
        try:
            return list(await asyncio.gather(*futures))
        finally:
            # in flight until the caller has its answer, not until the batch came back: the
            # users of a batch that just returned have not asked again yet, and their replica
            # must not look idle to the users of another batch meanwhile
            for k in chosen:
                self.table.done(k)

    def _flush(self) -> None:
        self._flush_at = None
        for k, queued in enumerate(self._queued):
            if not queued:
                continue
            self._queued[k] = []
            for start in range(0, len(queued), self.max_batch):
                task = asyncio.ensure_future(self._call(k, queued[start : start + self.max_batch]))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _call(self, k: int, batch: list[tuple[LLMRequest, asyncio.Future]]) -> None:
        requests = [r for r, _ in batch]
        self.calls += 1
        try:
            if not self.table.alive[k]:
                raise ReplicaDied(self.died.get(k, f"LLM replica {k} is dead"))
            results = await self._send(k, requests)
            if len(results) != len(requests):
                raise LLMError(
                    f"LLM replica {k} answered {len(results)} results for {len(requests)} requests"
                )
        except ReplicaDied as e:
            self.table.kill(k)
            self.died.setdefault(k, str(e))
            self.table.counts.failed += len(requests)
            results = [
                LLMResult(
                    id=r.id, text="", finish_reason="error", error=str(e), retryable=True, replica=k
                )
                for r in requests
            ]
        except BaseException as e:  # a bug or a cancelled run: hand it to every waiting caller
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            return
        for (_, fut), res in zip(batch, results):
            if not fut.done():
                fut.set_result(res)

    async def close(self) -> None:
        """Nothing to release: the replicas belong to the run (the coordinator kills them)."""
        return None


class RayReplica:
    """``send`` for :class:`ReplicaRouter` over ``LLMReplicaActor`` handles: one actor call per
    batch; a dead actor, or an engine that raised, is :class:`ReplicaDied`."""

    def __init__(self, handles: Sequence) -> None:  # noqa: ANN001 - Sequence[ray.actor.ActorHandle]
        self.handles = list(handles)

    async def __call__(self, k: int, batch: list[LLMRequest]) -> list[LLMResult]:
        from ray.exceptions import RayActorError, RayTaskError

        try:
            return await self.handles[k].generate.remote(batch)
        except RayActorError as e:
            raise ReplicaDied(f"LLM replica {k} died: {_brief(e, last=False)}") from None
        except RayTaskError as e:
            cause = e.as_instanceof_cause()
            if isinstance(cause, LLMError):  # the engine is dead or broken: route around it
                raise ReplicaDied(f"LLM replica {k} failed: {_brief(cause, last=True)}") from None
            raise


def ray_router(handles: Sequence, *, slack: int, name: str = "ray-replicas") -> ReplicaRouter:  # noqa: ANN001
    """A :class:`ReplicaRouter` over ``LLMReplicaActor`` handles
    (replica ``k`` = ``handles[k]``)."""
    return ReplicaRouter(RayReplica(handles), len(handles), slack=slack, name=name)


def _brief(e: BaseException, *, last: bool) -> str:
    """One line of a Ray error: the first of an actor error, the last (the exception itself,
    without its class prefix) of a task error's traceback."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    line = lines[-1] if last else lines[0]
    return (
        line.split(": ", 1)[1]
        if last and line.startswith(("recoworld.errors.", "LLMError:")) and ": " in line
        else line
    )
