// Localizing a photo a band of rows at a time (inpdiff/runtime/bands.py): the blend, the regions and
// the image score, each fed rows in order, with the same arithmetic per pixel as the whole-image path.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <opencv2/core.hpp>

#include "inpdiff/localizer.hpp"
#include "inpdiff/spill.hpp"

namespace inpdiff {

constexpr int kBandRows = 128;  // rows per band: a few MB at the widest photos

// Connected regions (8-connected) of a mask given a band of rows at a time: each band's components
// (32-bit labels: OpenCV 4.6's 16-bit ones corrupt the heap once a mask needs more than 65535
// provisional labels), joined where they touch across band edges, so no label map is larger than a band.
class RegionFinder {
 public:
  explicit RegionFinder(int min_area) : min_area_(min_area) {}
  // Rows y0 .. y0 + mask.rows: mask CV_8U in {0, 1}, prob CV_32F, cover CV_8U or empty.
  void add(const cv::Mat& mask, const cv::Mat& prob, const cv::Mat& cover, int y0);
  // Regions of at least min_area pixels, largest first, ties in the raster order of their first pixels;
  // `copied` filled in where a cover was given.
  std::vector<Region> regions(bool copies);

 private:
  struct Part { int x0, y0, x1, y1; long area; int64_t first; double prob; long copied; };
  int root(int i);
  int min_area_;
  std::vector<Part> parts_;
  std::vector<int> parent_, last_;  // last_: the previous band's last row, as parts (-1: none)
  cv::Mat labels_, stats_, centroids_;
};

// The image score's statistic over a map given a band of rows at a time (inpdiff/scoring.py): "top1",
// the mean of the top 1% (the values kept while they can still be among them), or else "marked", the
// share >= 0.5.
class BandStatistic {
 public:
  BandStatistic(const std::string& statistic, size_t size);
  void add(const cv::Mat& rows);  // CV_32F
  double value();

 private:
  bool top1_;
  size_t size_, k_, marked_ = 0;
  std::vector<float> kept_;
  float floor_;
};

// The (samples, H, W) sum of a plan's tiles, held one tile tall: rows that no later tile reaches are
// divided by the tiles' summed ramps (wy, wx), combined across samples and written to files.
class RowAccumulator {
 public:
  // tile: the plan's tile size (every tile's)
  RowAccumulator(int samples, cv::Size size, cv::Size tile, std::vector<float> wy, std::vector<float> wx);
  // A tile's per-sample maps (samples x tile) at (y, x), weighted by `window`; tiles come in plan
  // order (row by row).
  void add(int y, int x, const float* maps, const std::vector<float>& window);
  // The map before copies, and the spread across samples (empty for one sample).
  std::pair<SpilledMat, SpilledMat> close();

 private:
  void flush(int upto);
  int samples_, lo_ = 0;
  cv::Size tile_, size_;
  std::vector<float> wy_, wx_;
  std::vector<cv::Mat> buf_;  // per sample, tile rows from image row lo_
  RowWriter prob_;
  std::optional<RowWriter> uncertainty_;  // more than one sample
};

// One tile's map (tile.height x tile.width), weighted by `window`, added to acc's rows y.., columns x...
void add_tile(cv::Mat& acc, int y, int x, const float* map, const std::vector<float>& window, cv::Size tile);
// Each tile-blended map divided by the summed ramps (rows y0.., columns 0..), in place.
void normalise_rows(cv::Mat& rows, int y0, const std::vector<float>& wy, const std::vector<float>& wx);
// Per-sample maps -> their mean and spread (the spread empty for one sample).
void combine_samples(const std::vector<cv::Mat>& per_sample, cv::Mat& prob, cv::Mat& uncertainty);

}  // namespace inpdiff
