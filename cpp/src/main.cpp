// trt-localize-cpp [PATH...] [--list FILE] [-o OUT] [--model DIR]: the C++ twin of `trt-localize`
// (inpdiff/runtime/cli.py).
//
// Same output contract: under OUT, per input NAME.prob.png (round(255 p)), NAME.mask.png (0/255),
// NAME.overlay.jpg (NAME.uncertainty.png with --samples N > 1), and one line per input in
// OUT/report.jsonl with the same fields. Same folder rules: OUT/.trt-localize.lock held for the run,
// OUT/.trt-localize.json (settings: a resume with other settings is refused), the claims journal, and
// output names that never land on a file this tool did not write. A run resumes where it stopped,
// from the report and the journal, whichever runtime (Python or C++) wrote them. Not here: the HTML
// gallery, summary.csv, globs, Ray, and decoding in separate processes.
// Exit status: 0 all processed, 1 some inputs failed, 2 bad usage, a bad model or OUT in use, 3 with
// --fail-on-detect when anything was detected, 4 no space left on OUT, 130 interrupted.
#include <fcntl.h>
#include <poll.h>
#include <malloc.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <optional>
#include <future>
#include <iostream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>

#include "inpdiff/image_io.hpp"
#include "inpdiff/localizer.hpp"
#include "inpdiff/spill.hpp"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using namespace inpdiff;

namespace {

const char* const kSuffixes[] = {".prob.png", ".mask.png", ".uncertainty.png", ".overlay.jpg"};
const char* const kExts[] = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"};
const char* const kUsage =
    "usage: trt-localize-cpp [PATH...] [--list FILE] [-o OUT] [--model DIR] [--backend auto|onnxruntime|tensorrt]\n"
    "       [--engines DIR]"
    "       [--steps N] [--samples N] [--seed N] [--threshold P] [--max-side PX] [--max-pixels N]\n"
    "       [--batch N] [--workers N] [--threads N] [--outputs all|report] [--restart] [--fail-on-detect]\n"
    "       [--spill-above N] [--no-copies] [--no-near-copies] [--quiet] [--json]\n";

std::atomic<bool> g_stop{false};  // set by SIGINT/SIGTERM; a signal handler can reach nothing else
extern "C" void on_signal(int) { g_stop = true; }

// A hostile or damaged file can crash a codec or a library outright (a signal, not an exception), and
// the same file would then end every resumed run. So a crash leaves a note in the claims journal of
// each photo in flight: {"crashed_on": PATH, "alone": true if it was the only one, "signal": N}. A
// resumed run works noted photos one at a time, and gives a photo the command died on alone an error
// line instead of a third try. The handler may call only async-signal-safe functions: each slot's
// note is made before its photo is worked, and the handler writes it with write(2).
struct CrashNotes {
  static constexpr int kSlots = 64;  // photos worked side by side at most, and the first photo's decoding ahead
  static constexpr int kAhead = kSlots - 1;
  struct Slot {
    std::atomic<bool> set{false};
    char head[16384];  // {"crashed_on":"PATH"
    size_t length = 0;
  };
  int fd = -1;  // the claims journal, O_APPEND
  Slot slots[kSlots];
};
CrashNotes g_crash;

extern "C" void on_crash(int sig) {
  int in_flight = 0;
  for (const auto& slot : g_crash.slots) in_flight += slot.set.load();
  char tail[64];  // ,"alone":true,"signal":11}\n
  size_t t = 0;
  for (const char* c = in_flight == 1 ? ",\"alone\":true,\"signal\":" : ",\"alone\":false,\"signal\":"; *c;) tail[t++] = *c++;
  char digits[12];
  int n = 0;
  for (int v = sig; v > 0 || n == 0; v /= 10) digits[n++] = static_cast<char>('0' + v % 10);
  while (n) tail[t++] = digits[--n];
  tail[t++] = '}', tail[t++] = '\n';
  static char line[sizeof(CrashNotes::Slot::head) + sizeof tail];
  for (const auto& slot : g_crash.slots) {
    if (!slot.set.load() || g_crash.fd < 0) continue;
    std::memcpy(line, slot.head, slot.length);
    std::memcpy(line + slot.length, tail, t);
    if (::write(g_crash.fd, line, slot.length + t) < 0) break;
  }
  std::raise(sig);  // the handler was reset (SA_RESETHAND): the signal's default action, a core dump
}

// The note of the photo slot `i` is working on (empty path: none).
void note_in_flight(int i, const std::string& path) {
  CrashNotes::Slot& slot = g_crash.slots[i];
  slot.set = false;
  if (path.empty()) return;
  std::string head = json{{"crashed_on", path}}.dump();
  head.pop_back();  // the closing brace: the handler adds the rest
  if (head.size() > sizeof slot.head) return;  // no note for a path this long
  std::memcpy(slot.head, head.data(), head.size());
  slot.length = head.size();
  slot.set = true;
}

void install_crash_notes(int claims_fd) {
  g_crash.fd = claims_fd;
  struct sigaction sa {};
  sa.sa_handler = on_crash;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) sigaction(sig, &sa, nullptr);
}

