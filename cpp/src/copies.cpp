#include "inpdiff/copies.hpp"

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include <opencv2/imgproc.hpp>

namespace inpdiff {

static uint64_t splitmix64(uint64_t i) {
  uint64_t z = i * 0x9E3779B97F4A7C15ull + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

cv::Mat copy_map(const cv::Mat& rgb, const CopySettings& s) {
  const int H = rgb.rows, W = rgb.cols, b = s.block;
  if (H < b || W < b) return cv::Mat::zeros(H, W, CV_32F);
  const int h = H - b + 1, w = W - b + 1;
  // Texture: the range of R+G+B over each block (anchored at its top-left, as in Python).
  cv::Mat total(H, W, CV_16U);
  for (int y = 0; y < H; ++y) {
    const uint8_t* p = rgb.ptr<uint8_t>(y);
    uint16_t* t = total.ptr<uint16_t>(y);
    for (int x = 0; x < W; ++x) t[x] = static_cast<uint16_t>(p[3 * x] + p[3 * x + 1] + p[3 * x + 2]);
  }
  const cv::Mat kernel = cv::Mat::ones(b, b, CV_8U);
  cv::Mat hi, lo;
  cv::dilate(total, hi, kernel, cv::Point(0, 0));
  cv::erode(total, lo, kernel, cv::Point(0, 0));
  // Hashes of the textured blocks: a row hash over b pixels x 3 channels, then a column of b rows.
  std::vector<uint64_t> K(4 * b);
  for (int i = 0; i < 4 * b; ++i) K[i] = splitmix64(static_cast<uint64_t>(i)) | 1ull;
  std::vector<uint64_t> row(static_cast<size_t>(H) * w, 0);
  for (int y = 0; y < H; ++y) {
    const uint8_t* p = rgb.ptr<uint8_t>(y);
    uint64_t* r = row.data() + static_cast<size_t>(y) * w;
    for (int x = 0; x < w; ++x) {
      uint64_t v = 0;
      for (int k = 0; k < 3 * b; ++k) v += p[3 * x + k] * K[k];
      r[x] = v;
    }
  }
  std::vector<std::pair<uint64_t, int>> blocks;  // (hash, position y * w + x), textured blocks only
  for (int y = 0; y < h; ++y) {
    const uint16_t *top = hi.ptr<uint16_t>(y), *bottom = lo.ptr<uint16_t>(y);
    for (int x = 0; x < w; ++x) {
      if (top[x] - bottom[x] < s.min_range) continue;
      uint64_t v = 0;
      for (int dy = 0; dy < b; ++dy) v += row[static_cast<size_t>(y + dy) * w + x] * K[3 * b + dy];
      blocks.emplace_back(v, y * w + x);
    }
  }
  std::sort(blocks.begin(), blocks.end());  // by hash, then position (NumPy's stable argsort of ascending positions)
  cv::Mat cover = cv::Mat::zeros(H, W, CV_8U);
  for (size_t i = 0, j; i < blocks.size(); i = j) {
    int ymin = h, ymax = -1, xmin = w, xmax = -1;
    for (j = i; j < blocks.size() && blocks[j].first == blocks[i].first; ++j) {
      int y = blocks[j].second / w, x = blocks[j].second % w;
      ymin = std::min(ymin, y), ymax = std::max(ymax, y), xmin = std::min(xmin, x), xmax = std::max(xmax, x);
    }
    const size_t count = j - i;
    if (count < 2 || count > static_cast<size_t>(s.max_group) || std::max(ymax - ymin, xmax - xmin) < s.min_distance)
      continue;
    for (size_t k = i; k < j; ++k) cover.at<uint8_t>(blocks[k].second / w, blocks[k].second % w) = 1;
  }
  cv::dilate(cover, cover, kernel, cv::Point(b - 1, b - 1), 1, cv::BORDER_CONSTANT, cv::Scalar(0));
  cv::Mat density;
  cover.convertTo(density, CV_32F);
  cv::GaussianBlur(density, density, cv::Size(0, 0), s.sigma);
  density *= s.gain;
  return cv::min(density, 1.0f);
}

}  // namespace inpdiff
