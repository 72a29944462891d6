"""Runs on object storage: ``--out s3://BUCKET/PREFIX`` (also ``gs://``, and ``file://`` for a
folder that should be written the same way), through :mod:`pyarrow.fs`.

A run is never *written* on the store. It runs exactly as a local run, into a local staging
folder (:class:`recoworld.io.runs.RunDirectory`: lock, ``--resume``, progress, digests), and
once complete it is *published*:

1. every file of the run (its manifest last) is uploaded under
   ``<root>/<run_id>/attempts/<attempt>/``, a fresh attempt id each time;
2. the uploaded objects are listed back and their sizes compared with the local files;
3. one small object, ``<root>/<run_id>/COMMIT.json`` (:class:`Commit`: the attempt and the
   manifest's SHA-256), is written last, in one PUT (``file://``: a temporary file renamed);
4. attempts other than the committed one that started earlier are deleted, best effort.

Object stores have no rename, but a single object is replaced atomically: the commit object is
the only switch, so a reader sees the previous complete run or the new one, never a mix, and an
upload that dies before step 3 leaves the committed run as it was. ``--overwrite`` is a new
attempt and a new commit; a committed run id without it is refused, as locally.

Readers (:meth:`RemoteRuns.fetch`) read only committed runs: the commit object, then the
attempt's manifest (checked against the commit's SHA-256), then every file the manifest lists,
each hashed as it is downloaded, into a local read cache keyed by the attempt; the local readers
then read that folder. A run without a commit object is no such run. An attempt is immutable, so
a verified copy in the cache is reused (verified again before it is).

Where the store is and who may use it come from the environment, never from the URI: pyarrow
reads the standard variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``AWS_REGION``, and, since Arrow 15, the endpoint in
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``; Google's application default credentials for
``gs://``). The URI may carry pyarrow's own query options (``?endpoint_override=HOST:PORT&
scheme=http``, ``region=``); a URI with credentials in it (``s3://KEY:SECRET@bucket``) is
refused, so they are never recorded in a study, a manifest, a commit or a log line.

One driver publishes a run id at a time: object stores have no lock, so two hosts publishing the
same id at once leave whichever commit came last (each a complete run).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qsl, urlencode, urlsplit

import msgspec
import pyarrow as pa
import pyarrow.fs as pafs

from recoworld.errors import ConfigError, RecoWorldError, RunError
from recoworld.io.integrity import CHUNK
from recoworld.io.lock import RunLock
from recoworld.io.runs import FILES, MANIFEST, check_run_dir

COMMIT = "COMMIT.json"
"""The commit object of a run: ``<root>/<run_id>/COMMIT.json``, written last."""
ATTEMPTS = "attempts"
"""Uploads of a run, one folder per attempt: ``<root>/<run_id>/attempts/<attempt>/``."""
SCHEMES = {"s3": "Amazon S3 or an S3-compatible store", "gs": "Google Cloud Storage"}
SCHEMES |= {"gcs": "Google Cloud Storage", "file": "a folder, written like an object store"}
GCS_RETRY_SECONDS = 30
"""``gs://`` without ``retry_limit_seconds``: how long a request is retried (pyarrow's default,
15 minutes, makes an unreachable store look like a hang)."""
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_WORKERS = 8


class Commit(msgspec.Struct, frozen=True, kw_only=True):
    """The commit object of a run (``COMMIT.json``): which attempt is the run."""

    run_id: str
    attempt: str
    """The folder under ``<run_id>/attempts/`` holding the run's files."""
    manifest_sha256: str
    """SHA-256 of the attempt's ``manifest.json`` (which holds every other file's)."""
    files: int
    """Files of the attempt, its manifest included."""
    bytes: int
    committed: str
    """ISO 8601 time (UTC) of the commit."""