struct Options {
  std::vector<std::string> paths, lists;  // lists: files of input paths, one a line ("-": standard input)
  fs::path out = "localized", model, engines;
  std::string backend = "auto", outputs = "all";
  LocalizeConfig cfg;
  long max_pixels = kMaxPixels;
  long spill_above = 16000000;  // photos of more pixels are worked from a file, a band of rows at a time
  int threads = 0;
  bool restart = false, fail_on_detect = false, quiet = false, json_lines = false;
};

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

long number(const std::string& flag, const std::string& text, long least) {
  size_t used = 0;
  long v = 0;
  try {
    v = std::stol(text, &used);
  } catch (const std::exception&) {
  }
  if (used != text.size() || text.empty()) throw UsageError(flag + ": not an integer: '" + text + "'");
  if (v < least) throw UsageError(flag + " must be at least " + std::to_string(least) + ", got " + text);
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  o.cfg.workers = 0;  // one per core, below
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(a + " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") { std::cout << kUsage; std::exit(0); }
    else if (a == "-o" || a == "--out") o.out = value();
    else if (a == "--model") o.model = value();
    else if (a == "--list") o.lists.push_back(value());
    else if (a == "--backend") o.backend = value();
    else if (a == "--engines") o.engines = value();
    else if (a == "--steps") o.cfg.steps = static_cast<int>(number(a, value(), 1));
    else if (a == "--samples") o.cfg.samples = static_cast<int>(number(a, value(), 1));
    else if (a == "--seed") o.cfg.seed = static_cast<uint64_t>(number(a, value(), 0));
    else if (a == "--max-side") o.cfg.max_side = static_cast<int>(number(a, value(), 1));
    else if (a == "--max-pixels") o.max_pixels = number(a, value(), 1);
    else if (a == "--spill-above") o.spill_above = number(a, value(), 0);
    else if (a == "--batch") o.cfg.batch = static_cast<int>(number(a, value(), 1));
    else if (a == "--workers") o.cfg.workers = static_cast<int>(number(a, value(), 0));
    else if (a == "--threads") o.threads = static_cast<int>(number(a, value(), 0));
    else if (a == "--outputs") o.outputs = value();
    else if (a == "--threshold") {
      std::string t = value();
      char* end = nullptr;
      double v = std::strtod(t.c_str(), &end);
      if (t.empty() || *end || !(v >= 0 && v <= 1)) throw UsageError("--threshold must be within [0, 1], got " + t);
      o.cfg.threshold = v;
    }
    else if (a == "--restart") o.restart = true;
    else if (a == "--no-copies") o.cfg.copies = false;
    else if (a == "--no-near-copies") o.cfg.near_copies = false;
    else if (a == "--fail-on-detect") o.fail_on_detect = true;
    else if (a == "--quiet") o.quiet = true;
    else if (a == "--json") o.json_lines = true;
    else if (a.size() > 1 && a[0] == '-') throw UsageError("unknown option " + a);
    else o.paths.push_back(a);
  }
  if (o.paths.empty() && o.lists.empty()) throw UsageError("give image files, folders or --list FILE");
  if (std::count(o.lists.begin(), o.lists.end(), "-") > 1) throw UsageError("--list - (standard input) can be given once");
  if (o.outputs != "all" && o.outputs != "report") throw UsageError("--outputs must be all or report");
  return o;
}

