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

#include <csetjmp>
#include <memory>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

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

long header_pixels(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<unsigned char> head(1 << 16);
  in.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(std::max<std::streamsize>(0, in.gcount())));
  const auto size = header_size(head);
  return size ? size->first * size->second : 0;
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

static fs::filesystem_error write_error(const fs::path& path, int err) {
  return fs::filesystem_error("writing failed", path, std::error_code(err ? err : EIO, std::generic_category()));
}

void atomic_write(const fs::path& path, const std::function<void(std::FILE*)>& write) {
  fs::create_directories(path.parent_path().empty() ? fs::path(".") : path.parent_path());
  std::string tmpl = (path.parent_path() / ("." + path.filename().string() + ".XXXXXX")).string();
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0) throw fs::filesystem_error("cannot create a temporary file", path, std::error_code(errno, std::generic_category()));
  std::FILE* f = ::fdopen(fd, "wb");
  if (!f) {
    int e = errno;
    ::close(fd);
    ::unlink(tmpl.c_str());
    throw write_error(path, e);
  }
  try {
    write(f);
    if (std::fflush(f) != 0 || std::ferror(f)) throw write_error(path, errno);
  } catch (...) {
    std::fclose(f);
    ::unlink(tmpl.c_str());
    throw;
  }
  mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(fd, 0666 & ~mask);  // mkstemp makes files 0600; give the usual permissions
  if (std::fclose(f) != 0 || std::rename(tmpl.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmpl.c_str());
    throw write_error(path, e);
  }
}

void atomic_write(const fs::path& path, const std::vector<unsigned char>& bytes) {
  atomic_write(path, [&](std::FILE* f) {
    if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) throw write_error(path, errno);
  });
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

// ---- Photos too large to hold: decoded into a file, and written, a band of rows at a time ----

void write_png_bands(const fs::path& path, cv::Size size, int channels, const Bands& band) {
  atomic_write(path, [&](std::FILE* f) {
    auto put = [&](const void* data, size_t n) {
      if (n && std::fwrite(data, 1, n, f) != n) throw write_error(path, errno);
    };
    auto chunk = [&](const char* kind, const std::vector<unsigned char>& data) {
      unsigned char head[8] = {static_cast<unsigned char>(data.size() >> 24), static_cast<unsigned char>(data.size() >> 16),
                               static_cast<unsigned char>(data.size() >> 8), static_cast<unsigned char>(data.size())};
      std::memcpy(head + 4, kind, 4);
      uLong crc = crc32(crc32(0L, nullptr, 0), head + 4, 4);
      if (!data.empty()) crc = crc32(crc, data.data(), static_cast<uInt>(data.size()));
      const unsigned char tail[4] = {static_cast<unsigned char>(crc >> 24), static_cast<unsigned char>(crc >> 16),
                                     static_cast<unsigned char>(crc >> 8), static_cast<unsigned char>(crc)};
      put(head, 8), put(data.data(), data.size()), put(tail, 4);
    };
    const uint32_t w = size.width, h = size.height;
    put("\x89PNG\r\n\x1a\n", 8);
    chunk("IHDR", {static_cast<unsigned char>(w >> 24), static_cast<unsigned char>(w >> 16), static_cast<unsigned char>(w >> 8),
                   static_cast<unsigned char>(w), static_cast<unsigned char>(h >> 24), static_cast<unsigned char>(h >> 16),
                   static_cast<unsigned char>(h >> 8), static_cast<unsigned char>(h), 8,
                   static_cast<unsigned char>(channels == 1 ? 0 : 2), 0, 0, 0});
    z_stream z{};
    if (deflateInit(&z, 1) != Z_OK) throw std::runtime_error("zlib: deflateInit failed");
    std::unique_ptr<z_stream, int (*)(z_stream*)> end(&z, deflateEnd);
    const size_t row = static_cast<size_t>(w) * channels;
    std::vector<unsigned char> filtered, out(1 << 16), data;
    auto deflate_all = [&](int flush) {  // everything zlib gives for this input, as one IDAT chunk
      data.clear();
      do {
        z.next_out = out.data(), z.avail_out = static_cast<uInt>(out.size());
        deflate(&z, flush);
        data.insert(data.end(), out.data(), out.data() + (out.size() - z.avail_out));
      } while (z.avail_out == 0 || (flush == Z_FINISH && z.avail_in));
      if (!data.empty() || flush == Z_FINISH) chunk("IDAT", data);
    };
    for (int y0 = 0; y0 < size.height;) {
      const cv::Mat rows = band(y0);
      if (rows.rows < 1 || rows.cols != size.width || rows.channels() != channels)
        throw std::logic_error("write_png_bands: a band of another shape");
      filtered.resize(rows.rows * (row + 1));
      for (int r = 0; r < rows.rows; ++r) {  // Sub: each byte minus the pixel's to its left, mod 256
        const uint8_t* p = rows.ptr<uint8_t>(r);
        unsigned char* q = filtered.data() + r * (row + 1);
        q[0] = 1;
        for (size_t i = 0; i < row; ++i) q[1 + i] = static_cast<unsigned char>(p[i] - (i >= static_cast<size_t>(channels) ? p[i - channels] : 0));
      }
      z.next_in = filtered.data(), z.avail_in = static_cast<uInt>(filtered.size());
      deflate_all(Z_NO_FLUSH);
      y0 += rows.rows;
    }
    deflate_all(Z_FINISH);
    chunk("IEND", {});
  });
}

