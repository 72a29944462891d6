"""OpenAIHTTPModel against a small local server speaking the OpenAI completions protocol.

The server is a fake of the protocol, written here to provoke timeouts and HTTP errors on
demand; the real path (a ``vllm`` OpenAI server) is tested in tests/llm/test_openai_server.py.
The prompt tells the fake what to do: ``sleep:<s>``, ``status:<code>``, ``garbage``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from recoworld.config import EngineConfig, LLMConfig
from recoworld.errors import LLMError
from recoworld.llm.base import LanguageModel
from recoworld.llm.openai_http import OpenAIHTTPModel
from recoworld.llm.types import LLMRequest, Sampling

KEY = "sk-test-7f3a9c1e-secret"


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.auth: list[str | None] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        s = self.server
        with s.lock:
            s.active += 1
            s.max_active = max(s.max_active, s.active)
            s.bodies.append(body)
            s.paths.append(self.path)
            s.auth.append(self.headers.get("Authorization"))
        try:
            prompt = body["prompt"] if "prompt" in body else body["messages"][-1]["content"]
            cmd, _, arg = prompt.partition(":")
            if cmd == "sleep":
                time.sleep(float(arg))
            if cmd == "status":
                # a server that (wrongly) echoes the key it got must not leak it through us
                self._send(
                    int(arg), {"error": f"refused; auth was {self.headers.get('Authorization')}"}
                )
                return
            if cmd == "garbage":
                self._send(200, {"nothing": "here"})
                return
            text = json.dumps({"echo": prompt, "seed": body.get("seed")})
            choice = {"index": 0, "finish_reason": "length" if cmd == "long" else "stop"}
            if self.path.endswith("/chat/completions"):
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            usage = {
                "prompt_tokens": len(prompt.split()),
                "completion_tokens": 7,
                "total_tokens": 0,
            }
            if cmd == "cached":
                usage["prompt_tokens_details"] = {"cached_tokens": 3}
            self._send(
                200, {"id": "x", "object": "text_completion", "choices": [choice], "usage": usage}
            )
        finally:
            with s.lock:
                s.active -= 1

    def _send(self, code: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass


@pytest.fixture()
def server() -> Iterator[FakeServer]:
    srv = FakeServer()
    t = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture()
def keyed(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RW_TEST_KEY", KEY)
    return "RW_TEST_KEY"


def req(i: int, prompt: str, seed: int = 0, **kw) -> LLMRequest:
    return LLMRequest(id=f"r{i}", prompt=prompt, seed=seed, **kw)


def generate(model: OpenAIHTTPModel, requests: list[LLMRequest]):
    async def go():
        try:
            return await model.generate(requests)
        finally:
            await model.close()

    return asyncio.run(go())


def test_completions_seed_schema_and_usage(server: FakeServer, keyed: str) -> None:
    model = OpenAIHTTPModel(server.url, "tiny", api_key_env=keyed)
    assert isinstance(model, LanguageModel)
    schema = json.dumps({"type": "object", "properties": {"a": {"type": "integer"}}})
    results = generate(
        model,
        [
            req(
                0,
                "hello there world",
                seed=11,
                schema=schema,
                sampling=Sampling(max_tokens=9, stop=("}",)),
            ),
            req(1, "cached prompt", seed=12),
            req(2, "long", seed=13),
        ],
    )
    r0, r1, r2 = results
    assert [r.id for r in results] == ["r0", "r1", "r2"]
    assert json.loads(r0.text) == {"echo": "hello there world", "seed": 11}
    assert (r0.tokens_in, r0.tokens_out, r0.cached_tokens, r0.finish_reason) == (3, 7, -1, "stop")
    assert r0.model == "tiny" and r0.latency_s > 0
    assert r1.cached_tokens == -1  # "cached prompt" is not the "cached:" command
    assert r2.finish_reason == "length"
    body = next(b for b in server.bodies if b["prompt"] == "hello there world")
    assert body["seed"] == 11 and body["max_tokens"] == 9 and body["stop"] == ["}"]
    assert body["structured_outputs"] == {
        "json": json.loads(schema),
        "disable_any_whitespace": True,
    }
    assert set(server.paths) == {"/v1/completions"}
    assert server.auth == [f"Bearer {KEY}"] * 3


def test_cached_tokens_chat_and_response_format(server: FakeServer) -> None:
    model = OpenAIHTTPModel(
        server.url,
        "m",
        api_key_env="RW_UNSET_VARIABLE",
        chat=True,
        structured_field="response_format",
    )
    assert not model.has_api_key
    [r] = generate(model, [req(0, "cached:x", schema='{"type": "object"}', purpose="slate")])
    assert r.ok and r.cached_tokens == 3
    assert json.loads(r.text)["echo"] == "cached:x"
    assert server.paths == ["/v1/chat/completions"]
    assert server.auth == [None]
    body = server.bodies[0]
    assert body["messages"] == [{"role": "user", "content": "cached:x"}]
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert "structured_outputs" not in body


def test_concurrency_limit_is_respected(server: FakeServer) -> None:
    model = OpenAIHTTPModel(server.url, "m", concurrency=3)

    async def many_callers():
        try:  # 12 coroutines with batches of 1, as simulated users call it
            return await asyncio.gather(*(model.generate([req(i, "sleep:0.1")]) for i in range(12)))
        finally:
            await model.close()

    t0 = time.perf_counter()
    results = [r for batch in asyncio.run(many_callers()) for r in batch]
    wall = time.perf_counter() - t0
    assert all(r.ok for r in results)
    assert server.max_active == 3
    assert wall >= 0.39  # 12 requests of 0.1 s, 3 at a time


def test_timeout_is_a_retryable_error(server: FakeServer) -> None:
    model = OpenAIHTTPModel(server.url, "m", timeout_s=0.3)
    t0 = time.perf_counter()
    slow, fast = generate(model, [req(0, "sleep:3"), req(1, "quick")])
    assert time.perf_counter() - t0 < 2.5
    assert slow.finish_reason == "error" and slow.retryable
    assert slow.error.startswith("timeout after 0.3 s: POST http://127.0.0.1:"), slow.error
    assert fast.ok


@pytest.mark.parametrize(
    ("status", "retryable"), [(503, True), (500, True), (429, True), (400, False), (401, False)]
)
def test_http_errors(server: FakeServer, keyed: str, status: int, retryable: bool) -> None:
    model = OpenAIHTTPModel(server.url, "m", api_key_env=keyed)
    [r] = generate(model, [req(0, f"status:{status}")])
    assert r.finish_reason == "error" and r.retryable is retryable
    assert r.error.startswith(f"HTTP {status} from POST {server.url}/completions: "), r.error
    assert "refused; auth was Bearer ***" in r.error
    assert KEY not in r.error


def test_connection_refused_and_garbage_are_retryable(server: FakeServer) -> None:
    [bad] = generate(OpenAIHTTPModel(server.url, "m"), [req(0, "garbage")])
    assert bad.retryable and "expected an OpenAI completion with choices[0]" in bad.error
    closed = FakeServer()  # bound, then closed: nothing listens on that port
    url = closed.url
    closed.server_close()
    [r] = generate(OpenAIHTTPModel(url, "m", timeout_s=5), [req(0, "x")])
    assert r.retryable and r.error.startswith(
        f"connection error: POST {url}/completions: ConnectError"
    )


def test_key_never_in_repr_and_bad_settings_are_refused(keyed: str) -> None:
    model = OpenAIHTTPModel("http://127.0.0.1:9/v1", "m", api_key_env=keyed)
    assert model.has_api_key
    assert KEY not in repr(model) and "key=from $RW_TEST_KEY" in repr(model)
    assert KEY not in str(vars(model).get("base_url")) and KEY not in model.__dict__.get("name", "")
    with pytest.raises(
        LLMError,
        match=r"llm.base_url: expected an http\(s\) URL ending in /v1, got 'localhost:8000'",
    ):
        OpenAIHTTPModel("localhost:8000", "m")
    with pytest.raises(LLMError, match="llm.concurrency: expected >= 1, got 0"):
        OpenAIHTTPModel("http://x/v1", "m", concurrency=0)


def test_from_config() -> None:
    cfg = LLMConfig(
        backend="openai",
        model="served",
        base_url="http://127.0.0.1:8000/v1/",
        concurrency=5,
        timeout_s=9.0,
        engine=EngineConfig(chat_template=True),
    )
    m = OpenAIHTTPModel.from_config(cfg)
    assert (m.base_url, m.model, m.concurrency, m.timeout_s, m.chat) == (
        "http://127.0.0.1:8000/v1",
        "served",
        5,
        9.0,
        True,
    )
