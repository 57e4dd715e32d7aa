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
  int max_equal_pairs = 4;
  double sigma = 6.0;
  float gain = 2.0f;
};

// RGB CV_8UC3 -> CV_8U of the same size, 1 where a pixel lies in a marked block.
cv::Mat copy_cover(const cv::Mat& rgb, const CopySettings& s = {});

// prob (CV_32F, the image's size) raised in place to the copy map of `cover` (copy_cover's) where
// that is higher.
void raise_to_copies(cv::Mat& prob, const cv::Mat& cover, const CopySettings& s = {});

}  // namespace inpdiff
