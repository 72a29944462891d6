"""LLM studies on a real local Ray cluster: LLM replica actors hosting the scripted model give
the same events, sessions, summary and completions as the in-process run; the router keeps a
user on its home replica and falls back to the least-loaded one; a killed replica gives
retryable errors, not a hang; replicas that cannot be placed fail the run with what they need.

The routing logic is tested without Ray first. One embedded cluster (2 CPUs, on 127.0.0.1)
serves every Ray test of this module.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import polars as pl
import pytest

from recoworld.config import LLMConfig, decode_study
from recoworld.errors import LLMError, RunError
from recoworld.llm.types import LLMRequest, LLMResult
from recoworld.llm.wrappers import RetryModel
from recoworld.study.prepare import load_world_for
from recoworld.study.runner import run_study
from recoworld.testing.scripted_llm import ScriptedModel

ROOT = Path(__file__).resolve().parents[1]

STUDY = """
name = "ray_llm_test"
seed = 11
[world]
dataset = "synthetic"
synthetic_users = 200
synthetic_items = 200
embedding_dim = 8
[population]
size = {size}
[simulation]
sessions = {sessions}
turns = {turns}
slate_size = {slate}
replicates = 1
[brain]
kind = "llm"
[llm]
backend = "vllm"
model = "scripted"
replicas = 2
replica_num_gpus = 0
replica_num_cpus = 0
retries = 2
backoff_s = 0.01
{llm_extra}
[creator]
id = "c"
[[creator.items]]
title = "New thing"
tags = ["t0"]
[[arms]]
name = "control"
{arms}
"""

INJECT_ARM = """
[[arms]]
name = "inject"
treatment = "inject"
position = 0
"""


def study(
    size: int,
    *,
    sessions: int = 2,
    turns: int = 3,
    slate: int = 3,
    arms: str = "",
    llm_extra: str = "",
):
    return decode_study(
        STUDY.format(
            size=size, sessions=sessions, turns=turns, slate=slate, arms=arms, llm_extra=llm_extra
        )
    )


def scripted_replica(index: int) -> ScriptedModel:
    """The backend of every test replica (pickled by value into the replica actors)."""
    return ScriptedModel()


# -- routing logic, without Ray ---------------------------------------------------------------

from actors.router import ReplicaDied, ReplicaRouter, RouteTable, home_replica  # noqa: E402


def users_homed_at(replica: int, replicas: int, n: int) -> list[int]:
    return [u for u in range(10_000) if home_replica(u, replicas) == replica][:n]


def test_home_replica_is_a_stable_hash_that_spreads_users() -> None:
    homes = [home_replica(u, 4) for u in range(4000)]
    assert homes == [home_replica(u, 4) for u in range(4000)]
    assert all(900 < homes.count(k) < 1100 for k in range(4))


def test_a_user_stays_home_until_its_home_is_busier_than_the_least_loaded_by_more_than_the_slack() -> (  # noqa: E501
    None
):
    t = RouteTable(3, slack=2)
    u0 = users_homed_at(0, 3, 1)[0]
    t.in_flight = [4, 1, 2]  # 4 - 1 = 3 > slack 2: least-loaded (replica 1)
    assert t.choose(u0) == 1 and t.in_flight == [4, 2, 2]
    assert msgspec.structs.asdict(t.counts) == {
        "home": 0,
        "least_loaded": 1,
        "rehomed": 0,
        "unkeyed": 0,
        "failed": 0,
    }
    t.in_flight = [4, 2, 2]  # 4 - 2 = 2 = slack: home
    assert t.choose(u0) == 0 and t.in_flight == [5, 2, 2]
    t.done(0, 5)
    assert t.in_flight == [0, 2, 2]
    assert t.choose(-1) == 0 and t.counts.unkeyed == 1  # no user: the least-loaded
    assert t.counts.home == 1 and t.counts.routed == 3 and t.counts.home_share == 0.5
    t0 = RouteTable(3, slack=0)
    t0.in_flight = [1, 0, 0]  # ties of the least-loaded go to the lowest index
    assert t0.choose(u0) == 1


def test_a_dead_home_rehomes_its_users_among_the_live_replicas_and_all_dead_is_an_error() -> None:
    t = RouteTable(3, slack=100)
    users = users_homed_at(1, 3, 50)
    t.kill(1)
    picks = {u: t.choose(u) for u in users}
    assert set(picks.values()) == {0, 2} and t.counts.rehomed == 50  # spread over the live ones
    t2 = RouteTable(3, slack=100)
    t2.kill(1)
    assert [t2.choose(u) for u in users] == list(picks.values())  # the same re-homing every time
    t.kill(0), t.kill(2)
    with pytest.raises(
        LLMError, match=r"^every one of the 3 LLM replicas is dead; none can serve the study$"
    ):
        t.choose(users[0])
    with pytest.raises(
        LLMError, match=r"a router needs at least 1 replica, got 0 \(llm.replicas\)"
    ):
        RouteTable(0, 1)


def _req(user: int, i: int = 0) -> LLMRequest:
    return LLMRequest(id=f"a/{user}/0/{i}/slate/0", prompt=f"p{user}", seed=1, user=user)


class FakeReplicas:
    """``send`` for the router: records each batch; replicas in ``dead`` raise ReplicaDied."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, list[str]]] = []
        self.dead: set[int] = set()

    async def __call__(self, k: int, batch: list[LLMRequest]) -> list[LLMResult]:
        await asyncio.sleep(0.01)
        if k in self.dead:
            raise ReplicaDied(f"LLM replica {k} died: killed by the test")
        self.batches.append((k, [r.id for r in batch]))
        return [LLMResult(id=r.id, text="ok", replica=k) for r in batch]


