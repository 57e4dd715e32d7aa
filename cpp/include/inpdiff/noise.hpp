// The sampler's noise, bit for bit the generator of inpdiff/noise.py: Philox4x32-10 with Box-Muller,
// keyed to (seed, step, tile origin), so both runtimes draw the same numbers.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace inpdiff {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> counter, uint32_t key0, uint32_t key1, int rounds = 10);

// The first `count` standard normals of (seed, step, tile origin (y, x)), appended to `out`.
void normals(uint64_t seed, uint32_t step, uint32_t y, uint32_t x, size_t count, std::vector<float>& out);

}  // namespace inpdiff
