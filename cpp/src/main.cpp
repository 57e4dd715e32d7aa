// trt-localize-cpp [PATH...] [--list FILE] [-o OUT] [--model DIR|NAME]: the C++ twin of `trt-localize`
// (inpdiff/runtime/cli.py).
//
// Same output contract: under OUT, per input NAME.prob.png (round(255 p)), NAME.mask.png (0/255),
// NAME.overlay.jpg (NAME.uncertainty.png with --samples N > 1), and one line per input in
// OUT/report.jsonl with the same fields. Same folder rules: OUT/.trt-localize.lock held for the run,
// OUT/.trt-localize.json (settings: a resume with other settings is refused), the claims journal, and
// output names that never land on a file this tool did not write. A run resumes where it stopped,
// from the report and the journal, whichever runtime (Python or C++) wrote them. Not here: the HTML
// gallery, summary.csv, globs, Ray, and decoding in separate processes. The command's own modules are
// in command/: its inputs, its output folder (and the notes a crash leaves there), and its outputs.
// Exit status: 0 all processed, 1 some inputs failed, 2 bad usage, a bad model or OUT in use, 3 with
// --fail-on-detect when anything was detected, 4 no space left on OUT, 130 interrupted.
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <future>
#include <iostream>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "command/inputs.hpp"
#include "command/out_folder.hpp"
#include "command/outputs.hpp"
#include "inpdiff/image_io.hpp"
#include "inpdiff/localizer.hpp"
#include "inpdiff/spill.hpp"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using namespace inpdiff;
using namespace inpdiff::command;

namespace {

const char* const kUsage =
    "usage: trt-localize-cpp [PATH...] [--list FILE] [-o OUT] [--model DIR|NAME]\n"
    "       [--backend auto|onnxruntime|tensorrt] [--engines DIR]\n"
    "       [--steps N] [--samples N] [--seed N] [--threshold P] [--max-side PX] [--max-tile PX] [--flips 1|2|4|8]\n"
    "       [--max-pixels N] [--batch N] [--workers N] [--threads N] [--outputs all|report] [--restart] [--fail-on-detect]\n"
    "       [--spill-above N] [--no-copies] [--no-near-copies] [--quiet] [--json]\n";

std::atomic<bool> g_stop{false};  // set by SIGINT/SIGTERM; a signal handler can reach nothing else
extern "C" void on_signal(int) { g_stop = true; }

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
    else if (a == "--max-tile") o.cfg.max_tile = static_cast<int>(number(a, value(), 0));
    else if (a == "--flips") o.cfg.flips = static_cast<int>(number(a, value(), 1));
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

// A photo held whole, or one of more than --spill-above pixels in a file (`file`), to be worked a band
// of rows at a time: a JPEG is decoded straight into it; other formats, and JPEGs that cannot be
// streamed, are decoded whole first (for that moment, the photo is held whole).
struct Decoded {
  cv::Mat rgb;
  SpilledMat file;
};

// `pixels`: its header's width x height (0: not given).
Decoded decode(const fs::path& path, long pixels, const Options& o) {
  const bool large = o.spill_above && !o.cfg.max_side;  // max_side: downscaled first, then small
  if (large && pixels > o.spill_above)
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
  long admit(long header_pixels) {  // its header's width x height (0: not given) -> the pixels counted
    if (!limit_) return 0;
    const long pixels = header_pixels ? std::min(limit_, header_pixels) : limit_;
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
    inputs = std::make_unique<Inputs>(o.paths, o.lists, o.out, g_stop);
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
    std::string why;  // a CPU INT8 model on a CPU without int8 dot products: its FP32 model instead
    ModelDir model = runnable_here(ModelDir::load(model_path(o.model)), cpu_int8_dot_product(), why);
    if (!why.empty()) std::cerr << "trt-localize-cpp: warning: " << why << "\n";
    Localizer::check(model, o.cfg);
    json settings = {{"model", model.files}, {"steps", Localizer::steps_for(model, o.cfg)}, {"samples", o.cfg.samples},
                     {"seed", o.cfg.seed}, {"mask_threshold", Localizer::mask_threshold_for(model, o.cfg)},
                     {"max_side", o.cfg.max_side ? json(o.cfg.max_side) : json(nullptr)}, {"max_tile", o.cfg.max_tile},
                     {"flips", o.cfg.flips}, {"copies", o.cfg.copies},
                     {"near_copies", o.cfg.copies && o.cfg.near_copies}, {"outputs", o.outputs},
                     {"score", model.manifest.contains("score") ? json(model.manifest["score"]) : json(nullptr)}};
    folder = std::make_unique<OutFolder>(o.out, settings, o.restart);
    install_crash_notes(folder->journal_fd());
    // The first photo decodes while the backend loads (its sessions take about as long as a 4 MP
    // PNG); only now, so that a crash in it is noted, and not where a crash was noted before.
    const Job& j = *first_job;
    if (!folder->done(j.path) && !folder->is_output(j.path) && !folder->crash_suspects() && !folder->crashed_on(j.path)) {
      note_in_flight(CrashNotes::kAhead, j.path.string());
      first = std::async(std::launch::async, [&] { return decode(j.path, header_pixels(j.path), o); });
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
      // Its size, read once, for the pixel budget and the choice to work it from a file (both off without --spill-above).
      const long header = o.spill_above ? header_pixels(job.path) : 0, pixels = budget.admit(header);
      const auto t0 = std::chrono::steady_clock::now();
      note_in_flight(slot, job.path.string());  // before its claim: a crash from then on names it
      if (is_first) note_in_flight(CrashNotes::kAhead, "");  // named since it was decoded ahead: now by its slot
      try {
        {
          std::lock_guard<std::mutex> lock(mu);
          job = folder->claim(job);
        }
        if (auto crashed = folder->crashed_on(job.path)) throw ImageError(*crashed);
        Decoded d = is_first && first.valid() ? first.get() : decode(job.path, header, o);
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
