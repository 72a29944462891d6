"""Language brains: users who reason in words (``llm``), or who choose parametrically and only
speak through the model (``hybrid``). One user at a time, asynchronously: many users are in
flight together, each waiting on at most one call, so engines stay full without a turn barrier.

Both keep the parametric brain (:class:`~recoworld.users.brain.ParametricBrain`) beside them:
its mindset dynamics move the mindset after the model's decisions, its return model decides
whether the user comes back, and its decisions stand in for a completion that stays invalid
after one repair attempt (counted as ``fallback`` in ``llm_calls`` and the run summary).

Per turn of the llm brain:
1. the prompt: shared instructions, tags, persona, earlier session summaries (the user's stable
   prefix), then this session's history and mindset in words, then the slate (with
   ``[llm] attach_images``, the images of its first items attached after the text);
2. one call with the slate-answer schema (per item: decision, watch %, rating, feeling; then
   continue or leave; an optional instruction); invalid -> one repair call -> else parametric;
3. the mindset moves item by item with the parametric dynamics applied to the model's choices.
The hybrid brain decides with the parametric brain and calls the model only when the user
writes an instruction (the words, and a feeling per clicked item of that slate). Both brains
have the model write the session summary kept in memory and shown in later sessions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from recoworld.config import LLMConfig
from recoworld.items.catalog import Catalog
from recoworld.items.images import SlateImages, slate_images
from recoworld.llm.ask import ask_structured
from recoworld.llm.base import LanguageModel
from recoworld.llm.schemas import slack
from recoworld.llm.types import CallKey, Sampling
from recoworld.llm.wrappers import CallLog
from recoworld.records import (
    ACTIONS,
    CLICK,
    RATE,
    SKIP,
    WATCH,
    Instructions,
    SlateFeedback,
    TurnDecision,
)
from recoworld.users.answers import language_type, slate_type, summary_type, tag_index
from recoworld.users.brain import Mindset, ParametricBrain
from recoworld.users.persona import Personas
from recoworld.users.prompts import (
    USER_INSTRUCTIONS,
    language_prompt,
    slate_prompt,
    slate_summary_lines,
    summary_prompt,
    user_header,
)
from recoworld.users.words import instruction_text

_F32 = np.float32


@dataclass
class UserMemory:
    """One user's memory in a language brain: summaries of earlier sessions (its own words),
    and the interaction lines of the current session."""

    summaries: list[str] = field(default_factory=list)
    recent: list[str] = field(default_factory=list)


class LanguageBrain:
    """What the llm and hybrid brains share: prompts, requests, decoding with one repair."""

    kind = "llm"

    def __init__(
        self,
        brain: ParametricBrain,
        model: LanguageModel,
        llm: LLMConfig,
        log: CallLog,
        *,
        arm: str,
        turns: int,
    ) -> None:
        self.brain, self.model, self.llm, self.log, self.arm, self.turns = (
            brain,
            model,
            llm,
            log,
            arm,
            turns,
        )
        self.cat: Catalog = brain.cat
        self.p: Personas = brain.p
        self.rated = brain.model.rating is not None
        self._persona: dict[int, str] = {}
        self.fallbacks = 0
        self.image_fallbacks = 0
        """Images left out of prompts as unreadable (``[items] on_bad_image = "fallback"``)."""

    def persona(self, b: int) -> str:
        if b not in self._persona:
            self._persona[b] = self.p.describe(self.cat, b)
        return self._persona[b]

    def header(self, b: int, mem: UserMemory) -> str:
        """The user's stable prefix (shared preamble, persona, earlier visits)."""
        return user_header(USER_INSTRUCTIONS, self.cat.tags, self.persona(b), mem.summaries)

    def _sampling(self) -> Sampling:
        return Sampling(
            temperature=self.llm.temperature, top_p=self.llm.top_p, max_tokens=self.llm.max_tokens
        )

    async def ask(
        self,
        b: int,
        session: int,
        turn: int,
        purpose: str,
        prompt: str,
        t: type,
        lenient: type | None = None,
        images: tuple[str, ...] = (),
    ) -> object | None:
        """One call constrained to ``t`` (and one repair call if the answer does not decode into
        ``lenient``, ``t`` with slack on string lengths); the decoded answer, or None when both
        fail (the caller falls back and the fallback is counted). ``images``: attached to
        both calls."""
        out = await ask_structured(
            self.model,
            self.log,
            arm=self.arm,
            root_seed=self.brain.seed,
            uid=int(self.p.uid[b]),
            session=session,
            turn=turn,
            purpose=purpose,
            prompt=prompt,
            t=t,
            lenient=lenient,
            sampling=self._sampling(),
            images=images,
        )
        if out.status == "fallback":
            self.fallbacks += 1
        return out.answer

    def images(self, b: int, session: int, turn: int, slate: np.ndarray) -> SlateImages:
        """The images a slate prompt attaches: none unless ``[llm] attach_images``; else the
        first ``max_images`` readable images of the slate's items, in slate order. Images left
        out as unreadable (``[items] on_bad_image = "fallback"``; "error" raises) are counted
        and noted in ``llm_calls`` (one row per prompt, status ``image_fallback``, the problems
        as its error), so they are never silent."""
        if not self.llm.attach_images:
            return SlateImages((), ())
        got = slate_images(self.cat, slate.tolist(), limit=self.llm.max_images)
        if got.fallbacks:
            self.image_fallbacks += got.fallbacks
            uid = int(self.p.uid[b])
            key = CallKey(
                arm=self.arm, user=uid, session=session, turn=turn, purpose="images-slate"
            )
            self.log.note(key, "image_fallback", error="; ".join(got.problems)[:2000])
        return got

    async def summarize(
        self, b: int, session: int, mem: UserMemory, satisfaction: float
    ) -> str | None:
        """The session summary in the user's words (None: the model failed; the caller keeps the
        templated summary)."""
        prompt = summary_prompt(self.header(b, mem), session, mem.recent, satisfaction)
        n = self.llm.summary_chars
        ans = await self.ask(
            b, session, self.turns, "summary", prompt, summary_type(n), summary_type(slack(n))
        )
        return None if ans is None else ans.summary.strip()[:n]  # type: ignore[attr-defined]

    async def decide(
        self, mind: Mindset, b: int, session: int, turn: int, slate: np.ndarray, mem: UserMemory
    ) -> TurnDecision:
        """The decide step of user ``b`` (batch row) for its (1, k) ``slate``; what it did
        enters this visit's memory. ``mind`` moves in place."""
        decision = await self._decide(mind, b, session, turn, slate, mem)
        self.remember(mem, turn, slate[0], decision.feedback)
        return decision

    async def _decide(
        self, mind: Mindset, b: int, session: int, turn: int, slate: np.ndarray, mem: UserMemory
    ) -> TurnDecision:
        raise NotImplementedError

    def _parametric(
        self, mind: Mindset, b: int, session: int, turn: int, slate: np.ndarray
    ) -> TurnDecision:
        """The fitted model's decision, its instruction in templated words."""
        d = self.brain.decide(mind, np.array([b]), session, turn, slate)
        ins = d.instructions
        if not ins.rows.size:
            return d
        text = instruction_text(self.cat.tags, int(ins.more_of[0]), int(ins.less_of[0]))
        return replace(d, instructions=replace(ins, texts=[text]))

    def remember(self, mem: UserMemory, turn: int, slate: np.ndarray, fb: SlateFeedback) -> None:
        """Append the slate to this visit's memory (append-only: the next prompt extends this
        one)."""
        actions = [ACTIONS[int(a)] for a in fb.action[0]]
        feelings = list(fb.feelings[0]) if fb.feelings is not None else [None] * len(actions)
        mem.recent.extend(
            slate_summary_lines(self.cat, turn, slate, actions, fb.watch[0], fb.rating[0], feelings)
        )


