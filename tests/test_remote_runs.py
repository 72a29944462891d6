"""Runs on object storage (recoworld/io/remote.py, the `--out URI` and reading paths of
recoworld/cli.py) against a real S3 API: a moto server started here on 127.0.0.1, reached by
pyarrow's S3 client through the standard AWS environment variables, as a user's would be.

A run to ``s3://`` reads back equal to the same run on local disk; the commit object is the only
switch (an upload that dies before it leaves the old run visible); an uncommitted run is no such
run; a damaged object is named; store failures are one line; ``file://`` runs the same way.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.fs as pafs
import pytest

from recoworld.cli import main
from recoworld.io.remote import ATTEMPTS, COMMIT, Commit, RemoteRuns
from recoworld.io.runs import scan_table

moto_server = pytest.importorskip("moto.server", reason="needs moto[server] (the test extra)")

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "recoworld-test"
SECRET = "s3cr3t-value-never-written"
STUDY = """\
name = "remote"
seed = 3
[world]
dataset = "synthetic"
synthetic_users = 40
synthetic_items = 60
embedding_dim = 4
[population]
size = 30
[simulation]
sessions = 1
turns = 2
slate_size = 3
[recommender]
candidates = 6
[creator]
id = "c"
[[creator.items]]
title = "t"
[[arms]]
name = "control"
[[arms]]
name = "inject"
treatment = "inject"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """A moto S3 server on 127.0.0.1 that can be stopped and started again on its port (its
    objects live in this process, so they survive a restart)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server = None

    def start(self) -> None:
        self.server = moto_server.ThreadedMotoServer(
            ip_address="127.0.0.1", port=self.port, verbose=False
        )
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def fs(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            endpoint_override=self.endpoint,
            access_key="testing",
            secret_key=SECRET,
            region="us-east-1",
            allow_bucket_creation=True,
        )


@pytest.fixture(scope="module")
def s3() -> Moto:
    m = Moto()
    m.start()
    m.fs().create_dir(BUCKET)
    yield m
    m.stop()


@pytest.fixture()
def env(s3: Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The AWS variables a user would set, a cache of this test's own, a study file."""
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("RECOWORLD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "400")
    (tmp_path / "study.toml").write_text(STUDY)
    return tmp_path


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str, *needles: str) -> str:
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def go(tmp: Path, capsys, out: str, run_id: str, *flags: str) -> tuple[int, str, str]:
    argv = ["run", tmp / "study.toml", "--out", out, "--run-id", run_id, "--quiet"]
    return cli([*argv, "--workers", "1", *flags], capsys)


def frame(run_dir: Path, table: str) -> pl.DataFrame:
    df = scan_table(run_dir, table).collect()
    df = df.with_columns(pl.col(pl.Categorical).cast(pl.String))
    return df.sort(df.columns)


def fetch(uri: str, cache: Path) -> Path:
    remote, run_id = RemoteRuns.parse_run(uri, name="test")
    return remote.fetch(run_id, cache)


def commit_of(s3: Moto, run_id: str) -> Commit | None:
    return RemoteRuns(f"s3://{BUCKET}/runs", s3.fs(), f"{BUCKET}/runs").commit_of(run_id)


def objects(s3: Moto, prefix: str) -> dict[str, int]:
    sel = pafs.FileSelector(f"{BUCKET}/{prefix}", recursive=True, allow_not_found=True)
    return {i.path: i.size for i in s3.fs().get_file_info(sel) if i.type == pafs.FileType.File}


