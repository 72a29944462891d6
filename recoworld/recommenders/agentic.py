"""The agentic recommender (RecoWorld's recommender view): retrieve, then let a language model
re-rank with the user's own instructions and its own previous reasoning.

Per user and turn:
1. the base recommender (random / popular / mf, with the instruction re-ranker when
   configured) retrieves its ``rerank_candidates`` best unshown items;
2. the language model sees what the recommender knows of the user (tastes from its history,
   what it did with earlier slates, the instructions it wrote — as data fields) and its own
   reasoning from the previous turn, and answers with its reasoning and ``k`` candidate ids,
   constrained to an enum of the candidates;
3. the answer is checked: an id outside the candidates or a repeated id rejects the whole
   ranking (counted as ``rejected_id`` in ``llm_calls``) and the base order is shown instead;
   an answer that does not decode gets one repair attempt, then the base order (``fallback``);
4. creator injection, if the arm has it, edits the final slate.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from functools import partial

import msgspec
import numpy as np

from recoworld.config import LLMConfig
from recoworld.errors import RecommenderError
from recoworld.llm.ask import ask_structured
from recoworld.llm.base import LanguageModel
from recoworld.llm.schemas import slack
from recoworld.llm.types import Sampling
from recoworld.llm.wrappers import CallLog
from recoworld.recommenders.agentic_prompts import feedback_lines, rerank_prompt, rerank_type
from recoworld.recommenders.base import Audience, PoolRecommender, PostProcessor
from recoworld.records import ACTIONS, SlateFeedback


class AgenticRecommender:
    """Retrieve with ``base``, re-rank with ``model``; see the module docstring. Per-user state
    only (instructions, feedback lines, last reasoning), so users are independent."""

    def __init__(
        self,
        base: PoolRecommender,
        post: tuple[PostProcessor, ...],
        model: LanguageModel,
        llm: LLMConfig,
        log: CallLog,
        *,
        arm: str,
        seed: int,
        m: int,
    ) -> None:
        self.base, self.post, self.model, self.llm, self.log = base, post, model, llm, log
        self.arm, self.seed, self.m = arm, seed, m

    @property
    def name(self) -> str:
        return f"agentic({self.base.name})"

    def bind(self, audience: Audience) -> None:
        self.aud = audience
        self.base.bind(audience)
        for pp in self.post:
            pp.bind(audience)
        n = len(audience.personas)
        self.instructions: list[list[str]] = [[] for _ in range(n)]
        self.feedback: list[list[str]] = [[] for _ in range(n)]
        self.reasoning: list[str] = [""] * n
        self.last_ranking: list[list[str]] = [[] for _ in range(n)]

    def recommend(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        """:meth:`recommend_async` from synchronous code (the vectorised loop, the Gymnasium
        env): runs the requests on an event loop of its own."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.recommend_async(idx, session, turn, k))
        raise RecommenderError(
            "AgenticRecommender.recommend was called inside a running event loop; "
            "expected `await recommend_async(...)` there"
        )

    async def recommend_async(self, idx: np.ndarray, session: int, turn: int, k: int) -> np.ndarray:
        """Slates for users ``idx`` (one request per user, all in flight together)."""
        rows = await asyncio.gather(*(self._one(int(b), session, turn, k) for b in idx))
        return np.stack(rows)

    async def _one(self, b: int, session: int, turn: int, k: int) -> np.ndarray:
        base, cat = self.base, self.aud.catalog
        idx = np.array([b])
        m = max(k, min(self.m, base.m))
        cand = base.propose(idx, session, turn, m)[0]  # only what is finally shown counts
        ids = tuple(dict.fromkeys(str(cat.item_ids[i]) for i in cand))
        chosen = await self._rank(b, session, turn, k, cand, ids)
        slate = chosen[None, :]
        for pp in self.post:
            slate = pp.process(idx, session, turn, slate, base.shown)
        base.mark_shown(idx, slate)
        return slate[0]

    def _prompt(self, b: int, session: int, turn: int, k: int, cand: np.ndarray) -> str:
        cat = self.aud.catalog
        return rerank_prompt(
            cat,
            likes=self.aud.personas.liked_tags(cat, b),
            feedback=self.feedback[b],
            instructions=self.instructions[b],
            reasoning=self.reasoning[b],
            session=session,
            turn=turn,
            k=k,
            candidates=cand,
        )

    async def _rank(
        self, b: int, session: int, turn: int, k: int, cand: np.ndarray, ids: tuple[str, ...]
    ) -> np.ndarray:
        if len(ids) < k or len(ids) != cand.size:  # exhausted users repeat items: the base order
            return cand[:k]
        out = await ask_structured(
            self.model,
            self.log,
            arm=self.arm,
            root_seed=self.seed,
            uid=int(self.aud.personas.uid[b]),
            session=session,
            turn=turn,
            purpose="rerank",
            prompt=self._prompt(b, session, turn, k, cand),
            t=rerank_type(ids, k),
            lenient=rerank_type(ids, k, slack(300)),
            sampling=Sampling(
                temperature=self.llm.temperature,
                top_p=self.llm.top_p,
                max_tokens=self.llm.max_tokens,
            ),
            check=partial(_refuse_ids, k),
        )
        if out.answer is None:
            return cand[:k]  # rejected or fallback, counted in llm_calls: the base order
        self.reasoning[b] = out.answer.reasoning  # type: ignore[attr-defined]
        pos = {s: j for j, s in enumerate(ids)}
        return cand[[pos[s] for s in out.answer.ranking]]  # type: ignore[attr-defined]

    def observe(self, idx: np.ndarray, slates: np.ndarray, feedback: SlateFeedback) -> None:
        self.base.observe(idx, slates, feedback)
        cat = self.aud.catalog
        for r, b in enumerate(idx.tolist()):
            actions = [ACTIONS[int(a)] for a in feedback.action[r]]
            self.feedback[b].extend(feedback_lines(cat, slates[r].tolist(), actions))

    def instruct(
        self, idx: np.ndarray, more_of: np.ndarray, less_of: np.ndarray, texts: Sequence[str]
    ) -> None:
        """Tags go to the base recommender; the words are shown to the model (as data)."""
        self.base.instruct(idx, more_of, less_of, texts)
        for j, b in enumerate(idx.tolist()):
            self.instructions[b].append(texts[j])


def _refuse_ids(k: int, text: str, answer: object | None, error: Exception | None) -> str | None:
    """``rejected_id`` for a ranking that names an item that is not a candidate, or one twice:
    no repair, the recommender named something it may not show."""
    if answer is not None:
        ranking = answer.ranking  # type: ignore[attr-defined]
        return None if len(set(ranking)) == k else "rejected_id"
    if isinstance(error, msgspec.ValidationError) and "ranking" in str(error):
        try:
            json.loads(text, strict=False)
        except ValueError:
            return None  # not even JSON: invalid, repaired as usual
        return "rejected_id"
    return None
