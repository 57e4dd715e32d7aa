#include "inpdiff/noise.hpp"

#include <cmath>

namespace inpdiff {

std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> c, uint32_t k0, uint32_t k1, int rounds) {
  constexpr uint64_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  for (int r = 0; r < rounds; ++r) {
    uint64_t p0 = M0 * c[0], p1 = M1 * c[2];
    c = {static_cast<uint32_t>(p1 >> 32) ^ c[1] ^ k0, static_cast<uint32_t>(p1),
         static_cast<uint32_t>(p0 >> 32) ^ c[3] ^ k1, static_cast<uint32_t>(p0)};
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c;
}

void normals(uint64_t seed, uint32_t step, uint32_t y, uint32_t x, size_t count, std::vector<float>& out) {
  const double two32 = 4294967296.0, two_pi = 2.0 * M_PI;
  const auto k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  size_t start = out.size();
  out.resize(start + count);
  float* z = out.data() + start;
  for (size_t block = 0, i = 0; i < count; ++block) {
    auto w = philox4x32({static_cast<uint32_t>(block), step, y, x}, k0, k1);
    for (int pair = 0; pair < 2 && i < count; ++pair) {  // (a, b) then (c, d)
      double r = std::sqrt(-2.0 * std::log((w[2 * pair] + 1.0) / two32));
      double angle = two_pi * (w[2 * pair + 1] / two32);
      z[i++] = static_cast<float>(r * std::cos(angle));
      if (i < count) z[i++] = static_cast<float>(r * std::sin(angle));
    }
  }
}

}  // namespace inpdiff