def test_the_router_sends_one_batch_per_replica_per_round_and_routes_around_a_dead_replica() -> (
    None
):
    send = FakeReplicas()
    router = ReplicaRouter(send, 2, slack=1000)
    users = list(range(40))

    async def every_user_once():
        return await asyncio.gather(*(router.generate([_req(u)]) for u in users))

    out = asyncio.run(every_user_once())
    assert [r[0].replica for r in out] == [home_replica(u, 2) for u in users]
    assert (
        sorted(k for k, _ in send.batches) == [0, 1] and router.calls == 2
    )  # 40 coroutines, 2 actor calls
    assert router.table.in_flight == [0, 0] and router.counts.home == 40

    send.dead.add(0)
    out = asyncio.run(every_user_once())
    failed = [r[0] for r in out if not r[0].ok]
    assert {r.replica for r in failed} == {0} and len(failed) == sum(
        home_replica(u, 2) == 0 for u in users
    )
    assert all(r.retryable and r.error == "LLM replica 0 died: killed by the test" for r in failed)
    assert router.died == {
        0: "LLM replica 0 died: killed by the test"
    } and router.counts.failed == len(failed)
    # from now on nothing goes to replica 0, and a RetryModel gets every answer
    retry = RetryModel(router, retries=1, backoff_s=0.0)

    async def every_user_again():
        return await asyncio.wait_for(
            asyncio.gather(*(retry.generate([_req(u, 1)]) for u in users)), 10
        )

    out = asyncio.run(every_user_again())
    assert all(r[0].ok and r[0].replica == 1 for r in out) and retry.retried == 0
    router.table.kill(1)
    with pytest.raises(
        LLMError, match=r"^every one of the 2 LLM replicas is dead; none can serve the study$"
    ):
        asyncio.run(router.generate([_req(u, 2) for u in users]))
    assert router.table.in_flight == [0, 0]


def test_the_replica_class_serves_in_process_and_stamps_its_index() -> None:
    from actors.llm_replica import LLMReplicaActor, replica_needs

    rep = LLMReplicaActor(3, factory=scripted_replica)

    async def use():
        await rep.start()
        before = await rep.stats()
        out = await rep.generate(
            [
                LLMRequest(
                    id="x/1/0/0/summary/0",
                    prompt="p",
                    seed=1,
                    user=1,
                    schema='{"properties": {"summary": {}}}',
                )
            ]
        )
        return before, out, await rep.stats()

    before, out, after = asyncio.run(use())
    assert before.served == 0 and before.model == "scripted"
    assert out[0].ok and out[0].replica == 3 and "summary" in out[0].text
    assert (after.served, after.batches, after.errors, after.in_flight, after.max_in_flight) == (
        1,
        1,
        0,
        0,
        1,
    )
    with pytest.raises(
        LLMError, match=r"^LLM replica 0: give an \[llm\] config or a factory, not neither$"
    ):
        LLMReplicaActor(0)
    assert (
        replica_needs(
            LLMConfig(
                model="m",
                replica_num_gpus=0.5,
                replica_num_cpus=2,
                replica_resources={"recoworld_llm": 1},
            )
        )
        == "0.5 GPU, 2 CPU, 1 recoworld_llm"
    )


