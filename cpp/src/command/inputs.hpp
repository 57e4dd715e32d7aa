// The command's inputs, streamed (inpdiff/runtime/inputs.py): files, folders walked, and lists of paths.
#pragma once

#include <poll.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace inpdiff::command {

namespace fs = std::filesystem;

inline const char* const kExts[] = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"};

inline bool is_image(const fs::path& p) {
  std::string ext = p.extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* e : kExts)
    if (ext == e) return true;
  return false;
}

struct Job {
  fs::path path;  // absolute, links not resolved (as os.path.abspath)
  fs::path stem;  // OUT/sub/NAME: outputs are stem + ".prob.png" etc.
};

fs::path abs_path(const fs::path& p) { return fs::absolute(p).lexically_normal(); }

// Image files below `root`, sorted, a folder's files before its sub-folders (os.walk's order); output
// folders (OUT, or any holding another run's settings or thumbnails) are skipped.
inline void walk(const fs::path& root, const fs::path& dir, const fs::path& out, std::vector<Job>& jobs) {
  std::vector<fs::path> files, dirs;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) (e.is_directory(ec) ? dirs : files).push_back(e.path());
  std::sort(files.begin(), files.end());
  std::sort(dirs.begin(), dirs.end());
  for (const fs::path& f : files)
    if (is_image(f)) jobs.push_back({abs_path(f), out / fs::relative(f, root).parent_path() / f.stem()});
  for (const fs::path& d : dirs)
    if (abs_path(d) != abs_path(out) && !fs::exists(d / ".trt-localize.json") && !fs::exists(d / ".inpdiff-thumbs"))
      walk(root, d, out, jobs);
}

// A listed path -> the relative path its outputs mirror, never climbing out of OUT (inputs.py mirrored).
inline fs::path mirrored(const std::string& line) {
  fs::path rel;
  for (const fs::path& part : fs::path(line).relative_path())
    if (!part.empty() && part != ".") rel /= part == ".." ? fs::path("__") : part;
  return rel.empty() ? fs::path(line) : rel;
}

// The inputs, in order (inpdiff/runtime/inputs.py iter_jobs): the command-line paths, a folder walked,
// then each --list a line at a time (blank lines and # comments skipped), so that a list of millions is
// never held. A path that does not exist stays a job: it is reported.
class Inputs {
 public:
  // `stop`: set, a wait for the next line of standard input ends (and so does the list).
  Inputs(const std::vector<std::string>& paths, std::vector<std::string> lists, fs::path out, const std::atomic<bool>& stop)
      : lists_(std::move(lists)), out_(std::move(out)), stop_(stop) {
    for (const std::string& arg : paths) {
      fs::path p(arg);
      if (fs::is_directory(p)) walk(p, p, out_, given_);
      else given_.push_back({abs_path(p), out_ / p.stem()});
    }
    for (const std::string& list : lists_)  // unreadable lists are refused before anything starts
      if (list != "-" && !std::ifstream(list)) throw std::runtime_error(list + ": cannot read this list of inputs");
  }

  std::optional<Job> next() {
    if (at_ < given_.size()) return given_[at_++];
    for (std::string line; list_ < lists_.size(); ++list_, file_.close()) {
      const bool stdin_ = lists_[list_] == "-";
      if (!stdin_ && !file_.is_open()) file_.open(lists_[list_]);
      std::istream& in = stdin_ ? std::cin : file_;
      while ((!stdin_ || line_waiting()) && std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        const size_t text = line.find_first_not_of(" \t");
        if (text == std::string::npos || line[text] == '#') continue;
        return Job{abs_path(line), out_ / mirrored(line).parent_path() / fs::path(line).stem()};
      }
    }
    return std::nullopt;
  }

 private:
  // Whether standard input has a line to read, waiting for one (or its end) until stop is set.
  bool line_waiting() const {
    pollfd in{0, POLLIN, 0};
    while (std::cin.rdbuf()->in_avail() <= 0 && !stop_)
      if (::poll(&in, 1, 100) != 0) return true;  // readable, closed, or an error getline will meet
    return !stop_;
  }

  std::vector<std::string> lists_;
  fs::path out_;
  const std::atomic<bool>& stop_;
  std::vector<Job> given_;
  size_t at_ = 0, list_ = 0;
  std::ifstream file_;
};

}  // namespace inpdiff::command
