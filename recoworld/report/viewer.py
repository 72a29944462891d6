"""`recoworld view RUN_DIR`: a local web page to browse a run's users and replay their sessions.

Two layers:

- :class:`RunView` answers the page's questions with polars queries on the run's Parquet files:
  a page of users (filtered by arm, segment, "wrote an instruction"), one user's persona and
  sessions, one session's turns. Nothing per event is held in memory: each answer is a query
  that reads only the files whose ``user`` range (from the Parquet footers, read once) holds the
  user, and polars pushes the ``user``/``session`` predicate into the scan, decoding only the
  matching rows. On a 100k-user run a session loads in ~10 ms (``benchmarks/bench_viewer.py``).
- :func:`make_server` serves the page (:mod:`recoworld.report.page`, hand-written HTML/JS, no
  external resources) and JSON endpoints with the standard library's ``ThreadingHTTPServer``:

  ``GET /api/run``                                         the run: arms, segments, set-up
  ``GET /api/users?arm=&segment=&instructed=&offset=&limit=``  a page of users
  ``GET /api/user?arm=&user=``                              persona and sessions
  ``GET /api/session?arm=&user=&session=``                  the session's turns, item by item

  Bad parameters get HTTP 400 and ``{"error": "<one line>"}``: not a plain integer, outside
  int64, or outside the run's ranges (a user past ``users_per_arm``, a session past the study's
  ``sessions``); a user or session inside the ranges but not in the files gets 404. An
  unexpected failure is 500 with one line; the trace goes to the terminal, never to the client.
  Sessions and turns are 0-based in the API (as stored); the page shows them 1-based.

  The server answers only requests whose ``Host`` names it (DNS-rebinding defence; 421
  otherwise), times each connection's socket out (10 s) and handles at most ``workers``
  connections at once (503 beyond).
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import polars as pl
import pyarrow.parquet as pq

from recoworld.errors import RunError
from recoworld.io.runs import check_run_dir, scan_table, verify_run

MAX_PAGE = 500


class NotFound(RunError):
    """The asked-for user or session does not exist in the run (HTTP 404)."""


# --- what the endpoints return -----------------------------------------------------------------


class _S(msgspec.Struct, kw_only=True, omit_defaults=False):
    pass


class CreatorItemInfo(_S):
    item_id: str
    title: str
    tags: list[str]


class RunInfo(_S):
    run_id: str
    study: str
    description: str
    world: str
    arms: list[str]
    segments: list[str]
    users_per_arm: int
    sessions: int
    turns: int
    slate_size: int
    brain: str
    recommender: str
    creator: list[CreatorItemInfo]
    has_llm_calls: bool


class UserRow(_S):
    user: int
    segment: str
    sessions: int
    turns: int
    impressions: int
    clicks: int
    watch_time: float
    returned_first: bool
    creator_impressions: int
    creator_clicks: int
    instructions: int


class UsersPage(_S):
    arm: str
    segment: str
    instructed: bool
    offset: int
    limit: int
    total: int
    users: list[UserRow]


class SessionRow(_S):
    session: int
    day: float
    turns: int
    left_early: bool
    clicks: int
    watched: int
    watch_time: float
    instructions: int
    satisfaction_end: float
    top_tag: str | None
    returned: bool
    return_gap_days: float | None
    summary: str


class SocialStep(_S):
    """One thing a user did or heard on the social layer (a run with ``[social]``)."""

    round: int
    kind: str  # post | chat | post received | chat received | search
    text: str  # the message's words, or the query; third-party text: shown as text only
    items: list[str]
    other: int | None  # the chat's friend (or its sender); None for a post or a search
    session: int | None = None  # a search: the session and turn whose page it topped
    turn: int | None = None


class UserDetail(_S):
    arm: str
    user: int
    segment: str
    persona: dict[str, Any]
    sessions: list[SessionRow]
    social: list[SocialStep] = []
    """Posts and chats it wrote, posts and chats it received (read: a friend's post, a chat to
    it), searches it typed, by round (empty without the social layer)."""


class ItemStep(_S):
    position: int
    item_id: str
    title: str
    tags: list[str]
    creator: str
    is_creator_item: bool
    action: str
    watch_fraction: float
    rating: float | None
    satisfaction: float
    fatigue: float
    boredom: float
    curiosity: float
    feeling: str | None


class LlmCall(_S):
    call_id: str
    turn: int
    purpose: str
    attempt: int
    model: str
    tokens_in: int
    tokens_out: int
    latency_s: float
    finish_reason: str
    parse_status: str
    prompt: str
    completion: str
    error: str | None


class Turn(_S):
    turn: int
    day: float
    items: list[ItemStep]
    instruction: str | None
    left_after: bool


class SessionReplay(_S):
    arm: str
    user: int
    session: int
    segment: str
    summary: SessionRow | None
    turns: list[Turn]
    llm_calls: list[LlmCall]


# --- queries ----------------------------------------------------------------------------------


def _num(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


class RunView:
    """Read-only queries on one complete run, safe to call from many threads.

    Opening checks the run (manifest, schema version of every file, and the SHA-256 of every
    file the manifest lists: polars scans do not verify page checksums) and reads each part
    file's footer once for its ``user`` range; item titles are looked up in the run's world on a
    background thread (``titles=False`` skips it; ids are shown until they are there)."""

    def __init__(self, run_dir: str | Path, *, titles: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.manifest = check_run_dir(self.run_dir)
        for table in ("events", "sessions", "user_metrics"):
            scan_table(self.run_dir, table)  # raises on a missing table or another schema version
        self.has_llm_calls = (self.run_dir / "llm_calls").is_dir() and any(
            (self.run_dir / "llm_calls").glob("arm=*/*.parquet")
        )
        if self.has_llm_calls:
            scan_table(self.run_dir, "llm_calls")
        verify_run(self.run_dir, self.manifest)  # after the table checks: they name a lost table
        self.arms: list[str] = list(self.manifest.get("arms") or [])
        study_path = self.run_dir / "study.json"
        self.study: dict = (
            msgspec.json.decode(study_path.read_bytes()) if study_path.is_file() else {}
        )
        self._files = {
            t: self._index(t)
            for t in (
                "events",
                "sessions",
                "user_metrics",
                *(["llm_calls"] if self.has_llm_calls else []),
            )
        }
        summary = scan_table(self.run_dir, "summary").select("segment").unique().collect()
        self.segments = sorted(s for s in summary["segment"].to_list() if s != "all")
        self._users_file = self.run_dir / "users.parquet"
        from recoworld.report.data import creator_titles

        self._creator = creator_titles(self.study)
        self._titles: dict[str, tuple[str, list[str]]] = {
            k: (v[0], v[1]) for k, v in self._creator.items()
        }
        self.titles_ready = threading.Event()
        if titles:
            threading.Thread(
                target=self._load_titles, name="recoworld-view-titles", daemon=True
            ).start()
        else:
            self.titles_ready.set()

    # footers: (file, min user, max user) per arm
    def _index(self, table: str) -> dict[str, list[tuple[Path, int, int]]]:
        out: dict[str, list[tuple[Path, int, int]]] = {}
        for arm_dir in sorted((self.run_dir / table).glob("arm=*")):
            arm = arm_dir.name.removeprefix("arm=")
            for f in sorted(arm_dir.glob("*.parquet")):
                md = pq.ParquetFile(f).metadata
                col = md.schema.names.index("user")
                lo, hi = None, None
                for g in range(md.num_row_groups):
                    st = md.row_group(g).column(col).statistics
                    if st is None or not st.has_min_max:
                        lo, hi = -(2**63), 2**63 - 1  # no statistics: always read this file
                        break
                    lo = st.min if lo is None else min(lo, st.min)
                    hi = st.max if hi is None else max(hi, st.max)
                if lo is not None:
                    out.setdefault(arm, []).append((f, lo, hi))
        return out

    def _load_titles(self) -> None:
        try:
            from recoworld.config import decode_study_json
            from recoworld.study.prepare import load_world_for

            cfg = decode_study_json(
                msgspec.json.encode(self.study), source=str(self.run_dir / "study.json")
            )
            world = load_world_for(cfg.world, cfg.seed)
            items = world.items.select("item_id", "title", "tags")
            titles = {r[0]: (r[1] or r[0], list(r[2] or [])) for r in items.iter_rows()}
            titles.update(self._titles)
            self._titles = titles
        except Exception as e:  # noqa: BLE001 - best effort: ids stay on the page
            print(
                f"recoworld view: item titles unavailable ({type(e).__name__}: {e}); "
                "showing item ids",
                file=sys.stderr,
            )
        finally:
            self.titles_ready.set()

    def _arm(self, arm: str | None) -> str:
        if arm is None or arm == "":
            return self.arms[0]
        if arm not in self.arms:
            raise RunError(f"no arm {arm!r}; the run has arms {self.arms}")
        return arm

    def _scan(self, table: str, arm: str, user: int | None = None) -> pl.LazyFrame | None:
        files = [
            f for f, lo, hi in self._files[table].get(arm, []) if user is None or lo <= user <= hi
        ]
        return pl.scan_parquet(files) if files else None

    def info(self) -> RunInfo:
        s, m = self.study, self.manifest
        sim, rec = s.get("simulation", {}), s.get("recommender", {})
        return RunInfo(
            run_id=m.get("run_id", self.run_dir.name),
            study=s.get("name") or m.get("study", ""),
            description=s.get("description") or "",
            world=m.get("world") or s.get("world", {}).get("dataset", ""),
            arms=self.arms,
            segments=self.segments,
            users_per_arm=int(m.get("users_per_arm") or 0),
            sessions=int(sim.get("sessions") or 0),
            turns=int(sim.get("turns") or 0),
            slate_size=int(sim.get("slate_size") or 0),
            brain=s.get("brain", {}).get("kind", ""),
            recommender=f"{rec.get('kind', '')}"
            + (" + instructions" if rec.get("follow_instructions") else ""),
            creator=[
                CreatorItemInfo(item_id=k, title=v[0], tags=v[1]) for k, v in self._creator.items()
            ],
            has_llm_calls=self.has_llm_calls,
        )

    def users(
        self,
        arm: str | None = None,
        *,
        segment: str | None = None,
        instructed: bool = False,
        offset: int = 0,
        limit: int = 50,
    ) -> UsersPage:
        """Users of ``arm`` in user order, ``limit`` from ``offset``, with their totals."""
        arm = self._arm(arm)
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            raise RunError(
                f"offset {offset}, limit {limit}: expected offset >= 0 and 1 <= limit <= {MAX_PAGE}"
            )
        seg = None if segment in (None, "", "all") else segment
        if seg is not None and seg not in self.segments:
            raise RunError(f"no segment {seg!r}; the run has segments {self.segments}")
        um = self._scan("user_metrics", arm)
        if um is None:
            return UsersPage(
                arm=arm,
                segment=seg or "all",
                instructed=instructed,
                offset=offset,
                limit=limit,
                total=0,
                users=[],
            )
        if seg is not None:
            um = um.filter(pl.col("segment") == seg)
        if instructed:
            who = (
                self._scan("sessions", arm)
                .filter(pl.col("instructions") > 0)
                .select("user")
                .unique()
            )  # type: ignore[union-attr]
            um = um.join(who, on="user", how="semi")
        page_q = um.sort("user").slice(offset, limit)
        total_q = um.select(pl.len())
        page, total = pl.collect_all([page_q, total_q])
        ids = page["user"].to_list()
        said: dict[int, int] = {}
        if ids:
            ss = self._scan("sessions", arm)
            if ss is not None:
                q = ss.filter(
                    pl.col("user").is_between(min(ids), max(ids)) & pl.col("user").is_in(ids)
                )
                said = dict(
                    q.group_by("user").agg(pl.col("instructions").sum()).collect().iter_rows()
                )
        rows = [
            UserRow(
                user=r["user"],
                segment=r["segment"],
                sessions=int(r["sessions"]),
                turns=int(r["turns"]),
                impressions=int(r["impressions"]),
                clicks=int(r["clicks"]),
                watch_time=float(r["watch_time"]),
                returned_first=bool(r["returned_first"]),
                creator_impressions=int(r["creator_impressions"]),
                creator_clicks=int(r["creator_clicks"]),
                instructions=int(said.get(r["user"], 0)),
            )
            for r in page.iter_rows(named=True)
        ]
        return UsersPage(
            arm=arm,
            segment=seg or "all",
            instructed=instructed,
            offset=offset,
            limit=limit,
            total=int(total.item()),
            users=rows,
        )

    def _sessions(self, arm: str, user: int) -> pl.DataFrame:
        ss = self._scan("sessions", arm, user)
        if ss is None:
            return pl.DataFrame()
        return (
            ss.filter(pl.col("user") == user)
            .with_columns(pl.col("segment").cast(pl.String))
            .sort("session")
            .collect()
        )

    @staticmethod
    def _session_row(r: dict) -> SessionRow:
        return SessionRow(
            session=r["session"],
            day=float(r["day"]),
            turns=r["turns"],
            left_early=r["left_early"],
            clicks=r["clicks"],
            watched=r["watched"],
            watch_time=float(r["watch_time"]),
            instructions=r["instructions"],
            satisfaction_end=float(r["satisfaction_end"]),
            top_tag=r["top_tag"],
            returned=r["returned"],
            return_gap_days=_num(r["return_gap_days"]),
            summary=r["summary"] or "",
        )

    def _check_user(self, user: int, session: int | None = None) -> None:
        """A user (and session) number outside the run's ranges is a bad request (400), not a
        missing one (404): the ranges are known from the manifest and the study."""
        n = int(self.manifest.get("users_per_arm") or 0)
        if user < 0 or (n and user >= n):
            expected = f"from 0 to {n - 1}" if n else ">= 0"
            raise RunError(f"user {user}: expected a user {expected}")
        k = int(self.study.get("simulation", {}).get("sessions") or 0)
        if session is not None and (session < 0 or (k and session >= k)):
            expected = f"from 0 to {k - 1}" if k else ">= 0"
            raise RunError(f"session {session}: expected a session {expected} (0-based)")

    def user(self, arm: str | None, user: int) -> UserDetail:
        """One user's persona (its users.parquet row) and sessions in ``arm``."""
        arm = self._arm(arm)
        self._check_user(user)
        ss = self._sessions(arm, user)
        if ss.height == 0:
            n = int(self.manifest.get("users_per_arm") or 0)
            raise NotFound(f"no user {user} in arm {arm!r} (users are 0..{n - 1})")
        persona: dict[str, Any] = {}
        if self._users_file.is_file():
            rows = pl.scan_parquet(self._users_file).filter(pl.col("user") == user).collect()
            if rows.height:
                persona = {
                    k: (_num(v) if isinstance(v, float) else v)
                    for k, v in rows.row(0, named=True).items()
                }
        return UserDetail(
            arm=arm,
            user=user,
            segment=ss["segment"][0],
            persona=persona,
            sessions=[self._session_row(r) for r in ss.iter_rows(named=True)],
            social=self._social(arm, user),
        )

    def _social(self, arm: str, user: int) -> list[SocialStep]:
        """The user's timeline on the social layer (small tables: scanned whole)."""
        out: list[SocialStep] = []
        folder = self.run_dir / "social" / f"arm={arm}"
        if folder.is_dir() and any(folder.glob("*.parquet")):
            friends = self._friends(user)
            msgs = (
                pl.scan_parquet(folder / "*.parquet")
                .with_columns(pl.col("kind").cast(pl.String))
                .filter(
                    (pl.col("user") == user)
                    | (pl.col("receiver") == user)
                    | ((pl.col("kind") == "post") & pl.col("user").is_in(friends))
                )
                .collect()
            )
            for r in msgs.iter_rows(named=True):
                mine = r["user"] == user
                out.append(
                    SocialStep(
                        round=r["round"],
                        kind=r["kind"] if mine else f"{r['kind']} received",
                        text=r["text"],
                        items=list(r["items"] or []),
                        other=r["receiver"] if mine else r["user"],
                    )
                )
        folder = self.run_dir / "searches" / f"arm={arm}"
        if folder.is_dir() and any(folder.glob("*.parquet")):
            found = pl.scan_parquet(folder / "*.parquet").filter(pl.col("user") == user).collect()
            for r in found.iter_rows(named=True):
                out.append(
                    SocialStep(
                        round=r["round"],
                        kind="search",
                        text=r["query"],
                        items=list(r["shown"] or []),
                        other=None,
                        session=r["session"],
                        turn=r["turn"],
                    )
                )
        return sorted(out, key=lambda s: (s.round, s.session or 0, s.turn or 0, s.kind))

    def _friends(self, user: int) -> list[int]:
        """The user's friends (``social_friends.parquet`` of a social run; none in older runs)."""
        path = self.run_dir / "social_friends.parquet"
        if not path.is_file():
            return []
        f = (
            pl.scan_parquet(path)
            .filter((pl.col("user") == user) | (pl.col("friend") == user))
            .collect()
        )
        return sorted(
            set(f.filter(pl.col("user") == user)["friend"].to_list())
            | set(f.filter(pl.col("friend") == user)["user"].to_list())
        )

    def session(self, arm: str | None, user: int, session: int) -> SessionReplay:
        """Every slate of one session, item by item, with the mindset after each item, the
        instruction written after the slate (if any) and where the user left."""
        arm = self._arm(arm)
        self._check_user(user, session)
        ev = self._scan("events", arm, user)
        key = (pl.col("user") == user) & (pl.col("session") == session)
        events = pl.DataFrame() if ev is None else ev.filter(key).sort("turn", "position").collect()
        if events.height == 0:
            raise NotFound(
                f"user {user} has no session {session} in arm {arm!r} (sessions are 0-based)"
            )
        events = events.with_columns(pl.col(pl.Categorical).cast(pl.String))
        summary = self._sessions(arm, user).filter(pl.col("session") == session)
        titles = self._titles
        turns: list[Turn] = []
        for (t,), g in events.group_by("turn", maintain_order=True):
            items = []
            for r in g.iter_rows(named=True):
                title, tags = titles.get(r["item_id"], (r["item_id"], []))
                items.append(
                    ItemStep(
                        position=r["position"],
                        item_id=r["item_id"],
                        title=title,
                        tags=tags,
                        creator=r["creator"] or "",
                        is_creator_item=r["is_creator_item"],
                        action=r["action"],
                        watch_fraction=float(r["watch_fraction"]),
                        rating=_num(r["rating"]),
                        satisfaction=float(r["satisfaction"]),
                        fatigue=float(r["fatigue"]),
                        boredom=float(r["boredom"]),
                        curiosity=float(r["curiosity"]),
                        feeling=r["feeling"],
                    )
                )
            instr = g["instruction"].drop_nulls()
            turns.append(
                Turn(
                    turn=int(t),
                    day=float(g["day"][0]),
                    items=items,
                    instruction=instr[0] if instr.len() else None,
                    left_after=bool(g["left_after_turn"].any()),
                )
            )
        calls: list[LlmCall] = []
        if self.has_llm_calls:
            lc = self._scan("llm_calls", arm, user)
            if lc is not None:
                df = (
                    lc.filter(key)
                    .with_columns(pl.col(pl.Categorical).cast(pl.String))
                    .sort("turn", "call_id")
                    .collect()
                )
                calls = [
                    LlmCall(
                        call_id=r["call_id"],
                        turn=r["turn"],
                        purpose=r["purpose"],
                        attempt=r["attempt"],
                        model=r["model"] or "",
                        tokens_in=r["tokens_in"],
                        tokens_out=r["tokens_out"],
                        latency_s=float(r["latency_s"]),
                        finish_reason=r["finish_reason"] or "",
                        parse_status=r["parse_status"] or "",
                        prompt=r["prompt"] or "",
                        completion=r["completion"] or "",
                        error=r["error"],
                    )
                    for r in df.iter_rows(named=True)
                ]
        return SessionReplay(
            arm=arm,
            user=user,
            session=session,
            segment=events["segment"][0],
            summary=self._session_row(summary.row(0, named=True)) if summary.height else None,
            turns=turns,
            llm_calls=calls,
        )


