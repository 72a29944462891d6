"""`recoworld view`: the JSON endpoints over HTTP (no browser), checked against the run's
Parquet files; paging and filters; errors as HTTP status + one line; the command itself."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from recoworld.cli import main
from recoworld.io.runs import scan_table
from recoworld.report.sample import SAMPLE_STUDY, add_llm_records, sample_run
from recoworld.report.viewer import RunView, make_server
from recoworld.world.synthetic import synthetic_world


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = sample_run(tmp_path_factory.mktemp("runs"))
    add_llm_records(path)
    return path


@pytest.fixture(scope="module")
def base(run: Path) -> Iterator[str]:
    view = RunView(run)
    assert view.titles_ready.wait(60)
    server = make_server(view)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}"
    server.shutdown()
    server.server_close()


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
        ("/api/user?user=120", 404, "no user 120 in arm 'control' (users are 0..119)"),
        (
            "/api/session?user=3&session=9",
            404,
            "user 3 has no session 9 in arm 'control' (sessions are 0-based)",
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
    run: Path, base: str, capsys: pytest.CaptureFixture[str]
) -> None:
    port = base.rsplit(":", 1)[1]
    assert main(["view", str(run), "--port", port]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot serve on 127.0.0.1:{port}: ") and err.endswith(
        "choose another --port (0 = any free port)\n"
    )