class PublishIntent(msgspec.Struct, frozen=True, kw_only=True):
    """What a staged run is for (``<staging>/.<run_id>.publish.json``), so that ``--resume``
    can publish it later as it was meant: where to, and whether it replaces a committed run."""

    uri: str
    overwrite: bool


def uri_scheme(text: str) -> str | None:
    """The scheme of ``text`` when it is a URI (``s3://…``), else None (a local path)."""
    m = _SCHEME.match(text)
    return m.group(1).lower() if m else None


def refuse_uri(text: str, name: str, what: str) -> None:
    """A one-line ConfigError where ``text`` (the value of ``name``) is a URI and ``what``
    cannot use one yet."""
    scheme = uri_scheme(text)
    if scheme is not None:
        raise ConfigError(
            f"{name}: Expected a folder (local, or shared storage mounted on every node, e.g. "
            f"/mnt/runs), got {_redact(text)!r}: {what} cannot write to {scheme}:// yet"
        )


def _redact(text: str) -> str:
    """``text`` without the user-info part of a URI (``s3://KEY:SECRET@b`` -> ``s3://***@b``)."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@?#]*@", r"\1***@", text)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class RemoteRuns:
    """The runs under one object-store location (``s3://bucket/prefix``). Build it with
    :meth:`parse`; nothing is read or written until a method is called."""

    def __init__(self, uri: str, fs: pafs.FileSystem, base: str) -> None:
        self.uri, self.fs, self.base = uri.rstrip("/"), fs, base.rstrip("/")

    @classmethod
    def parse(cls, text: str, *, name: str) -> RemoteRuns:
        """The location ``text`` (the value of ``name``, e.g. ``--out``), or a one-line
        ConfigError saying what was expected."""
        scheme = uri_scheme(text)
        shown = _redact(text)
        if scheme not in SCHEMES:
            kinds = ", ".join(f"{s}:// ({w})" for s, w in SCHEMES.items() if s != "gcs")
            raise ConfigError(
                f"{name}: Expected a folder or a URI of {kinds}, got {shown!r}: "
                f"{scheme}:// is not supported"
            )
        parts = urlsplit(text)
        if "@" in parts.netloc:
            raise ConfigError(
                f"{name}: Expected a URI without credentials (they come from the environment: "
                f"AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE for s3://, "
                f"application default credentials for gs://), got {shown!r}"
            )
        if scheme != "file" and not parts.netloc:
            raise ConfigError(f"{name}: Expected {scheme}://BUCKET/PREFIX, got {shown!r}")
        query = parts.query
        if scheme in ("gs", "gcs") and "retry_limit_seconds" not in dict(parse_qsl(query)):
            query = urlencode([*parse_qsl(query), ("retry_limit_seconds", GCS_RETRY_SECONDS)])
        base_uri = f"{scheme}://{parts.netloc}{parts.path}"
        try:
            fs, base = pafs.FileSystem.from_uri(base_uri + (f"?{query}" if query else ""))
        except pa.ArrowInvalid as e:
            raise ConfigError(
                f"{name}: Expected a usable {scheme}:// URI, got {shown!r} ({e})"
            ) from None
        except OSError as e:  # s3:// without a region: the bucket's region is looked up
            raise RunError(f"{name}: {_explain(shown, e)}") from None
        location = base_uri.rstrip("/") + (f"?{parts.query}" if parts.query else "")
        return cls(location, fs, base)

    @classmethod
    def parse_run(cls, text: str, *, name: str) -> tuple[RemoteRuns, str]:
        """A run's URI (``s3://bucket/prefix/RUN_ID``) as its location and its run id."""
        parts = urlsplit(text)
        path = parts.path.rstrip("/")
        run_id = PurePosixPath(path).name
        if not run_id:
            raise ConfigError(
                f"{name}: Expected a run's URI (…/RUN_ID, as `recoworld run` prints it), "
                f"got {_redact(text)!r}"
            )
        parent = parts._replace(path=path[: -len(run_id)].rstrip("/")).geturl()
        return cls.parse(parent, name=name), run_id

    # --- where things are --------------------------------------------------------------------

    @property
    def key(self) -> str:
        """A short stable name of the location, for local folders (staging, read cache)."""
        return _sha(self.uri.encode())[:16]

    @property
    def local(self) -> bool:
        return self.fs.type_name == "local"

    def run_uri(self, run_id: str, *rest: str) -> str:
        """The URI of run ``run_id`` (or of something under it), as a user would type it."""
        scheme, _, tail = self.uri.partition("://")
        path, _, query = tail.partition("?")
        return f"{scheme}://{'/'.join([path, run_id, *rest])}" + (f"?{query}" if query else "")

    def _path(self, run_id: str, *rest: str) -> str:
        return "/".join(p for p in (self.base, run_id, *rest) if p)

    # --- checks ------------------------------------------------------------------------------

    def check(self) -> None:
        """Before any work: the store answers and its bucket exists (``file://``: the folder
        is there or can be made). A one-line RunError naming the URI otherwise."""
        try:
            if self.local:
                info = self.fs.get_file_info(self.base)
                if info.type == pafs.FileType.File:
                    raise RunError(f"{self.uri}: Expected a folder for the runs, got a file")
                self.fs.create_dir(self.base, recursive=True)
                return
            bucket = self.base.split("/", 1)[0]
            if self.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise RunError(
                    f"{self.uri}: bucket {bucket!r} does not exist; expected an existing bucket "
                    "(RecoWorld does not create buckets)"
                )
        except OSError as e:
            raise RunError(_explain(self.uri, e)) from None

    def commit_of(self, run_id: str) -> Commit | None:
        """The commit object of ``run_id``, or None where the run was never committed."""
        where = self.run_uri(run_id, COMMIT)
        try:
            with self.fs.open_input_stream(self._path(run_id, COMMIT)) as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise RunError(_explain(where, e)) from None
        try:
            return msgspec.json.decode(data, type=Commit)
        except msgspec.DecodeError as e:
            raise RunError(
                f"{where}: {e}; expected the commit object a published run writes last"
            ) from None

    # --- writing -----------------------------------------------------------------------------

    def publish(self, run_dir: Path, *, overwrite: bool) -> Commit:
        """Upload the complete local run ``run_dir`` and commit it (steps 1-4 of the module
        docstring). Idempotent: a run whose manifest is already the committed one is not
        uploaded again. A one-line RunError naming the URI when the store fails."""
        run_dir = Path(run_dir)
        manifest = check_run_dir(run_dir, verify=True)  # never upload a damaged run
        run_id = manifest["run_id"]
        manifest_sha = _sha((run_dir / MANIFEST).read_bytes())
        old = self.commit_of(run_id)
        if old is not None and old.manifest_sha256 == manifest_sha:
            return old  # published earlier (the staged copy outlived its upload)
        if old is not None and not overwrite:
            raise RunError(already_committed(self.run_uri(run_id)))
        # microseconds: two attempts of one second still sort in the order they started
        now = datetime.datetime.now(datetime.UTC)
        attempt = now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(4)
        names = sorted(manifest.get(FILES) or {})
        sizes = {n: (run_dir / n).stat().st_size for n in [*names, MANIFEST]}
        self._upload(run_dir, run_id, attempt, names)
        self._upload(run_dir, run_id, attempt, [MANIFEST])  # the attempt's last file
        self._check_uploaded(run_id, attempt, sizes)
        commit = Commit(
            run_id=run_id,
            attempt=attempt,
            manifest_sha256=manifest_sha,
            files=len(sizes),
            bytes=sum(sizes.values()),
            committed=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        self._write_commit(run_id, msgspec.json.format(msgspec.json.encode(commit), indent=2))
        self._remove_stale(run_id, attempt, replaced=old.attempt if old is not None else "")
        return commit

    def _upload(self, run_dir: Path, run_id: str, attempt: str, names: list[str]) -> None:
        if self.local:
            parents = {str(PurePosixPath(n).parent) for n in names}
            for p in sorted(parents):
                self.fs.create_dir(self._path(run_id, ATTEMPTS, attempt, p), recursive=True)

        def put(name: str) -> None:
            target = self._path(run_id, ATTEMPTS, attempt, name)
            try:
                with open(run_dir / name, "rb") as src, self.fs.open_output_stream(target) as out:
                    while chunk := src.read(CHUNK * 8):
                        out.write(chunk)
            except OSError as e:
                where = self.run_uri(run_id, ATTEMPTS, attempt, name)
                raise RunError(_explain(where, e, writing=True)) from None

        with ThreadPoolExecutor(max_workers=min(_WORKERS, max(1, len(names)))) as pool:
            list(pool.map(put, names))

    def _check_uploaded(self, run_id: str, attempt: str, sizes: dict[str, int]) -> None:
        """Every file of the attempt is on the store with its local size (before the commit)."""
        prefix = self._path(run_id, ATTEMPTS, attempt)
        try:
            found = {
                i.path[len(prefix) + 1 :]: i.size
                for i in self.fs.get_file_info(pafs.FileSelector(prefix, recursive=True))
                if i.type == pafs.FileType.File
            }
        except OSError as e:
            raise RunError(_explain(self.run_uri(run_id, ATTEMPTS, attempt), e)) from None
        for name, size in sorted(sizes.items()):
            if found.get(name) != size:
                got = "missing" if name not in found else f"{found[name]} bytes"
                raise RunError(
                    f"{self.run_uri(run_id, ATTEMPTS, attempt, name)}: {got} after its upload, "
                    f"expected {size} bytes; the run was not committed"
                )

    def _write_commit(self, run_id: str, data: bytes) -> None:
        """The one switch: a single PUT on an object store; a renamed file on ``file://``."""
        target = self._path(run_id, COMMIT)
        try:
            if self.local:
                tmp = self._path(run_id, f".{COMMIT}.{secrets.token_hex(4)}.tmp")
                with self.fs.open_output_stream(tmp) as out:
                    out.write(data)
                self.fs.move(tmp, target)
            else:
                with self.fs.open_output_stream(target) as out:
                    out.write(data)
        except OSError as e:
            raise RunError(_explain(self.run_uri(run_id, COMMIT), e, writing=True)) from None

    def _remove_stale(self, run_id: str, keep: str, replaced: str = "") -> None:
        """Delete the attempts of ``run_id`` that started before ``keep`` (the replaced run,
        uploads that died before their commit); best effort. Later ones may be another
        driver's upload in flight and are left alone."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self._path(run_id, ATTEMPTS)))
            for info in infos:
                name = PurePosixPath(info.path).name
                if (
                    info.type == pafs.FileType.Directory
                    and name != keep
                    and (name < keep or name == replaced)
                ):
                    self.fs.delete_dir(info.path)
        except OSError:
            pass  # the run is committed; a leftover attempt only costs space

    # --- reading -----------------------------------------------------------------------------

    def fetch(self, run_id: str, cache: Path) -> Path:
        """A verified local copy of the committed run ``run_id`` under ``cache`` (reused when
        already there), for the local readers. A one-line RunError when the run is not
        committed, when a file is missing or differs from the manifest (naming it), or when
        the store fails."""
        for _ in range(3):  # a commit replaced while we read: read the new one
            commit = self.commit_of(run_id)
            if commit is None:
                raise RunError(self._no_run(run_id))
            try:
                return self._fetch(commit, Path(cache))
            except _Vanished:
                continue
        raise RunError(f"{self.run_uri(run_id)}: the run kept being replaced while it was read")

    def _no_run(self, run_id: str) -> str:
        try:
            upload = self.fs.get_file_info(self._path(run_id, ATTEMPTS)).type
        except OSError as e:
            return _explain(self.run_uri(run_id), e)
        hint = (
            " (an upload of it was not committed: it is not a complete run)"
            if upload == pafs.FileType.Directory
            else ""
        )
        return (
            f"{self.run_uri(run_id)}: no such run: no {COMMIT}; expected a run published by "
            f"`recoworld run … --out {self.uri}`{hint}"
        )

    def _fetch(self, commit: Commit, cache: Path) -> Path:
        run_id, attempt = commit.run_id, commit.attempt
        target = cache / run_id / attempt / run_id
        if (target / MANIFEST).is_file():
            try:
                check_run_dir(target, verify=True)
                return target
            except RunError:
                shutil.rmtree(target, ignore_errors=True)  # a damaged copy: download again
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{run_id}.{os.getpid()}-{secrets.token_hex(4)}.partial"
        try:
            data = self._get(run_id, attempt, MANIFEST)
            if _sha(data) != commit.manifest_sha256:
                raise RunError(
                    f"{self.run_uri(run_id, ATTEMPTS, attempt, MANIFEST)}: contents differ from "
                    f"the commit (sha256 {_sha(data)}, expected {commit.manifest_sha256}); "
                    "the run is corrupt"
                )
            manifest = _decode_manifest(data, self.run_uri(run_id, ATTEMPTS, attempt, MANIFEST))
            files: dict[str, str] = manifest.get(FILES) or {}
            for name in files:
                _check_name(name, self.run_uri(run_id, ATTEMPTS, attempt, MANIFEST))
            tmp.mkdir()
            (tmp / MANIFEST).write_bytes(data)

            def get(name: str) -> None:
                self._download(run_id, attempt, name, tmp / name, files[name])

            with ThreadPoolExecutor(max_workers=min(_WORKERS, max(1, len(files)))) as pool:
                list(pool.map(get, sorted(files)))
            check_run_dir(tmp)  # the manifest's own checks (schema version)
            try:
                tmp.rename(target)
            except OSError:
                if not (target / MANIFEST).is_file():
                    raise
                # another reader put the same attempt in place first
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _get(self, run_id: str, attempt: str, name: str) -> bytes:
        try:
            with self.fs.open_input_stream(self._path(run_id, ATTEMPTS, attempt, name)) as f:
                return f.read()
        except FileNotFoundError:
            self._vanished(run_id, attempt, name)
            raise  # not reached
        except OSError as e:
            raise RunError(_explain(self.run_uri(run_id, ATTEMPTS, attempt, name), e)) from None

    def _download(self, run_id: str, attempt: str, name: str, dest: Path, sha256: str) -> None:
        where = self.run_uri(run_id, ATTEMPTS, attempt, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        try:
            with (
                self.fs.open_input_stream(self._path(run_id, ATTEMPTS, attempt, name)) as src,
                open(dest, "wb") as out,
            ):
                while chunk := src.read(CHUNK * 8):
                    h.update(chunk)
                    out.write(chunk)
        except FileNotFoundError:
            self._vanished(run_id, attempt, name)
        except OSError as e:
            raise RunError(_explain(where, e)) from None
        if h.hexdigest() != sha256:
            raise RunError(
                f"{where}: contents differ from the run's manifest (sha256 {h.hexdigest()}, "
                f"expected {sha256}); the run is corrupt"
            )

    def _vanished(self, run_id: str, attempt: str, name: str) -> None:
        """A listed object is missing: the run was replaced meanwhile (read it again), or the
        committed attempt lost a file (corrupt)."""
        now = self.commit_of(run_id)
        if now is not None and now.attempt != attempt:
            raise _Vanished
        raise RunError(
            f"{self.run_uri(run_id, ATTEMPTS, attempt, name)}: missing, but listed in the run's "
            "manifest; the run is corrupt"
        )


class _Vanished(Exception):
    """The attempt being read was replaced by a newer commit."""


def already_committed(uri: str) -> str:
    return (
        f"{uri} already holds a committed run; "
        "pass --overwrite to replace it or choose another --run-id"
    )


def _decode_manifest(data: bytes, where: str) -> dict:
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{where}: not valid JSON ({e}); expected a run's manifest") from None
    files = manifest.get(FILES) if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise RunError(f"{where}: expected a run's manifest with {FILES!r}: name -> sha256")
    return manifest


def _check_name(name: str, where: str) -> None:
    """A file name from a downloaded manifest stays inside the run's folder."""
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts or "\\" in name or name == MANIFEST:
        raise RunError(f"{where}: lists {name!r}; expected file names inside the run's folder")


_PROBLEMS = (  # (words in pyarrow's message, what it means, what was expected)
    (
        ("NETWORK_CONNECTION", "curlCode", "Could not connect", "Couldn't connect", "UNAVAILABLE"),
        "cannot reach the object store",
        "a reachable endpoint (AWS_ENDPOINT_URL / ?endpoint_override=HOST:PORT for an "
        "S3-compatible server)",
    ),
    (
        (
            "ACCESS_DENIED",
            "INVALID_ACCESS_KEY_ID",
            "SIGNATURE_DOES_NOT_MATCH",
            "AccessDenied",
            "Forbidden",
            "PERMISSION_DENIED",
            "UNAUTHENTICATED",
        ),
        "access denied",
        "credentials allowed to read and write it (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
        "AWS_PROFILE; application default credentials for gs://)",
    ),
    (
        ("NO_SUCH_BUCKET", "NoSuchBucket", "Bucket '"),
        "no such bucket",
        "an existing bucket (RecoWorld does not create buckets)",
    ),
)


def _explain(uri: str, e: OSError, *, writing: bool = False) -> str:
    """One line: the URI, what went wrong in words, what was expected, pyarrow's detail."""
    detail = " ".join(str(e).split())
    detail = detail.split(" error_info=")[0]
    if len(detail) > 300:
        detail = detail[:297] + "..."
    for words, meaning, expected in _PROBLEMS:
        if any(w in detail for w in words):
            return f"{uri}: {meaning}; expected {expected} ({detail})"
    doing = "writing" if writing else "reading"
    return f"{uri}: the object store failed while {doing} ({detail})"


# --- staging: where a run for an object store is written before it is published -------------


def intent_path(staging: Path, run_id: str) -> Path:
    return Path(staging) / f".{run_id}.publish.json"


def write_intent(staging: Path, run_id: str, intent: PublishIntent) -> None:
    path = intent_path(staging, run_id)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(msgspec.json.encode(intent))
    os.replace(tmp, path)


def read_intent(staging: Path, run_id: str) -> PublishIntent | None:
    try:
        return msgspec.json.decode(intent_path(staging, run_id).read_bytes(), type=PublishIntent)
    except (OSError, msgspec.DecodeError):
        return None


def staged_complete(staging: Path, run_id: str) -> Path | None:
    """The complete run ``run_id`` in ``staging`` that has not been published, if any."""
    folder = Path(staging) / run_id
    return folder if (folder / MANIFEST).is_file() else None


def publish_staged(remote: RemoteRuns, staging: Path, run_id: str, *, overwrite: bool) -> Commit:
    """Publish the complete run ``<staging>/<run_id>`` under its lock; once committed, the
    staged copy is removed. On failure it stays (``--resume`` publishes it) and the committed
    run on the store is untouched."""
    lock = RunLock.acquire(staging, run_id)
    try:
        folder = Path(staging) / run_id
        try:
            commit = remote.publish(folder, overwrite=overwrite)
        except RecoWorldError as e:
            raise RunError(
                f"{e}; the complete run stays in {folder} and is published by re-running "
                f"with --resume {run_id}"
            ) from None
        shutil.rmtree(folder, ignore_errors=True)
        intent_path(staging, run_id).unlink(missing_ok=True)
    finally:
        lock.release()
    return commit
