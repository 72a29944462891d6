"""A social study on a real local Ray cluster writes the same events, messages, searches,
diffusion and summaries as in this process, with 1, 2 and 4 shard actors (docs/social.md).

One embedded cluster (2 CPUs, on 127.0.0.1) serves the module.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from test_social import study, tables

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")

from actors.driver import connect  # noqa: E402
from actors.social_shard import run_social_study_on_ray  # noqa: E402
from recoworld.study.prepare import load_world_for  # noqa: E402
from recoworld.study.rounds import run_social_study  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    connect("local", num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def world():
    return load_world_for(study().world, 11)


def test_the_same_social_run_in_process_and_on_ray_with_1_2_4_shards(
    cluster, world, tmp_path: Path
) -> None:
    cfg = study(days=6)
    base = tables(run_social_study(cfg, world, run_id="local", out_dir=tmp_path).path)
    for shards in (1, 2, 4):
        run = run_social_study_on_ray(
            cfg, world, run_id=f"ray{shards}", out_dir=tmp_path, shards=shards
        )
        got = tables(run.path)
        for name in base:
            assert got[name].equals(base[name]), (shards, name)
        rounds = msgspec.json.decode((run.path / "social.json").read_bytes())["rounds"]
        assert rounds["hosts"] == shards and rounds["rounds"] == 6 * rounds["waves"]
        assert (rounds["cross_host"] > 0) == (shards == 4)
