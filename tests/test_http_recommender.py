"""The recommender service path (``[recommender] kind = "http"``).

- The reference service (examples/service, EASE over ML-100K) runs as a real separate process on
  127.0.0.1: a study against it gives the same events in-process, with 2 forked workers and
  again (the service is deterministic per user), and on Ray; its bearer token is written nowhere.
- Every failure mode (slow, 5xx, 429 with Retry-After, 4xx, unknown ids, wrong lengths and
  counts, malformed JSON, non-finite scores, duplicates, a dead service, a missing or refused
  credential) ends in the message this file asserts, or in a counted fallback, against a small
  scripted server in a thread.
- The protocol: history on first contact, the previous turn's feedback and instructions in the
  next request, batches of ``batch_size`` users, at most ``concurrency`` in flight, async callers
  sharing requests; the OpenAPI file is the wire types'.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import msgspec
import numpy as np
import polars as pl
import pytest

from recoworld.config import (
    ArmConfig,
    RecommenderConfig,
    ServiceConfig,
    StudyConfig,
    decode_study,
    load_study,
)
from recoworld.errors import RecommenderError
from recoworld.recommenders.base import Audience
from recoworld.recommenders.factory import build_recommender
from recoworld.recommenders.guard import CheckedRecommender
from recoworld.recommenders.http import (
    RecommendRequest,
    UserRequest,
    openapi_yaml,
    service_name,
)
from recoworld.records import ACTIONS, Record, TurnRecord
from recoworld.study.lifecycle import Run
from recoworld.study.prepare import Prepared, load_world_for, prepare, prepare_all
from recoworld.study.runner import local_shard_count, run_shards
from recoworld.study.simulate import simulate_arm

ROOT = Path(__file__).resolve().parents[1]
TOKEN_ENV = "RECOWORLD_TEST_SERVICE_TOKEN"
TOKEN = "rw-" + secrets.token_hex(20)  # drawn per test session: it can only leak from this run

SERVICE_STUDY = ROOT / "studies" / "service_ease.toml"
"""The study docs/recommender-service.md runs against the reference service (here smaller)."""

SMALL_STUDY = """
name = "small"
seed = 3
[world]
dataset = "synthetic"
synthetic_users = 120
synthetic_items = 90
embedding_dim = 8
[population]
size = 8
[simulation]
sessions = 2
turns = 3
slate_size = 5
replicates = 1
"""


# --- the reference service, a real process ------------------------------------------------------


def _die_with_us() -> None:  # the service dies with the test process, even on SIGKILL
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


@dataclass
class Service:
    url: str
    proc: subprocess.Popen

    @property
    def base(self) -> str:
        return self.url.rsplit("/v1/", 1)[0]

    def stats(self) -> dict:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        return httpx.get(f"{self.base}/stats", headers=auth, timeout=10).json()


@pytest.fixture(scope="module")
def service(shared_data: Path, tmp_path_factory) -> Iterator[Service]:
    pytest.importorskip("fastapi", reason="pip install -e '.[service]'")
    pytest.importorskip("uvicorn", reason="pip install -e '.[service]'")
    log = tmp_path_factory.mktemp("service") / "service.log"
    cmd = [sys.executable, "-m", "examples.service.app", "--dataset", "ml-100k", "--port", "0"]
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [*cmd, "--token-env", TOKEN_ENV],
            cwd=ROOT,
            env={**os.environ, TOKEN_ENV: TOKEN, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=err,
            preexec_fn=_die_with_us,
        )
    try:
        line = _first_line(proc, 120.0, log)
        url = re.search(r"on (http://127\.0\.0\.1:\d+/v1/recommend)", line)
        assert url, line
        svc = Service(url.group(1), proc)
        _wait_for(lambda: httpx.get(f"{svc.base}/health", timeout=2).status_code == 200, 30)
        yield svc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def _first_line(proc: subprocess.Popen, timeout: float, log: Path) -> str:
    box: list[bytes] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    t.start()
    t.join(timeout)
    if not box or not box[0]:
        proc.kill()
        raise AssertionError(f"the service did not start: {log.read_text()[-2000:]}")
    return box[0].decode()


def _wait_for(cond: Callable[[], bool], timeout: float) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def ml_world(shared_data: Path):
    cfg = load_study(SERVICE_STUDY)
    return load_world_for(cfg.world, cfg.seed)


def service_study(url: str, env: str = TOKEN_ENV) -> StudyConfig:
    """studies/service_ease.toml at ``url``, smaller, stopping at the first failed slate."""
    cfg = load_study(SERVICE_STUDY)
    rec = cfg.recommender
    svc = msgspec.structs.replace(rec.service, url=url, auth_env=env, batch_size=8, concurrency=2)
    return msgspec.structs.replace(
        cfg,
        population=msgspec.structs.replace(cfg.population, size=40),
        simulation=msgspec.structs.replace(
            cfg.simulation, sessions=2, turns=3, slate_size=5, replicates=1
        ),
        recommender=msgspec.structs.replace(rec, on_invalid="stop", service=svc),
    )


def run_preps(preps: tuple[Prepared, ...], root: Path, run_id: str, workers: int) -> Path:
    """What ``run_study`` does, with the preparation shared between runs (it is the slow part)."""
    shards = local_shard_count(len(preps[0].population), preps[0].catalog.n_items, workers)
    with Run.open(preps, root, run_id, shards=shards) as run:
        return run.finish(run_shards(run, workers)).path


def events(run: Path) -> pl.DataFrame:
    df = pl.read_parquet(run / "events" / "arm=*" / "*.parquet", hive_partitioning=True)
    return df.with_columns(
        pl.col(c).cast(pl.String)
        for c, t in df.schema.items()
        if isinstance(t, pl.Categorical | pl.Enum)
    ).sort("arm", "user", "session", "turn", "position")


def fallbacks(run: Path) -> float:
    df = pl.read_parquet(run / "user_metrics" / "arm=*" / "*.parquet", hive_partitioning=True)
    return float(df["fallback_slates"].sum())


def assert_token_nowhere(root: Path) -> None:
    for f in root.rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f


@pytest.fixture(scope="module")
def reference_run(
    service: Service, ml_world, tmp_path_factory
) -> Iterator[tuple[tuple[Prepared, ...], Path, dict]]:
    """The study against the reference service, in-process: (replicates, run folder, the
    service's figures before it)."""
    os.environ[TOKEN_ENV] = TOKEN  # for the module's tests: forked and Ray workers inherit it
    try:
        preps = prepare_all(service_study(service.url), ml_world)
        before = service.stats()
        yield preps, run_preps(preps, tmp_path_factory.mktemp("runs"), "one", workers=1), before
    finally:
        os.environ.pop(TOKEN_ENV, None)


def test_a_study_against_the_reference_service_gives_the_same_events_in_process_with_2_workers_and_again(  # noqa: E501
    service: Service, reference_run, tmp_path: Path
) -> None:
    preps, one, before = reference_run
    two = run_preps(preps, tmp_path, "two", workers=2)
    again = run_preps(preps, tmp_path, "again", workers=1)
    ev = events(one)
    assert events(two).equals(ev) and events(again).equals(ev)
    assert fallbacks(one) == fallbacks(two) == fallbacks(again) == 0.0  # every slate EASE's
    after = service.stats()
    # every user-turn (a slate of 5 events) of every arm and run went to the service, in
    # requests of at most 8 users
    user_turns = 3 * ev.height // 5
    assert after["users"] - before["users"] == user_turns
    assert after["requests"] - before["requests"] >= user_turns / 8
    assert after["compute_s"] > before["compute_s"]
    assert set(ev["arm"].unique()) == {"control", "inject"}
    assert ev.filter(pl.col("arm") == "inject")["is_creator_item"].any()
    assert ev["clicked"].any()
    assert_token_nowhere(tmp_path)
    assert_token_nowhere(one)
    study_json = (one / "study.json").read_text()
    assert TOKEN_ENV in study_json and TOKEN not in study_json


@pytest.mark.slow
def test_the_same_study_on_ray_gives_the_same_events(
    service: Service, ml_world, reference_run, tmp_path: Path
) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    from actors.driver import connect, run_study_on_ray

    _, one, _ = reference_run
    if ray.is_initialized():
        ray.shutdown()
    connect("local", num_cpus=2)  # its workers inherit the credential's variable
    try:
        res = run_study_on_ray(
            service_study(service.url), ml_world, run_id="ray", out_dir=tmp_path, shards=2
        )
    finally:
        ray.shutdown()
    assert events(res.path).equals(events(one))
    assert fallbacks(res.path) == 0.0
    assert_token_nowhere(tmp_path)


def test_a_language_model_study_awaits_the_service_and_shares_requests_between_users(
    tmp_path: Path, scripted
) -> None:
    from recoworld.config import BrainConfig, LLMConfig
    from recoworld.study.runner import run_study
    from recoworld.testing.scripted_llm import ScriptedModel

    base = decode_study(SMALL_STUDY)
    world = load_world_for(base.world, base.seed)
    s = scripted(Reply(delay=0.01))
    cfg = msgspec.structs.replace(
        base,
        brain=BrainConfig(kind="llm"),
        llm=LLMConfig(backend="openai", model="scripted"),
        recommender=RecommenderConfig(
            kind="http", service=ServiceConfig(url=s.url, concurrency=1, backoff_s=0.01)
        ),
    )
    first = run_study(cfg, world, run_id="a", out_dir=tmp_path, model=ScriptedModel())
    n_first = len(s.requests)
    again = run_study(cfg, world, run_id="b", out_dir=tmp_path, model=ScriptedModel())
    ev = events(first.path)
    assert ev.height and events(again.path).equals(ev) and fallbacks(first.path) == 0.0
    user_turns = ev.height // cfg.simulation.slate_size
    assert sum(len(r["users"]) for r in s.requests[:n_first]) == user_turns
    assert n_first < user_turns  # users who asked while the service was busy shared a request


def test_the_reference_service_refuses_requests_without_the_right_bearer_token(
    service: Service,
) -> None:
    body = msgspec.json.encode(
        RecommendRequest(
            protocol_version=1,
            scope="s",
            arm="a",
            seed=1,
            k=3,
            users=[UserRequest(user=1, session=0, turn=0)],
        )
    )
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN}):
        r = httpx.post(service.url, content=body, headers=headers, timeout=10)
        assert r.status_code == 401 and r.json() == {"error": "missing or wrong bearer token"}
    ok = httpx.post(
        service.url, content=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert ok.status_code == 200 and ok.json()["slates"] == [None]  # user 1, no history: unknown
    assert "ease;dur=" in ok.headers["server-timing"]
    assert httpx.get(f"{service.base}/health", timeout=10).json()["status"] == "ok"


def test_a_study_with_a_wrong_token_stops_with_one_line_that_does_not_echo_it(
    service: Service, small: Prepared, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "rw-wrong-" + secrets.token_hex(12)
    monkeypatch.setenv(TOKEN_ENV, wrong)
    rec = checked(small, service.url, on_invalid="fallback", auth_env=TOKEN_ENV)
    with pytest.raises(RecommenderError) as e:
        rec.recommend(np.arange(3), 0, 0, 5)
    msg = str(e.value)
    assert "\n" not in msg and wrong not in msg
    assert msg.startswith(f"recommender {service.url} (arm 'control'): HTTP 401 from POST ")
    assert f"expected a credential it accepts in ${TOKEN_ENV}" in msg and "not retried" in msg


# --- a scripted service in a thread -------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer: ``body`` None = valid slates (see :meth:`Scripted.slates`)."""

    status: int = 200
    body: bytes | Callable[[dict], bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class Scripted:
    """An HTTP server on 127.0.0.1 that answers POSTs with ``replies`` in turn (the last one
    repeats) and records what it was sent. Its valid slates are deterministic per user."""

    def __init__(self, item_ids: list[str], replies: list[Reply], token: str = "") -> None:
        self.ids, self.replies, self.token = item_ids, replies, token
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.inflight = self.max_inflight = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                outer._serve(self)

            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *a: None  # a client that timed out has gone
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/recommend"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def slates(self, req: dict) -> bytes:
        n, k = len(self.ids), req["k"]
        slates = [
            [self.ids[(u["user"] * 7 + u["session"] * 3 + u["turn"] + j) % n] for j in range(k)]
            for u in req["users"]
        ]
        return json.dumps({"slates": slates}).encode()

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        raw = h.rfile.read(int(h.headers["content-length"]))
        req = json.loads(raw)
        with self.lock:
            self.requests.append(req)
            self.headers.append(dict(h.headers))
            reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            time.sleep(reply.delay)
            status, body = reply.status, reply.body
            if self.token and h.headers.get("authorization") != f"Bearer {self.token}":
                # a careless server that echoes what it was sent
                status, body = 401, f"bad credential {h.headers.get('authorization')}".encode()
            if body is None:
                body = self.slates(req)
            elif callable(body):
                body = body(req)
            h.send_response(status)
            for k, v in reply.headers.items():
                h.send_header(k, v)
            h.send_header("content-type", "application/json")
            h.send_header("content-length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        finally:
            with self.lock:
                self.inflight -= 1


@pytest.fixture(scope="module")
def small() -> Prepared:
    cfg = decode_study(SMALL_STUDY)
    return prepare(cfg, load_world_for(cfg.world, cfg.seed))


@pytest.fixture
def scripted(small: Prepared) -> Iterator[Callable[..., Scripted]]:
    made: list[Scripted] = []

    def make(*replies: Reply, token: str = "") -> Scripted:
        s = Scripted([str(i) for i in small.catalog.item_ids], list(replies) or [Reply()], token)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def checked(
    prep: Prepared,
    url: str,
    *,
    on_invalid: str = "stop",
    fallback: str = "popular",
    **service: object,
) -> CheckedRecommender:
    svc = {"url": url, "timeout_s": 2.0, "retries": 2, "backoff_s": 0.01, **service}
    rec_cfg = RecommenderConfig(
        kind="http",
        on_invalid=on_invalid,  # type: ignore[arg-type]
        fallback=fallback,  # type: ignore[arg-type]
        max_fallback_rate=1.0,
        options={"flavour": "test"},
        service=ServiceConfig(**svc),  # type: ignore[arg-type]
    )
    rec = build_recommender(rec_cfg, ArmConfig(name="control"), prep.creator_mask)
    assert isinstance(rec, CheckedRecommender)
    n = len(prep.population)
    rec.bind(
        Audience(
            personas=prep.population,
            catalog=prep.catalog,
            seed=prep.cfg.seed,
            treated=np.zeros(n, bool),
        )
    )
    return rec


def who(prep: Prepared, row: int) -> str:
    """How the contract check names population user ``row``."""
    p = prep.population
    return f"user {int(p.uid[row])} (dataset user {str(p.source_user[row])!r})"


def _item_ids(small: Prepared) -> list[str]:
    return [str(i) for i in small.catalog.item_ids]


FAILURES = {
    "slow": (
        [Reply(delay=1.0)],
        {"timeout_s": 0.2, "retries": 1},
        r"POST {url}: no response within timeout_s = 0\.2 s, after 2 attempts \(1 retries",
        2,
    ),
    "5xx every time": (
        [Reply(status=503, body=b"overloaded")],
        {},
        r"POST {url}: HTTP 503: 'overloaded', after 3 attempts \(2 retries, backoff from 0\.01 s\)",
        3,
    ),
    "400": (
        [Reply(status=400, body=b'{"error": "k too large"}')],
        {},
        r"POST {url}: HTTP 400 \(not retried: only connection errors, timeouts, 408, 429 and 5xx "
        r"are\): "
        r"'\{\"error\": \"k too large\"\}'",
        1,
    ),
    "redirect": (
        [Reply(status=307, headers={"Location": "http://elsewhere:1/v2?key=k"}, body=b"")],
        {},
        r"POST {url}: HTTP 307 \(not retried: a redirect to http://elsewhere:1/v2: expected the "
        r"endpoint itself \(redirects are not followed\)\): ''",
        1,
    ),
    "unknown item id": (
        [Reply(body=lambda r: json.dumps({"slates": [["nope-1", "i00", "i01"]]}).encode())],
        {},
        r"the response of POST {url}: item id 'nope-1' in the slate of user 0 \(slates\[0\]\), "
        r"position 0, is not in the catalogue",
        1,
    ),
    "wrong length": (
        [Reply(body=lambda r: json.dumps({"slates": [["i00", "i01"]]}).encode())],
        {},
        r"the response of POST {url}: the slate of user 0 \(slates\[0\]\) has 2 items; "
        r"expected k = 3",
        1,
    ),
    "wrong count": (
        [Reply(body=lambda r: json.dumps({"slates": [["i00", "i01", "i02"]] * 2}).encode())],
        {},
        r"the response of POST {url} holds 2 slates for 1 users; expected one per user",
        1,
    ),
    "malformed JSON": (
        [Reply(body=b'{"slates": [["i00", "i01", "i02"]')],
        {},
        r"the response of POST {url} is not JSON \(Input data was truncated\), got "
        r"'\{\"slates\": \[\[\"i00\", \"i01\", \"i02\"\]'; expected \{\"slates\": \[\[item id",
        1,
    ),
    "NaN score": (
        [Reply(body=b'{"slates": [["i00", "i01", "i02"]], "scores": [[1.0, NaN, 0.5]]}')],
        {},
        r"is not JSON \(JSON is malformed: invalid character \(byte \d+\)\) near '.*NaN.*'; "
        r".*\(NaN and Infinity are not JSON numbers\)",
        1,
    ),
    "infinite score": (
        [Reply(body=b'{"slates": [["i00", "i01", "i02"]], "scores": [[1.0, 1e999, 0.5]]}')],
        {},
        r"the response of POST {url} breaks the protocol: Number out of range - at "
        r"`\$\.scores\[0\]\[1\]`",
        1,
    ),
    "not the protocol": (
        [Reply(body=b'{"items": []}')],
        {},
        r"breaks the protocol: Object missing required field `slates`",
        1,
    ),
}


@pytest.mark.parametrize("case", FAILURES, ids=list(FAILURES))
def test_a_failing_service_stops_the_run_with_one_line_naming_recommender_user_turn_and_cause(
    case: str, small: Prepared, scripted
) -> None:
    replies, settings, expected, requests = FAILURES[case]
    s = scripted(*replies)
    rec = checked(small, s.url, **settings)
    with pytest.raises(RecommenderError) as e:
        rec.recommend(np.array([0]), 0, 1, 3)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(
        f"recommender {s.url} (arm 'control'), {who(small, 0)}, session 0, turn 1: "
        "recommend() raised ServiceError: "
    ), msg
    assert re.search(expected.replace("{url}", re.escape(s.url)), msg), msg
    assert len(s.requests) == requests


def test_a_dead_service_is_retried_then_stops_the_run(small: Prepared) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1/recommend"
    rec = checked(small, url)
    with pytest.raises(RecommenderError, match="recommend\\(\\) raised ServiceError: ") as e:
        rec.recommend(np.arange(3), 0, 0, 3)
    assert re.search(
        rf"POST {re.escape(url)}: connection failed \(ConnectError: .*\), after 3 attempts",
        str(e.value),
    ), e.value
    assert f"{who(small, 0)}, session 0, turn 0: " in str(e.value)


def test_a_slow_service_times_out_retries_and_falls_back_counted_when_the_study_says_so(
    small: Prepared, scripted
) -> None:
    s = scripted(Reply(delay=1.0))
    rec = checked(small, s.url, on_invalid="fallback", timeout_s=0.2, retries=1)
    t0 = time.perf_counter()
    slates = rec.recommend(np.arange(4), 0, 0, 3)
    assert time.perf_counter() - t0 < 1.5
    assert slates.shape == (4, 3) and (slates >= 0).all()
    assert rec.failed == 4 and rec.uncovered == 0
    assert rec.fallback_slates[:4].tolist() == [1, 1, 1, 1]
    assert "no response within timeout_s = 0.2 s" in rec.first[0]
    assert rec.inner.stats.retries == 1 and len(s.requests) == 2


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retried_with_backoff_and_counted_then_the_service_s_slates_are_served(
    status: int, small: Prepared, scripted
) -> None:
    s = scripted(Reply(status=status), Reply(status=status), Reply())
    rec = checked(small, s.url)
    slates = rec.recommend(np.arange(4), 0, 0, 3)
    assert rec.failed == 0 and rec.fallback_slates.sum() == 0
    assert rec.inner.stats.retries == 2 and rec.inner.stats.requests == 3
    assert len(s.requests) == 3 and s.requests[0] == s.requests[2]  # the same request, again
    expected = json.loads(s.slates(s.requests[0]))["slates"]
    assert small.catalog.item_ids[slates].tolist() == expected


def test_429_waits_the_retry_after_it_is_told(small: Prepared, scripted) -> None:
    s = scripted(Reply(status=429, headers={"Retry-After": "1"}, body=b"slow down"), Reply())
    rec = checked(small, s.url, backoff_s=0.01)
    t0 = time.perf_counter()
    rec.recommend(np.arange(2), 0, 0, 3)
    assert time.perf_counter() - t0 >= 1.0
    assert rec.inner.stats.retries == 1 and len(s.requests) == 2 and rec.failed == 0


def test_duplicate_items_fail_only_that_user_s_slate(small: Prepared, scripted) -> None:
    def dup_for_user_1(req: dict) -> bytes:
        ids = _item_ids(small)
        slates = [[ids[u["user"] * 3 + j] for j in range(req["k"])] for u in req["users"]]
        slates[1][2] = slates[1][0]
        return json.dumps({"slates": slates}).encode()

    s = scripted(Reply(body=dup_for_user_1))
    rec = checked(small, s.url)
    with pytest.raises(RecommenderError) as e:
        rec.recommend(np.arange(3), 0, 0, 3)
    uid = int(small.population.uid[1])
    dup = small.catalog.item_ids[uid * 3]
    assert str(e.value).startswith(f"recommender {s.url} (arm 'control'), {who(small, 1)}")
    assert str(e.value).endswith(f"session 0, turn 0: item {uid * 3} ({dup!r}) twice in one slate")
    fb = checked(small, s.url, on_invalid="fallback")
    fb.recommend(np.arange(3), 0, 0, 3)
    assert fb.failed == 1 and fb.fallback_slates[:3].tolist() == [0, 1, 0]


def test_a_user_the_service_does_not_know_gets_the_fallback_uncounted_as_a_failure(
    small: Prepared, scripted
) -> None:
    def unknown_user_1(req: dict) -> bytes:
        slates = json.loads(s.slates(req))["slates"]
        slates[1] = None
        slates[2] = []
        return json.dumps({"slates": slates}).encode()

    s = scripted(Reply(body=unknown_user_1))
    rec = checked(small, s.url)
    slates = rec.recommend(np.arange(3), 0, 0, 3)
    assert (slates >= 0).all() and rec.failed == 0 and rec.uncovered == 2
    assert rec.fallback_slates[:3].tolist() == [0, 1, 1]
    none = checked(small, s.url, fallback="none")
    with pytest.raises(RecommenderError, match='not covered\\), and fallback = "none"'):
        none.recommend(np.arange(3), 0, 0, 3)


def test_a_missing_credential_variable_is_one_line_naming_it(
    small: Prepared, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECOWORLD_TEST_NOT_SET", raising=False)
    with pytest.raises(RecommenderError) as e:
        checked(small, "http://127.0.0.1:9/v1/recommend", auth_env="RECOWORLD_TEST_NOT_SET")
    assert str(e.value) == (
        "recommender.service.auth_env: the environment variable RECOWORLD_TEST_NOT_SET is not "
        "set or empty; expected the service's credential in it (read when the run starts, "
        "written nowhere)"
    )


@pytest.mark.parametrize("on_invalid", ["stop", "fallback"])
def test_a_refused_credential_stops_the_run_unretried_and_masks_the_echoed_token(
    on_invalid: str, small: Prepared, scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    right, wrong = "rw-right-" + secrets.token_hex(8), "rw-wrong-" + secrets.token_hex(8)
    monkeypatch.setenv("RECOWORLD_TEST_TOKEN", wrong)
    s = scripted(Reply(), token=right)
    rec = checked(small, s.url, on_invalid=on_invalid, auth_env="RECOWORLD_TEST_TOKEN")
    with pytest.raises(RecommenderError) as e:
        rec.recommend(np.arange(2), 0, 0, 3)
    msg = str(e.value)
    assert wrong not in msg and wrong[3:11] not in msg and "***" in msg
    assert msg.startswith(
        f"recommender {s.url} (arm 'control'): HTTP 401 from POST {s.url}: the service "
        "refused the credential; expected a credential it accepts in $RECOWORLD_TEST_TOKEN "
        "([recommender.service] auth_env) (not retried; the run stops): 'bad credential "
    ), msg
    assert len(s.requests) == 1 and wrong not in repr(rec.inner)
    monkeypatch.setenv("RECOWORLD_TEST_TOKEN", right)
    ok = checked(small, s.url, auth_env="RECOWORLD_TEST_TOKEN", auth_scheme="Bearer")
    assert ok.recommend(np.arange(2), 0, 0, 3).shape == (2, 3)
    assert s.headers[-1]["Authorization"] == f"Bearer {right}"


# --- the protocol -------------------------------------------------------------------------------


def test_one_round_trip_per_batch_carries_history_then_the_last_turn_s_feedback_and_instructions(
    small: Prepared, scripted
) -> None:
    s = scripted(Reply(delay=0.02))
    prep = _with_recommender(small, s.url, batch_size=3, concurrency=2)
    turns: list[TurnRecord] = []

    def keep(r: Record) -> None:
        if isinstance(r, TurnRecord):
            turns.append(r)

    users = np.arange(len(small.population))
    simulate_arm(prep, 0, users, keep)
    reqs = s.requests
    assert {r["scope"] for r in reqs} == {reqs[0]["scope"]}
    assert {(r["protocol_version"], r["arm"], r["k"], r["seed"]) for r in reqs} == {
        (1, "control", 5, 3)
    }
    assert all(r["options"] == {"flavour": "test"} for r in reqs)
    assert max(len(r["users"]) for r in reqs) == 3 and s.max_inflight <= 2
    sent = [(u, r) for r in reqs for u in r["users"]]
    assert len(sent) == sum(t.rows.size for t in turns)  # one entry per user-turn
    hist = small.population.history_of(small.catalog.n_items)
    ids = small.catalog.item_ids
    by_user: dict[int, list[dict]] = {}
    for u, _ in sent:
        by_user.setdefault(u["user"], []).append(u)
    for row, uid in enumerate(small.population.uid.tolist()):
        mine = sorted(by_user[uid], key=lambda u: (u["session"], u["turn"]))
        assert mine[0]["history"] == ids[np.sort(hist[row].indices)].tolist()
        assert all("history" not in u for u in mine[1:])
        assert mine[0].get("feedback", []) == []
        for prev, nxt in zip(mine, mine[1:]):  # the slate before, as shown, and what was done
            t = next(
                t
                for t in turns
                if t.session == prev["session"] and t.turn == prev["turn"] and row in t.rows
            )
            j = int(np.flatnonzero(t.rows == row)[0])
            (fb,) = nxt["feedback"]
            assert (fb["session"], fb["turn"]) == (prev["session"], prev["turn"])
            assert fb["items"] == ids[t.slates[j]].tolist()
            assert fb["actions"] == [ACTIONS[a] for a in t.feedback.action[j]]
            assert np.allclose(fb["watch"], t.feedback.watch[j], atol=1e-6)
            ins = nxt.get("instructions", [])
            wrote = np.flatnonzero(t.rows[t.instructions.rows] == row)
            assert len(ins) == wrote.size
            for i, w in zip(ins, wrote):
                more = int(t.instructions.more_of[w])
                assert i["more_of"] == (small.catalog.tags[more] if more >= 0 else None)
                assert i["text"]
    assert any(u.get("instructions") for u, _ in sent)  # some users did ask for something


def _with_recommender(prep: Prepared, url: str, **service: object) -> Prepared:
    from dataclasses import replace

    rec = RecommenderConfig(
        kind="http",
        options={"flavour": "test"},
        service=ServiceConfig(url=url, backoff_s=0.01, **service),  # type: ignore[arg-type]
    )
    return replace(prep, cfg=msgspec.structs.replace(prep.cfg, recommender=rec))


def test_async_callers_share_requests_and_get_the_slates_of_the_sync_path(
    small: Prepared, scripted
) -> None:
    s = scripted(Reply(delay=0.2))
    rec = checked(small, s.url, concurrency=1, batch_size=64)
    n = len(small.population)

    async def each() -> list[np.ndarray]:
        calls = (rec.recommend_async(np.array([r]), 0, 0, 3) for r in range(n))
        return await asyncio.gather(*calls)

    rows = np.concatenate(asyncio.run(each()))
    assert len(s.requests) <= 2 and sum(len(r["users"]) for r in s.requests) == n
    sync = checked(small, s.url).recommend(np.arange(n), 0, 0, 3)
    assert np.array_equal(rows, sync)


def test_the_openapi_file_is_the_wire_types() -> None:
    pytest.importorskip("yaml")
    path = ROOT / "docs" / "recommender-service.openapi.yaml"
    assert path.read_text() == openapi_yaml(), (
        "docs/recommender-service.openapi.yaml differs from the wire types: "
        "python -m recoworld.recommenders.http > docs/recommender-service.openapi.yaml"
    )


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://127.0.0.1:8500/v1/recommend", "http://127.0.0.1:8500/v1/recommend"),
        (
            "https://user:s3cret@reco.example:443/v1/rec?key=abc#x",
            "https://reco.example:443/v1/rec",
        ),
        ("http://[::1]:8500/r?token=t", "http://[::1]:8500/r"),
    ],
)
def test_the_service_is_named_without_credentials_query_or_fragment(url: str, name: str) -> None:
    assert service_name(url) == name


# --- the reference service's model, in-process ----------------------------------------------------


def test_the_reference_model_is_deterministic_per_user_and_idempotent_on_retries(
    small: Prepared,
) -> None:
    from examples.service.ease import EASE, Recommender

    world = load_world_for(small.cfg.world, small.cfg.seed)
    svc = Recommender(EASE(world, lam=50.0))
    hist = small.population.history_of(small.catalog.n_items)
    ids = small.catalog.item_ids

    def user(r: int, turn: int = 0, **kw: object) -> UserRequest:
        h = sorted(ids[hist[r].indices].tolist())
        return UserRequest(user=r, session=0, turn=turn, history=h, **kw)  # type: ignore[arg-type]

    def ask(scope: str, users: list[UserRequest]):  # noqa: ANN202
        return svc.handle(
            RecommendRequest(protocol_version=1, scope=scope, arm="a", seed=1, k=5, users=users)
        )

    together = ask("together", [user(r) for r in range(4)])
    alone = [ask(f"alone{r}", [user(r)]).slates[0] for r in range(4)]
    assert together.slates == alone
    again = ask("together", [user(r) for r in range(4)])
    assert again == together  # a retried request: the same slates
    from recoworld.recommenders.http import Feedback

    fb = Feedback(
        session=0,
        turn=0,
        items=[str(x) for x in together.slates[0]],
        actions=["click", "skip", "skip", "skip", "skip"],
        watch=[0.0] * 5,
        rating=[None] * 5,
    )
    nxt = ask("together", [user(0, turn=1, feedback=[fb])]).slates[0]
    assert nxt == ask("together", [user(0, turn=1, feedback=[fb, fb])]).slates[0]
    assert not set(nxt) & set(together.slates[0])  # shown items are not shown again
