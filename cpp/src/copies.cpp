#include "inpdiff/copies.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <opencv2/imgproc.hpp>

namespace inpdiff {

namespace {

constexpr int kBlock = 4;  // a block's row is 12 bytes: one uint64 and one uint32 load

uint64_t splitmix64(uint64_t i) {
  uint64_t z = i * 0x9E3779B97F4A7C15ull + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Little-endian loads, as inpdiff/copies.py reads the bytes, byte by byte (the addresses are unaligned).
uint64_t load64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t load32(const uint8_t* p) { return uint64_t{p[0]} | uint64_t{p[1]} << 8 | uint64_t{p[2]} << 16 | uint64_t{p[3]} << 24; }

}  // namespace

cv::Mat copy_map(const cv::Mat& rgb, const CopySettings& s) {
  const int H = rgb.rows, W = rgb.cols, b = kBlock;
  if (H < b || W < b) return cv::Mat::zeros(H, W, CV_32F);
  const int h = H - b + 1, w = W - b + 1;
  const cv::Mat img = rgb.isContinuous() ? rgb : rgb.clone();
  // Texture: the range of R+G+B over each block (anchored at its top-left).
  cv::Mat total(H, W, CV_16U);
  for (int y = 0; y < H; ++y) {
    const uint8_t* p = img.ptr<uint8_t>(y);
    uint16_t* t = total.ptr<uint16_t>(y);
    for (int x = 0; x < W; ++x) t[x] = static_cast<uint16_t>(p[3 * x] + p[3 * x + 1] + p[3 * x + 2]);
  }
  const cv::Mat kernel = cv::Mat::ones(b, b, CV_8U);
  cv::Mat hi, lo;
  cv::dilate(total, hi, kernel, cv::Point(0, 0));
  cv::erode(total, lo, kernel, cv::Point(0, 0));
  uint64_t K[2 + kBlock];
  for (int i = 0; i < 2 + kBlock; ++i) K[i] = splitmix64(static_cast<uint64_t>(i)) | 1ull;
  std::vector<uint64_t> row(static_cast<size_t>(H) * w);
  for (int y = 0; y < H; ++y) {
    const uint8_t* p = img.ptr<uint8_t>(y);
    uint64_t* r = row.data() + static_cast<size_t>(y) * w;
    for (int x = 0; x < w; ++x) r[x] = load64(p + 3 * x) * K[0] + load32(p + 3 * x + 8) * K[1];
  }
  // Sort keys: the hash above, the block's index below (its bit length), as in Python.
  const uint64_t n = static_cast<uint64_t>(h) * w;
  int bits = 0;
  while (bits < 64 && (n >> bits)) ++bits;
  const uint64_t low = (uint64_t{1} << bits) - 1;
  std::vector<uint64_t> keys;
  for (int y = 0; y < h; ++y) {
    const uint16_t *top = hi.ptr<uint16_t>(y), *bottom = lo.ptr<uint16_t>(y);
    for (int x = 0; x < w; ++x) {
      if (top[x] - bottom[x] < s.min_range) continue;
      uint64_t v = 0;
      for (int dy = 0; dy < b; ++dy) v += row[static_cast<size_t>(y + dy) * w + x] * K[2 + dy];
      keys.push_back(((v >> bits) << bits) | (static_cast<uint64_t>(y) * w + x));
    }
  }
  std::sort(keys.begin(), keys.end());
  cv::Mat cover = cv::Mat::zeros(H, W, CV_8U);
  for (size_t i = 0, j; i < keys.size(); i = j) {
    int ymin = h, ymax = -1, xmin = w, xmax = -1;
    for (j = i; j < keys.size() && (keys[j] >> bits) == (keys[i] >> bits); ++j) {
      const int y = static_cast<int>((keys[j] & low) / w), x = static_cast<int>((keys[j] & low) % w);
      ymin = std::min(ymin, y), ymax = std::max(ymax, y), xmin = std::min(xmin, x), xmax = std::max(xmax, x);
    }
    const size_t count = j - i;
    if (count < 2 || count > static_cast<size_t>(s.max_group) || std::max(ymax - ymin, xmax - xmin) < s.min_distance)
      continue;
    for (size_t k = i; k < j; ++k) cover.at<uint8_t>(static_cast<int>((keys[k] & low) / w), static_cast<int>((keys[k] & low) % w)) = 1;
  }
  cv::dilate(cover, cover, kernel, cv::Point(b - 1, b - 1), 1, cv::BORDER_CONSTANT, cv::Scalar(0));
  cv::Mat density;
  cover.convertTo(density, CV_32F);
  cv::GaussianBlur(density, density, cv::Size(0, 0), s.sigma);
  density *= s.gain;
  return cv::min(density, 1.0f);
}

}  // namespace inpdiff