# -- on Ray ---------------------------------------------------------------------------------------

try:
    import ray

    from actors.coordinator import NAMESPACE, after_replicas, replica_actor_name
    from actors.driver import LLM_FIGURES, connect, run_study_on_ray
    from actors.llm_replica import ReplicaStats, replica_actor_class
    from actors.router import ray_router
except ImportError:  # the routing tests above still run
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="Ray is not installed (pip install -e '.[ray]')")


@pytest.fixture(scope="module")
def cluster():
    if ray is None:
        pytest.skip("Ray is not installed (pip install -e '.[ray]')")
    if ray.is_initialized():
        ray.shutdown()
    connect("local", num_cpus=2)
    # the replica factories below travel by value: Ray's workers cannot import a test module
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray.get_runtime_context().gcs_address
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    ray.shutdown()


@pytest.fixture(scope="module")
def world():
    return load_world_for(study(10).world, 11)


def table(run: Path, name: str, keys: list[str]) -> pl.DataFrame:
    df = pl.read_parquet(run / name / "arm=*" / "*.parquet", hive_partitioning=True)
    df = df.with_columns(
        pl.col(c).cast(pl.String)
        for c, t in df.schema.items()
        if isinstance(t, pl.Categorical | pl.Enum)
    )
    return df.sort(keys)


def assert_same_run(run: Path, ref: Path) -> None:
    """Events, sessions, summary, and every call's completion by call id."""
    assert table(run, "events", ["arm", "user", "session", "turn", "position"]).equals(
        table(ref, "events", ["arm", "user", "session", "turn", "position"])
    )
    assert table(run, "sessions", ["arm", "user", "session"]).equals(
        table(ref, "sessions", ["arm", "user", "session"])
    )
    assert pl.read_parquet(run / "summary.parquet").equals(pl.read_parquet(ref / "summary.parquet"))
    cols = [
        "call_id",
        "user",
        "session",
        "turn",
        "purpose",
        "seed",
        "prompt_hash",
        "completion",
        "parse_status",
    ]
    calls, ref_calls = (
        table(run, "llm_calls", ["call_id"]).select(cols),
        table(ref, "llm_calls", ["call_id"]).select(cols),
    )
    assert calls.height == ref_calls.height > 0
    assert calls.equals(ref_calls)


def test_an_llm_study_through_2_replicas_and_2_shards_equals_the_in_process_run(
    cluster, world, tmp_path: Path
) -> None:
    cfg = study(1030, sessions=1, turns=2)  # 2 block-aligned shards: users 0..1023 and 1024..1029
    ref = run_study(cfg, world, run_id="ref", out_dir=tmp_path, model=ScriptedModel()).path
    res = run_study_on_ray(
        cfg, world, run_id="ray", out_dir=tmp_path, shards=2, replica_factory=scripted_replica
    )
    manifest = msgspec.json.decode((res.path / "manifest.json").read_bytes())
    assert manifest["shards"] == 2
    assert_same_run(res.path, ref)
    assert (
        manifest["llm"]["by_status"]
        == msgspec.json.decode((ref / "manifest.json").read_bytes())["llm"]["by_status"]
    )
    calls = table(res.path, "llm_calls", ["call_id"]).filter(pl.col("finish_reason") != "none")
    assert set(calls["replica"].unique()) == {0, 1}
    figures = msgspec.json.decode((res.path / LLM_FIGURES).read_bytes())
    r = figures["routing"]
    assert (
        r["home"] + r["least_loaded"] + r["rehomed"] + r["unkeyed"] == calls.height
        and r["failed"] == 0
    )
    assert r["home"] > 0.8 * calls.height  # 256 users in flight per shard, slack 16
    served = {s["replica"]: s["served"] for s in figures["replicas"]}
    assert served == {k: int((calls["replica"] == k).sum()) for k in (0, 1)}
    assert all(s["in_flight"] == 0 and s["errors"] == 0 for s in figures["replicas"])
    # the replicas are gone with the run
    with pytest.raises(ValueError):
        ray.get_actor(replica_actor_name("ray", 0), namespace=NAMESPACE)


