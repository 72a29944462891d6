"""`recoworld view`: the JSON endpoints over HTTP (no browser), checked against the run's
Parquet files; paging and filters; errors as HTTP status + one line; the command itself."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from recoworld.cli import main
from recoworld.errors import RunError
from recoworld.io.runs import scan_table
from recoworld.report.sample import SAMPLE_STUDY, add_llm_records, sample_run
from recoworld.report.viewer import RunView, allowed_hosts, make_server
from recoworld.world.synthetic import synthetic_world


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = sample_run(tmp_path_factory.mktemp("runs"))
    add_llm_records(path)
    return path


@pytest.fixture(scope="module")
def view(run: Path) -> RunView:
    view = RunView(run)
    assert view.titles_ready.wait(60)
    return view


@contextlib.contextmanager
def serving(view: object, **options: object) -> Iterator[int]:
    """A real server for ``view`` on 127.0.0.1 in a thread; yields its port."""
    server = make_server(view, **options)  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def base(view: RunView) -> Iterator[str]:
    with serving(view) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def get(base: str, path: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(base + path, timeout=30) as r:
            assert r.headers["Content-Type"].startswith("application/json")
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def ok(base: str, path: str) -> dict:
    status, body = get(base, path)
    assert status == 200, body
    return body  # type: ignore[return-value]


def test_binds_to_loopback_by_default(base: str) -> None:
    assert base.startswith("http://127.0.0.1:")


def test_the_page_is_served_with_no_outside_resources(base: str) -> None:
    with urllib.request.urlopen(base + "/", timeout=30) as r:
        html = r.read().decode()
        csp = r.headers["Content-Security-Policy"]
    assert (
        "<script>" in html
        and "src=" not in html
        and "<link" not in html
        and "http" not in html.split("<script>")[0]
    )
    assert "connect-src 'self'" in csp and "default-src 'none'" in csp


def test_run_endpoint(base: str, run: Path) -> None:
    info = ok(base, "/api/run")
    segments = (
        scan_table(run, "summary")
        .filter(pl.col("segment") != "all")
        .select("segment")
        .unique()
        .collect()
    )
    assert info["arms"] == ["control", "inject"]
    assert info["segments"] == sorted(segments["segment"].to_list())
    assert (info["users_per_arm"], info["sessions"], info["turns"], info["slate_size"]) == (
        120,
        3,
        4,
        6,
    )
    assert [c["title"] for c in info["creator"]] == ["Small Hours", "Paper Moons"]
    assert info["has_llm_calls"] is True


def test_users_are_paged_in_user_order(base: str, run: Path) -> None:
    um = scan_table(run, "user_metrics").filter(pl.col("arm") == "inject").sort("user").collect()
    page = ok(base, "/api/users?arm=inject&offset=10&limit=7")
    assert page["total"] == um.height == 120
    assert [u["user"] for u in page["users"]] == list(range(10, 17))
    for u in page["users"]:
        row = um.filter(pl.col("user") == u["user"]).row(0, named=True)
        assert (u["sessions"], u["clicks"], u["segment"]) == (
            int(row["sessions"]),
            int(row["clicks"]),
            row["segment"],
        )
    last = ok(base, "/api/users?arm=inject&offset=115&limit=50")
    assert [u["user"] for u in last["users"]] == list(range(115, 120))


def test_users_filtered_by_segment_and_instruction(base: str, run: Path) -> None:
    um = scan_table(run, "user_metrics").filter(pl.col("arm") == "control").collect()
    seg = um["segment"].mode().sort()[0]
    page = ok(base, f"/api/users?arm=control&segment={seg}&limit=500")
    assert page["total"] == um.filter(pl.col("segment") == seg).height
    assert {u["segment"] for u in page["users"]} == {seg}
    ss = scan_table(run, "sessions").filter(pl.col("arm") == "control").collect()
    said = ss.group_by("user").agg(pl.col("instructions").sum()).filter(pl.col("instructions") > 0)
    page = ok(base, "/api/users?arm=control&instructed=1&limit=500")
    assert [u["user"] for u in page["users"]] == sorted(said["user"].to_list())
    assert all(u["instructions"] == dict(said.iter_rows())[u["user"]] for u in page["users"])


def test_user_endpoint_gives_persona_and_sessions(base: str, run: Path) -> None:
    d = ok(base, "/api/user?arm=inject&user=5")
    persona = pl.read_parquet(run / "users.parquet").filter(pl.col("user") == 5).row(0, named=True)
    assert d["persona"]["source_user"] == persona["source_user"]
    assert d["persona"]["liked_tags"] == persona["liked_tags"]
    ss = (
        scan_table(run, "sessions")
        .filter((pl.col("arm") == "inject") & (pl.col("user") == 5))
        .sort("session")
        .collect()
    )
    assert [s["session"] for s in d["sessions"]] == ss["session"].to_list()
    assert [s["summary"] for s in d["sessions"]] == ss["summary"].to_list()


def test_session_endpoint_replays_every_item(base: str, run: Path) -> None:
    ev = (
        scan_table(run, "events")
        .filter(pl.col("instruction").is_not_null() & (pl.col("arm") == "control"))
        .collect()
    )
    user, session = ev.row(0, named=True)["user"], ev.row(0, named=True)["session"]
    r = ok(base, f"/api/session?arm=control&user={user}&session={session}")
    rows = (
        scan_table(run, "events")
        .filter(
            (pl.col("arm") == "control") & (pl.col("user") == user) & (pl.col("session") == session)
        )
        .sort("turn", "position")
        .with_columns(pl.col(pl.Categorical).cast(pl.String))
        .collect()
    )
    items = [it | {"turn": t["turn"]} for t in r["turns"] for it in t["items"]]
    assert len(items) == rows.height
    world = synthetic_world(
        SAMPLE_STUDY.world.synthetic_users,
        SAMPLE_STUDY.world.synthetic_items,
        seed=SAMPLE_STUDY.seed,
    )
    titles = dict(world.items.select("item_id", "title").iter_rows()) | {
        "indie:0": "Small Hours",
        "indie:1": "Paper Moons",
    }
    for it, row in zip(items, rows.iter_rows(named=True), strict=True):
        assert (it["turn"], it["position"], it["item_id"], it["action"]) == (
            row["turn"],
            row["position"],
            row["item_id"],
            row["action"],
        )
        assert it["watch_fraction"] == pytest.approx(row["watch_fraction"])
        assert it["rating"] == (None if row["rating"] is None else pytest.approx(row["rating"]))
        assert it["satisfaction"] == pytest.approx(row["satisfaction"])
        assert it["feeling"] == row["feeling"]
        assert it["title"] == titles[row["item_id"]]
    for t in r["turns"]:
        g = rows.filter(pl.col("turn") == t["turn"])
        assert t["instruction"] == g["instruction"][0]
        assert t["left_after"] == g["left_after_turn"].any()
    assert any(t["instruction"] for t in r["turns"])
    assert r["summary"]["summary"].startswith(f"Session {session + 1}:")


def test_session_endpoint_lists_the_llm_calls(base: str, run: Path) -> None:
    calls = (
        scan_table(run, "llm_calls")
        .filter((pl.col("arm") == "inject") & (pl.col("user") == 0) & (pl.col("session") == 0))
        .collect()
    )
    r = ok(base, "/api/session?arm=inject&user=0&session=0")
    assert sorted(c["call_id"] for c in r["llm_calls"]) == sorted(calls["call_id"].to_list())
    assert {c["parse_status"] for c in r["llm_calls"]} == set(
        calls["parse_status"].cast(pl.String).to_list()
    )


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        (
            "/api/users?arm=treatment",
            400,
            "no arm 'treatment'; the run has arms ['control', 'inject']",
        ),
        (
            "/api/users?segment=nobody",
            400,
            "no segment 'nobody'; the run has segments ['high', 'low', 'mid']",
        ),
        (
            "/api/users?limit=501",
            400,
            "offset 0, limit 501: expected offset >= 0 and 1 <= limit <= 500",
        ),
        (
            "/api/users?offset=-1",
            400,
            "offset -1, limit 50: expected offset >= 0 and 1 <= limit <= 500",
        ),
        ("/api/user?arm=control", 400, "parameter 'user' is missing; expected an integer"),
        ("/api/user?user=abc", 400, "parameter 'user' is 'abc'; expected an integer"),
        ("/api/user?user=120", 400, "user 120: expected a user from 0 to 119"),
        ("/api/user?user=-1", 400, "user -1: expected a user from 0 to 119"),
        (
            "/api/session?user=3&session=9",
            400,
            "session 9: expected a session from 0 to 2 (0-based)",
        ),
        (
            "/api/session?user=3&session=-1",
            400,
            "session -1: expected a session from 0 to 2 (0-based)",
        ),
        (
            f"/api/users?offset={2**64}",
            400,
            "parameter 'offset' is '18446744073709551616'; "
            "expected an integer from -2**63 to 2**63 - 1",
        ),
        (
            f"/api/users?offset=-{2**63 + 1}",
            400,
            "parameter 'offset' is '-9223372036854775809'; "
            "expected an integer from -2**63 to 2**63 - 1",
        ),
        (
            f"/api/users?limit={10**40}",
            400,
            f"parameter 'limit' is '{10**39}'...; expected an integer from -2**63 to 2**63 - 1",
        ),
        (
            "/api/users?limit=0",
            400,
            "offset 0, limit 0: expected offset >= 0 and 1 <= limit <= 500",
        ),
        ("/api/users?offset=1.5", 400, "parameter 'offset' is '1.5'; expected an integer"),
        ("/api/users?offset=1_000", 400, "parameter 'offset' is '1_000'; expected an integer"),
        ("/api/users?offset=%2B7", 400, "parameter 'offset' is '+7'; expected an integer"),
        ("/api/users?offset=%EF%BC%91", 400, "parameter 'offset' is '\uff11'; expected an integer"),
        ("/api/users?offset=-", 400, "parameter 'offset' is '-'; expected an integer"),
        (
            "/api/users?instructed=maybe",
            400,
            "parameter 'instructed' is 'maybe'; expected 1, true, 0 or false",
        ),
        (
            "/api/session?user=" + "9" * 5000,
            400,
            f"parameter 'user' is '{'9' * 40}'...; expected an integer from -2**63 to 2**63 - 1",
        ),
        (
            "/api/nothing",
            404,
            "no page '/api/nothing'; the viewer serves / and /api/{run,users,user,session}",
        ),
    ],
)
def test_bad_requests_get_a_status_and_one_line(
    base: str, path: str, status: int, error: str
) -> None:
    assert get(base, path) == (status, {"error": error})


def test_a_missing_user_or_session_inside_the_ranges_is_404(base: str, run: Path) -> None:
    ss = scan_table(run, "sessions").filter(pl.col("arm") == "control").collect()
    counts = ss.group_by("user").agg(pl.len().alias("n")).filter(pl.col("n") < 3).sort("user")
    user, n = counts.row(0)
    assert get(base, f"/api/session?arm=control&user={user}&session={n}") == (
        404,
        {"error": f"user {user} has no session {n} in arm 'control' (sessions are 0-based)"},
    )


def test_the_largest_offset_is_an_empty_page(base: str) -> None:
    page = ok(base, f"/api/users?offset={2**63 - 1}&limit=500")
    assert (page["total"], page["users"]) == (120, [])


class Broken:
    """A view whose every query fails unexpectedly."""

    def info(self) -> None:
        raise ZeroDivisionError("secret path /home/someone/run")


def test_an_unexpected_failure_is_500_with_one_line_and_no_trace(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with serving(Broken()) as p:
        status, body = get(f"http://127.0.0.1:{p}", "/api/run")
    assert (status, body) == (
        500,
        {"error": "internal error in the viewer; its terminal has the details"},
    )
    assert "ZeroDivisionError: secret path" in capsys.readouterr().err  # the terminal has it


# --- raw HTTP: Host header, stdlib errors, timeouts, the worker cap -----------------------------


def raw(port: int, data: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as is; read until the server closes; (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return raw_answer(b"".join(iter(lambda: s.recv(65536), b"")))


def raw_answer(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def request(path: str = "/api/run", *headers: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", *headers, "Connection: close", "", ""]).encode()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LocalHost", "[::1]"])
def test_the_loopback_names_with_the_port_are_answered(port: int, host: str) -> None:
    status, headers, body = raw(port, request("/api/run", f"Host: {host}:{port}"))
    assert status == 200 and json.loads(body)["run_id"] == "sample"


@pytest.mark.parametrize(
    ("headers", "got"),
    [
        (["Host: evil.example:{port}"], "Host 'evil.example:{port}'"),
        (["Host: evil.example"], "Host 'evil.example'"),
        (["Host: localhost:1"], "Host 'localhost:1'"),
        (["Host: 127.0.0.1.evil.example:{port}"], "Host '127.0.0.1.evil.example:{port}'"),
        (["Host: localhost:{port}x"], "Host 'localhost:{port}x'"),
        (["Host: localhost:{port}", "Host: evil.example:{port}"], "2 Host headers"),
        ([], "no Host header"),
    ],
)
def test_another_host_is_misdirected_with_one_plain_line(
    port: int, headers: list[str], got: str
) -> None:
    status, h, body = raw(port, request("/", *(x.format(port=port) for x in headers)))
    assert status == 421
    assert h["content-type"] == "text/plain; charset=utf-8"
    assert body.decode() == (
        f"421 Misdirected Request: {got.format(port=port)}; this viewer answers "
        f"127.0.0.1:{port}, localhost:{port}, [::1]:{port} "
        "(recoworld view --allow-host NAME adds a name)\n"
    )


def test_allowed_hosts_add_names(view: RunView) -> None:
    with serving(view, allow_hosts=("viewer.lan", "other.lan:8080")) as p:
        assert raw(p, request("/api/run", f"Host: Viewer.LAN:{p}"))[0] == 200
        assert raw(p, request("/api/run", "Host: other.lan:8080"))[0] == 200  # a proxy's port
        status, _, body = raw(p, request("/api/run", f"Host: other.lan:{p}"))
        assert status == 421
        assert body.decode().endswith(
            f"answers 127.0.0.1:{p}, localhost:{p}, [::1]:{p}, other.lan:8080, viewer.lan:{p} "
            "(recoworld view --allow-host NAME adds a name)\n"
        )


def test_allowed_hosts_parse_names_ports_and_ipv6() -> None:
    assert allowed_hosts("0.0.0.0", 8765, ("a.lan", "B.lan:80", "fe80::1", "[fe80::2]:81")) == {
        ("127.0.0.1", 8765),
        ("localhost", 8765),
        ("::1", 8765),
        ("0.0.0.0", 8765),
        ("a.lan", 8765),
        ("b.lan", 80),
        ("fe80::1", 8765),
        ("fe80::2", 81),
    }
    with pytest.raises(RunError, match=r"^allowed host 'a.lan:http': expected NAME, NAME:PORT"):
        allowed_hosts("127.0.0.1", 8765, ("a.lan:http",))


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
        (b"POST /api/run HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 501),
        # before the request line is understood the stdlib answers HTTP/0.9 style: a body only
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
    ],
)
def test_the_servers_own_errors_are_one_plain_line(port: int, data: bytes, status: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        answer = b"".join(iter(lambda: s.recv(65536), b""))
    if answer.startswith(b"HTTP/"):
        got, headers, body = raw_answer(answer)
        assert got == status and headers["content-type"] == "text/plain; charset=utf-8"
    else:
        body = answer
    assert body.decode().startswith(f"{status} ") and body.decode().count("\n") == 1
    assert b"<" not in body and b"Traceback" not in body


def test_head_gets_the_headers_only(port: int) -> None:
    status, headers, body = raw(
        port, request("/api/run", f"Host: 127.0.0.1:{port}").replace(b"GET", b"HEAD", 1)
    )
    assert status == 200 and int(headers["content-length"]) > 0 and body == b""


@pytest.mark.parametrize("sent", [b"", b"GET /api/run HTTP/1.1\r\nHost: 127.0.0.1"])
def test_a_quiet_connection_is_closed_after_the_timeout(view: RunView, sent: bytes) -> None:
    with serving(view, timeout=0.3) as p, socket.create_connection(("127.0.0.1", p)) as s:
        s.settimeout(10)
        s.sendall(sent)
        t0 = time.monotonic()
        assert s.recv(65536) == b""  # closed without an answer
        assert 0.2 < time.monotonic() - t0 < 5


def test_connections_beyond_the_worker_cap_get_503_until_one_frees(view: RunView) -> None:
    def status(p: int) -> int:
        return raw(p, request("/api/run", f"Host: 127.0.0.1:{p}"))[0]

    def until(p: int, want: int) -> None:
        deadline = time.monotonic() + 10
        while (got := status(p)) != want:
            assert time.monotonic() < deadline, f"still {got}, expected {want}"
            time.sleep(0.02)

    with serving(view, workers=2, timeout=30) as p:
        quiet = [socket.create_connection(("127.0.0.1", p)) for _ in range(2)]
        try:
            until(p, 503)  # both slots held by the quiet clients
            _, headers, body = raw(p, request("/api/run", f"Host: 127.0.0.1:{p}"))
            assert headers["retry-after"] == "1"
            assert body == b"503 Service Unavailable: the viewer is busy; try again\n"
        finally:
            for s in quiet:
                s.close()
        until(p, 200)


def test_the_view_command_serves_until_stopped(run: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "recoworld.cli", "view", str(run), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("viewing sample (120 users per arm) at http://127.0.0.1:"), line
        url = line.split(" at ")[1].split()[0]
        assert ok(url.rstrip("/"), "/api/run")["run_id"] == "sample"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_view_command_refuses_a_broken_run(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["view", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nope'}: no such run directory\n"
    copy = Path(shutil.copytree(run, tmp_path / "r"))
    shutil.rmtree(copy / "events")
    assert main(["view", str(copy)]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {copy / 'events'}: no Parquet files; expected events/arm=<arm>/part-*.parquet\n"
    )


def test_a_port_in_use_is_one_line(
    run: Path, port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["view", str(run), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot serve on 127.0.0.1:{port}: ") and err.endswith(
        "choose another --port (0 = any free port)\n"
    )
