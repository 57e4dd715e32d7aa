#include "inpdiff/bands.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include <opencv2/imgproc.hpp>

namespace inpdiff {

int RegionFinder::root(int i) {
  while (parent_[i] != i) i = parent_[i] = parent_[parent_[i]];
  return i;
}

void RegionFinder::add(const cv::Mat& mask, const cv::Mat& prob, const cv::Mat& cover, int y0) {
  const int W = mask.cols, base = static_cast<int>(parts_.size());
  if (last_.empty()) last_.assign(W, -1);
  const int n = cv::connectedComponentsWithStats(mask, labels_, stats_, centroids_, 8, CV_32S);
  for (int i = 1; i < n; ++i) {
    const int* st = stats_.ptr<int>(i);
    const int x = st[cv::CC_STAT_LEFT], y = st[cv::CC_STAT_TOP] + y0;
    parts_.push_back({x, y, x + st[cv::CC_STAT_WIDTH], y + st[cv::CC_STAT_HEIGHT], st[cv::CC_STAT_AREA], -1, 0.0, 0});
    parent_.push_back(base + i - 1);
  }
  for (int r = 0; n > 1 && r < mask.rows; ++r) {
    const int* l = labels_.ptr<int>(r);
    const float* p = prob.ptr<float>(r);
    const uint8_t* c = cover.empty() ? nullptr : cover.ptr<uint8_t>(r);
    for (int x = 0; x < W; ++x) {
      if (!l[x]) continue;
      Part& g = parts_[base + l[x] - 1];
      if (g.first < 0) g.first = static_cast<int64_t>(y0 + r) * W + x;
      g.prob += p[x];
      if (c) g.copied += c[x];
    }
  }
  const int* top = labels_.ptr<int>(0);
  for (int x = 0; x < W; ++x)  // 8-connectivity: the pixel above, and its two neighbours
    for (int a = std::max(0, x - 1); top[x] && a <= std::min(W - 1, x + 1); ++a)
      if (last_[a] >= 0) {
        const int ra = root(last_[a]), rb = root(base + top[x] - 1);
        if (ra != rb) parent_[std::max(ra, rb)] = std::min(ra, rb);
      }
  const int* bottom = labels_.ptr<int>(mask.rows - 1);
  for (int x = 0; x < W; ++x) last_[x] = bottom[x] ? base + bottom[x] - 1 : -1;
}

std::vector<Region> RegionFinder::regions(bool copies) {
  for (int i = 0; i < static_cast<int>(parts_.size()); ++i) {  // each part into its region's first part
    const int r = root(i);
    if (r == i) continue;
    Part &g = parts_[r], &h = parts_[i];
    g.x0 = std::min(g.x0, h.x0), g.y0 = std::min(g.y0, h.y0), g.x1 = std::max(g.x1, h.x1), g.y1 = std::max(g.y1, h.y1);
    g.area += h.area, g.first = std::min(g.first, h.first), g.prob += h.prob, g.copied += h.copied;
  }
  std::vector<const Part*> kept;
  for (int i = 0; i < static_cast<int>(parts_.size()); ++i)
    if (root(i) == i && parts_[i].area >= min_area_) kept.push_back(&parts_[i]);
  std::sort(kept.begin(), kept.end(), [](const Part* a, const Part* b) {  // largest first; ties in raster order
    return a->area != b->area ? a->area > b->area : a->first < b->first;
  });
  std::vector<Region> regions;
  for (const Part* g : kept) {
    Region r{g->x0, g->y0, g->x1 - g->x0, g->y1 - g->y0, g->area, std::round(g->prob / g->area * 1e4) / 1e4, std::nullopt};
    if (copies) r.copied = std::round(static_cast<double>(g->copied) / g->area * 1e4) / 1e4;
    regions.push_back(r);
  }
  return regions;
}

BandStatistic::BandStatistic(const std::string& statistic, size_t size)
    : top1_(statistic == "top1"), size_(size),
      k_(std::max<size_t>(1, static_cast<size_t>(std::nearbyint(0.01 * static_cast<double>(size))))),
      floor_(-std::numeric_limits<float>::infinity()) {}

void BandStatistic::add(const cv::Mat& rows) {
  for (int r = 0; r < rows.rows; ++r)
    for (const float *p = rows.ptr<float>(r), *end = p + rows.cols; p != end; ++p) {
      if (!top1_) marked_ += *p >= 0.5f;
      else if (*p >= floor_) kept_.push_back(*p);
    }
  if (kept_.size() > 4 * k_) {  // only the top k can still be among the top k
    std::nth_element(kept_.begin(), kept_.end() - k_, kept_.end());
    kept_.erase(kept_.begin(), kept_.end() - k_);
    floor_ = *std::min_element(kept_.begin(), kept_.end());
  }
}

double BandStatistic::value() {
  if (!top1_) return static_cast<double>(marked_) / size_;
  std::nth_element(kept_.begin(), kept_.end() - k_, kept_.end());
  return std::accumulate(kept_.end() - k_, kept_.end(), 0.0) / k_;
}

void normalise_rows(cv::Mat& rows, int y0, const std::vector<float>& wy, const std::vector<float>& wx) {
  for (int r = 0; r < rows.rows; ++r) {
    float* row = rows.ptr<float>(r);
    for (int c = 0; c < rows.cols; ++c) row[c] = row[c] / wy[y0 + r] / wx[c];
  }
}

void combine_samples(const std::vector<cv::Mat>& per_sample, cv::Mat& prob, cv::Mat& uncertainty) {
  const int S = static_cast<int>(per_sample.size());
  if (S == 1) {
    prob = per_sample[0];
    uncertainty.release();
    return;
  }
  const cv::Size size = per_sample[0].size();
  cv::Mat sum = cv::Mat::zeros(size, CV_32F), sq = cv::Mat::zeros(size, CV_32F);
  for (const cv::Mat& m : per_sample) sum += m;
  prob = sum / static_cast<float>(S);
  for (const cv::Mat& m : per_sample) {
    cv::Mat d = m - prob;
    sq += d.mul(d);
  }
  cv::sqrt(sq / static_cast<float>(S), uncertainty);
}

RowAccumulator::RowAccumulator(int samples, cv::Size size, cv::Size tile, std::vector<float> wy, std::vector<float> wx)
    : samples_(samples), tile_(tile), size_(size), wy_(std::move(wy)), wx_(std::move(wx)), prob_(size.width, CV_32F) {
  for (int s = 0; s < samples; ++s) buf_.push_back(cv::Mat::zeros(tile.height, size.width, CV_32F));
  if (samples > 1) uncertainty_.emplace(size.width, CV_32F);
}

void add_tile(cv::Mat& acc, int y, int x, const float* map, const std::vector<float>& window, cv::Size tile) {
  for (int r = 0; r < tile.height; ++r) {
    float* a = acc.ptr<float>(y + r) + x;
    const size_t row = static_cast<size_t>(r) * tile.width;
    for (int c = 0; c < tile.width; ++c) a[c] += map[row + c] * window[row + c];
  }
}

void RowAccumulator::add(int y, int x, const float* maps, const std::vector<float>& window) {
  if (y > lo_) flush(y);
  const size_t plane = static_cast<size_t>(tile_.area());
  for (int s = 0; s < samples_; ++s) add_tile(buf_[s], y - lo_, x, maps + s * plane, window, tile_);
}

void RowAccumulator::flush(int upto) {
  const int n = std::min(upto, size_.height) - lo_;
  if (n <= 0) return;
  std::vector<cv::Mat> rows(samples_);
  for (int s = 0; s < samples_; ++s) {
    rows[s] = buf_[s].rowRange(0, n);
    normalise_rows(rows[s], lo_, wy_, wx_);
  }
  cv::Mat prob, uncertainty;
  combine_samples(rows, prob, uncertainty);
  prob_.write(prob);
  if (uncertainty_) uncertainty_->write(uncertainty);
  for (cv::Mat& b : buf_) {  // the rows still open move up; the rows below them start at zero
    std::memmove(b.ptr(0), b.ptr(n), (tile_.height - n) * b.step[0]);
    b.rowRange(tile_.height - n, tile_.height).setTo(0);
  }
  lo_ += n;
}

std::pair<SpilledMat, SpilledMat> RowAccumulator::close() {
  flush(size_.height);
  buf_.clear();
  return {prob_.done(), uncertainty_ ? uncertainty_->done() : SpilledMat()};
}

}  // namespace inpdiff
