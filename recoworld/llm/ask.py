"""One structured question to a language model, with one repair: the protocol every consumer
(the language brains, the agentic recommender, the fidelity decider) shares.

1. the request: the prompt, constrained to the JSON schema of struct ``t``, its seed a stable
   hash of (root seed, user, session, turn, purpose, attempt);
2. the answer is decoded into ``lenient`` (``t`` with slack on string lengths) and may be
   refused by ``check`` (e.g. an id that is not a candidate): refused answers get no repair;
3. an answer that does not decode gets one repair call (the prompt, the answer, the decoder's
   error); a failed call (after the retry wrapper) gets none;
4. every call gets its parse status in the log (ok | invalid | repaired | error | the check's
   status), and a question left without an answer adds a ``fallback`` row: never silent.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from recoworld.llm.base import LanguageModel
from recoworld.llm.schemas import decode, json_schema
from recoworld.llm.types import CallKey, LLMRequest, Sampling
from recoworld.llm.wrappers import CallLog, request_seed

Check = Callable[[str, object | None, Exception | None], str | None]
"""``check(text, answer, error)``: a parse status that refuses the answer outright (no repair),
or None to go on as usual. ``answer`` is the decoded struct, or None with the decoder's error."""


class Outcome(msgspec.Struct, frozen=True):
    answer: object | None
    """The decoded answer, None when there is none (refused, invalid twice, or the call failed)."""
    status: str
    """ok | repaired | fallback | the check's status."""


async def ask_structured(
    model: LanguageModel,
    log: CallLog,
    *,
    arm: str,
    root_seed: int,
    uid: int,
    session: int,
    turn: int,
    purpose: str,
    prompt: str,
    t: type,
    lenient: type | None = None,
    sampling: Sampling,
    check: Check | None = None,
    images: tuple[str, ...] = (),
) -> Outcome:
    """``images``: attached to the question and to its repair (``LLMRequest.images``)."""
    schema = json_schema(t)
    lenient = lenient or t
    why = ""
    for attempt in range(2):
        name = purpose if attempt == 0 else f"repair-{purpose}"
        key = CallKey(arm=arm, user=uid, session=session, turn=turn, purpose=name, attempt=attempt)
        req = LLMRequest.of(
            key,
            prompt=prompt,
            seed=request_seed(root_seed, uid, session, turn, purpose, attempt),
            sampling=sampling,
            schema=schema,
            images=images,
        )
        (res,) = await model.generate([req])
        if not res.ok:
            log.resolve(req.id, "error")
            why = f"{purpose} for user {uid}, session {session}, turn {turn}: {res.error}"
            break
        ans, err = None, None
        try:
            ans = decode(res.text, lenient)
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            err = e
        refused = check(res.text, ans, err) if check is not None else None
        if refused is not None:
            log.resolve(req.id, refused)
            if log.budget is not None:
                log.budget.count(True, f"{purpose} for user {uid}: {refused}")
            return Outcome(None, refused)
        if err is not None:
            log.resolve(req.id, "invalid")
            why = (
                f"{purpose} for user {uid}, session {session}, turn {turn}: invalid answer ({err})"
            )
            shown = res.text if len(res.text) <= 800 else res.text[:800] + "..."
            prompt = (
                f"{prompt}{shown}\nThat answer was invalid: {err}. Answer again, with one JSON "
                "object in the schema, nothing else.\nYour answer (JSON):"
            )
            continue
        status = "ok" if attempt == 0 else "repaired"
        log.resolve(req.id, status)
        if log.budget is not None:
            log.budget.count(False)
        return Outcome(ans, status)
    fallback = CallKey(arm=arm, user=uid, session=session, turn=turn, purpose=f"fallback-{purpose}")
    log.note(fallback, "fallback")
    if log.budget is not None:
        log.budget.count(True, why)
    return Outcome(None, "fallback")
