// Matrices too large to hold, kept in files and read a band of rows at a time (inpdiff/spill.py).
//
// Above a size (trt-localize-cpp's --spill-above) the photo and its maps live in unlinked temporary
// files, mapped read-only: the page cache holds them, and this process drops the pages it has read
// from its resident set as it goes, so that a 100 MP photo (300 MB decoded, 400 MB of float map)
// never counts whole against the process's memory.
#pragma once

#include <cstdio>
#include <memory>
#include <string>

#include <opencv2/core.hpp>

namespace inpdiff {

using File = std::unique_ptr<std::FILE, int (*)(std::FILE*)>;

// A file that is gone once closed, in the first folder of Python's tempfile.gettempdir() order that
// takes one (TMPDIR, TEMP, TMP, /tmp, /var/tmp, /usr/tmp, the working folder), as the Python runtime's
// files go; tmpfile() would take /tmp whatever TMPDIR says.
File anonymous_file();
// The folder anonymous_file() takes, where that is a tmpfs or ramfs (its files are memory there); else "".
std::string temporary_folder_in_memory();

// A read-only matrix in a file. mat() is a view of the mapping; callers say how many rows they have
// read through it (read()), and every kReleaseBytes of rows the mapping's pages are dropped from this
// process (MADV_DONTNEED: the page cache keeps them, and a later read refaults them from there).
// Copies share the mapping; it is unmapped, and the file closed, with the last of them.
class SpilledMat {
 public:
  static constexpr size_t kReleaseBytes = size_t{32} << 20;

  SpilledMat() = default;
  bool empty() const { return !map_; }
  const cv::Mat& mat() const { return mat_; }
  void read(int rows) const;  // thread-safe

 private:
  friend class RowWriter;
  struct Map;
  std::shared_ptr<Map> map_;
  cv::Mat mat_;
};

// Rows of a (rows, cols) matrix of `type` appended to an anonymous file, then mapped as a SpilledMat.
class RowWriter {
 public:
  RowWriter(int cols, int type);
  void write(const cv::Mat& rows);  // rows.cols and type as given
  SpilledMat done();                // the rows written; the writer is spent

 private:
  File file_;
  int cols_, type_, rows_ = 0;
};

}  // namespace inpdiff
