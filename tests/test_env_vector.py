"""The native batched environment: it is Gymnasium's loop of single environments, only batched."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from recoworld.config import PopulationConfig, SimulationConfig, StudyConfig, WorldConfig
from recoworld.env import EnvError, RetentionEnv, RetentionVectorEnv
from recoworld.study.prepare import Prepared, prepare
from recoworld.world.synthetic import synthetic_world


@pytest.fixture(scope="module")
def prep() -> Prepared:
    cfg = StudyConfig(
        name="env-vector",
        seed=3,
        world=WorldConfig(dataset="synthetic", embedding_dim=8),
        population=PopulationConfig(size=50),
        simulation=SimulationConfig(sessions=3, turns=3, slate_size=4),
    )
    return prepare(cfg, synthetic_world(120, 300, seed=2))


def seeds_of(seed: int, n: int) -> list[int]:
    return [int(x) for x in np.random.SeedSequence(seed).generate_state(n)]


@pytest.mark.parametrize("candidates", [0, 12])
def test_native_batch_equals_a_sync_vector_of_single_envs(prep: Prepared, candidates: int) -> None:
    """Same per-env seeds, same actions: the same observations, rewards, flags and infos,
    through autoresets (every draw is keyed by the user's episode, not by the batch)."""
    n = 6
    options = {"candidates": candidates, "reward": "both", "retention_weight": 2.0}
    native = RetentionVectorEnv(prep, num_envs=n, **options)
    sync = SyncVectorEnv([lambda: RetentionEnv(prep, **options) for _ in range(n)])
    assert native.single_action_space == sync.single_action_space
    a_obs, a_info = native.reset(seed=9)
    b_obs, b_info = sync.reset(seed=seeds_of(9, n))
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(40):
        for key in a_obs:
            assert np.array_equal(np.asarray(a_obs[key]), np.asarray(b_obs[key])), key
        high = candidates or prep.catalog.n_items
        action = rng.integers(high, size=(n, 4))
        a_obs, a_r, a_te, a_tr, a_info = native.step(action)
        b_obs, b_r, b_te, b_tr, b_info = sync.step(action)
        np.testing.assert_array_equal(a_r, b_r)
        np.testing.assert_array_equal(a_te, b_te)
        np.testing.assert_array_equal(a_tr, b_tr)
        stepped = ~a_info["reset"]
        for key in ("session", "turn", "left", "session_end", "satisfaction"):
            np.testing.assert_array_equal(a_info[key][stepped], b_info[key][stepped], key)
        ends += int((a_te | a_tr).sum())
    assert ends >= n  # autoreset was exercised


def test_per_env_seeds_do_not_depend_on_the_batch(prep: Prepared) -> None:
    """An env's lives depend on its own seed only, not on how many envs share the batch."""
    seeds = seeds_of(1, 8)
    small = RetentionVectorEnv(prep, num_envs=3)
    large = RetentionVectorEnv(prep, num_envs=8)
    o_small, _ = small.reset(seed=seeds[:3])
    o_large, _ = large.reset(seed=seeds)
    for _ in range(15):
        a = np.arange(12).reshape(3, 4)
        o_small, r_small, *_ = small.step(a)
        o_large, r_large, *_ = large.step(np.vstack([a, np.zeros((5, 4), np.int64)]))
        np.testing.assert_array_equal(r_small, r_large[:3])
        np.testing.assert_array_equal(o_small["watch"], o_large["watch"][:3])


def test_next_step_autoreset(prep: Prepared) -> None:
    env = RetentionVectorEnv(prep, num_envs=16, sessions=1)
    assert env.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    env.reset(seed=0)
    ended = np.zeros(16, bool)
    for _ in range(10):
        obs, reward, te, tr, info = env.step(np.zeros((16, 4), np.int64))
        np.testing.assert_array_equal(info["reset"], ended)
        assert (reward[ended] == 0).all() and not (te | tr)[ended].any()
        assert (obs["turn"][ended] == 0).all() and not obs["clicked"][ended].any()
        ended = te | tr
    assert info["reset"].any()


def test_make_vec_builds_the_native_env_and_the_sync_loop_on_request(prep: Prepared) -> None:
    native = gym.make_vec("RecoWorld/RetentionCandidates-v0", num_envs=5, prep=prep)
    assert isinstance(native, RetentionVectorEnv) and native.settings.m == 100
    assert native.spec is not None and native.spec.id == "RecoWorld/RetentionCandidates-v0"
    obs, _ = native.reset(seed=0)
    assert obs in native.observation_space
    obs, *_ = native.step(native.action_space.sample())
    assert obs in native.observation_space
    sync = gym.make_vec("RecoWorld/Retention-v0", num_envs=2, vectorization_mode="sync", prep=prep)
    assert isinstance(sync, SyncVectorEnv)


def test_errors(prep: Prepared) -> None:
    env = RetentionVectorEnv(prep, num_envs=2, candidates=8)
    with pytest.raises(EnvError, match=r"call reset\(\) before step\(\)"):
        env.step(np.zeros((2, 4), np.int64))
    env.reset(seed=0)
    with pytest.raises(EnvError) as e:
        env.step(np.array([[0, 1, 2, 3], [0, 1, 2, 8]]))
    assert str(e.value) == (
        "Expected slates of 4 candidate positions (integers in [0, 7], shape (2, 4)), got 8 at "
        "slate position 3 of env 1 - at RetentionVectorEnv.step(actions)"
    )
    with pytest.raises(EnvError) as e:
        env.reset(seed=[1, 2, 3])
    assert str(e.value) == (
        "Expected 2 seeds (one per sub-environment), got 3 - at RetentionVectorEnv.reset(seed)"
    )
    with pytest.raises(EnvError, match="Expected an integer >= 1, got 0"):
        RetentionVectorEnv(prep, num_envs=0)
