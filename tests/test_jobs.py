"""The Ray job entry points' argument handling (the jobs themselves run in .ci/ray_jobs.sh)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.whatif import job_args

JOB_DIR = Path("/tmp/ray/session_1/runtime_resources/working_dir_files/_ray_pkg_abc")


def test_a_job_runs_on_the_cluster_it_was_submitted_to_unless_told() -> None:
    assert job_args(["s.toml"], Path("/repo")) == ["run", "s.toml", "--ray", "auto"]
    assert job_args(["s.toml", "--local"], Path("/repo")) == ["run", "s.toml", "--local"]


@pytest.mark.parametrize("out", [["--out", "/mnt/runs"], ["--out=/mnt/runs"]])
def test_a_submitted_job_with_out_runs(out: list[str]) -> None:
    assert job_args(["s.toml", *out], JOB_DIR) == ["run", "s.toml", *out, "--ray", "auto"]


def test_a_submitted_job_without_out_is_refused_before_it_loses_its_results() -> None:
    with pytest.raises(SystemExit, match="expected --out DIR .*temporary copy of the working dir"):
        job_args(["s.toml"], JOB_DIR)
