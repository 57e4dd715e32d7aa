#include "inpdiff/image_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <utility>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace fs = std::filesystem;

namespace inpdiff {

// (width, height) from a PNG or JPEG header without decoding (inpdiff/io.py header_size).
static std::optional<std::pair<long, long>> header_size(const std::vector<unsigned char>& b) {
  auto be = [&](size_t i, int n) {
    long v = 0;
    for (int k = 0; k < n; ++k) v = (v << 8) | b[i + k];
    return v;
  };
  size_t n = std::min<size_t>(b.size(), 1 << 16);
  static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n >= 24 && std::memcmp(b.data(), png, 8) == 0) return std::make_pair(be(16, 4), be(20, 4));
  if (n >= 2 && b[0] == 0xFF && b[1] == 0xD8) {
    size_t i = 2;
    while (i + 9 < n && b[i] == 0xFF) {
      int marker = b[i + 1];
      bool sof = (marker >= 0xC0 && marker <= 0xCF) && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
      if (sof) return std::make_pair(be(i + 7, 2), be(i + 5, 2));
      i += 2 + static_cast<size_t>(be(i + 2, 2));
    }
  }
  return std::nullopt;
}

static std::string over_limit(const fs::path& path, long w, long h, long max_pixels) {
  return path.string() + ": " + std::to_string(w) + "x" + std::to_string(h) + " is over the " +
         std::to_string(max_pixels) + " pixel limit";
}

cv::Mat read_image(const fs::path& path, long max_pixels) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) throw ImageError(path.string() + ": no such file");
    throw ImageError(path.string() + ": cannot be opened (" + std::strerror(errno) + ")");
  }
  if (!S_ISREG(st.st_mode)) {
    const char* kind = S_ISDIR(st.st_mode) ? "a folder" : S_ISFIFO(st.st_mode) ? "a FIFO (named pipe)"
                       : S_ISSOCK(st.st_mode) ? "a socket" : "a device";
    throw ImageError(path.string() + ": not a regular file but " + kind);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ImageError(path.string() + ": cannot be opened (" + std::strerror(errno) + ")");
  std::vector<unsigned char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.empty()) throw ImageError(path.string() + ": empty file");
  if (auto size = header_size(data); size && size->first * size->second > max_pixels)
    throw ImageError(over_limit(path, size->first, size->second, max_pixels));
  cv::Mat img;
  try {
    img = cv::imdecode(data, cv::IMREAD_COLOR | cv::IMREAD_ANYDEPTH);
  } catch (const cv::Exception&) {
    img.release();
  }
  if (img.empty()) throw ImageError(path.string() + ": cannot decode the image (corrupt, truncated or not an image)");
  if (static_cast<long>(img.rows) * img.cols > max_pixels) throw ImageError(over_limit(path, img.cols, img.rows, max_pixels));
  if (img.depth() == CV_16U) {  // as Python: round(v / 257) in float32, ties to even
    cv::Mat out(img.size(), CV_8UC3);
    auto src = img.begin<cv::Vec3w>();
    for (auto dst = out.begin<cv::Vec3b>(); dst != out.end<cv::Vec3b>(); ++dst, ++src)
      for (int c = 0; c < 3; ++c) (*dst)[c] = static_cast<uchar>(std::nearbyint(static_cast<float>((*src)[c]) / 257.0f));
    img = out;
  } else if (img.depth() != CV_8U) {
    throw ImageError(path.string() + ": unsupported sample type (depth " + std::to_string(img.depth()) + ")");
  }
  cv::cvtColor(img, img, cv::COLOR_BGR2RGB);
  return img;
}

void atomic_write(const fs::path& path, const std::vector<unsigned char>& bytes) {
  fs::create_directories(path.parent_path().empty() ? fs::path(".") : path.parent_path());
  std::string tmpl = (path.parent_path() / ("." + path.filename().string() + ".XXXXXX")).string();
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0) throw fs::filesystem_error("cannot create a temporary file", path, std::error_code(errno, std::generic_category()));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = errno;
      ::close(fd);
      ::unlink(tmpl.c_str());
      throw fs::filesystem_error("writing failed", path, std::error_code(e, std::generic_category()));
    }
    done += static_cast<size_t>(n);
  }
  mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(fd, 0666 & ~mask);  // mkstemp makes files 0600; give the usual permissions
  if (::close(fd) != 0 || std::rename(tmpl.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmpl.c_str());
    throw fs::filesystem_error("writing failed", path, std::error_code(e, std::generic_category()));
  }
}

static void encode_to(const fs::path& path, const std::string& ext, const cv::Mat& img, const std::vector<int>& params) {
  std::vector<unsigned char> buf;
  if (!cv::imencode(ext, img, buf, params)) throw std::runtime_error(path.string() + ": encoding failed");
  atomic_write(path, buf);
}

void write_png(const fs::path& path, const cv::Mat& grey_or_rgb) {
  cv::Mat img = grey_or_rgb;
  if (img.channels() == 3) cv::cvtColor(grey_or_rgb, img, cv::COLOR_RGB2BGR);
  encode_to(path, ".png", img, {});
}

void write_jpeg(const fs::path& path, cv::Mat& rgb, int quality) {
  for (int y = 0; y < rgb.rows; ++y) {  // cv::cvtColor in place would copy the source first
    uint8_t* p = rgb.ptr<uint8_t>(y);
    for (int x = 0; x < rgb.cols; ++x) std::swap(p[3 * x], p[3 * x + 2]);
  }
  encode_to(path, ".jpg", rgb, {cv::IMWRITE_JPEG_QUALITY, quality});
}

}  // namespace inpdiff
