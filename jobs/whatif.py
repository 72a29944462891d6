"""Ray job entry point for a creator what-if study.

    RAY_AUTH_MODE=token ray job submit --runtime-env cluster/runtime_env.yaml --working-dir . \
        -- python jobs/whatif.py STUDY.toml --out /shared/runs [--run-id ID] [run options]
    ... -- python jobs/whatif.py STUDY.toml --out s3://BUCKET/runs ...

The same options as ``recoworld run``; Ray (``--ray auto``: the cluster the job runs in) is the
default here, ``--local`` runs in one process. A job runs in a temporary copy of the working
dir, so ``--out`` (storage every node shares, or an object store URI) is required when it runs
as a Ray job. For ``s3://`` the job's environment carries the store's endpoint and credentials
(``AWS_*`` variables: the cluster's, or ``env_vars`` in the job's runtime env); the run is staged
on the driver's node and published from there (see recoworld/io/remote.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir, for `actors`

from recoworld.cli import main  # noqa: E402


def in_ray_job_dir(cwd: Path) -> bool:
    """Is ``cwd`` the temporary copy of a working dir that Ray unpacks for a job?"""
    return "runtime_resources" in cwd.parts


def job_args(argv: list[str], cwd: Path) -> list[str]:
    """``recoworld run`` arguments: on Ray (the job's cluster) unless told otherwise."""
    if not any(a in ("--local", "--ray") or a.startswith("--ray=") for a in argv):
        argv = [*argv, "--ray", "auto"]
    if in_ray_job_dir(cwd) and not any(a == "--out" or a.startswith("--out=") for a in argv):
        raise SystemExit(
            f"error: expected --out DIR (storage every node shares, e.g. /mnt/runs) or --out "
            f"URI (s3://BUCKET/PREFIX, gs://BUCKET/PREFIX); got none, "
            f"and this job runs in Ray's temporary copy of the working dir ({cwd}), "
            "where results would be lost"
        )
    return ["run", *argv]


if __name__ == "__main__":
    sys.exit(main(job_args(sys.argv[1:], Path.cwd())))
