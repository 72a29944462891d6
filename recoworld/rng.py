"""Counter-based random streams for common random numbers.

Every draw is a pure function of (root seed, stream, user, session, turn, slot): a user's
numbers do not depend on which other users share its batch, shard or arm. That is what makes
arms comparable per user (common random numbers) and runs identical however they are sharded.

The mixing function is SplitMix64's finaliser applied over the key words, vectorised with numpy
uint64 arithmetic (wrap-around is the intended behaviour).
"""

from __future__ import annotations

import hashlib
from enum import IntEnum

import numpy as np
from numpy.typing import ArrayLike, NDArray

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / float(1 << 53)


class Stream(IntEnum):
    """Named purposes of random draws; each is an independent stream."""

    PERSONA = 1
    CLICK = 2
    WATCH = 3
    RATE = 4
    RATING = 5
    LEAVE = 6
    RETURN = 7
    RETURN_GAP = 8
    INSTRUCT = 9
    RECOMMEND = 10
    INJECT = 11
    MINDSET = 12
    SAMPLE = 13
    ENOUGH = 14


def stable_hash64(*parts: object) -> int:
    """A 64-bit integer from text parts, stable across processes and Python versions."""
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little")


def _mix(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    x = x ^ (x >> _S30)
    x = x * _M1
    x = x ^ (x >> _S27)
    x = x * _M2
    return x ^ (x >> _S31)


def hash_keys(seed: int, stream: int, *keys: ArrayLike) -> NDArray[np.uint64]:
    """Mix a seed, a stream id and broadcastable integer key arrays into uint64 hashes."""
    with np.errstate(over="ignore"):
        h = _mix(np.asarray(np.uint64(seed % (1 << 64))) + _GOLDEN * np.uint64(stream))
        for k in keys:
            k64 = np.asarray(k).astype(np.uint64, copy=False)
            h = _mix(h ^ (k64 + _GOLDEN))
        return np.asarray(h, dtype=np.uint64)


def uniforms(seed: int, stream: int, *keys: ArrayLike) -> NDArray[np.float64]:
    """Uniform draws in [0, 1), one per broadcast key tuple."""
    return (hash_keys(seed, stream, *keys) >> _S11).astype(np.float64) * _INV53


_S32 = np.uint64(32)
_LO32 = np.uint64(0xFFFFFFFF)
_INV32 = 1.0 / float(1 << 32)
_BELOW_ONE_F32 = np.float32(1.0 - 2.0**-24)


def uniform_pair(
    seed: int, stream: int, *keys: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Two independent uniforms in [0, 1) with 32-bit resolution from one hash (half the cost)."""
    h = hash_keys(seed, stream, *keys)
    return (h >> _S32).astype(np.float64) * _INV32, (h & _LO32).astype(np.float64) * _INV32


def normals(seed: int, stream: int, *keys: ArrayLike) -> NDArray[np.float32]:
    """Standard normal draws, float32 (Box-Muller over the two halves of one hash); always
    finite."""
    u1, u2 = uniform_pair(seed, stream, *keys)
    # u1 < 1, but the top 2^-25 of it rounds to 1.0 in float32, where log1p(-u1) is -inf: cap it
    # at the largest float32 below 1 (|z| <= 5.77), which changes no other draw.
    u1, u2 = np.minimum(u1.astype(np.float32), _BELOW_ONE_F32), u2.astype(np.float32)
    return np.sqrt(np.float32(-2.0) * np.log1p(-u1)) * np.cos(np.float32(2.0 * np.pi) * u2)


def logistic_noise(seed: int, stream: int, *keys: ArrayLike) -> NDArray[np.float64]:
    """Standard logistic draws by inverse CDF."""
    u = np.clip(uniforms(seed, stream, *keys), 1e-12, 1 - 1e-12)
    return np.log(u) - np.log1p(-u)


def generator(seed: int, *parts: object) -> np.random.Generator:
    """A numpy Generator for one-off, non-per-user work (fitting, sampling), keyed by parts."""
    return np.random.default_rng(
        np.random.SeedSequence([seed % (1 << 63), stable_hash64(*parts) % (1 << 63)])
    )