namespace {

// libjpeg reports errors by longjmp: each step below is a function of its own whose frame holds no
// C++ object, so that the jump skips no destructor.
struct JpegError {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  int saved_errno;
};

void jpeg_fail(j_common_ptr c) {
  auto* e = reinterpret_cast<JpegError*>(c->err);
  e->saved_errno = errno;
  std::longjmp(e->jump, 1);
}

bool jpeg_begin(jpeg_compress_struct* c, JpegError* e, std::FILE* f, cv::Size size, int quality) {
  if (setjmp(e->jump)) return false;
  jpeg_create_compress(c);
  jpeg_stdio_dest(c, f);
  c->image_width = static_cast<JDIMENSION>(size.width);
  c->image_height = static_cast<JDIMENSION>(size.height);
  c->input_components = 3;
  c->in_color_space = JCS_RGB;
  jpeg_set_defaults(c);
  jpeg_set_quality(c, quality, TRUE);
  jpeg_start_compress(c, TRUE);
  return true;
}

bool jpeg_rows(jpeg_compress_struct* c, JpegError* e, JSAMPROW* rows, int n) {
  if (setjmp(e->jump)) return false;
  for (int done = 0; done < n;) done += static_cast<int>(jpeg_write_scanlines(c, rows + done, static_cast<JDIMENSION>(n - done)));
  return true;
}

bool jpeg_end(jpeg_compress_struct* c, JpegError* e) {
  if (setjmp(e->jump)) return false;
  jpeg_finish_compress(c);
  return true;
}

}  // namespace

void write_jpeg_bands(const fs::path& path, cv::Size size, const Bands& band, int quality) {
  atomic_write(path, [&](std::FILE* f) {
    jpeg_compress_struct c{};
    JpegError e{};
    c.err = jpeg_std_error(&e.mgr);
    e.mgr.error_exit = jpeg_fail;
    std::vector<JSAMPROW> pointers;
    bool ok = jpeg_begin(&c, &e, f, size, quality);
    for (int y0 = 0; ok && y0 < size.height;) {
      cv::Mat rows = band(y0);
      if (rows.rows < 1 || rows.cols != size.width || rows.type() != CV_8UC3) {
        jpeg_destroy_compress(&c);
        throw std::logic_error("write_jpeg_bands: a band of another shape");
      }
      pointers.resize(rows.rows);
      for (int r = 0; r < rows.rows; ++r) pointers[r] = rows.ptr<uint8_t>(r);
      ok = jpeg_rows(&c, &e, pointers.data(), rows.rows);
      y0 += rows.rows;
    }
    ok = ok && jpeg_end(&c, &e);
    char message[JMSG_LENGTH_MAX] = "";
    if (!ok) c.err->format_message(reinterpret_cast<j_common_ptr>(&c), message);
    jpeg_destroy_compress(&c);
    if (ok) return;
    if (e.saved_errno == ENOSPC || e.saved_errno == EDQUOT) throw write_error(path, e.saved_errno);
    throw std::runtime_error(path.string() + ": JPEG encoding failed (" + message + ")");
  });
}

