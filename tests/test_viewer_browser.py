"""The viewer and the report in a real browser: Debian's Chromium, headless, driven by
Playwright. The viewer runs on 127.0.0.1 (a free port); the test opens a user's session, steps
through it item by item and checks what the page shows against the run's Parquet files. It
keeps screenshots of the viewer and of the report.

Environment (set by .ci/browser.sh; both optional):
- ``RECOWORLD_BROWSER_RUN``: a complete run to use (e.g. ``runs/creator_scifi-demo``);
  default: a small generated run in a temporary folder;
- ``RECOWORLD_SCREENSHOTS``: where the PNGs go; default ``<run>/screenshots/``;
- ``RECOWORLD_REQUIRE_BROWSER``: fail, not skip, without Chromium.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from recoworld.io.runs import scan_table
from recoworld.report.build import write_report
from recoworld.report.sample import sample_run
from recoworld.report.viewer import RunView, make_server

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not CHROMIUM.exists() and os.environ.get("RECOWORLD_REQUIRE_BROWSER"):
    pytest.fail(
        f"RECOWORLD_REQUIRE_BROWSER is set but {CHROMIUM} is missing (apt-get install -y chromium)",
        pytrace=False,
    )
if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's Chromium at {CHROMIUM} "
        "(apt-get install -y chromium; .ci/browser.sh installs it)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="browser tests need Playwright for Python (pip install -e '.[test]')",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("RECOWORLD_BROWSER_RUN")
    return Path(given) if given else sample_run(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def shots(run: Path) -> Path:
    folder = Path(os.environ.get("RECOWORLD_SCREENSHOTS") or run / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def base(run: Path) -> Iterator[str]:
    view = RunView(run)
    view.titles_ready.wait(60)
    server = make_server(view, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser) -> Iterator[object]:  # noqa: ANN001 - playwright's Browser
    ctx = browser.new_context(viewport={"width": 1400, "height": 950})
    pg = ctx.new_page()
    pg.set_default_timeout(20_000)
    pg.problems = []  # console errors, page errors, requests that leave this machine
    pg.on(
        "console",
        lambda m: pg.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    pg.on("pageerror", lambda e: pg.problems.append(f"page error: {e}"))
    pg.on(
        "request",
        lambda r: (
            None
            if r.url.startswith(("http://127.0.0.1:", "file://", "data:"))
            else pg.problems.append(f"request {r.url}")
        ),
    )
    yield pg
    ctx.close()


def pick_session(run: Path, arm: str) -> tuple[int, int]:
    """A session of ``arm`` holding an instruction: preferably one where the user left, then
    the longest, then the first user."""
    said = (
        scan_table(run, "events")
        .filter((pl.col("arm") == arm) & pl.col("instruction").is_not_null())
        .group_by("user", "session")
        .agg(left=pl.col("left_after_turn").any(), turns=pl.col("turn").n_unique())
        .sort("left", "turns", "user", "session", descending=[True, True, False, False])
        .collect()
    )
    assert said.height, f"no instruction in arm {arm!r} of {run}"
    return said.row(0)[0], said.row(0)[1]


STATE_JS = """() => {
  const lab = document.getElementById('step-label');
  const rows = [...document.querySelectorAll('#slate tbody tr')].map(tr => ({
    position: Number(tr.dataset.position), cls: tr.className,
    action: tr.querySelector('td.action').textContent,
    watch: tr.querySelector('td.watch').textContent,
    rating: tr.querySelector('td.rating').textContent,
    satisfaction: tr.querySelector('td.satisfaction').textContent }));
  const mind = Object.fromEntries([...document.querySelectorAll('#mindset [data-metric]')].map(
    r => [r.dataset.metric, r.querySelector('.value').textContent]));
  return { label: lab.textContent, turn: Number(lab.dataset.turn), position: lab.dataset.position,
           rows, mind,
           instruction: document.getElementById('instruction').textContent,
           leave: document.getElementById('leave').textContent,
           next_disabled: document.getElementById('next').disabled, hash: location.hash };
}"""


def test_replay_a_session_step_by_step(page, base: str, run: Path, shots: Path) -> None:  # noqa: ANN001
    arms = RunView(run, titles=False).arms
    arm = arms[1] if len(arms) > 1 else arms[0]
    user, session = pick_session(run, arm)
    events = (
        scan_table(run, "events")
        .filter((pl.col("arm") == arm) & (pl.col("user") == user) & (pl.col("session") == session))
        .with_columns(pl.col(pl.Categorical).cast(pl.String))
        .sort("turn", "position")
        .collect()
    )
    turns = events["turn"].unique(maintain_order=True).to_list()

    page.goto(base + "/")
    page.wait_for_selector("body[data-ready='1']")
    # 1. the users list of the arm, only users who wrote an instruction
    page.select_option("#arm", arm)
    page.check("#instructed")
    instructed = (
        scan_table(run, "sessions")
        .filter((pl.col("arm") == arm) & (pl.col("instructions") > 0))
        .select("user")
        .unique()
        .sort("user")
        .collect()["user"]
        .to_list()
    )
    # (no wait_for_function: the page's Content-Security-Policy forbids the eval it needs)
    sync_api.expect(page.locator("#page-label")).to_have_text(
        re.compile(rf" of {len(instructed):,}$")
    )
    listed = [
        int(u)
        for u in page.eval_on_selector_all("#users tbody tr", "trs => trs.map(t => t.dataset.user)")
    ]
    assert listed == instructed[:50]
    # 2. the user and the session
    if user in listed:
        page.click(f"#users tbody tr[data-user='{user}']")
    else:
        page.fill("#goto-user", str(user))
        page.click("#goto")
    page.click(f"#sessions li[data-session='{session}']")
    page.wait_for_selector("#replay:not([hidden])")
    assert page.text_content("#session-title").startswith(
        f"Session {session + 1} of user {user} (arm {arm}): {len(turns)} slate"
    )
    # 3. every step: each item's decision, watch fraction, rating and the mindset after it; after
    #    each slate the instruction and whether the user left
    shot_taken = False
    n_steps = events.height + len(turns)
    for k in range(n_steps):
        st = page.evaluate(STATE_JS)
        t = st["turn"]
        slate = events.filter(pl.col("turn") == t)
        if st["position"] != "end":
            p = int(st["position"])
            for row, shown in zip(slate.iter_rows(named=True), st["rows"], strict=True):
                assert shown["position"] == row["position"]
                if row["position"] <= p:
                    assert shown["action"] == row["action"]
                    assert shown["watch"] == (
                        "" if row["action"] == "skip" else f"{row['watch_fraction']:.2f}"
                    )
                    assert shown["rating"] == (
                        "" if row["rating"] is None else f"{row['rating']:.0f}"
                    )
                    assert shown["satisfaction"] == f"{row['satisfaction']:.3f}"
                else:
                    assert shown["action"] == "…" and "pending" in shown["cls"]
            now = slate.filter(pl.col("position") == p).row(0, named=True)
            assert "current" in next(r["cls"] for r in st["rows"] if r["position"] == p)
            assert st["mind"] == {
                m: f"{now[m]:.3f}" for m in ("satisfaction", "fatigue", "boredom", "curiosity")
            }
        else:
            instruction = slate["instruction"][0]
            left = slate["left_after_turn"].any()
            assert st["label"] == f"turn {turns.index(t) + 1} of {len(turns)} · after the slate"
            assert st["instruction"] == (
                f"Instruction to the recommender: “{instruction}”"
                if instruction
                else "No instruction after this slate."
            )
            if left:
                assert st["leave"] == "The user left after this slate."
            if instruction and not shot_taken:
                page.screenshot(path=str(shots / "viewer.png"))
                shot_taken = True
        assert f"user={user}" in st["hash"] and f"step={k}" in st["hash"]
        assert st["next_disabled"] == (k == n_steps - 1)
        if k < n_steps - 1:
            page.click("#next")
    assert st["leave"] == (
        "The user left after this slate."
        if events["left_after_turn"].any()
        else "End of the session: the turn budget is spent."
    )
    page.screenshot(path=str(shots / "viewer-end.png"))
    # 4. the keyboard steps back; a link to a step opens that step
    page.keyboard.press("ArrowLeft")
    back = page.evaluate(STATE_JS)
    assert f"step={n_steps - 2}" in back["hash"]
    page.goto(f"{base}/{back['hash']}")
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    assert page.evaluate(STATE_JS)["label"] == back["label"]
    assert page.problems == []
    assert (shots / "viewer.png").stat().st_size > 10_000


def test_the_report_in_the_browser(page, run: Path, shots: Path) -> None:  # noqa: ANN001
    report = write_report(run).path
    page.goto(report.resolve().as_uri())
    summary = scan_table(run, "summary").filter(pl.col("segment") == "all").collect()
    assert page.text_content("header h1").startswith("RecoWorld: ")
    boxes = page.eval_on_selector_all(
        "figure svg", "ss => ss.map(s => s.getBoundingClientRect()).map(r => [r.width, r.height])"
    )
    assert len(boxes) >= 5 and all(w > 200 and h > 100 for w, h in boxes)
    first = summary.row(0, named=True)
    cell = page.text_content("#results tbody tr:first-child td:nth-child(2)")
    assert cell == f"{first['mean']:.4f} [{first['ci_low']:.4f}, {first['ci_high']:.4f}]"
    page.screenshot(path=str(shots / "report.png"), full_page=True)
    page.screenshot(path=str(shots / "report-top.png"))
    assert page.problems == []
    assert (shots / "report.png").stat().st_size > 50_000
