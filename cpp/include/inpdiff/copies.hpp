// Copy evidence: pixels that are exact or near copies of pixels elsewhere in the same photo, computed
// exactly as inpdiff/copies.py and inpdiff/near_copies.py define it (the same hashes, groups, coverage and blur), so both
// runtimes fuse the same map.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include <opencv2/core.hpp>

namespace inpdiff {

struct NearCopySettings {  // inpdiff/near_copies.py NearCopySettings: the defaults are written there
  int min_std = 6;
  int clip = 5;
  int q = 660;
  int window = 6;
  double abs_tol = 220.0;
  double rel_tol = 26.4;
  int min_distance = 12;
  int support = 3;
  int max_matches = 2;
  bool blur = false;  // features of the gray summed over 2x2
  bool ramp_free = true;  // the features a plane added over the block leaves unchanged; else the smooth ones
};

struct GrowSettings {  // inpdiff/copy_growth.py GrowSettings: the defaults are written there
  int pairs = 5;
  int distance = 24;
  int offsets = 8;
  int margin = 32;
  int64_t area = int64_t{1} << 20;
  int radius = 4;
  int min_std = 2;
  double ncc = 0.9;
  double periodic = 0.7;
  double coherence = 0.9;
};

struct CopySettings {  // inpdiff/copies.py CopySettings: the defaults are written there
  int min_range = 24;
  int min_distance = 12;
  int max_group = 8;
  int max_equal_pairs = 4;
  double sigma = 6.0;
  float gain = 2.0f;
  float lift = 0.4f;  // added to the network's map near the densest copies, as inpdiff/copies.py defines it
  double lift_sigma = 48.0;  // pixels, on a grid of 8x8 cells
  int near_min_pairs = 3;  // near pairs of one offset: fewer are lookalikes
  int seam_pairs = 16;  // copies of one offset that mark only the end with the stronger border (0: both ends)
  double seam_margin = 1.05;  // how much stronger
  int64_t seam_area = int64_t{1} << 20;  // pixels: an end whose box is larger keeps both
  std::vector<NearCopySettings> near = near_searches();  // the near-copy searches (empty: exact copies only)
  std::optional<GrowSettings> grow = GrowSettings{};  // each shared offset grown into its whole copy (none: not)
  int pick_pairs = 5;  // copies of one offset whose seam says nothing, and whose end the network's map picks (0: never)
  double pick_margin = 1.5;  // how much higher the map's mean at the picked end

  static std::vector<NearCopySettings> near_searches() {  // on the gray, and on its 2x2 sums
    NearCopySettings summed;
    summed.q = 2640, summed.abs_tol = 880.0, summed.rel_tol = 79.2, summed.max_matches = 1, summed.blur = true;
    summed.ramp_free = false;
    return {NearCopySettings{}, summed};
  }
};

// RGB CV_8UC3 -> CV_8U of the same size, 1 where a pixel lies in a block of a kept near-copy match.
cv::Mat near_copy_cover(const cv::Mat& rgb, const NearCopySettings& s = {});

// Told of each band of the photo's rows read, so that a photo in a file can let go of their pages, and
// between passes that read none (0 rows): a stopping run ends the search from it (localizer.cpp).
using RowsRead = std::function<void(int rows)>;

// A copy: the top-left corners of its two blocks (side `size`), the later one in raster order second.
struct CopyPair {
  int y[2], x[2], size;
};

// What the copy searches found, before the network's map is known (inpdiff/copies.py Found).
struct Found {
  cv::Mat cover;  // CV_8U, the groups of three or more marked
  std::vector<CopyPair> pairs;
  std::vector<std::array<bool, 2>> keep;  // the seam rule's ends of each pair
};

// RGB CV_8UC3 -> the copies found in it.
Found find_copies(const cv::Mat& rgb, const CopySettings& s = {}, const RowsRead& read = {});

// The copies found -> CV_8U of the photo's size, 1 where a pixel lies in a marked block or a near copy.
// prob: the network's map before the fusion (CV_32F), which picks the end of the copies whose seam
// says nothing; empty: both ends of those. Takes found.cover.
cv::Mat cover_of(const cv::Mat& rgb, Found found, const CopySettings& s = {}, const cv::Mat& prob = {});

// find_copies, then cover_of without a map.
cv::Mat copy_cover(const cv::Mat& rgb, const CopySettings& s = {}, const RowsRead& read = {});

// The network's map (CV_32F) lifted near `cover` (copy_cover's), then raised to its copy map where
// that is higher, a band of rows at a time (inpdiff/copies.py CopyRaise).
class CopyRaise {
 public:
  CopyRaise(const cv::Mat& cover, const CopySettings& s = {});
  void band(cv::Mat& prob, int y0) const;  // prob: rows y0 .. y0 + prob.rows of the map, raised in place

 private:
  cv::Mat cover_;
  CopySettings s_;
  int halo_;
  cv::Mat term_;  // per 8x8 cell (empty: no lift)
};

}  // namespace inpdiff