def test_a_run_on_s3_reads_back_equal_to_the_same_run_on_local_disk(
    env: Path, s3: Moto, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = go(env, capsys, str(env / "local"), "same")
    assert code == 0, err
    code, out, err = go(env, capsys, f"s3://{BUCKET}/runs", "same")
    assert code == 0, err
    assert f"-> s3://{BUCKET}/runs/same" in out
    assert f"recoworld summary s3://{BUCKET}/runs/same" in out
    assert not (env / "cache" / "staging").exists() or not any(
        p.name == "same" for p in (env / "cache" / "staging").rglob("same")
    )  # published: the staged copy is gone
    commit = commit_of(s3, "same")
    assert commit is not None and commit.run_id == "same"
    # every object of the run sits under its committed attempt; COMMIT.json beside them
    names = objects(s3, "runs/same")
    assert f"{BUCKET}/runs/same/{COMMIT}" in names
    attempt = f"{BUCKET}/runs/same/{ATTEMPTS}/{commit.attempt}/"
    assert all(n.startswith(attempt) for n in names if not n.endswith(COMMIT))
    assert len(names) == commit.files + 1
    # no credential anywhere on the store
    fs = s3.fs()
    for name in names:
        with fs.open_input_stream(name) as f:
            assert SECRET.encode() not in f.read(), name

    code, local_summary, err = cli(["summary", env / "local" / "same"], capsys)
    assert code == 0, err
    code, remote_summary, err = cli(["summary", f"s3://{BUCKET}/runs/same"], capsys)
    assert code == 0, err
    assert remote_summary == local_summary
    copy = fetch(f"s3://{BUCKET}/runs/same", env / "cache" / "elsewhere")
    for table in ("events", "sessions", "user_metrics", "summary"):
        assert frame(copy, table).equals(frame(env / "local" / "same", table)), table

    code, out, err = cli(["report", f"s3://{BUCKET}/runs/same", "-o", env / "r.html"], capsys)
    assert code == 0, err
    assert (env / "r.html").stat().st_size > 10_000


def test_the_commit_object_is_the_only_switch_between_two_runs(
    env: Path, s3: Moto, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"s3://{BUCKET}/runs/switch"
    assert go(env, capsys, f"s3://{BUCKET}/runs", "switch")[0] == 0
    first = commit_of(s3, "switch")
    old_events = frame(fetch(uri, env / "c1"), "events")

    # a replacement dies after every file is uploaded, before its commit
    def crash(self, run_id: str, data: bytes) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(RemoteRuns, "_write_commit", crash)
    code, _, err = go(env, capsys, f"s3://{BUCKET}/runs", "switch", "--overwrite", "--seed", "9")
    assert code == 130, err
    monkeypatch.undo()
    env_again(monkeypatch, env, s3)
    attempts = {p.split("/")[4] for p in objects(s3, "runs/switch") if f"/{ATTEMPTS}/" in p}
    assert len(attempts) == 2  # the new run is all there, but not committed
    assert commit_of(s3, "switch") == first
    assert frame(fetch(uri, env / "c2"), "events").equals(old_events)  # readers see the old run

    # a replacement that commits: readers see only the new run, older attempts are gone
    code, _, err = go(env, capsys, f"s3://{BUCKET}/runs", "switch", "--overwrite", "--seed", "9")
    assert code == 0, err
    second = commit_of(s3, "switch")
    assert second.attempt != first.attempt
    new_events = frame(fetch(uri, env / "c3"), "events")
    assert not new_events.equals(old_events)
    attempts = {p.split("/")[4] for p in objects(s3, "runs/switch") if f"/{ATTEMPTS}/" in p}
    assert attempts == {second.attempt}
    # without --overwrite a committed run id is refused, as locally
    code, _, err = go(env, capsys, f"s3://{BUCKET}/runs", "switch")
    one_line(err, uri, "already holds a committed run", "--overwrite")


def env_again(monkeypatch: pytest.MonkeyPatch, tmp: Path, s3: Moto) -> None:
    """The `env` fixture's variables, after a monkeypatch.undo()."""
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("RECOWORLD_CACHE", str(tmp / "cache"))
    monkeypatch.setenv("COLUMNS", "400")


def test_a_failed_upload_keeps_the_committed_run_and_resume_publishes_the_staged_one(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    own = Moto()  # a server of this test's own, to take down mid-publish
    own.start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", own.endpoint)
        out, uri = f"s3://{BUCKET}/flaky", f"s3://{BUCKET}/flaky/r"
        assert go(env, capsys, out, "r")[0] == 0
        before = RemoteRuns.parse(out, name="t").commit_of("r")
        real = RemoteRuns.publish

        def server_down(self, run_dir, *, overwrite):  # noqa: ANN001, ANN202
            own.stop()
            return real(self, run_dir, overwrite=overwrite)

        monkeypatch.setattr(RemoteRuns, "publish", server_down)
        code, _, err = go(env, capsys, out, "r", "--overwrite", "--seed", "8")
        line = one_line(err, uri, "cannot reach", "--resume r")
        assert SECRET not in line
        assert code == 2
        monkeypatch.setattr(RemoteRuns, "publish", real)
        own.start()
        assert RemoteRuns.parse(out, name="t").commit_of("r") == before  # untouched
        staged = list((env / "cache" / "staging").glob("*/r/manifest.json"))
        assert len(staged) == 1  # the complete run waits in staging

        # --resume publishes it without simulating again (it was meant to --overwrite)
        code, stdout, err = go(env, capsys, out, "r", "--resume", "r", "--seed", "8")
        assert code == 0, err
        assert "published the staged run r" in stdout
        after = RemoteRuns.parse(out, name="t").commit_of("r")
        assert after.attempt != before.attempt
        assert not staged[0].exists()
        code, _, err = cli(["summary", uri], capsys)
        assert code == 0, err
    finally:
        own.stop()


def test_a_run_without_a_commit_is_no_such_run(
    env: Path, s3: Moto, capsys: pytest.CaptureFixture[str]
) -> None:
    fs = s3.fs()
    with fs.open_output_stream(f"{BUCKET}/runs/ghost/{ATTEMPTS}/x/manifest.json") as f:
        f.write(b"{}")
    code, _, err = cli(["summary", f"s3://{BUCKET}/runs/ghost"], capsys)
    assert code == 2
    one_line(err, f"s3://{BUCKET}/runs/ghost", "no such run", COMMIT, "not committed")
    code, _, err = cli(["view", f"s3://{BUCKET}/runs/never"], capsys)
    one_line(err, f"s3://{BUCKET}/runs/never", "no such run")


def corrupt_part(fs: pafs.FileSystem, attempt: str) -> str:
    name = "events/arm=control/part-00000.parquet"
    with fs.open_input_stream(f"{attempt}/{name}") as f:
        data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF
    with fs.open_output_stream(f"{attempt}/{name}") as f:
        f.write(bytes(data))
    return name


def corrupt_manifest(fs: pafs.FileSystem, attempt: str) -> str:
    with fs.open_output_stream(f"{attempt}/manifest.json") as f:
        f.write(b'{"files": {}}')
    return "manifest.json"


def lose_users(fs: pafs.FileSystem, attempt: str) -> str:
    fs.delete_file(f"{attempt}/users.parquet")
    return "users.parquet"


@pytest.mark.parametrize("damage", [corrupt_part, corrupt_manifest, lose_users])
def test_a_damaged_object_of_a_committed_run_is_named(
    env: Path, s3: Moto, capsys: pytest.CaptureFixture[str], damage
) -> None:
    run_id = f"damaged-{damage.__name__}".replace("_", "-")
    assert go(env, capsys, f"s3://{BUCKET}/runs", run_id)[0] == 0
    commit = commit_of(s3, run_id)
    name = damage(s3.fs(), f"{BUCKET}/runs/{run_id}/{ATTEMPTS}/{commit.attempt}")
    code, _, err = cli(["summary", f"s3://{BUCKET}/runs/{run_id}"], capsys)
    assert code == 2
    where = f"s3://{BUCKET}/runs/{run_id}/{ATTEMPTS}/{commit.attempt}/{name}"
    one_line(err, where, "corrupt")
    assert not list((env / "cache" / "remote").rglob(f"{run_id}/manifest.json"))  # not cached


def test_store_failures_are_one_line_naming_the_uri(
    env: Path, s3: Moto, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # unreachable endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    code, _, err = go(env, capsys, f"s3://{BUCKET}/runs", "x")
    one_line(err, "--out", f"s3://{BUCKET}/runs", "cannot reach", "AWS_ENDPOINT_URL")
    assert code == 2 and not (env / "cache").exists()  # refused before any work
    code, _, err = cli(["summary", f"s3://{BUCKET}/runs/x"], capsys)
    one_line(err, f"s3://{BUCKET}/runs", "cannot reach")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    # missing bucket
    code, _, err = go(env, capsys, "s3://no-such-bucket/runs", "x")
    one_line(err, "s3://no-such-bucket/runs", "bucket 'no-such-bucket' does not exist")
    # unsupported scheme; credentials in the URI (refused, never echoed)
    code, _, err = go(env, capsys, "ftp://host/runs", "x")
    one_line(err, "--out", "ftp:// is not supported", "s3://", "gs://", "file://")
    code, _, err = go(env, capsys, f"s3://AKIA:{SECRET}@{BUCKET}/runs", "x")
    assert SECRET not in one_line(err, "--out", "without credentials", "AWS_ACCESS_KEY_ID")
    assert code == 2 and not (env / "cache").exists()


def test_bad_credentials_are_one_line(
    env: Path, s3: Moto, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import moto.settings
    from moto.core.responses import ActionAuthenticatorMixin

    # moto checks signatures against its IAM users from the first request on: ours is unknown
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)
    code, _, err = go(env, capsys, f"s3://{BUCKET}/runs", "x")
    line = one_line(err, f"s3://{BUCKET}/runs", "access denied", "AWS_SECRET_ACCESS_KEY")
    assert SECRET not in line and code == 2


def test_a_file_uri_is_written_and_read_like_an_object_store(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = env / "store"
    uri = f"file://{store}"
    assert go(env, capsys, str(env / "local"), "f")[0] == 0
    code, out, err = go(env, capsys, uri, "f")
    assert code == 0, err
    assert b'"attempt"' in (store / "f" / COMMIT).read_bytes()
    assert not list(store.rglob("*.tmp"))  # the commit was renamed into place
    code, remote_summary, err = cli(["summary", f"{uri}/f"], capsys)
    assert code == 0, err
    assert remote_summary == cli(["summary", env / "local" / "f"], capsys)[1]
    code, _, err = go(env, capsys, uri, "f", "--overwrite", "--seed", "5")
    assert code == 0, err
    assert len(list((store / "f" / ATTEMPTS).iterdir())) == 1


def test_a_sweep_to_an_object_store_is_refused_in_one_line(env: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "jobs/nightly_sweep.py", "sweeps/quick.toml", "--local"]
        + ["--out", f"s3://{BUCKET}/sweeps"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    one_line(proc.stderr, "--out", f"s3://{BUCKET}/sweeps", "sweep")


def test_a_ray_job_may_write_to_an_object_store() -> None:
    # .ci/ray_jobs.sh submits it for real, against a moto server, and compares the events
    from jobs.whatif import job_args

    job_dir = Path("/tmp/ray/session_x/runtime_resources/working_dir_files/pkg")
    argv = ["s.toml", "--out", f"s3://{BUCKET}/runs"]
    assert job_args(argv, job_dir) == ["run", *argv, "--ray", "auto"]