bool is_image(const fs::path& p) {
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
void walk(const fs::path& root, const fs::path& dir, const fs::path& out, std::vector<Job>& jobs) {
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
fs::path mirrored(const std::string& line) {
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
  Inputs(const Options& o, const std::atomic<bool>& stop) : o_(o), stop_(stop) {
    for (const std::string& arg : o.paths) {
      fs::path p(arg);
      if (fs::is_directory(p)) walk(p, p, o.out, given_);
      else given_.push_back({abs_path(p), o.out / p.stem()});
    }
    for (const std::string& list : o.lists)  // unreadable lists are refused before anything starts
      if (list != "-" && !std::ifstream(list)) throw std::runtime_error(list + ": cannot read this list of inputs");
  }

  std::optional<Job> next() {
    if (at_ < given_.size()) return given_[at_++];
    for (std::string line; list_ < o_.lists.size(); ++list_, file_.close()) {
      const bool stdin_ = o_.lists[list_] == "-";
      if (!stdin_ && !file_.is_open()) file_.open(o_.lists[list_]);
      std::istream& in = stdin_ ? std::cin : file_;
      while ((!stdin_ || line_waiting()) && std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        const size_t text = line.find_first_not_of(" \t");
        if (text == std::string::npos || line[text] == '#') continue;
        return Job{abs_path(line), o_.out / mirrored(line).parent_path() / fs::path(line).stem()};
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

  const Options& o_;
  const std::atomic<bool>& stop_;
  std::vector<Job> given_;
  size_t at_ = 0, list_ = 0;
  std::ifstream file_;
};

std::string stem_of(const std::string& output) {
  for (const char* s : kSuffixes) {
    std::string suffix(s);
    if (output.size() > suffix.size() && output.compare(output.size() - suffix.size(), suffix.size(), suffix) == 0)
      return output.substr(0, output.size() - suffix.size());
  }
  return "";
}

// OUT: the lock, the report, the settings file and the claims journal, in the Python runtime's formats.
class OutFolder {
 public:
  OutFolder(const fs::path& out, const json& settings, bool restart) : out_(out) {
    if (fs::exists(out) && !fs::is_directory(out))
      throw std::runtime_error(out.string() + ": is a file, not a folder (-o names the output folder)");
    fs::create_directories(out);
    lock_ = ::open((out / ".trt-localize.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (lock_ < 0 || ::flock(lock_, LOCK_EX | LOCK_NB) != 0) {
      char pid[32] = {0};
      if (lock_ >= 0 && ::pread(lock_, pid, sizeof pid - 1, 0) <= 0) pid[0] = 0;
      throw std::runtime_error(out.string() + ": another trt-localize (PID " + (pid[0] ? pid : "unknown") +
                               ") is writing to this folder; wait for it to finish or choose another --out");
    }
    std::string me = std::to_string(::getpid());
    if (::ftruncate(lock_, 0) != 0 || ::pwrite(lock_, me.data(), me.size(), 0) < 0) { /* the PID is a courtesy */ }
    fs::path report = out / "report.jsonl", saved = out / ".trt-localize.json";
    if (restart) fs::remove(report);
    if (fs::exists(report) && fs::exists(saved)) check_settings(saved, settings);
    std::string text = settings.dump(1);
    atomic_write(saved, std::vector<unsigned char>(text.begin(), text.end()));
    load(report);
    report_ = ::open(report.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (report_ < 0) throw fs::filesystem_error("cannot open the report", report, std::error_code(errno, std::generic_category()));
    journal_.open(out / ".trt-localize.claims", std::ios::app);
    journal_fd_ = ::open((out / ".trt-localize.claims").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (restart) {  // every file is tried again
      crashes_.clear();
      journal_ << json{{"restarted", true}}.dump() << "\n";
      journal_.flush();
    }
  }
  ~OutFolder() {
    if (report_ >= 0) {
      ::fsync(report_);
      ::close(report_);
    }
    if (lock_ >= 0) ::close(lock_);
    if (journal_fd_ >= 0) ::close(journal_fd_);
  }

  bool done(const fs::path& p) const { return done_.count(p.string()) > 0; }
  // An earlier run crashed with this photo the only one in flight: the error line to give it instead.
  std::optional<std::string> crashed_on(const fs::path& p) const {
    auto c = crashes_.find(p.string());
    if (c == crashes_.end() || !c->second.alone || done(p)) return std::nullopt;
    return p.string() + ": trt-localize-cpp crashed (signal " + std::to_string(c->second.signal) +
           ") while working on this file alone in an earlier run (damaged or hostile data?); it is not tried again "
           "(--restart tries every file again)";
  }
  // Photos that were in flight, with others, when an earlier run crashed: to be worked one at a time.
  bool crash_suspects() const {
    for (const auto& [path, c] : crashes_)
      if (!done(path) && !c.alone) return true;
    return false;
  }
  int journal_fd() const { return journal_fd_; }
  bool is_output(const fs::path& p) const {
    std::string stem = stem_of(p.string());
    return !stem.empty() && stems_.count(abs_path(stem).string());
  }

  // The job with a stem of its own (the one it had before a kill, if any), journaled before use.
  Job claim(Job job) {
    auto again = resumed_stems_.find(job.path.string());
    if (again != resumed_stems_.end()) {
      job.stem = again->second;
    } else {
      fs::path named = job.stem;
      named += job.path.extension();
      for (int n = 0;; ++n) {
        fs::path c = n == 0 ? job.stem : n == 1 ? named : fs::path(named.string() + "_" + std::to_string(n - 1));
        if (free(c)) { job.stem = c; break; }
      }
      journal_ << json{{"path", job.path.string()}, {"stem", fs::relative(job.stem, out_).string()}}.dump() << "\n";
      journal_.flush();
    }
    stems_.insert(abs_path(job.stem).string());
    return job;
  }

  // Unbuffered, and a line the disk could not take is cut back off at once: a full disk leaves whole
  // lines only, with no buffer left to flush half a line at exit (report.py's Report.add does the same).
  void add(const json& line) {
    std::string text = line.dump() + "\n";
    off_t start = ::lseek(report_, 0, SEEK_END);
    for (size_t written = 0; written < text.size();) {
      ssize_t n = ::write(report_, text.data() + written, text.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int err = n < 0 ? errno : ENOSPC;
        if (start < 0 || ::ftruncate(report_, start) != 0) { /* the next run's drop_torn_tail cuts it */ }
        throw fs::filesystem_error("writing the report failed", out_ / "report.jsonl", std::error_code(err, std::generic_category()));
      }
      written += static_cast<size_t>(n);
    }
    done_.insert(line["path"].get<std::string>());
  }

 private:
  void check_settings(const fs::path& saved, const json& now) {
    json before;
    try {
      std::ifstream in(saved);
      before = json::parse(in);
    } catch (const json::exception& e) {
      throw std::runtime_error(saved.string() + ": unreadable settings file (" + e.what() + "); restore it, or add --restart");
    }
    std::string changed;
    for (const auto& [key, value] : now.items())
      if (!before.contains(key) || before[key] != value) changed += (changed.empty() ? "" : ", ") + key;
    if (!changed.empty())
      throw std::runtime_error(out_.string() + " holds results made with other settings (" + changed +
                               "); run with the same settings to resume, choose another --out, or add --restart");
  }

  void load(const fs::path& report) {
    drop_torn_tail(report);
    std::ifstream in(report);
    for (std::string raw; std::getline(in, raw);) {  // an unparsable line: that input is redone
      json line = json::parse(raw, nullptr, false);
      if (line.is_discarded() || !line.is_object() || !line.contains("path")) continue;
      done_.insert(line["path"].get<std::string>());
      const json& outputs = line.contains("outputs") && line["outputs"].is_object() ? line["outputs"] : json::object();
      for (const auto& output : outputs)
        if (std::string stem = output.is_string() ? stem_of(output.get<std::string>()) : ""; !stem.empty())
          stems_.insert(abs_path(stem).string());
    }
    drop_torn_tail(out_ / ".trt-localize.claims");  // or this run's first claim would join the torn line
    std::ifstream claims(out_ / ".trt-localize.claims");
    for (std::string raw; std::getline(claims, raw);) {
      json c = json::parse(raw, nullptr, false);
      if (!c.is_discarded() && c.contains("restarted")) crashes_.clear();  // notes before a --restart are void
      if (!c.is_discarded() && c.contains("crashed_on") && c["crashed_on"].is_string()) {
        Crash& crash = crashes_[c["crashed_on"].get<std::string>()];
        crash.alone = crash.alone || c.value("alone", false);
        crash.signal = c.value("signal", 0);
      }
      if (c.is_discarded() || !c.contains("path") || !c.contains("stem")) continue;
      fs::path stem = out_ / c["stem"].get<std::string>();
      stems_.insert(abs_path(stem).string());
      if (!done_.count(c["path"].get<std::string>())) resumed_stems_[c["path"].get<std::string>()] = stem;
    }
  }

  // A kill may leave half a line at the end: cut it off, so that the next line starts on its own.
  // Reads from the end only: the journals of a large run are long, and are read whole just after.
  static void drop_torn_tail(const fs::path& path) {
    std::error_code ec;
    const auto size = static_cast<std::streamoff>(fs::file_size(path, ec));
    if (ec || size == 0) return;
    std::ifstream in(path, std::ios::binary);
    std::streamoff end = size;
    std::string chunk;
    do {  // back from the end, a chunk at a time, to the last newline
      const std::streamoff start = std::max<std::streamoff>(0, end - 4096);
      chunk.resize(static_cast<size_t>(end - start));
      in.seekg(start).read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      if (auto nl = chunk.rfind('\n'); nl != std::string::npos) {
        if (start + static_cast<std::streamoff>(nl) + 1 != size) fs::resize_file(path, start + nl + 1);
        return;
      }
      end = start;
    } while (end > 0);
    fs::resize_file(path, 0);  // no complete line at all
  }

  bool free(const fs::path& stem) const {
    if (stems_.count(abs_path(stem).string())) return false;
    for (const char* s : kSuffixes) {
      std::error_code ec;
      if (fs::exists(fs::symlink_status(stem.string() + s, ec))) return false;
    }
    return true;
  }

  struct Crash {
    bool alone = false;
    int signal = 0;
  };
  fs::path out_;
  int lock_ = -1, report_ = -1, journal_fd_ = -1;
  std::unordered_map<std::string, Crash> crashes_;
  std::ofstream journal_;
  std::unordered_set<std::string> done_, stems_;
  std::unordered_map<std::string, fs::path> resumed_stems_;
};

// A detected pixel of the overlay (RGB): tinted red.
void tint(cv::Vec3b& p) {
  for (int c = 0; c < 3; ++c) p[c] = static_cast<uint8_t>(p[c] * 0.55 + (c == 0 ? 255 : 0) * 0.45);
}

int outline_width(const cv::Mat& mask) {
  return std::max(1, static_cast<int>(std::nearbyint(std::max(mask.rows, mask.cols) / 400.0)));
}

// The image with detected regions tinted red and outlined (outputs.py overlay), drawn on `out` itself:
// the photo is not needed afterwards, and a copy of a 48 MP one is 144 MB.
void draw_overlay(cv::Mat& out, const Result& r) {
  for (int y = 0; y < out.rows; ++y)
    for (int x = 0; x < out.cols; ++x)
      if (r.mask.at<uint8_t>(y, x)) tint(out.at<cv::Vec3b>(y, x));
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(r.mask, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  cv::drawContours(out, contours, -1, cv::Scalar(255, 255, 0), outline_width(r.mask));
}

constexpr int kOutBand = 256;  // rows of a photo in a file written at a time

// draw_overlay's picture of a photo in a file, rows y0.. (outputs.py overlay_bands): the same tint; the
// outline, of the same width, follows every edge of the mask (holes' too), found band by band, where
// draw_overlay traces outer contours over the whole mask.
cv::Mat overlay_band(const SpilledMat& photo, const Result& r, int y0) {
  const int H = r.mask.rows, y1 = std::min(H, y0 + kOutBand), t = outline_width(r.mask);
  const int a = std::max(0, y0 - t - 1), b = std::min(H, y1 + t + 1);  // a halo wider than the pen
  const cv::Mat m = r.mask.rowRange(a, b);
  cv::Mat eroded, line;
  cv::erode(m, eroded, cv::Mat::ones(3, 3, CV_8U));
  cv::dilate(m - eroded, line, cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(t, t)));
  r.mask_file.read(b - a);
  cv::Mat rows = photo.mat().rowRange(y0, y1).clone();
  photo.read(y1 - y0);
  for (int y = 0; y < rows.rows; ++y) {
    const uint8_t *mb = m.ptr<uint8_t>(y + y0 - a), *lb = line.ptr<uint8_t>(y + y0 - a);
    cv::Vec3b* p = rows.ptr<cv::Vec3b>(y);
    for (int x = 0; x < rows.cols; ++x) {
      if (mb[x]) tint(p[x]);
      if (lb[x]) p[x] = cv::Vec3b(255, 255, 0);
    }
  }
  return rows;
}

// A map of a photo in a file as 8-bit rows y0.. (`scale` and clipped to [0, 1] first where `clip`).
Bands map_bands(const cv::Mat& map, const SpilledMat& file, double scale, bool clip) {
  return [&map, &file, scale, clip](int y0) {
    const cv::Mat rows = map.rowRange(y0, std::min(map.rows, y0 + kOutBand));
    cv::Mat out;
    if (clip) cv::Mat(cv::min(rows * 2, 1.0)).convertTo(out, CV_8U, scale);
    else rows.convertTo(out, CV_8U, scale);
    file.read(rows.rows);
    return out;
  };
}

// The maps and overlay of one image, each written atomically -> {kind: path}; draws on `rgb`, and spends
// it. A photo in a file (`photo`, and its Result's maps) is written a band of rows at a time.
json write_outputs(const Job& job, cv::Mat& rgb, const SpilledMat& photo, const Result& r, const std::string& outputs) {
  json written = json::object();
  auto path = [&](const char* suffix) { return fs::path(job.stem.string() + suffix); };
  if (outputs == "report" && !r.inpainted) return written;
  // Each map is encoded on a thread of its own while the overlay is drawn and encoded here.
  auto png = [&](const char* suffix, const cv::Mat& map, const SpilledMat& file, bool stretch) {
    return std::async(std::launch::async, [&, suffix, stretch] {
      if (!photo.empty()) return write_png_bands(path(suffix), map.size(), 1, map_bands(map, file, 255.0, stretch));
      cv::Mat map8;  // saturate_cast rounds half to even, as np.round
      (stretch ? cv::Mat(cv::min(map * 2, 1.0)) : map).convertTo(map8, CV_8U, 255.0);
      write_png(path(suffix), map8);
    });
  };
  auto prob = png(".prob.png", r.prob, r.prob_file, false);
  if (outputs == "report") {
    prob.get();
    written["prob"] = path(".prob.png").string();
    return written;
  }
  auto mask = png(".mask.png", r.mask, r.mask_file, false);
  if (!r.uncertainty.empty()) png(".uncertainty.png", r.uncertainty, r.uncertainty_file, true).get();
  if (!photo.empty()) {
    write_jpeg_bands(path(".overlay.jpg"), r.prob.size(), [&](int y0) { return overlay_band(photo, r, y0); }, 90);
  } else {
    draw_overlay(rgb, r);
    write_jpeg(path(".overlay.jpg"), rgb, 90);
  }
  prob.get();  // rethrows what failed there
  mask.get();
  written["prob"] = path(".prob.png").string();
  written["mask"] = path(".mask.png").string();
  if (!r.uncertainty.empty()) written["uncertainty"] = path(".uncertainty.png").string();
  written["overlay"] = path(".overlay.jpg").string();
  return written;
}

// A photo held whole, or one of more than --spill-above pixels in a file (`file`), to be worked a band
// of rows at a time: a JPEG is decoded straight into it; other formats, and JPEGs that cannot be
// streamed, are decoded whole first (for that moment, the photo is held whole).
struct Decoded {
  cv::Mat rgb;
  SpilledMat file;
};

Decoded decode(const fs::path& path, const Options& o) {
  const bool large = o.spill_above && !o.cfg.max_side;  // max_side: downscaled first, then small
  if (large && header_pixels(path) > o.spill_above)
    if (SpilledMat file = spill_image(path, o.max_pixels); !file.empty()) return {cv::Mat(), file};
  cv::Mat rgb = read_image(path, o.max_pixels);
  if (!large || static_cast<long>(rgb.total()) <= o.spill_above) return {rgb, {}};
  RowWriter file(rgb.cols, CV_8UC3);
  file.write(rgb);
  return {cv::Mat(), file.done()};
}

constexpr long kSideBySidePixels = 4000000;

// Photos in flight hold at most `limit` pixels in all (a photo worked from a file counts as `limit`,
// one whose size its header does not give as `limit` too), but a photo is always let in when nothing
// else is in flight: a batch of large photos holds about one photo's memory (as the Python pipeline's
// _PixelBudget). 0: no limit.
class PixelBudget {
 public:
  explicit PixelBudget(long limit) : limit_(limit) {}
  long admit(const fs::path& path) {  // -> the pixels counted, for release()
    if (!limit_) return 0;
    const long read = header_pixels(path), pixels = read ? std::min(limit_, read) : limit_;
    std::unique_lock<std::mutex> lock(mu_);
    room_.wait(lock, [&] { return !in_flight_ || used_ + pixels <= limit_; });
    used_ += pixels, ++in_flight_;
    return pixels;
  }
  void release(long pixels) {
    if (!limit_) return;
    std::lock_guard<std::mutex> lock(mu_);
    used_ -= pixels, --in_flight_;
    room_.notify_all();
  }

 private:
  long limit_, used_ = 0;
  int in_flight_ = 0;
  std::mutex mu_;
  std::condition_variable room_;
};

bool disk_full(const std::exception& e) {
  auto* fe = dynamic_cast<const fs::filesystem_error*>(&e);
  return fe && (fe->code().value() == ENOSPC || fe->code().value() == EDQUOT);
}

}  // namespace

int main(int argc, char** argv) {
#ifdef M_ARENA_MAX
  // glibc gives threads heaps of their own, and each kept a photo's freed temporaries: five 12 MP photos
  // peaked at 546 MB with them and 450 MB with two, at the same speed (inpdiff/runtime/malloc.py).
  mallopt(M_ARENA_MAX, 2);
#endif
  Options o;
  try {
    o = parse(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << kUsage << "trt-localize-cpp: error: " << e.what() << "\n";
    return 2;
  }
  std::unique_ptr<Inputs> inputs;
  std::optional<Job> first_job;  // read before anything is created under OUT
  try {
    std::ios::sync_with_stdio(false);  // so that std::cin's own buffer tells what it holds
    inputs = std::make_unique<Inputs>(o, g_stop);
    first_job = inputs->next();
  } catch (const std::exception& e) {
    std::cerr << "trt-localize-cpp: " << e.what() << "\n";
    return 2;
  }
  if (!first_job) {
    std::cerr << "trt-localize-cpp: no images found\n";
    return 2;
  }
  std::unique_ptr<Localizer> loc;
  std::unique_ptr<OutFolder> folder;
  std::future<Decoded> first;  // the first photo, decoded while the backend loads
  int photo_slots = 1;
  try {
    ModelDir model = ModelDir::load(o.model.empty() ? default_model_dir() : o.model);
    Localizer::check(model, o.cfg);
    json settings = {{"model", model.files}, {"steps", Localizer::steps_for(model, o.cfg)}, {"samples", o.cfg.samples},
                     {"seed", o.cfg.seed}, {"mask_threshold", Localizer::mask_threshold_for(model, o.cfg)},
                     {"max_side", o.cfg.max_side ? json(o.cfg.max_side) : json(nullptr)}, {"copies", o.cfg.copies},
                     {"near_copies", o.cfg.copies && o.cfg.near_copies}, {"outputs", o.outputs},
                     {"score", model.manifest.contains("score") ? json(model.manifest["score"]) : json(nullptr)}};
    folder = std::make_unique<OutFolder>(o.out, settings, o.restart);
    install_crash_notes(folder->journal_fd());
    // The first photo decodes while the backend loads (its sessions take about as long as a 4 MP
    // PNG); only now, so that a crash in it is noted, and not where a crash was noted before.
    const Job& j = *first_job;
    if (!folder->done(j.path) && !folder->is_output(j.path) && !folder->crash_suspects() && !folder->crashed_on(j.path)) {
      note_in_flight(CrashNotes::kAhead, j.path.string());
      first = std::async(std::launch::async, [&] { return decode(j.path, o); });
    }
    // As the Python runtime on a CPU: one single-threaded call per core beats one call on every core.
    const int cores = o.threads ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    if (o.cfg.workers == 0) o.cfg.workers = cores;
    o.cfg.stop = &g_stop;  // Ctrl-C or SIGTERM gives up a photo in flight (the next run redoes it)
    auto backend = make_backend(o.backend, model, std::max(1, cores / o.cfg.workers), o.engines.string());
    // Side by side where the backend takes concurrent calls; one at a time after a crash with several
    // in flight, so that a second crash names its photo.
    photo_slots = backend->concurrent() && !folder->crash_suspects() ? std::min(cores, CrashNotes::kAhead) : 1;
    loc = std::make_unique<Localizer>(std::move(model), std::move(backend), o.cfg);
  } catch (const std::exception& e) {
    std::cerr << "trt-localize-cpp: " << e.what() << "\n";
    return 2;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const auto start = std::chrono::steady_clock::now();
  int done = 0, failed = 0, detected = 0, status = 0;
  std::set<std::string> seen;
  std::mutex mu, inputs_mu;  // the folder, the counters and the terminal; the inputs
  std::optional<Job> upcoming = first_job;
  std::once_flag warned_of_tmpfs;
  // Photos are worked side by side, one per core where the backend takes concurrent calls (ONNX
  // Runtime): a photo's serial parts (decoding, the regions, writing) and its last, uneven batch of
  // tiles leave a core idle, which the other photo's tiles take. Only while the photos in flight hold
  // at most 4 MP (with --spill-above 0, no limit, as in Python): a larger photo keeps the cores busy
  // with its own tiles, and two 4 MP photos' copy searches (up to 290 MB each) went past 600 MB.
  PixelBudget budget(o.spill_above ? std::min(o.spill_above, kSideBySidePixels) : 0);
  auto work = [&](int slot) {
    for (;;) {
      Job job;
      bool is_first = false;
      for (;;) {
        std::optional<Job> j;
        {  // a list on standard input may wait for its next line: the folder is not locked meanwhile
          std::lock_guard<std::mutex> lock(inputs_mu);
          if (!g_stop) {
            is_first = upcoming.has_value();
            j = is_first ? std::exchange(upcoming, std::nullopt) : inputs->next();
          }
        }
        std::lock_guard<std::mutex> lock(mu);
        if (g_stop && !status) status = 130;
        if (status || !j) return;
        if (folder->done(j->path) || folder->is_output(j->path) || !seen.insert(j->path.string()).second) continue;
        job = *j;
        break;
      }
      json line = {{"path", job.path.string()}, {"mask_threshold", loc->mask_threshold()},
                   {"score_threshold", loc->model().score ? json(loc->model().score->threshold) : json(nullptr)},
                   {"steps", loc->steps()}, {"samples", o.cfg.samples}, {"backend", loc->backend().name()}};
      std::string error;
      const long pixels = budget.admit(job.path);
      const auto t0 = std::chrono::steady_clock::now();
      note_in_flight(slot, job.path.string());  // before its claim: a crash from then on names it
      if (is_first) note_in_flight(CrashNotes::kAhead, "");  // named since it was decoded ahead: now by its slot
      try {
        {
          std::lock_guard<std::mutex> lock(mu);
          job = folder->claim(job);
        }
        if (auto crashed = folder->crashed_on(job.path)) throw ImageError(*crashed);
        Decoded d = is_first && first.valid() ? first.get() : decode(job.path, o);
        if (!d.file.empty())
          std::call_once(warned_of_tmpfs, [] {
            if (const std::string folder = temporary_folder_in_memory(); !folder.empty())
              std::cerr << "trt-localize-cpp: warning: " << folder << " is on a tmpfs: photos above --spill-above are "
                        << "worked from files there, which are then held in memory after all; set TMPDIR to a folder on disk\n";
          });
        Result r = d.file.empty() ? loc->localize(d.rgb) : loc->localize(d.file);
        line["outputs"] = write_outputs(job, d.rgb, d.file, r, o.outputs);
        line["score"] = std::round(r.score * 1e4) / 1e4;
        line["inpainted"] = r.inpainted;
        line["regions"] = r.regions;
      } catch (const ImageError& e) {
        error = e.what();
      } catch (const std::exception& e) {
        const bool stopped = dynamic_cast<const Stopped*>(&e), full = disk_full(e);
        if (stopped || full) {  // not this image's fault: the next run redoes it
          note_in_flight(slot, "");
          budget.release(pixels);
          std::lock_guard<std::mutex> lock(mu);
          if (full || !status) status = full ? 4 : 130;
          return;
        }
        error = job.path.string() + ": " + e.what();
      }
      note_in_flight(slot, "");
      budget.release(pixels);
      if (!error.empty()) {
        line.erase("outputs");
        line.update({{"score", nullptr}, {"inpainted", nullptr}, {"regions", json::array()}, {"error", error}});
      }
      line["elapsed_ms"] = std::round(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() * 10) / 10;
      std::lock_guard<std::mutex> lock(mu);
      if (status == 4) return;  // the disk is full: lines of the photos still in flight would not fit either
      try {
        folder->add(line);
      } catch (const std::exception& e) {
        status = disk_full(e) ? 4 : 1;
        std::cerr << "trt-localize-cpp: " << e.what() << "\n";
        return;
      }
      ++done;
      failed += !error.empty();
      detected += line["inpainted"] == true;
      if (o.json_lines) std::cout << line.dump() << std::endl;
      else if (!error.empty()) std::cerr << "ERROR " << error << std::endl;
      else if (!o.quiet)
        std::printf("%s: %s, score %.3f, %.0f ms\n", job.path.c_str(),
                    line["inpainted"] == true ? ("INPAINTED (" + std::to_string(line["regions"].size()) + " region(s))").c_str() : "clean",
                    line["score"].get<double>(), line["elapsed_ms"].get<double>());
    }
  };
  std::vector<std::thread> slots;
  for (int i = 1; i < photo_slots; ++i) slots.emplace_back(work, i);
  work(0);
  for (std::thread& t : slots) t.join();
  std::fflush(stdout);
  folder.reset();
  loc.reset();
  if (status == 4) {
    std::cerr << "trt-localize-cpp: no space left on " << o.out.string() << "/: stopped after " << done
              << " image(s); free some space and run the same command again\n";
    return 4;
  }
  if (status) {
    std::cerr << "trt-localize-cpp: stopped after " << done << " image(s) this run; run the same command again to resume\n";
    return status;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(o.json_lines ? stderr : stdout, "%d image(s) in %.1fs: %d with inpainted regions, %d failed; outputs in %s/\n",
               done, secs, detected, failed, o.out.c_str());
  if (failed) return 1;
  return o.fail_on_detect && detected ? 3 : 0;
}