class LLMBrain(LanguageBrain):
    """The model decides every item, continue or leave, and the instruction."""

    kind = "llm"

    async def _decide(
        self, mind: Mindset, b: int, session: int, turn: int, slate: np.ndarray, mem: UserMemory
    ) -> TurnDecision:
        rows = np.array([b])
        k = slate.shape[1]
        mind_now = np.array(
            [mind.satisfaction[0], mind.fatigue[0], mind.boredom[0], mind.curiosity[0]]
        )
        shown = self.images(b, session, turn, slate[0])
        prompt = slate_prompt(
            self.cat,
            self.persona(b),
            mem.summaries,
            mem.recent,
            session=session,
            turn=turn,
            turns=self.turns,
            mind=mind_now,
            slate=slate[0],
            images=shown.positions,
        )
        fc, ic = self.llm.feeling_chars, self.llm.instruction_chars
        t = slate_type(k, self.cat.tags, self.rated, fc, ic)
        ans = await self.ask(
            b,
            session,
            turn,
            "slate",
            prompt,
            t,
            slate_type(k, self.cat.tags, self.rated, slack(fc), slack(ic)),
            images=shown.urls,
        )
        if ans is None:  # parametric fallback
            return self._parametric(mind, b, session, turn, slate)
        action = np.zeros((1, k), np.int8)
        watch = np.zeros((1, k), _F32)
        rating = np.full((1, k), np.nan, _F32)
        feelings = np.empty((1, k), object)
        thr = self.brain.cfg.watch_threshold
        for j, item in enumerate(ans.items):  # type: ignore[attr-defined]
            feelings[0, j] = item.feeling.strip()[:fc] or None
            pct = item.watch_percent / 100.0
            if item.decision == "skip":
                continue
            if item.decision == "click":
                action[0, j], watch[0, j] = CLICK, min(pct, thr * 0.99) if pct > 0 else thr / 2
                continue
            action[0, j], watch[0, j] = WATCH, max(pct, thr)
            if self.rated and getattr(item, "rating", None) is not None:
                action[0, j], rating[0, j] = RATE, float(item.rating)
        fb = SlateFeedback(
            action=action,
            watch=watch,
            rating=rating,
            mind=self.brain.apply_choices(mind, rows, slate, action, watch, rating),
            feelings=feelings,
        )
        ins = ans.instruction  # type: ignore[attr-defined]
        if ins is not None:
            more, less = (
                tag_index(self.cat.tags, ins.more_of),
                tag_index(self.cat.tags, ins.less_of),
            )
            mind.last_instruct_turn[0] = turn
            instructions = Instructions(
                rows=np.array([0]),
                more_of=np.array([more]),
                less_of=np.array([less if less != more else -1]),
                texts=[ins.text.strip()[:ic] or "Something different, please."],
            )
        else:
            instructions = Instructions.none()
        leave = np.array([ans.next == "leave"])  # type: ignore[attr-defined]
        return TurnDecision(feedback=fb, leave=leave, instructions=instructions)