namespace {

bool jpeg_header(jpeg_decompress_struct* c, JpegError* e, std::FILE* f) {
  if (setjmp(e->jump)) return false;
  jpeg_create_decompress(c);
  jpeg_stdio_src(c, f);
  jpeg_save_markers(c, JPEG_APP0 + 1, 0xFFFF);  // EXIF
  jpeg_read_header(c, TRUE);
  return true;
}

// As OpenCV's decoder sets it up (its colour order aside): islow DCT, fancy upsampling, grey replicated.
bool jpeg_start(jpeg_decompress_struct* c, JpegError* e) {
  if (setjmp(e->jump)) return false;
  c->out_color_space = JCS_EXT_RGB;
  jpeg_start_decompress(c);
  return true;
}

bool jpeg_read(jpeg_decompress_struct* c, JpegError* e, JSAMPROW* rows, int n) {
  if (setjmp(e->jump)) return false;
  for (int done = 0; done < n;) done += static_cast<int>(jpeg_read_scanlines(c, rows + done, static_cast<JDIMENSION>(n - done)));
  return true;
}

bool jpeg_finish(jpeg_decompress_struct* c, JpegError* e) {
  if (setjmp(e->jump)) return false;
  jpeg_finish_decompress(c);
  return true;
}

// The EXIF orientation tag (1 where there is none): OpenCV turns the photo by it.
int exif_orientation(const jpeg_decompress_struct& c) {
  for (jpeg_saved_marker_ptr m = c.marker_list; m; m = m->next) {
    const unsigned char* d = m->data;
    const size_t n = m->data_length;
    if (m->marker != JPEG_APP0 + 1 || n < 14 || std::memcmp(d, "Exif\0\0", 6) != 0) continue;
    const unsigned char* t = d + 6;  // the TIFF header
    const size_t size = n - 6;
    const bool le = t[0] == 'I';
    auto u16 = [&](size_t i) { return i + 2 > size ? 0u : le ? t[i] | t[i + 1] << 8u : t[i] << 8u | t[i + 1]; };
    auto u32 = [&](size_t i) { return i + 4 > size ? 0ul : le ? u16(i) | static_cast<unsigned long>(u16(i + 2)) << 16 : static_cast<unsigned long>(u16(i)) << 16 | u16(i + 2); };
    const size_t ifd = u32(4);
    for (unsigned k = 0, count = u16(ifd); k < count; ++k) {
      const size_t entry = ifd + 2 + 12 * k;
      if (entry + 12 > size) break;
      if (u16(entry) == 0x0112) return static_cast<int>(u16(entry + 8));
    }
  }
  return 1;
}

}  // namespace

static SpilledMat spill_jpeg(const fs::path& path, std::FILE* file, long max_pixels) {
  jpeg_decompress_struct c{};
  JpegError e{};
  c.err = jpeg_std_error(&e.mgr);
  e.mgr.error_exit = jpeg_fail;
  std::unique_ptr<jpeg_decompress_struct, void (*)(jpeg_decompress_struct*)> done(&c, jpeg_destroy_decompress);
  const auto corrupt = [&] { return ImageError(path.string() + ": cannot decode the image (corrupt, truncated or not an image)"); };
  if (!jpeg_header(&c, &e, file)) throw corrupt();
  if (static_cast<long>(c.image_width) * c.image_height > max_pixels)
    throw ImageError(over_limit(path, c.image_width, c.image_height, max_pixels));
  if ((c.num_components != 1 && c.num_components != 3) || exif_orientation(c) > 1) return {};
  if (!jpeg_start(&c, &e)) throw corrupt();
  RowWriter out(static_cast<int>(c.output_width), CV_8UC3);
  cv::Mat rows(64, static_cast<int>(c.output_width), CV_8UC3);
  std::vector<JSAMPROW> pointers(rows.rows);
  for (int r = 0; r < rows.rows; ++r) pointers[r] = rows.ptr<uint8_t>(r);
  for (int y = 0, H = static_cast<int>(c.output_height); y < H;) {
    const int n = std::min(rows.rows, H - y);
    if (!jpeg_read(&c, &e, pointers.data(), n)) throw corrupt();
    out.write(rows.rowRange(0, n));
    y += n;
  }
  if (!jpeg_finish(&c, &e)) throw corrupt();
  return out.done();
}

