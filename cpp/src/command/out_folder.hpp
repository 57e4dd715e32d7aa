// The output folder (inpdiff/runtime/out_folder.py, report.py): the lock, the report, the settings file
// and the claims journal, in the Python runtime's formats, and the notes a crash leaves in the journal.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "command/inputs.hpp"
#include "inpdiff/image_io.hpp"

namespace inpdiff::command {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

inline const char* const kSuffixes[] = {".prob.png", ".mask.png", ".uncertainty.png", ".overlay.jpg"};

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
inline CrashNotes g_crash;  // the crash handler's: a signal handler can reach nothing else

extern "C" inline void on_crash(int sig) {
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
inline void note_in_flight(int i, const std::string& path) {
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

inline void install_crash_notes(int claims_fd) {
  g_crash.fd = claims_fd;
  struct sigaction sa {};
  sa.sa_handler = on_crash;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) sigaction(sig, &sa, nullptr);
}

inline std::string stem_of(const std::string& output) {
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
      if (char* end = std::strchr(pid, '\n')) *end = 0;  // trt-localize keeps its photos in flight below
      throw std::runtime_error(out.string() + ": another trt-localize (PID " + (pid[0] ? pid : "unknown") +
                               ") is writing to this folder; wait for it to finish or choose another --out");
    }
    const std::string left = read_all(lock_);  // what a crash of the last run may have left: before the PID
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
    } else {
      note_python_crash(left);
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
    return p.string() + ": an earlier run crashed (signal " + std::to_string(c->second.signal) +
           ") while working on this file alone (damaged or hostile data?); it is not tried again "
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
    // Settings recorded since a later release, with the value that runs before them worked with (report.py's).
    if (before.is_object() && !before.contains("flips")) before["flips"] = 1;
    std::string changed;
    for (const auto& [key, value] : now.items())
      if (!before.contains(key) || before[key] != value) changed += (changed.empty() ? "" : ", ") + key;
    if (!changed.empty())
      throw std::runtime_error(out_.string() + " holds results made with other settings (" + changed +
                               "); run with the same settings to resume, choose another --out, or add --restart");
  }

  // A crash with `path` in flight: once crashed on alone, it stays so (until a --restart).
  void note(const std::string& path, bool alone, int signal) {
    Crash& crash = crashes_[path];
    crash.alone = crash.alone || alone;
    crash.signal = signal;
  }

  static std::string read_all(int fd) {
    std::string text;
    char buf[4096];
    for (ssize_t n; (n = ::pread(fd, buf, sizeof buf, static_cast<off_t>(text.size()))) > 0 && text.size() < (1 << 20);)
      text.append(buf, static_cast<size_t>(n));
    return text;
  }

  // trt-localize (Python) keeps its photos in flight on the lock's second line, and faulthandler appends
  // "Fatal Python error: <signal>" below them when it crashes; they become notes as this command's own.
  void note_python_crash(const std::string& lock) {
    const size_t first = lock.find('\n'), second = first == std::string::npos ? first : lock.find('\n', first + 1);
    if (second == std::string::npos) return;
    const size_t fatal = lock.find("Fatal Python error: ", second);
    if (fatal == std::string::npos) return;
    json paths = json::parse(lock.substr(first + 1, second - first - 1), nullptr, false);
    if (paths.is_discarded() || !paths.is_array()) return;
    const std::string name = lock.substr(fatal + 20, lock.find('\n', fatal) - fatal - 20);
    const int sig = name == "Segmentation fault" ? SIGSEGV : name == "Bus error" ? SIGBUS : name == "Aborted" ? SIGABRT
                    : name.rfind("Floating", 0) == 0 ? SIGFPE : name == "Illegal instruction" ? SIGILL : 0;
    for (const auto& p : paths) {
      if (!p.is_string()) continue;
      note(p.get<std::string>(), paths.size() == 1, sig);
      journal_ << json{{"crashed_on", p}, {"alone", paths.size() == 1}, {"signal", sig}}.dump() << "\n";
    }
    journal_.flush();
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
        note(c["crashed_on"].get<std::string>(), c.value("alone", false), c.value("signal", 0));
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

}  // namespace inpdiff::command