class HybridBrain(LanguageBrain):
    """Parametric choices; the model only writes the words of a disengaging user (the
    instruction, and a feeling per clicked item of that slate) and the session summary."""

    kind = "hybrid"

    async def _decide(
        self, mind: Mindset, b: int, session: int, turn: int, slate: np.ndarray, mem: UserMemory
    ) -> TurnDecision:
        d = self._parametric(mind, b, session, turn, slate)
        fb, ins = d.feedback, d.instructions
        if not ins.rows.size:
            return d
        template = ins.texts[0]  # type: ignore[index]
        clicked = np.flatnonzero(fb.action[0] != SKIP)
        more = self.cat.tags[int(ins.more_of[0])]
        less = self.cat.tags[int(ins.less_of[0])] if ins.less_of[0] >= 0 else None
        mind_now = np.array(
            [mind.satisfaction[0], mind.fatigue[0], mind.boredom[0], mind.curiosity[0]]
        )
        prompt = language_prompt(
            self.header(b, mem),
            self.cat,
            session=session,
            turn=turn,
            turns=self.turns,
            recent=mem.recent,
            mind=mind_now,
            slate=slate[0],
            actions=[ACTIONS[int(a)] for a in fb.action[0]],
            watch=fb.watch[0],
            more=more,
            less=less,
        )
        fc, ic = self.llm.feeling_chars, self.llm.instruction_chars
        t = language_type(int(clicked.size), fc, ic, True)
        ans = await self.ask(
            b,
            session,
            turn,
            "language",
            prompt,
            t,
            language_type(int(clicked.size), slack(fc), slack(ic), True),
        )
        if ans is None:
            return d
        feelings = np.empty((1, fb.action.shape[1]), object)
        for j, f in zip(clicked.tolist(), ans.feelings):  # type: ignore[attr-defined]
            feelings[0, j] = f.strip()[:fc] or None
        fb = SlateFeedback(
            action=fb.action, watch=fb.watch, rating=fb.rating, mind=fb.mind, feelings=feelings
        )
        words = ans.instruction.strip()[:ic] or template  # type: ignore[attr-defined]
        return replace(d, feedback=fb, instructions=replace(ins, texts=[words]))


def build_language_brain(
    kind: str,
    brain: ParametricBrain,
    model: LanguageModel,
    llm: LLMConfig,
    log: CallLog,
    *,
    arm: str,
    turns: int,
) -> LanguageBrain:
    match kind:
        case "llm":
            return LLMBrain(brain, model, llm, log, arm=arm, turns=turns)
        case "hybrid":
            return HybridBrain(brain, model, llm, log, arm=arm, turns=turns)
    raise ValueError(f"not a language brain: {kind!r}; expected llm or hybrid")