@pytest.fixture(scope="module")
def small_runs(cluster, world, tmp_path_factory):
    """20 users, two arms: in-process, and on Ray with 2 replicas (one shard)."""
    out = tmp_path_factory.mktemp("small")
    cfg = study(20, slate=4, arms=INJECT_ARM)
    ref = run_study(cfg, world, run_id="ref", out_dir=out, model=ScriptedModel()).path
    res = run_study_on_ray(
        cfg, world, run_id="ray", out_dir=out, replica_factory=scripted_replica
    ).path
    return out, ref, res


def test_with_even_load_every_request_of_a_user_goes_to_its_home_replica(small_runs) -> None:
    _, ref, res = small_runs
    assert_same_run(res, ref)
    calls = table(res, "llm_calls", ["call_id"]).filter(pl.col("finish_reason") != "none")
    per_user = calls.group_by("user").agg(pl.col("replica").unique())
    assert per_user.height == 20
    for user, replicas in per_user.iter_rows():
        assert replicas == [home_replica(user, 2)], f"user {user} went to {replicas}"
    assert set(calls["replica"]) == {0, 1}
    assert msgspec.json.decode((res / LLM_FIGURES).read_bytes())["routing"]["home"] == calls.height


def test_a_replayed_llm_study_runs_on_ray_through_the_job_entry_point_with_no_model(
    small_runs, cluster
) -> None:
    """backend "replay": each shard actor opens its own model (no replicas); jobs/whatif.py is
    ``recoworld run --ray``."""
    out, ref, res = small_runs
    study_file = out / "replay.toml"
    extra = f'replay_from = "{res}"'
    study_file.write_text(
        STUDY.format(
            size=20, sessions=2, turns=3, slate=4, arms=INJECT_ARM, llm_extra=extra
        ).replace('backend = "vllm"', 'backend = "replay"')
    )
    done = subprocess.run(
        [
            sys.executable,
            "jobs/whatif.py",
            str(study_file),
            "--out",
            str(out),
            "--run-id",
            "replayed",
            "--quiet",
            "--ray",
            cluster,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert_same_run(out / "replayed", ref)
    assert not (out / "replayed" / LLM_FIGURES).exists()
    calls = table(out / "replayed", "llm_calls", ["call_id"]).filter(
        pl.col("finish_reason") != "none"
    )
    assert set(calls["replica"]) == {-1} and set(calls["finish_reason"]) == {"stop"}


def slow_replica(index: int):
    """Replica 0 answers after 30 s (so that the test can kill it mid-call), the others at once."""
    import asyncio

    class Slow:
        name = "slow"

        async def generate(self, requests):  # noqa: ANN001, ANN202
            if index == 0:
                await asyncio.sleep(30)
            return [LLMResult(id=r.id, text="answer") for r in requests]

        async def close(self) -> None:
            return None

    return Slow()


def test_a_killed_replica_gives_retryable_errors_not_a_hang_and_gets_nothing_more(cluster) -> None:
    llm = LLMConfig(model="slow", replica_num_gpus=0, replica_num_cpus=0)
    cls = replica_actor_class(llm)
    handles = [cls.remote(k, None, slow_replica) for k in range(2)]
    try:
        ray.get([h.start.remote() for h in handles], timeout=60)
        router = ray_router(handles, slack=1000, name="slow")
        users = users_homed_at(0, 2, 3) + users_homed_at(1, 2, 3)

        async def scenario():
            task = asyncio.ensure_future(router.generate([_req(u) for u in users]))
            await asyncio.sleep(1.0)  # both batches are at their replicas; replica 0 sleeps
            ray.kill(handles[0], no_restart=True)
            first = await asyncio.wait_for(task, 20)
            retry = RetryModel(router, retries=1, backoff_s=0.0)
            second = await asyncio.wait_for(retry.generate([_req(u, 1) for u in users]), 20)
            return first, second

        t0 = time.monotonic()
        first, second = asyncio.run(scenario())
        assert time.monotonic() - t0 < 20
        for u, r in zip(users, first):
            if home_replica(u, 2) == 0:
                assert not r.ok and r.retryable and r.replica == 0
                assert r.error.startswith("LLM replica 0 died: "), r.error
            else:
                assert r.ok and r.text == "answer" and r.replica == 1
        assert all(r.ok and r.replica == 1 for r in second)
        assert router.counts.rehomed == 3 and router.counts.failed == 3 and list(router.died) == [0]
        stats = ray.get(handles[1].stats.remote())
        assert (
            isinstance(stats, ReplicaStats)
            and stats.served == 9
            and stats.in_flight == 0
            and stats.batches == 2
        )
    finally:
        for h in handles:
            ray.kill(h, no_restart=True)


def test_replicas_that_cannot_be_placed_fail_the_run_naming_what_they_need(
    cluster, world, tmp_path: Path
) -> None:
    cfg = study(20)
    llm = msgspec.structs.replace(
        cfg.llm,
        replica_num_gpus=1.0,
        replica_num_cpus=1.0,
        replica_resources={"recoworld_llm": 1.0},
    )
    cfg = msgspec.structs.replace(
        cfg, llm=llm, ray=msgspec.structs.replace(cfg.ray, placement_timeout_s=2.0)
    )
    t0 = time.monotonic()
    with pytest.raises(RunError) as e:
        run_study_on_ray(
            cfg, world, run_id="nogpu", out_dir=tmp_path, replica_factory=scripted_replica
        )
    assert time.monotonic() - t0 < 60
    msg = str(e.value)
    assert msg.startswith(
        "2 of 2 LLM replicas could not be placed within 2 s (ray.placement_timeout_s): "
        "each needs 1 GPU, 1 CPU, "
        "1 recoworld_llm (llm.replica_num_gpus, llm.replica_num_cpus, llm.replica_resources); "
        "the cluster has "
    ), msg
    assert (
        "2 CPU" in msg.split("the cluster has ")[1]
        and "GPU" not in msg.split("the cluster has ")[1]
    )
    assert not (tmp_path / "nogpu").exists()
    time.sleep(0.5)
    with pytest.raises(ValueError):  # the replicas that waited for a GPU were killed
        ray.get_actor(replica_actor_name("nogpu", 0), namespace=NAMESPACE)


def broken_replica(index: int):
    raise LLMError("model folder /nowhere does not exist")


def test_an_engine_that_cannot_start_fails_the_run_naming_the_replica_and_the_cause(
    cluster, world, tmp_path: Path
) -> None:
    with pytest.raises(
        RunError,
        match=r"^LLM replica \d could not start its engine \(model 'scripted'\): "
        r"LLMError: model folder /nowhere does not exist$",
    ):
        run_study_on_ray(
            study(20), world, run_id="broken", out_dir=tmp_path, replica_factory=broken_replica
        )
    assert not (tmp_path / "broken").exists()


def test_a_replica_smaller_than_its_engines_tensor_parallel_span_is_refused(
    cluster, world, tmp_path: Path
) -> None:
    cfg = study(20)
    engine = msgspec.structs.replace(cfg.llm.engine, tensor_parallel_size=2)
    cfg = msgspec.structs.replace(
        cfg, llm=msgspec.structs.replace(cfg.llm, engine=engine, replica_num_gpus=1.0)
    )
    with pytest.raises(
        RunError,
        match=r"^llm.engine.tensor_parallel_size = 2 spans 2 GPUs, "
        r"but each LLM replica reserves 1 \(llm.replica_num_gpus\); give each replica at least 2$",
    ):
        run_study_on_ray(cfg, world, run_id="tp", out_dir=tmp_path)


@needs_ray
def test_shard_actors_are_sized_for_what_the_replicas_leave() -> None:
    llm = LLMConfig(
        model="m", replica_num_cpus=2, replica_num_gpus=1, replica_resources={"recoworld_llm": 1}
    )
    left = after_replicas({"CPU": 8.0, "GPU": 4.0, "recoworld_llm": 4.0, "memory": 1e9}, llm, 3)
    assert left == {"CPU": 2.0, "GPU": 1.0, "recoworld_llm": 1.0, "memory": 1e9}
    assert after_replicas({"CPU": 2.0}, None, 0) == {"CPU": 2.0}
