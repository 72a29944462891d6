"""A scripted language model for unit tests: answers every schema RecoWorld asks for with
valid JSON, by simple, inspectable rules read off the prompt. It stands in for a real engine
in fast tests only; the same paths run against a real vLLM engine in the ``llm`` test tier.

Rules:
- slate answer: watch the items whose tags share a tag with the persona's likes (80%, rate 4),
  skip the others; leave after a slate with nothing watched at slate 3 or later; when nothing
  on the slate matched, instruct "more of" the first liked tag;
- agentic re-rank: candidates whose tags contain the tag named after "more" in the user's last
  instruction come first, then the base order;
- summaries and feelings: fixed phrases;
- the social world's round choice: "social" when it is open and the prompt lists items the user
  may talk about, else "recommender" when open, else "nothing"; its message mentions the first
  item it may (``message_text`` is the words: a test may make them hostile); its search
  query is the first item it heard of (the title inside the data field), else "something new".
Faults can be injected to test repair, fallback and rejection: ``invalid_every`` (every n-th
call returns broken JSON), ``always_invalid`` (purposes whose answers never decode),
``hallucinate`` (re-rank answers name an item that is not a candidate), ``fail_retryable``
(the first n calls come back as retryable errors).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from recoworld.llm.types import LLMRequest, LLMResult

_FIELD = re.compile(r"<<([^<>]*)>>")


class ScriptedModel:
    name = "scripted"

    def __init__(
        self,
        *,
        invalid_every: int = 0,
        always_invalid: tuple[str, ...] = (),
        hallucinate: bool = False,
        fail_retryable: int = 0,
        ignore_instructions: bool = False,
        message_text: str = "You should really try this one.",
    ) -> None:
        self.invalid_every, self.always_invalid, self.hallucinate = (
            invalid_every,
            always_invalid,
            hallucinate,
        )
        self.fail_retryable, self.ignore_instructions = fail_retryable, ignore_instructions
        self.message_text = message_text
        self.calls = 0
        self.requests: list[LLMRequest] = []

    async def generate(self, requests: Sequence[LLMRequest]) -> list[LLMResult]:
        out = []
        for r in requests:
            self.calls += 1
            self.requests.append(r)
            if self.fail_retryable > 0:
                self.fail_retryable -= 1
                out.append(
                    LLMResult(
                        id=r.id,
                        text="",
                        finish_reason="error",
                        error="scripted outage",
                        retryable=True,
                        model=self.name,
                    )
                )
                continue
            purpose = r.purpose.removeprefix("repair-")
            broken = purpose in self.always_invalid or (
                self.invalid_every and self.calls % self.invalid_every == 0
            )
            text = (
                '{"items": ['
                if broken
                else json.dumps(self._answer(r, json.loads(r.schema) if r.schema else {}))
            )
            out.append(
                LLMResult(
                    id=r.id,
                    text=text,
                    tokens_in=len(r.prompt) // 4,
                    tokens_out=len(text) // 4,
                    finish_reason="stop",
                    latency_s=0.0,
                    model=self.name,
                )
            )
        return out

    async def close(self) -> None:
        return None

    def _answer(self, r: LLMRequest, schema: dict) -> dict:
        props = schema.get("properties", {})
        if "items" in props and "next" in props:
            return self._slate(r.prompt, props)
        if "ranking" in props:
            return self._rerank(r.prompt, props)
        if "choice" in props:
            return {"choice": _round_choice(r.prompt, props["choice"]["enum"])}
        if "items" in props and "text" in props:
            return {"items": props["items"]["items"]["enum"][:1], "text": self.message_text}
        if "query" in props:
            return {"query": _heard_of(r.prompt)}
        if "summary" in props:
            return {"summary": "I browsed a few slates and watched what matched my tastes."}
        if "feelings" in props:
            n = props["feelings"]["minItems"]
            ans: dict = {"feelings": ["not quite what I wanted"] * n}
            if "instruction" in props:
                ans["instruction"] = "Please show me something closer to what I like."
            return ans
        raise ValueError(f"scripted model: unknown schema with properties {sorted(props)}")

    def _slate(self, prompt: str, props: dict) -> dict:
        likes = _likes(prompt)
        k = props["items"]["minItems"]
        rated = "rating" in props["items"]["items"]["properties"]
        items, matched = [], 0
        for line in _slate_lines(prompt)[:k]:
            tags = _tags_of(line)
            hit = bool(likes & {t.lower() for t in tags})
            matched += hit
            d = {"decision": "watch" if hit else "skip", "watch_percent": 80 if hit else 0}
            if rated:
                d["rating"] = 4 if hit else None
            d["feeling"] = "right up my street" if hit else "not for me"
            items.append(d)
        slate_no = (
            int(m.group(1))
            if (m := re.search(r"slate (\d+) of at most", prompt, re.IGNORECASE))
            else 1
        )
        instruction = None
        enum = props["instruction"]["anyOf"][0]["properties"]["more_of"]["anyOf"][0].get("enum", [])
        if not matched and likes:
            want = next((t for t in enum if t.lower() in likes), None)
            if want is not None:
                instruction = {"text": f"Show me more {want}.", "more_of": want, "less_of": None}
        return {
            "items": items,
            "next": "leave" if (not matched and slate_no >= 3) else "continue",
            "instruction": instruction,
        }

    def _rerank(self, prompt: str, props: dict) -> dict:
        k = props["ranking"]["minItems"]
        ids = props["ranking"]["items"]["enum"]
        want = None if self.ignore_instructions else _wanted(prompt)
        lines = _candidate_lines(prompt)
        first = [i for i, tags in lines if want and want in {t.lower() for t in tags}]
        order = first + [i for i, _ in lines if i not in first]
        order = [i for i in order if i in ids][:k]
        if self.hallucinate:
            order[0] = "no-such-item"
        return {"reasoning": f"user asked for {want}" if want else "base order", "ranking": order}


def _heard_of(prompt: str) -> str:
    part = prompt.split("Items you heard of:", 1)[-1]
    m = re.match(r"\s*- [^<\n]*<<([^<>]*)>>", part)
    return m.group(1) if m else "something new"


def _round_choice(prompt: str, options: list[str]) -> str:
    part = prompt.split("Items you watched and have not talked about:", 1)[-1]
    has_news = not part.lstrip().startswith("- (nothing)")
    if "social" in options and has_news:
        return "social"
    return "recommender" if "recommender" in options else "nothing"


def _likes(prompt: str) -> set[str]:
    m = re.search(r"likes ([^;.\n]+)", prompt)
    return {t.strip().lower() for t in m.group(1).split(",")} if m else set()


def _slate_lines(prompt: str) -> list[str]:
    part = prompt.split("## The slate, in order", 1)[-1]
    return [ln for ln in part.splitlines() if re.match(r"^\d+\. id <<", ln)]


def _tags_of(line: str) -> list[str]:
    m = re.search(r"tags <<([^<>]*)>>", line)
    return [t.strip() for t in m.group(1).split(",")] if m else []


def _wanted(prompt: str) -> str | None:
    part = prompt.split("Instructions the user wrote", 1)[-1].split("##", 1)[0]
    found = re.findall(r"more ([A-Za-z0-9'&/ -]+?)[.,<]", part)
    return found[-1].strip().lower() if found else None


def _candidate_lines(prompt: str) -> list[tuple[str, list[str]]]:
    part = prompt.split("candidates, in the base recommender's order", 1)[-1]
    out = []
    for ln in part.splitlines():
        m = re.match(r"^\d+\. id <<([^<>]*)>>", ln)
        if m:
            out.append((m.group(1), _tags_of(ln)))
    return out
