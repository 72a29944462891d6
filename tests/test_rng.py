"""Counter-based random streams (recoworld/rng.py): draws are pure functions of their keys,
independent across keys and streams, and distributed as documented."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import recoworld.rng as rng
from recoworld.rng import (
    Stream,
    generator,
    hash_keys,
    logistic_noise,
    normals,
    stable_hash64,
    uniform_pair,
    uniforms,
)

seeds = st.integers(min_value=-(2**70), max_value=2**70)
streams = st.sampled_from(list(Stream))
keys = st.lists(st.integers(min_value=-(2**62), max_value=2**62), min_size=1, max_size=5)
N = 200_000
FAST = settings(max_examples=60, deadline=None)


@FAST
@given(seed=seeds, stream=streams, key=keys)
def test_same_keys_give_the_same_draws(seed: int, stream: Stream, key: list[int]) -> None:
    assert hash_keys(seed, stream, *key) == hash_keys(seed, stream, *key)
    assert uniforms(seed, stream, *key) == uniforms(seed, stream, *key)
    assert normals(seed, stream, *key) == normals(seed, stream, *key)


@FAST
@given(seed=seeds, stream=streams, key=keys, data=st.data())
def test_changing_any_part_changes_the_draw(
    seed: int, stream: Stream, key: list[int], data: st.DataObject
) -> None:
    h = hash_keys(seed, stream, *key)
    slot = data.draw(st.integers(0, len(key) - 1))
    other = key.copy()
    other[slot] = data.draw(st.integers(-(2**62), 2**62).filter(lambda v: v != key[slot]))
    assert hash_keys(seed, stream, *other) != h
    assert hash_keys(seed + 1, stream, *key) != h
    other_stream = data.draw(streams.filter(lambda s: s != stream))
    assert hash_keys(seed, other_stream, *key) != h
    assert hash_keys(seed, stream, *key, 0) != h  # one more key is another draw
    if key != key[::-1]:
        assert hash_keys(seed, stream, *key[::-1]) != h  # key order matters


@FAST
@given(
    seed=seeds,
    stream=streams,
    users=st.lists(st.integers(0, 2**40), min_size=1, max_size=30),
    turn=st.integers(0, 50),
)
def test_a_draw_does_not_depend_on_the_batch(
    seed: int, stream: Stream, users: list[int], turn: int
) -> None:
    uid = np.array(users, dtype=np.int64)
    pos = np.arange(4)
    batch = uniforms(seed, stream, uid[:, None], 2, turn, pos[None, :])
    assert batch.shape == (uid.size, 4) and batch.dtype == np.float64
    for j, u in enumerate(users):
        np.testing.assert_array_equal(batch[j], uniforms(seed, stream, u, 2, turn, pos))
    first, second = uniform_pair(seed, stream, uid, turn)
    for j, u in enumerate(users):
        assert (first[j], second[j]) == uniform_pair(seed, stream, u, turn)


@FAST
@given(seed=seeds, stream=streams, key=keys)
def test_draws_lie_in_their_ranges(seed: int, stream: Stream, key: list[int]) -> None:
    k = np.arange(64)
    for u in (uniforms(seed, stream, *key, k), *uniform_pair(seed, stream, *key, k)):
        assert ((u >= 0) & (u < 1)).all()
    z = normals(seed, stream, *key, k)
    assert z.dtype == np.float32 and np.isfinite(z).all()
    assert np.isfinite(logistic_noise(seed, stream, *key, k)).all()


def test_seeds_are_taken_modulo_two_to_the_64() -> None:
    k = np.arange(10)
    np.testing.assert_array_equal(
        uniforms(5, Stream.CLICK, k), uniforms(5 + 2**64, Stream.CLICK, k)
    )
    np.testing.assert_array_equal(
        uniforms(-1, Stream.CLICK, k), uniforms(2**64 - 1, Stream.CLICK, k)
    )


def test_uniforms_are_uniform_over_consecutive_keys() -> None:
    u = uniforms(0, Stream.CLICK, np.arange(N))
    assert u.mean() == pytest.approx(0.5, abs=0.003)
    assert u.var() == pytest.approx(1 / 12, abs=0.002)
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    # neighbouring keys are not correlated, nor are two keys of a 2-D grid
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01
    grid = uniforms(0, Stream.CLICK, np.arange(400)[:, None], np.arange(500)[None, :])
    assert abs(np.corrcoef(grid[:, :-1].ravel(), grid[:, 1:].ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(grid[:-1].ravel(), grid[1:].ravel())[0, 1]) < 0.01


def test_the_two_halves_of_a_pair_and_two_streams_are_independent() -> None:
    k = np.arange(N)
    a, b = uniform_pair(1, Stream.CLICK, k)
    for u in (a, b):
        assert (
            u.mean() == pytest.approx(0.5, abs=0.003) and stats.kstest(u, "uniform").pvalue > 1e-3
        )
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.01
    other = uniforms(1, Stream.WATCH, k)
    assert abs(np.corrcoef(uniforms(1, Stream.CLICK, k), other)[0, 1]) < 0.01
    assert abs(np.corrcoef(uniforms(1, Stream.CLICK, k), uniforms(2, Stream.CLICK, k))[0, 1]) < 0.01


def test_normals_are_standard() -> None:
    z = normals(3, Stream.WATCH, np.arange(N)).astype(np.float64)
    assert z.mean() == pytest.approx(0.0, abs=0.01)
    assert z.std() == pytest.approx(1.0, abs=0.01)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert (np.abs(z) > 3).mean() == pytest.approx(2 * stats.norm.sf(3), rel=0.15)


def test_normals_stay_finite_at_the_top_of_the_uniform_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A 32-bit uniform within 2^-25 of 1 rounds to 1.0 in float32 (about one draw in 33 million).
    top = np.array([1 - 2**-32, 1 - 2**-26, 1 - 2**-24, 0.5])
    monkeypatch.setattr(rng, "uniform_pair", lambda *a: (top, np.array([0.0, 0.5, 0.25, 0.0])))
    z = normals(0, Stream.WATCH, np.arange(4))
    assert np.isfinite(z).all()
    assert z[0] == pytest.approx(np.sqrt(-2 * np.log(2**-24)), rel=1e-5)  # the largest |z| there is
    assert z[3] == pytest.approx(np.sqrt(-2 * np.log(0.5)), rel=1e-6)  # ordinary draws unchanged


def test_logistic_noise_is_standard_logistic() -> None:
    x = logistic_noise(0, Stream.RETURN, np.arange(N))
    assert x.mean() == pytest.approx(0.0, abs=0.02)
    assert x.var() == pytest.approx(np.pi**2 / 3, rel=0.03)
    assert stats.kstest(x, "logistic").pvalue > 1e-3


def test_streams_are_distinct() -> None:
    assert len({s.value for s in Stream}) == len(Stream)


def test_generator_is_keyed_by_its_parts() -> None:
    a = generator(7, "fit", "ml-100k").random(5)
    np.testing.assert_array_equal(a, generator(7, "fit", "ml-100k").random(5))
    for other in (
        generator(8, "fit", "ml-100k"),
        generator(7, "fit", "lastfm"),
        generator(7, "fit"),
    ):
        assert not np.array_equal(other.random(5), a)
    generator(-3, "negative seeds work").random()


def test_stable_hash64_is_the_same_in_another_process() -> None:
    parts = ("run", 42, "user", 7)
    code = "from recoworld.rng import stable_hash64; print(stable_hash64('run', 42, 'user', 7))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert int(out.stdout) == stable_hash64(*parts)
    assert 0 <= stable_hash64(*parts) < 2**64
    assert stable_hash64("a", "b") != stable_hash64("ab") != stable_hash64("b", "a")
