"""The sampler's noise, defined once so that every runtime draws the same numbers: Philox4x32-10
(Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011; the Random123 generator) with
Box-Muller, keyed to (seed, tile position, step). A counter-based generator needs no state, so a tile's
noise does not depend on which tiles share its batch, and a C++ runtime can reproduce it exactly from
this description:

- key = (seed mod 2^32, seed div 2^32); counter = (block, step, y, x), y and x the tile's origin;
- each block gives four uint32 (a, b, c, d) -> two Box-Muller pairs: u1 = (a + 1) / 2^32,
  u2 = b / 2^32, r = sqrt(-2 ln u1), normals r cos(2 pi u2), r sin(2 pi u2) (in double), then (c, d);
- a step's noise is the first S*T*T normals of blocks 0, 1, 2, ..., in (sample, row, column) order,
  cast to float32.
"""
from __future__ import annotations

import numpy as np

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_LOW = np.uint64(0xFFFFFFFF)


def philox4x32(counters: np.ndarray, key: tuple[int, int], rounds: int = 10) -> np.ndarray:
    """(N, 4) uint32 counters -> (N, 4) uint32 random words."""
    c = [counters[:, i].astype(np.uint64) for i in range(4)]
    k0, k1 = key[0] & 0xFFFFFFFF, key[1] & 0xFFFFFFFF
    for _ in range(rounds):
        p0, p1 = _M0 * c[0], _M1 * c[2]  # 32 x 32 -> 64 bits, exact in uint64
        hi0, lo0, hi1, lo1 = p0 >> np.uint64(32), p0 & _LOW, p1 >> np.uint64(32), p1 & _LOW
        c = [hi1 ^ c[1] ^ np.uint64(k0), lo1, hi0 ^ c[3] ^ np.uint64(k1), lo0]
        k0, k1 = (k0 + _W0) & 0xFFFFFFFF, (k1 + _W1) & 0xFFFFFFFF
    return np.stack(c, axis=1).astype(np.uint32)


def normals(seed: int, step: int, y: int, x: int, count: int) -> np.ndarray:
    """The first `count` standard normals (float32) of (seed, step, tile origin (y, x))."""
    blocks = (count + 3) // 4
    ctr = np.zeros((blocks, 4), np.uint32)
    ctr[:, 0] = np.arange(blocks, dtype=np.uint32)
    ctr[:, 1], ctr[:, 2], ctr[:, 3] = step, y, x
    words = philox4x32(ctr, (seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF)).astype(np.float64)
    u1, u2 = (words[:, 0::2] + 1.0) / 2.0**32, words[:, 1::2] / 2.0**32  # pairs (a, b) and (c, d)
    r, angle = np.sqrt(-2.0 * np.log(u1)), 2.0 * np.pi * u2
    z = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=2)  # a, b -> cos, sin; then c, d
    return z.reshape(-1)[:count].astype(np.float32)


def tile_noise(seed: int, y: int, x: int, steps: int, samples: int, shape: tuple[int, int]) -> np.ndarray:
    """(steps + 1, samples, 1, h, w) for a tile of `shape` (h, w): noise[0] starts the sampler, noise[i + 1]
    is step i's."""
    n = samples * shape[0] * shape[1]
    return np.stack([normals(seed, s, y, x, n).reshape(samples, 1, *shape) for s in range(steps + 1)])
