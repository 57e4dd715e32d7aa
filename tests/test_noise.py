"""The sampler's noise: Philox4x32-10 as Random123 defines it (its known-answer vectors), and normals
that are standard, reproducible, and keyed to (seed, step, tile) alone."""
import numpy as np
import pytest

from inpdiff.noise import normals, philox4x32, tile_noise


@pytest.mark.parametrize("counter, key, expected", [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])
def test_philox_matches_random123s_known_answers(counter, key, expected):
    assert tuple(philox4x32(np.array([counter], np.uint32), key)[0]) == expected


def test_normals_are_standard_reproducible_and_keyed():
    z = normals(7, 3, 224, 448, 200_001)
    assert z.dtype == np.float32 and z.shape == (200_001,)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert np.array_equal(z, normals(7, 3, 224, 448, 200_001))
    assert np.array_equal(normals(7, 3, 224, 448, 10), z[:10])  # a prefix: the count changes nothing before it
    for other in [(8, 3, 224, 448), (7, 4, 224, 448), (7, 3, 0, 448), (7, 3, 224, 0)]:
        assert np.corrcoef(z[:10_000], normals(*other, 10_000))[0, 1] < 0.05
    noise = tile_noise(7, 224, 448, steps=3, samples=2, shape=(16, 16))
    assert noise.shape == (4, 2, 1, 16, 16) and np.array_equal(noise[3].ravel(), normals(7, 3, 224, 448, 512))