namespace {

bool png_header(png_structp png, png_infop info, std::FILE* f) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_init_io(png, f);
  png_read_info(png, info);
  return true;
}

// The transforms OpenCV's decoder asks libpng for (for IMREAD_COLOR | IMREAD_ANYDEPTH), in RGB order.
bool png_start(png_structp png, png_infop info) {
  if (setjmp(png_jmpbuf(png))) return false;
  const int type = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  if (depth == 16) png_set_swap(png);  // native 16-bit samples (this is a little-endian build's order)
  png_set_strip_alpha(png);
  if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (!(type & PNG_COLOR_MASK_COLOR) && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (!(type & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
  png_read_update_info(png, info);
  return true;
}

bool png_rows(png_structp png, png_bytepp rows, int n) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_rows(png, rows, nullptr, static_cast<png_uint_32>(n));
  return true;
}

}  // namespace

static SpilledMat spill_png(const fs::path& path, std::FILE* file, long max_pixels) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) throw std::bad_alloc();
  std::unique_ptr<png_structp, void (*)(png_structp*)> done(&png, [](png_structp* p) { png_destroy_read_struct(p, nullptr, nullptr); });
  const auto corrupt = [&] { return ImageError(path.string() + ": cannot decode the image (corrupt, truncated or not an image)"); };
  if (!png_header(png, info, file)) throw corrupt();
  const long w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  if (w * h > max_pixels) throw ImageError(over_limit(path, w, h, max_pixels));
  png_bytep exif = nullptr;
  png_uint_32 exif_size = 0;
  if (png_get_interlace_type(png, info) != PNG_INTERLACE_NONE || png_get_eXIf_1(png, info, &exif_size, &exif)) return {};
  const bool deep = png_get_bit_depth(png, info) == 16;
  if (!png_start(png, info)) throw corrupt();
  RowWriter out(static_cast<int>(w), CV_8UC3);
  cv::Mat rows(64, static_cast<int>(w), deep ? CV_16UC3 : CV_8UC3), narrow;
  std::vector<png_bytep> pointers(rows.rows);
  for (int r = 0; r < rows.rows; ++r) pointers[r] = rows.ptr<png_byte>(r);
  for (int y = 0; y < h;) {
    const int n = static_cast<int>(std::min<long>(rows.rows, h - y));
    if (!png_rows(png, pointers.data(), n)) throw corrupt();
    if (deep) {  // as read_image: round(v / 257) in float32, ties to even
      narrow.create(n, static_cast<int>(w), CV_8UC3);
      for (int r = 0; r < n; ++r) {
        const uint16_t* p = rows.ptr<uint16_t>(r);
        uint8_t* q = narrow.ptr<uint8_t>(r);
        for (long i = 0; i < 3 * w; ++i) q[i] = static_cast<uint8_t>(std::nearbyint(static_cast<float>(p[i]) / 257.0f));
      }
      out.write(narrow);
    } else {
      out.write(rows.rowRange(0, n));
    }
    y += n;
  }
  return out.done();
}

SpilledMat spill_image(const fs::path& path, long max_pixels) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"), std::fclose);
  unsigned char magic[8] = {0};
  if (!file || std::fread(magic, 1, 8, file.get()) != 8) return {};
  std::rewind(file.get());
  static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (magic[0] == 0xFF && magic[1] == 0xD8) return spill_jpeg(path, file.get(), max_pixels);
  if (std::memcmp(magic, png, 8) == 0) return spill_png(path, file.get(), max_pixels);
  return {};
}

}  // namespace inpdiff
