"""Language models for RecoWorld: one batched interface, several backends, wrappers.

- :mod:`recoworld.llm.types`: the request/result structs every backend speaks;
- :mod:`recoworld.llm.base`: the :class:`LanguageModel` protocol (a batch in, results out);
- backends: :mod:`recoworld.llm.vllm_engine` (in-process vLLM async engine; vllm imported
  lazily), :mod:`recoworld.llm.openai_http` (any OpenAI-compatible server: ``vllm serve``,
  Ray Serve LLM);
- wrappers (:mod:`recoworld.llm.wrappers`): retry, recording into ``llm_calls``, replay of a
  recorded run with no model at all.

Nothing here imports vllm, torch or ray at import time.
"""
