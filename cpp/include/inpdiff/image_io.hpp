// Reading images with clear per-file errors, and writing files atomically (inpdiff/io.py).
#pragma once

#include <cstdio>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "inpdiff/spill.hpp"

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

// Width x height from a PNG or JPEG header (the first 64 KB of the file); 0 where it gives none.
long header_pixels(const std::filesystem::path& path);

// A JPEG or PNG photo decoded straight into a file, a band of rows at a time, with read_image's pixels
// (as inpdiff/io.py spill_image does with libvips): never held whole. Empty where it cannot be streamed
// (another format, a CMYK JPEG, an interlaced PNG, EXIF data that may turn it): read_image holds it
// whole then.
SpilledMat spill_image(const std::filesystem::path& path, long max_pixels = kMaxPixels);

// What `write` puts in a temporary file beside `path`, renamed into place (a reader never sees half a
// file); a failed write (errno, as a std::filesystem::filesystem_error) leaves nothing behind.
void atomic_write(const std::filesystem::path& path, const std::function<void(std::FILE*)>& write);
void atomic_write(const std::filesystem::path& path, const std::vector<unsigned char>& bytes);
void write_png(const std::filesystem::path& path, const cv::Mat& grey_or_rgb);
// Swaps `rgb` to BGR in place for the encoder (a copy would be 144 MB at 48 MP): it is spent.
void write_jpeg(const std::filesystem::path& path, cv::Mat& rgb, int quality);

// An image given a band of rows at a time: the rows from y0 on (CV_8UC1 grey or CV_8UC3 RGB; at
// least one row while y0 is inside the image).
using Bands = std::function<cv::Mat(int y0)>;
// write_png and write_jpeg for an image of `size` given by `band`: neither holds the image. The PNG is
// inpdiff/io.py png_stream's (Sub filter, zlib level 1); the JPEG libjpeg's, 4:2:0.
void write_png_bands(const std::filesystem::path& path, cv::Size size, int channels, const Bands& band);
void write_jpeg_bands(const std::filesystem::path& path, cv::Size size, const Bands& band, int quality);

}  // namespace inpdiff
