// The localizer: tiling, blending, the noise and the decision, as inpdiff/runtime/localizer.py does them.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include <opencv2/core.hpp>

#include "inpdiff/backend.hpp"
#include "inpdiff/copies.hpp"
#include "inpdiff/model_dir.hpp"
#include "inpdiff/spill.hpp"

namespace inpdiff {

struct LocalizeConfig {
  int steps = 0;                     // 0: the model's default (10)
  int samples = 1;                   // ensemble size; uncertainty = std across samples
  uint64_t seed = 0;
  std::optional<double> threshold;   // mask threshold; empty: the model's calibrated one
  int max_side = 0;                  // downscale images whose longer side exceeds this (0: never)
  int batch = 2;                     // tiles per backend call, counted in tiles of the model's size (256)
  int workers = 1;                   // backend calls in flight, for all calls of localize() together (a
                                     // backend that allows it: ONNX Runtime)
  int overlap = -1;                  // minimum overlap of neighbouring tiles (-1: an eighth of the model's tile)
  int max_tile = 512;                // largest tile side where the graphs take any size (0: the model's tile)
  int flips = 1;                     // 1, 2, 4 or 8: views of each tile (kFlips), their maps averaged
  int min_region = 16;               // connected regions smaller than this (pixels) are not reported
  bool copies = true;                // fuse the copy evidence (copies.hpp) into the probability map
  bool near_copies = true;           // and its near copies (re-saved exemplar fills), at a cost in speed
  // Set (by a signal handler, say), a localize() call in flight gives up between batches of tiles and
  // bands of the copy search, and throws Stopped: a large photo need not be finished first.
  const std::atomic<bool>* stop = nullptr;
};

// A localize() call given up because LocalizeConfig::stop was set.
class Stopped : public std::runtime_error {
 public:
  Stopped() : std::runtime_error("stopped") {}
};

struct Region {
  int x = 0, y = 0, width = 0, height = 0;
  long area = 0;
  double mean_prob = 0.0;
  std::optional<double> copied;  // share of its pixels that exactly repeat pixels elsewhere (empty: not looked for)
};
// A region as report.jsonl writes it, for nlohmann::json and ordered_json alike: `j["regions"] = regions;`.
template <class Json>
void to_json(Json& j, const Region& g) {
  j = {{"bbox", {g.x, g.y, g.width, g.height}}, {"area", g.area}, {"mean_prob", g.mean_prob},
       {"copied", g.copied ? Json(*g.copied) : Json(nullptr)}};
}

struct Result {
  cv::Mat prob;         // CV_32F in [0, 1], the input's size
  cv::Mat uncertainty;  // CV_32F, std across samples (empty for one sample)
  cv::Mat mask;         // CV_8U, 1 where prob >= the mask threshold
  // For a photo in a file (localize(const SpilledMat&)), the three maps above are views of these,
  // to be read a band at a time (SpilledMat::read); empty otherwise.
  SpilledMat prob_file, uncertainty_file, mask_file;
  double score = 0.0;   // image-level, calibrated where the model carries a calibration
  bool inpainted = false;
  std::vector<Region> regions;
  int tiles = 0;
};

// Threads that run the backend's calls, shared by every localize() call in flight: photos worked side
// by side keep the cores busy with each other's tiles, and one photo alone has all of them.
class TaskPool {
 public:
  explicit TaskPool(int threads);
  ~TaskPool();
  void submit(std::function<void()> task);  // run in submission order, on the first free thread

 private:
  std::vector<std::thread> threads_;
  std::deque<std::function<void()>> queue_;
  std::mutex mu_;
  std::condition_variable ready_;
  bool stop_ = false;
};

class Localizer {
 public:
  // Refuses an INT8 or FP16 model without its own score calibration, as the Python runtime does.
  Localizer(ModelDir model, std::unique_ptr<Backend> backend, LocalizeConfig config = {});
  // What a Localizer of `model` and `config` checks and uses, before its backend exists: check()
  // throws what the constructor would (but for the backend's tile) and gives the tiles' overlap.
  static int check(const ModelDir& model, const LocalizeConfig& config);
  static int steps_for(const ModelDir& model, const LocalizeConfig& config);
  static double mask_threshold_for(const ModelDir& model, const LocalizeConfig& config);
  Result localize(const cv::Mat& rgb);  // CV_8UC3 RGB
  // A photo in a file, worked a band of rows at a time: the same maps, regions and score; held whole
  // where it is to be downscaled (max_side) or padded.
  Result localize(const SpilledMat& rgb);

  const ModelDir& model() const { return model_; }
  const LocalizeConfig& config() const { return config_; }
  const Backend& backend() const { return *backend_; }
  int steps() const { return static_cast<int>(rows_.size()); }
  double mask_threshold() const { return mask_threshold_; }

 private:
  struct Plan;    // the image cut into tiles
  struct Finish;  // the blended map raised, thresholded, its regions found and scored, a band at a time
  Plan plan(const cv::Mat& rgb) const;
  std::vector<float> infer(const Plan& p, size_t first, int n) const;  // tiles [first, first + n) -> maps
  // Every tile inferred, and handed to `take` (its index, its per-sample maps) in plan order.
  void run(const Plan& p, const std::function<void(size_t, const float*)>& take) const;
  std::vector<cv::Mat> blend(const Plan& p) const;  // every tile inferred and blended: per-sample maps
  std::vector<float> axis_weight(const Plan& p, int length, bool rows) const;  // the tiles' summed ramps
  cv::Size tile_for(cv::Size size) const;  // the tile size of a plan for a (downscaled) image of `size`
  double score(double statistic) const;  // calibrated where the model carries a calibration
  void check_stop() const;               // throws Stopped where config.stop is set

  ModelDir model_;
  std::unique_ptr<Backend> backend_;
  LocalizeConfig config_;
  // The copy search's settings (no near copies where config says so): a member, since a search still
  // running when a stop unwinds localize() reads them until its future is joined.
  CopySettings evidence_;
  std::unique_ptr<TaskPool> pool_;  // config.workers threads where the backend takes concurrent calls, else 1
  std::vector<long> rows_;
  int overlap_, max_tile_;
  double mask_threshold_;
};

// Larger tiles only for photos of up to this many pixels (localizer.py LARGE_TILES_UP_TO, which says why).
constexpr long kLargeTilesUpTo = 16000000;
// The tile length along one axis (localizer.py axis_tile): `tile` where the graphs are fixed
// (max_tile <= tile), else the multiple of 32 from `tile` to `max_tile` whose tiles compute the fewest
// pixels (the larger on a tie).
int axis_tile(int length, int tile, int max_tile, int overlap);
// Start offsets of tiles covering [0, length) with at least `overlap` pixels shared.
std::vector<int> tile_origins(int length, int tile, int overlap);
// Connected regions of the mask (8-connected) of at least `min_area` pixels, largest first, each
// with its mean probability over its own pixels and, given the copy cover, the share of them copied
// (localizer.py find_regions): bands.hpp's RegionFinder over a held mask.
// mask CV_8U in {0, 1}, prob CV_32F, cover CV_8U or empty.
std::vector<Region> find_regions(const cv::Mat& mask, const cv::Mat& prob, int min_area, const cv::Mat& cover = {});

}  // namespace inpdiff