# --- HTTP -------------------------------------------------------------------------------------

INT64_MAX = 2**63 - 1
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def _int(q: dict[str, list[str]], name: str, default: int | None = None) -> int:
    """The last ``name=`` of the query as a base-10 integer in the int64 range (what the Parquet
    columns and polars' offsets hold); ``default`` when absent. Range rules of each endpoint are
    checked by :class:`RunView`."""
    v = q.get(name, [None])[-1]
    if v is None or v == "":
        if default is None:
            raise RunError(f"parameter {name!r} is missing; expected an integer")
        return default
    # int() also takes "1_000", " 7 ", "+7" and non-ASCII digits; the API takes plain digits
    digits = v[1:] if v.startswith("-") else v
    if not (digits.isascii() and digits.isdigit()):
        raise RunError(f"parameter {name!r} is {_shown(v)}; expected an integer")
    if len(digits) > 19 or not -INT64_MAX - 1 <= int(v) <= INT64_MAX:
        raise RunError(
            f"parameter {name!r} is {_shown(v)}; expected an integer from -2**63 to 2**63 - 1"
        )
    return int(v)


def _shown(v: str) -> str:
    """A query value for an error line: quoted, cut to 40 characters."""
    return repr(v) if len(v) <= 40 else repr(v[:40]) + "..."


