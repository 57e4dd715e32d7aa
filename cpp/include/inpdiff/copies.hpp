// Copy evidence: pixels that are exact copies of pixels elsewhere in the same photo, computed
// exactly as inpdiff/copies.py defines it (the same hashes, groups, coverage and blur), so both
// runtimes fuse the same map.
#pragma once

#include <opencv2/core.hpp>

namespace inpdiff {

struct CopySettings {  // inpdiff/copies.py CopySettings: the defaults are written there
  int min_range = 24;
  int min_distance = 12;
  int max_group = 8;
  double sigma = 6.0;
  float gain = 2.0f;
};

// RGB CV_8UC3 -> CV_32F in [0, 1] of the same size: how densely each area is tiled with exact copies.
cv::Mat copy_map(const cv::Mat& rgb, const CopySettings& s = {});

}  // namespace inpdiff
