// Reading images with clear per-file errors, and writing files atomically (inpdiff/io.py).
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace inpdiff {

// An input that cannot be used; the message names the file and the problem.
class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

constexpr long kMaxPixels = 100000000;  // larger is a decompression bomb, not a photo

// Any common image file -> CV_8UC3 RGB: grey replicated, alpha dropped, 16-bit scaled to 8, EXIF
// orientation applied. The pixel limit is checked on the header before decoding (PNG, JPEG).
cv::Mat read_image(const std::filesystem::path& path, long max_pixels = kMaxPixels);

// bytes -> a temporary file beside `path`, renamed into place (a reader never sees half a file).
void atomic_write(const std::filesystem::path& path, const std::vector<unsigned char>& bytes);
void write_png(const std::filesystem::path& path, const cv::Mat& grey_or_rgb);
// Swaps `rgb` to BGR in place for the encoder (a copy would be 144 MB at 48 MP): it is spent.
void write_jpeg(const std::filesystem::path& path, cv::Mat& rgb, int quality);

}  // namespace inpdiff