def _str(q: dict[str, list[str]], name: str) -> str | None:
    return q.get(name, [None])[-1]


def _flag(q: dict[str, list[str]], name: str) -> bool:
    v = _str(q, name)
    if v in (None, "", "0", "false"):
        return False
    if v in ("1", "true"):
        return True
    raise RunError(f"parameter {name!r} is {_shown(v)}; expected 1, true, 0 or false")


def _host_port(value: str, default_port: int = 80) -> tuple[str, int] | None:
    """``Host`` value -> (lower-case name, port), ``default_port`` when it names none; None when
    malformed. IPv6 addresses come in brackets (``[::1]:8765``)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    elif value.count(":") == 1:
        name, _, port = value.partition(":")
    else:
        name, port = value, ""
    if port == "":
        port = str(default_port)
    if not name or not (port.isascii() and port.isdigit()) or len(port) > 5:
        return None
    return name, int(port)


def allowed_hosts(bound: str, port: int, extra: tuple[str, ...] = ()) -> frozenset[tuple[str, int]]:
    """The ``Host`` values a server bound to ``bound:port`` answers: the loopback names and the
    bound address with that port, and each of ``extra`` (``NAME``, ``NAME:PORT``, ``[V6]``,
    ``[V6]:PORT``; the bound port when none is given). Anything else is refused with 421: a page
    on another site that rebinds its DNS name to 127.0.0.1 still sends its own name as ``Host``."""
    out = {(h, port) for h in (*LOOPBACK_NAMES, bound.strip("[]").lower())}
    for e in extra:
        hp = _host_port(f"[{e}]" if e.count(":") > 1 and e[:1] != "[" else e, port)
        if hp is None:
            raise RunError(f"allowed host {e!r}: expected NAME, NAME:PORT or [IPV6]:PORT")
        out.add(hp)
    return frozenset(out)


def _show_host(name: str, port: int) -> str:
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


class _Handler(BaseHTTPRequestHandler):
    view: RunView
    page: bytes
    hosts: frozenset[tuple[str, int]] = frozenset()
    answers: str = ""  # how the 421 line names this server
    log: Callable[[str], None] | None = None
    server_version = "RecoWorldView/1"
    # the stdlib's own errors (bad request line, 501 for POST, ...) as one plain line
    error_message_format = "%(code)d %(message)s\n"
    error_content_type = "text/plain; charset=utf-8"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if not self._host_ok():
            return
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        try:
            if url.path in ("/", "/index.html"):
                return self._send(HTTPStatus.OK, self.page, "text/html; charset=utf-8")
            if url.path == "/favicon.ico":
                return self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            if url.path == "/api/run":
                body = self.view.info()
            elif url.path == "/api/users":
                body = self.view.users(
                    _str(q, "arm"),
                    segment=_str(q, "segment"),
                    instructed=_flag(q, "instructed"),
                    offset=_int(q, "offset", 0),
                    limit=_int(q, "limit", 50),
                )
            elif url.path == "/api/user":
                body = self.view.user(_str(q, "arm"), _int(q, "user"))
            elif url.path == "/api/session":
                body = self.view.session(_str(q, "arm"), _int(q, "user"), _int(q, "session"))
            else:
                return self._json(
                    HTTPStatus.NOT_FOUND,
                    {
                        "error": f"no page {url.path!r}; the viewer serves / and "
                        "/api/{run,users,user,session}"
                    },
                )
        except NotFound as e:
            return self._json(HTTPStatus.NOT_FOUND, {"error": str(e)})
        except RunError as e:
            return self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
        except Exception:  # noqa: BLE001 - the terminal gets the trace; the page one line
            import traceback

            traceback.print_exc()
            return self._json(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": "internal error in the viewer; its terminal has the details"},
            )
        self._send(HTTPStatus.OK, msgspec.json.encode(body), "application/json")

    do_HEAD = do_GET  # noqa: N815 - the stdlib's name

    def _host_ok(self) -> bool:
        """Refuse (421, one plain line) a request whose ``Host`` is not one this server answers."""
        values = self.headers.get_all("Host") or []
        hp = _host_port(values[0]) if len(values) == 1 else None
        if hp is not None and hp in self.hosts:
            return True
        got = "no Host header" if not values else f"Host {values[0][:100]!r}"
        if len(values) > 1:
            got = f"{len(values)} Host headers"
        msg = (
            f"421 Misdirected Request: {got}; this viewer answers {self.answers} "
            "(recoworld view --allow-host NAME adds a name)\n"
        )
        self.close_connection = True
        self._send(HTTPStatus.MISDIRECTED_REQUEST, msg.encode(), "text/plain; charset=utf-8")
        return False

    def _json(self, status: HTTPStatus, obj: object) -> None:
        self._send(status, msgspec.json.encode(obj), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "connect-src 'self'; img-src 'self' data:",
        )
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        if self.log is not None:
            self.log(f"{self.address_string()} {format % args}")


BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n\r\n"
    b"503 Service Unavailable: the viewer is busy; try again\n"
)


class ViewServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with at most ``workers`` connections handled at once: one more
    gets 503 at once (from the accepting thread, which never waits on a client) rather than a
    thread of its own. Each connection's socket times out after the handler's ``timeout``
    seconds, so a client that connects and goes quiet holds its slot that long at most."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], *, workers: int):
        if workers < 1:
            raise RunError(f"workers {workers}: expected at least 1")
        super().__init__(address, handler)
        self.workers = workers
        self._slots = threading.BoundedSemaphore(workers)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()  # no thread started: the slot is still ours
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    @staticmethod
    def _busy(request: Any) -> None:
        try:
            # read what the client has sent so far: closing a socket with unread input resets
            # the connection, and the client would see the reset instead of the 503
            request.settimeout(0.05)
            try:
                request.recv(65536)
            except OSError:
                pass
            request.sendall(BUSY)
        except OSError:
            pass


def make_server(
    view: RunView,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    log: Callable[[str], None] | None = None,
    allow_hosts: tuple[str, ...] = (),
    timeout: float = 10.0,
    workers: int = 16,
) -> ViewServer:
    """A threading HTTP server for ``view`` (not started: call ``serve_forever``). ``port=0``
    picks a free port (``server.server_address[1]``).

    Requests must name the server in ``Host`` (see :func:`allowed_hosts`; ``allow_hosts`` adds
    names); each connection's socket times out after ``timeout`` seconds; at most ``workers``
    connections are handled at once (see :class:`ViewServer`)."""
    from recoworld.report.page import PAGE

    handler = type(
        "Handler",
        (_Handler,),
        {
            "view": view,
            "page": PAGE.encode(),
            "log": staticmethod(log) if log else None,
            "timeout": timeout,
        },
    )
    try:
        server = ViewServer((host, port), handler, workers=workers)
    except OSError as e:
        raise RunError(
            f"cannot serve on {host}:{port}: {e.strerror or e}; "
            "choose another --port (0 = any free port)"
        ) from None
    bound = server.server_address[1]
    try:
        handler.hosts = allowed_hosts(host, bound, allow_hosts)
    except RunError:
        server.server_close()
        raise
    handler.answers = f"127.0.0.1:{bound}, localhost:{bound}, [::1]:{bound}" + "".join(
        f", {_show_host(h, p)}" for h, p in sorted(handler.hosts) if h not in LOOPBACK_NAMES
    )
    return server
