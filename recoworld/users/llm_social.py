"""The language brain's voice in the social world (docs/social.md, "The language-model brain").

With ``brain.kind = "llm"`` or ``"hybrid"`` and ``[social]`` on, the model answers what a user
does with its day, writes what it says to its friends and types its searches; everything else
(the pages it reviews in the recommender, the mindset, the return model, whether it searches)
stays the parametric brain's:

1. **the round choice**: one call per user who takes part, constrained to the choices open to
   it this round (``round_type``: a JSON-schema enum); the prompt shows what friends told it
   lately (their words: another user's text, in data fields only), the items it heard of and
   the items it may talk about;
2. **a post or a chat** (the kind and the friend are drawn as for the parametric brain): the
   items it mentions are an enum of the ids of the items it watched and has not talked about
   yet (at most ``recoworld.social.talk.MENTIONS``: never the catalogue, so the schema stays
   small however large the catalogue is), and the words (at most ``llm.summary_chars``);
3. **a search query** (whether the user searches on a page is drawn as for the parametric
   brain): what it types, at most :data:`QUERY_CHARS` characters.

A question without a usable answer after one repair falls back to the parametric default (the
logit's draw; the templated words and every fresh item; the templated query), counted in
``llm_calls`` (``ask_structured``). Every call is keyed by (arm, user, round, page, purpose):
in ``llm_calls`` a social call's ``session`` column holds the round (day) and ``turn`` is 0, or
for a query the page it tops (a user has one visit a round); the same user asks the same
question in any shard, so replayed answers give the same events for any split of the
population.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec
import numpy as np

from recoworld.config import LLMConfig
from recoworld.items.catalog import Catalog
from recoworld.llm.ask import ask_structured
from recoworld.llm.base import LanguageModel
from recoworld.llm.schemas import slack
from recoworld.llm.types import Sampling
from recoworld.llm.wrappers import CallLog
from recoworld.users.answers import ROUND_OPTIONS, message_type, query_type, round_type
from recoworld.users.persona import Personas
from recoworld.users.prompts import (
    USER_INSTRUCTIONS,
    message_prompt,
    query_prompt,
    round_prompt,
    user_header,
)

ROUND, MESSAGE, QUERY = "round", "message", "query"
"""The purposes of the social calls in ``llm_calls``."""
QUERY_CHARS = 60
"""The longest search query the model may type."""


class RoundAsk(msgspec.Struct, frozen=True, kw_only=True):
    """One user's round question: its batch row, the options open to it (names from
    :data:`ROUND_OPTIONS`), the parametric default, and what the prompt shows."""

    row: int
    options: tuple[str, ...]
    default: str
    heard: tuple[tuple[int, str, str], ...] = ()
    aware: tuple[int, ...] = ()
    fresh: tuple[int, ...] = ()


class MessageAsk(msgspec.Struct, frozen=True, kw_only=True):
    """One user's message: its batch row, the kind (post or chat), the items it may mention
    (catalog rows), and the templated words (the default)."""

    row: int
    kind: str
    items: tuple[int, ...]
    default: str


class QueryAsk(msgspec.Struct, frozen=True, kw_only=True):
    """One user's search: its batch row, the templated query (the default), what the prompt
    shows."""

    row: int
    default: str
    heard: tuple[tuple[int, str, str], ...] = ()
    aware: tuple[int, ...] = ()


class SocialVoice:
    """What the model says for one arm of one shard's users (module docstring). ``personas``:
    the shard's users (batch rows index it); ``model`` records into ``log``."""

    def __init__(
        self,
        model: LanguageModel,
        log: CallLog,
        llm: LLMConfig,
        cat: Catalog,
        personas: Personas,
        *,
        arm: str,
        seed: int,
    ) -> None:
        self.model, self.log, self.llm, self.cat, self.p = model, log, llm, cat, personas
        self.arm, self.seed = arm, seed
        self._header: dict[int, str] = {}
        self.fallbacks = 0
        self.asked = 0

    def header(self, b: int) -> str:
        if b not in self._header:
            persona = self.p.describe(self.cat, b)
            self._header[b] = user_header(USER_INSTRUCTIONS, self.cat.tags, persona, ())
        return self._header[b]

    def _sampling(self) -> Sampling:
        return Sampling(
            temperature=self.llm.temperature, top_p=self.llm.top_p, max_tokens=self.llm.max_tokens
        )

    async def _ask(
        self, b: int, day: int, purpose: str, prompt: str, t: type, lenient: type, turn: int = 0
    ):  # noqa: ANN202
        self.asked += 1
        out = await ask_structured(
            self.model,
            self.log,
            arm=self.arm,
            root_seed=self.seed,
            uid=int(self.p.uid[b]),
            session=day,
            turn=turn,
            purpose=purpose,
            prompt=prompt,
            t=t,
            lenient=lenient,
            sampling=self._sampling(),
        )
        if out.answer is None:
            self.fallbacks += 1
        return out.answer

    # --- 1. the round choice ---------------------------------------------------------------

    def choose(self, day: int, asks: Sequence[RoundAsk]) -> list[str]:
        """Each user's choice (a name from :data:`ROUND_OPTIONS`), in ``asks`` order."""
        return _run(self._choices(day, asks))

    async def _choices(self, day: int, asks: Sequence[RoundAsk]) -> list[str]:
        return list(await asyncio.gather(*(self._choice(day, a) for a in asks)))

    async def _choice(self, day: int, a: RoundAsk) -> str:
        options = tuple(o for o in ROUND_OPTIONS if o in a.options)
        prompt = round_prompt(
            self.header(a.row),
            self.cat,
            day=day,
            heard=a.heard,
            aware=a.aware,
            fresh=a.fresh,
            options=options,
        )
        t = round_type(options)
        ans = await self._ask(a.row, day, ROUND, prompt, t, t)
        return a.default if ans is None else ans.choice  # type: ignore[attr-defined]

    # --- 2. a post or a chat ---------------------------------------------------------------

    def write(self, day: int, asks: Sequence[MessageAsk]) -> list[tuple[tuple[int, ...], str]]:
        """Each message's (mentioned items, words), in ``asks`` order."""
        return _run(self._messages(day, asks))

    async def _messages(self, day: int, asks: Sequence[MessageAsk]) -> list:
        return list(await asyncio.gather(*(self._message(day, a) for a in asks)))

    async def _message(self, day: int, a: MessageAsk) -> tuple[tuple[int, ...], str]:
        ids = tuple(str(self.cat.item_ids[i]) for i in a.items)
        n = self.llm.summary_chars
        prompt = message_prompt(self.header(a.row), self.cat, day=day, kind=a.kind, items=a.items)
        ans = await self._ask(
            a.row, day, MESSAGE, prompt, message_type(ids, n), message_type(ids, slack(n))
        )
        if ans is None:
            return a.items, a.default
        named = dict.fromkeys(ans.items)  # type: ignore[attr-defined]
        items = tuple(i for i, s in zip(a.items, ids) if s in named)  # the schema's ids only
        text = ans.text.strip()[:n] or a.default  # type: ignore[attr-defined]
        return items, text

    # --- 3. a search query ----------------------------------------------------------------

    def search(
        self, day: int, session: int, turn: int, asks: Sequence[QueryAsk]
    ) -> list[str | None]:
        """Each user's query (None: no usable answer, the templated one stands), in order."""
        return _run(self._queries(day, session, turn, asks))

    async def _queries(self, day: int, session: int, turn: int, asks: Sequence[QueryAsk]) -> list:
        return list(await asyncio.gather(*(self._query(day, session, turn, a) for a in asks)))

    async def _query(self, day: int, session: int, turn: int, a: QueryAsk) -> str | None:
        prompt = query_prompt(
            self.header(a.row),
            self.cat,
            day=day,
            session=session,
            turn=turn,
            heard=a.heard,
            aware=a.aware,
        )
        t, lenient = query_type(QUERY_CHARS), query_type(slack(QUERY_CHARS))
        ans = await self._ask(a.row, day, QUERY, prompt, t, lenient, turn=turn)
        if ans is None:
            return None
        return ans.query.strip()[:QUERY_CHARS] or None  # type: ignore[attr-defined]


def _run(coro):  # noqa: ANN001, ANN202
    """Await ``coro`` from synchronous code (the rounds are synchronous; the model may live on
    a background loop: ``recoworld.llm.factory.BackgroundModel``)."""
    return asyncio.run(coro)


def choice_codes(names: Sequence[str], choices: Sequence[str]) -> np.ndarray:
    """Names into codes of ``choices`` (e.g. ``recoworld.social.talk.CHOICES``)."""
    return np.array([choices.index(n) for n in names], np.int8)
