#include "inpdiff/spill.hpp"

#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace inpdiff {

// The file, and the folder it was made in.
static std::pair<File, std::string> make_anonymous_file() {
  std::vector<std::string> folders;
  for (const char* name : {"TMPDIR", "TEMP", "TMP"})
    if (const char* dir = std::getenv(name); dir && *dir) folders.emplace_back(dir);
  for (const char* dir : {"/tmp", "/var/tmp", "/usr/tmp", "."}) folders.emplace_back(dir);
  for (const std::string& folder : folders) {
    std::string path = folder + "/inpdiff-share-XXXXXX";
    const int fd = mkstemp(path.data());
    if (fd < 0) continue;
    unlink(path.c_str());
    if (std::FILE* file = fdopen(fd, "w+b")) return {File(file, std::fclose), folder};
    close(fd);
  }
  throw std::runtime_error("cannot create a temporary file in " + folders.front() + " or any other temporary folder");
}

File anonymous_file() { return make_anonymous_file().first; }

std::string temporary_folder_in_memory() {
  auto [file, folder] = make_anonymous_file();
  struct statfs fs {};
  if (fstatfs(fileno(file.get()), &fs) != 0) return "";
  return fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC ? folder : "";
}

struct SpilledMat::Map {
  File file{nullptr, std::fclose};
  void* base = MAP_FAILED;
  size_t length = 0, row_bytes = 0;
  std::atomic<size_t> read{0};
  ~Map() {
    if (base != MAP_FAILED) munmap(base, length);
  }
};

void SpilledMat::read(int rows) const {
  if (!map_ || map_->base == MAP_FAILED) return;
  const size_t bytes = static_cast<size_t>(rows) * map_->row_bytes;
  if (map_->read.fetch_add(bytes) + bytes >= kReleaseBytes) {  // two threads may both drop: harmless
    map_->read = 0;
    madvise(map_->base, map_->length, MADV_DONTNEED);
  }
}

RowWriter::RowWriter(int cols, int type) : file_(anonymous_file()), cols_(cols), type_(type) {}

void RowWriter::write(const cv::Mat& rows) {
  if (rows.cols != cols_ || rows.type() != type_) throw std::invalid_argument("RowWriter: rows of another width or type");
  const size_t bytes = static_cast<size_t>(cols_) * CV_ELEM_SIZE(type_);
  for (int r = 0; r < rows.rows; ++r)
    if (std::fwrite(rows.ptr(r), 1, bytes, file_.get()) != bytes)
      throw std::runtime_error("writing a temporary file failed (is TMPDIR's disk full?)");
  rows_ += rows.rows;
}

SpilledMat RowWriter::done() {
  SpilledMat s;
  s.map_ = std::make_shared<SpilledMat::Map>();
  SpilledMat::Map& m = *s.map_;
  m.row_bytes = static_cast<size_t>(cols_) * CV_ELEM_SIZE(type_);
  m.length = m.row_bytes * rows_;
  if (std::fflush(file_.get()) != 0) throw std::runtime_error("writing a temporary file failed (is TMPDIR's disk full?)");
  m.file = std::move(file_);
  if (m.length) {
    m.base = mmap(nullptr, m.length, PROT_READ, MAP_SHARED, fileno(m.file.get()), 0);
    if (m.base == MAP_FAILED) throw std::runtime_error("cannot map a temporary file");
    s.mat_ = cv::Mat(rows_, cols_, type_, m.base);
  } else {
    s.mat_ = cv::Mat(0, cols_, type_);
  }
  return s;
}

}  // namespace inpdiff
