"""The in-process vLLM engine on CPU with the tiny random-weight model (one engine per session)."""

from __future__ import annotations

import asyncio
import json
import time

import msgspec
import pytest

pytest.importorskip("vllm")

from recoworld.llm.base import LanguageModel  # noqa: E402
from recoworld.llm.types import LLMRequest, LLMResult, Sampling  # noqa: E402

pytestmark = pytest.mark.llm


class Decision(msgspec.Struct, forbid_unknown_fields=True):
    item: int
    decision: str
    rating: int
    feeling: str
    more: bool


# A free string would let a random model write raw control characters (invalid JSON); a
# pattern with a bounded quantifier (xgrammar refuses pattern + maxLength) keeps it printable.
SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {
            "item": {"type": "integer", "enum": [11, 42, 97]},
            "decision": {"type": "string", "enum": ["skip", "click", "watch"]},
            "rating": {"type": "integer", "minimum": 1, "maximum": 5},
            "feeling": {"type": "string", "pattern": "^[A-Za-z0-9 ,.'!?-]{0,40}$"},
            "more": {"type": "boolean"},
        },
        "required": ["item", "decision", "rating", "feeling", "more"],
        "additionalProperties": False,
    }
)


def req(
    i: int, seed: int, prompt: str = "You are a user of a film site. Decide:", **kw
) -> LLMRequest:
    return LLMRequest(id=f"r{i}", prompt=prompt, seed=seed, **kw)


def test_is_a_language_model(tiny_engine):
    assert isinstance(tiny_engine.engine, LanguageModel)
    assert tiny_engine.engine.startup_s > 0


def test_seeds_make_sampling_reproducible(tiny_engine):
    sampling = Sampling(temperature=1.0, top_p=1.0, max_tokens=24)
    seeds = [1, 2, 1, 3, 2, 1]
    results = tiny_engine.run(
        tiny_engine.engine.generate([req(i, s, sampling=sampling) for i, s in enumerate(seeds)])
    )
    assert [r.id for r in results] == [f"r{i}" for i in range(len(seeds))]
    assert all(r.ok for r in results), [r.error for r in results]
    by_seed: dict[int, set[str]] = {}
    for s, r in zip(seeds, results):
        by_seed.setdefault(s, set()).add(r.text)
    assert all(len(texts) == 1 for texts in by_seed.values()), by_seed
    assert len({next(iter(t)) for t in by_seed.values()}) == 3, by_seed
    # and again in another batch: the seed, not the batch position, decides
    again = tiny_engine.run(tiny_engine.engine.generate([req(9, 3, sampling=sampling)]))
    assert again[0].text == results[3].text


def test_token_counts_and_finish_reasons(tiny_engine, tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    prompt = "Persona: a 30-year-old engineer who likes sci-fi. Slate: [11] Alien (1979)."
    [r] = tiny_engine.run(
        tiny_engine.engine.generate([req(0, 7, prompt=prompt, sampling=Sampling(max_tokens=17))])
    )
    assert r.tokens_in == len(tok(prompt).input_ids)
    assert r.model == "tiny" and r.replica == -1 and r.latency_s > 0
    assert r.cached_tokens >= 0
    # random weights rarely emit EOS: the length limit ends it, and then exactly at max_tokens
    assert r.finish_reason in ("stop", "length")
    if r.finish_reason == "length":
        assert r.tokens_out == 17
    assert 0 < r.tokens_out <= 17


def test_schema_outputs_all_decode(tiny_engine):
    sampling = Sampling(temperature=1.0, max_tokens=80)
    requests = [req(i, 1000 + i, schema=SCHEMA, sampling=sampling) for i in range(48)]
    results = tiny_engine.run(tiny_engine.engine.generate(requests))
    decoded = [msgspec.json.decode(r.text, type=Decision) for r in results]
    assert all(r.finish_reason == "stop" for r in results), [r.finish_reason for r in results]
    assert {d.item for d in decoded} <= {11, 42, 97}
    assert all(1 <= d.rating <= 5 and len(d.feeling) <= 40 for d in decoded)
    assert len({r.text for r in results}) > 10  # the seeds still vary the outputs


def test_concurrent_callers_share_the_engine(tiny_engine):
    engine = tiny_engine.engine
    engine.reset_counters()
    sampling = Sampling(max_tokens=32)

    async def user(u: int) -> LLMResult:
        [r] = await engine.generate(
            [req(u, u, prompt=f"User {u} sees a slate.", sampling=sampling)]
        )
        return r

    async def crowd() -> tuple[list[LLMResult], float]:
        t0 = time.perf_counter()
        out = await asyncio.gather(*(user(u) for u in range(40)))
        return list(out), time.perf_counter() - t0

    results, wall = tiny_engine.run(crowd())
    assert [r.id for r in results] == [f"r{u}" for u in range(40)]
    assert all(r.ok and r.tokens_out > 0 for r in results)
    stats = tiny_engine.run(engine.stats())
    assert stats["requests"] == 40 and stats["errors"] == 0
    assert stats["max_in_flight"] >= 20, stats  # batched together, not one after another
    assert sum(r.latency_s for r in results) > 3 * wall


def test_bad_request_is_an_error_result_and_the_others_succeed(tiny_engine):
    too_long = "word " * 1500  # > max_model_len 1024 tokens
    results = tiny_engine.run(
        tiny_engine.engine.generate(
            [req(0, 1, sampling=Sampling(max_tokens=8)), req(1, 1, prompt=too_long), req(2, 2)]
        )
    )
    ok0, bad, ok2 = results
    assert ok0.ok and ok2.ok and ok0.tokens_out > 0
    assert bad.finish_reason == "error" and not bad.retryable and bad.text == ""
    assert "maximum context length is 1024 tokens" in bad.error, bad.error
    assert bad.id == "r1"


def test_prefix_cache_hits_are_counted(tiny_engine):
    engine = tiny_engine.engine
    shared = "Shared instructions for every simulated user. " * 60  # ~ 400+ tokens
    tiny_engine.run(
        engine.generate([req(0, 1, prompt=shared + "User 0.", sampling=Sampling(max_tokens=4))])
    )
    engine.reset_counters()
    results = tiny_engine.run(
        engine.generate(
            [
                req(u, u, prompt=shared + f"User {u}.", sampling=Sampling(max_tokens=4))
                for u in range(1, 9)
            ]
        )
    )
    assert all(r.cached_tokens > 0.5 * r.tokens_in for r in results), [
        (r.cached_tokens, r.tokens_in) for r in results
    ]
    stats = tiny_engine.run(engine.stats())
    assert stats["prefix_cache_queries"] >= sum(r.tokens_in for r in results) - 8
    assert stats["prefix_cache_hits"] == sum(r.cached_tokens for r in results), stats
    assert stats["prefix_cache_hit_rate"] > 0.5
