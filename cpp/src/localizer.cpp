#include "inpdiff/localizer.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <future>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <thread>

#include <opencv2/imgproc.hpp>

#include "inpdiff/bands.hpp"
#include "inpdiff/copies.hpp"
#include "inpdiff/noise.hpp"

namespace inpdiff {

std::vector<float> GraphBackend::sample(const uint8_t* tiles, int n, int h, int w, int samples,
                                        const std::vector<float>& noise, const std::vector<long>& rows) {
  const size_t b = static_cast<size_t>(n) * samples, plane = static_cast<size_t>(h) * w, maps = b * plane;
  std::vector<Tensor> conds = condition(tiles, n, h, w);
  if (samples > 1) {  // each tile's conditions repeated for its samples (np.repeat along the batch)
    for (Tensor& c : conds) {
      size_t per = c.data.size() / n;
      std::vector<float> rep(per * b);
      for (int t = 0; t < n; ++t)
        for (int s = 0; s < samples; ++s)
          std::copy_n(c.data.begin() + t * per, per, rep.begin() + (static_cast<size_t>(t) * samples + s) * per);
      c.data.swap(rep);
      c.shape[0] = static_cast<int64_t>(b);
    }
  }
  std::vector<float> x(noise.begin(), noise.begin() + maps), next(maps), prob(maps), total(maps, 0.0f);
  for (size_t i = 0; i < rows.size(); ++i) {
    step(x.data(), rows[i], noise.data() + (i + 1) * maps, conds, static_cast<int>(b), h, w, next.data(), prob.data());
    for (size_t k = 0; k < maps; ++k) total[k] += prob[k];
    x.swap(next);
  }
  for (float& v : total) v /= static_cast<float>(rows.size());
  return total;
}

int axis_tile(int length, int tile, int max_tile, int overlap) {
  int best = tile;
  long fewest = static_cast<long>(tile_origins(length, tile, overlap).size()) * tile;
  for (int t = tile + 32; t <= max_tile; t += 32) {
    const long cost = static_cast<long>(tile_origins(length, t, overlap).size()) * t;
    if (cost <= fewest) fewest = cost, best = t;  // the larger on a tie, as Python's
  }
  return best;
}

std::vector<int> tile_origins(int length, int tile, int overlap) {
  if (length <= tile) return {0};
  int n = static_cast<int>(std::ceil(static_cast<double>(length - overlap) / (tile - overlap)));
  std::vector<int> out(n);
  double step = n > 1 ? static_cast<double>(length - tile) / (n - 1) : 0.0;  // np.linspace
  for (int i = 0; i < n; ++i) out[i] = static_cast<int>(std::nearbyint(i == n - 1 && n > 1 ? length - tile : i * step));
  return out;
}

static std::vector<float> blend_ramp(int tile, int overlap) {
  std::vector<float> ramp(tile);
  for (int i = 0; i < tile; ++i) {
    double r = (std::min(i, tile - 1 - i) + 1.0) / (overlap + 1);
    ramp[i] = static_cast<float>(std::clamp(r, 1.0 / (overlap + 1), 1.0));
  }
  return ramp;
}

std::vector<Region> find_regions(const cv::Mat& mask, const cv::Mat& prob, int min_area, const cv::Mat& cover) {
  RegionFinder finder(min_area);
  for (int y0 = 0; y0 < mask.rows; y0 += kBandRows) {
    const cv::Range r(y0, std::min(mask.rows, y0 + kBandRows));
    finder.add(mask.rowRange(r), prob.rowRange(r), cover.empty() ? cover : cover.rowRange(r), y0);
  }
  return finder.regions(!cover.empty());
}

double Localizer::score(double statistic) const {
  if (!model_.score) return statistic;
  const ScoreCalibration& cal = *model_.score;
  double p = std::clamp(statistic, 1e-4, 1 - 1e-4);
  double z = std::clamp(cal.a * std::log(p / (1 - p)) + cal.b, -500.0, 500.0);
  return 1.0 / (1.0 + std::exp(-z));
}

int Localizer::steps_for(const ModelDir& model, const LocalizeConfig& config) {
  return !model.diffusion ? 1 : (config.steps ? config.steps : model.steps);
}

double Localizer::mask_threshold_for(const ModelDir& model, const LocalizeConfig& config) {
  return config.threshold ? *config.threshold : model.mask_threshold;
}

int Localizer::check(const ModelDir& model, const LocalizeConfig& config) {
  if (config.samples < 1) throw std::invalid_argument("samples must be at least 1, got " + std::to_string(config.samples));
  const int tile = model.tile, overlap = config.overlap < 0 ? tile / 8 : config.overlap;
  if (overlap >= tile / 2)
    throw std::invalid_argument("overlap must be in [0, " + std::to_string(tile / 2) + "), got " + std::to_string(overlap));
  if (config.max_tile < 0 || config.max_tile % 32)
    throw std::invalid_argument("max tile must be a multiple of 32, got " + std::to_string(config.max_tile));
  if (config.flips != 1 && config.flips != 2 && config.flips != 4 && config.flips != 8)
    throw std::invalid_argument("flips must be 1, 2, 4 or 8, got " + std::to_string(config.flips));
  if (model.precision != "fp32" && !model.score)
    throw ModelError(model.path.string() + ": a " + model.precision +
                     " model without its own calibrated image score; run `inpdiff calibrate-score " +
                     model.path.string() + " --data VALIDATION_DIR` first");
  return overlap;
}

Localizer::Localizer(ModelDir model, std::unique_ptr<Backend> backend, LocalizeConfig config)
    : model_(std::move(model)), backend_(std::move(backend)), config_(config) {
  overlap_ = check(model_, config_);
  const int steps = steps_for(model_, config_), tile = model_.tile;
  for (int i = 0; i < steps; ++i) rows_.push_back(step_row(model_.mode, steps, i, model_.max_steps));
  mask_threshold_ = mask_threshold_for(model_, config_);
  if (!config_.near_copies) evidence_.near.clear();
  max_tile_ = backend_->tile() ? tile : std::max(tile, config_.max_tile);
  if (backend_->tile() && backend_->tile() != tile)
    throw ModelError((model_.path / "manifest.json").string() + ": field 'tile' is " + std::to_string(tile) +
                     ", but condition.onnx takes " + std::to_string(backend_->tile()) + "x" +
                     std::to_string(backend_->tile()) + " tiles (the manifest was edited; re-export the model)");
  pool_ = std::make_unique<TaskPool>(backend_->concurrent() ? std::max(1, config_.workers) : 1);
}

struct Localizer::Plan {
  cv::Mat work;                               // downscaled (max_side) and padded to at least a tile
  cv::Size size;                              // of `work` before padding
  cv::Size tile;                              // of every tile
  std::vector<float> ramp_y, ramp_x, window;  // the tile's blend ramps, and their outer product
  std::vector<std::pair<int, int>> origins;   // (y, x) of every tile in `work`
  const SpilledMat* file = nullptr;           // `work`'s file, told of the rows read (a photo in a file)
};

cv::Size Localizer::tile_for(cv::Size size) const {
  const int largest = static_cast<long>(size.area()) <= kLargeTilesUpTo ? max_tile_ : model_.tile;
  return {axis_tile(size.width, model_.tile, largest, overlap_), axis_tile(size.height, model_.tile, largest, overlap_)};
}

Localizer::Plan Localizer::plan(const cv::Mat& rgb) const {
  if (rgb.type() != CV_8UC3) throw std::invalid_argument("expected an (H, W, 3) uint8 RGB image");
  const int h = rgb.rows, w = rgb.cols;
  Plan p;
  p.work = rgb;
  if (config_.max_side && std::max(h, w) > config_.max_side) {
    double s = static_cast<double>(config_.max_side) / std::max(h, w);
    cv::resize(rgb, p.work, cv::Size(std::max(1, static_cast<int>(std::nearbyint(w * s))),
                                     std::max(1, static_cast<int>(std::nearbyint(h * s)))), 0, 0, cv::INTER_AREA);
  }
  p.size = p.work.size();
  p.tile = tile_for(p.size);
  p.ramp_y = blend_ramp(p.tile.height, overlap_);
  p.ramp_x = blend_ramp(p.tile.width, overlap_);
  for (float ry : p.ramp_y)
    for (float rx : p.ramp_x) p.window.push_back(ry * rx);
  int ph = std::max(0, p.tile.height - p.size.height), pw = std::max(0, p.tile.width - p.size.width);
  if (ph || pw) {  // smaller than a tile: mirror-pad (replicate for 1-pixel sides, which cannot mirror)
    int border = std::min(p.size.height, p.size.width) > 1 ? cv::BORDER_REFLECT_101 : cv::BORDER_REPLICATE;
    cv::copyMakeBorder(p.work, p.work, 0, ph, 0, pw, border);
  }
  for (int y : tile_origins(p.work.rows, p.tile.height, overlap_))
    for (int x : tile_origins(p.work.cols, p.tile.width, overlap_)) p.origins.emplace_back(y, x);
  return p;
}

namespace {

// Test-time views of a tile, (rows mirrored, columns mirrored, transposed), in the order their maps are
// summed (Python's FLIPS); --flips N takes the first N.
constexpr std::array<std::array<bool, 3>, 8> kFlips{{{false, false, false}, {true, true, false}, {true, false, false},
                                                    {false, false, true}, {false, true, false}, {false, true, true},
                                                    {true, false, true}, {true, true, true}}};

// One plane of h x w elements (of `channels` values each) from `from` into `to`, mirrored as asked and
// then, if `transposed`, with rows and columns swapped (`to` is w x h). Its inverse is the same with
// `rows` and `columns` exchanged where `transposed`, on the w x h plane.
template <typename T>
void flip_plane(const T* from, T* to, int h, int w, int channels, bool rows, bool columns, bool transposed) {
  for (int r = 0; r < h; ++r) {
    const T* src = from + static_cast<size_t>(rows ? h - 1 - r : r) * w * channels;
    if (transposed) {
      for (int c = 0; c < w; ++c)
        std::copy_n(src + static_cast<size_t>(columns ? w - 1 - c : c) * channels, channels,
                    to + (static_cast<size_t>(c) * h + r) * channels);
      continue;
    }
    T* dst = to + static_cast<size_t>(r) * w * channels;
    if (!columns) {
      std::copy_n(src, static_cast<size_t>(w) * channels, dst);
      continue;
    }
    for (int c = 0; c < w; ++c) std::copy_n(src + static_cast<size_t>(w - 1 - c) * channels, channels, dst + static_cast<size_t>(c) * channels);
  }
}

}  // namespace

std::vector<float> Localizer::infer(const Plan& p, size_t first, int n) const {
  const int th = p.tile.height, tw = p.tile.width, S = config_.samples, n_steps = steps();
  const size_t plane = static_cast<size_t>(th) * tw;
  std::vector<uint8_t> tiles(n * plane * 3);
  for (int t = 0; t < n; ++t) {
    auto [y, x] = p.origins[first + t];
    for (int r = 0; r < th; ++r) std::copy_n(p.work.ptr<uint8_t>(y + r) + 3 * x, 3 * tw, tiles.data() + (t * plane + r * tw) * 3);
    if (p.file) p.file->read(th);
  }
  // noise (steps + 1, n * S, 1, th, tw): Philox keyed to each tile's origin, so batching does not change it
  std::vector<float> noise;
  if (model_.diffusion) {
    std::vector<std::vector<float>> per_tile(n);
    for (int t = 0; t < n; ++t)
      for (int s = 0; s <= n_steps; ++s)
        normals(config_.seed, s, p.origins[first + t].first, p.origins[first + t].second, S * plane, per_tile[t]);
    noise.reserve((n_steps + 1) * n * S * plane);
    for (int s = 0; s <= n_steps; ++s)
      for (int t = 0; t < n; ++t)
        noise.insert(noise.end(), per_tile[t].begin() + s * S * plane, per_tile[t].begin() + (s + 1) * S * plane);
  } else {  // the single-pass model starts from an empty mask, and its probability map takes no noise
    noise.assign((n_steps + 1) * n * S * plane, 0.0f);
  }
  std::vector<float> maps = backend_->sample(tiles.data(), n, th, tw, S, noise, rows_);
  if (config_.flips == 1) return maps;
  // Each view a call of its own, with its tiles' noise (the same numbers, laid out in the view's shape, as
  // Python draws them for it; a call's memory stays what it is without flips); a tile's map is its views'
  // maps turned back, summed in kFlips order, divided by their number.
  std::vector<uint8_t> view(tiles.size());
  std::vector<float> mirrored(plane);
  for (int f = 1; f < config_.flips; ++f) {
    const auto [rows, columns, transposed] = kFlips[f];
    const int vh = transposed ? tw : th, vw = transposed ? th : tw;
    for (int t = 0; t < n; ++t)
      flip_plane(tiles.data() + t * plane * 3, view.data() + t * plane * 3, th, tw, 3, rows, columns, transposed);
    std::vector<float> more = backend_->sample(view.data(), n, vh, vw, S, noise, rows_);
    for (size_t m = 0; m < static_cast<size_t>(n) * S; ++m) {
      flip_plane(more.data() + m * plane, mirrored.data(), vh, vw, 1, transposed ? columns : rows,
                 transposed ? rows : columns, transposed);
      float* sum = maps.data() + m * plane;
      for (size_t i = 0; i < plane; ++i) sum[i] += mirrored[i];
    }
  }
  for (float& v : maps) v /= static_cast<float>(config_.flips);
  return maps;
}

TaskPool::TaskPool(int threads) {
  for (int i = 0; i < std::max(1, threads); ++i)
    threads_.emplace_back([this] {
      for (;;) {
        std::function<void()> task;
        {
          std::unique_lock<std::mutex> lock(mu_);
          ready_.wait(lock, [&] { return stop_ || !queue_.empty(); });
          if (queue_.empty()) return;  // stopping, and nothing left
          task = std::move(queue_.front());
          queue_.pop_front();
        }
        task();
      }
    });
}

TaskPool::~TaskPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  ready_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void TaskPool::submit(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(task));
  }
  ready_.notify_one();
}

void Localizer::run(const Plan& p, const std::function<void(size_t, const float*)>& take) const {
  const int S = config_.samples, T = model_.tile;
  const size_t plane = p.tile.area(), count = p.origins.size();
  // config.batch model-sized tiles' worth of pixels, so that a call's memory does not grow with the tile
  const size_t batch = std::max<size_t>(1, static_cast<size_t>(std::max(1, config_.batch)) * T * T / plane);
  const size_t batches = (count + batch - 1) / batch;
  auto size_of = [&](size_t k) { return static_cast<int>(std::min(batch, count - k * batch)); };
  // The pool's threads run the batches (one backend call each); this thread hands them on in plan
  // order as they arrive, so the sums, hence the maps, do not depend on the number of threads.
  std::vector<std::vector<float>> finished(batches);
  std::vector<char> ready(batches, 0);
  size_t ended = 0;  // batches run or skipped: this call waits for all of them, which use its locals
  std::mutex mu;
  std::condition_variable arrived;
  std::atomic<bool> failing{false};
  std::exception_ptr failure;
  for (size_t k = 0; k < batches; ++k)
    pool_->submit([&, k] {
      std::vector<float> maps;
      std::exception_ptr error;
      if (!failing && !(config_.stop && *config_.stop)) {  // after a failure or a stop the rest are skipped
        try {
          maps = infer(p, k * batch, size_of(k));
        } catch (...) {
          error = std::current_exception();
          failing = true;
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      if (error && !failure) failure = error;
      finished[k] = std::move(maps);
      ready[k] = 1;
      ++ended;
      arrived.notify_all();
    });
  for (size_t k = 0; k < batches; ++k) {
    std::vector<float> maps;
    {
      std::unique_lock<std::mutex> lock(mu);
      arrived.wait(lock, [&] { return ready[k] || failure; });
      if (failure || (config_.stop && *config_.stop)) break;
      maps = std::move(finished[k]);
    }
    try {
      for (int t = 0; t < size_of(k); ++t) take(k * batch + t, maps.data() + static_cast<size_t>(t) * S * plane);
    } catch (...) {
      failing = true;
      std::unique_lock<std::mutex> lock(mu);
      arrived.wait(lock, [&] { return ended == batches; });
      throw;
    }
  }
  std::unique_lock<std::mutex> lock(mu);
  arrived.wait(lock, [&] { return ended == batches; });
  if (failure) std::rethrow_exception(failure);
  check_stop();
}

void Localizer::check_stop() const {
  if (config_.stop && *config_.stop) throw Stopped();
}

// The tiles form a grid, so their summed windows are outer(wy, wx) (as Python: two divisions).
std::vector<float> Localizer::axis_weight(const Plan& p, int length, bool rows) const {
  std::set<int> starts;
  for (auto [y, x] : p.origins) starts.insert(rows ? y : x);
  std::vector<float> w(length, 0.0f);
  const std::vector<float>& ramp = rows ? p.ramp_y : p.ramp_x;
  for (int o : starts)
    for (size_t i = 0; i < ramp.size(); ++i) w[o + i] += ramp[i];
  return w;
}

std::vector<cv::Mat> Localizer::blend(const Plan& p) const {
  const int H = p.work.rows, W = p.work.cols;
  const size_t plane = p.tile.area();
  std::vector<cv::Mat> acc(config_.samples);
  for (cv::Mat& a : acc) a = cv::Mat::zeros(H, W, CV_32F);
  run(p, [&](size_t i, const float* maps) {
    for (size_t s = 0; s < acc.size(); ++s) add_tile(acc[s], p.origins[i].first, p.origins[i].second, maps + s * plane, p.window, p.tile);
  });
  const std::vector<float> wy = axis_weight(p, H, true), wx = axis_weight(p, W, false);
  for (cv::Mat& a : acc) normalise_rows(a, 0, wy, wx);
  return acc;
}

// The blended map's last steps, a band of rows at a time, for both localize() paths (the map held
// whole, or in files): each band raised to the copy cover, thresholded, and fed to the regions and
// the image score.
struct Localizer::Finish {
  Finish(const Localizer& loc, cv::Mat cover, cv::Size size)
      : loc(loc), cover(std::move(cover)), regions(loc.config_.min_region),
        statistic(loc.model_.score ? loc.model_.score->statistic : "top1", static_cast<size_t>(size.area())) {
    if (!this->cover.empty()) raiser.emplace(this->cover, loc.evidence_);
  }

  // Rows y0.. of the map, raised in place; their mask (0 or 1) into `marked`.
  void band(cv::Mat& rows, int y0, cv::Mat& marked) {
    if (raiser) raiser->band(rows, y0);
    // prob >= threshold in float32, as NumPy compares a float32 array with a Python float
    cv::compare(rows, static_cast<float>(loc.mask_threshold_), marked, cv::CMP_GE);
    marked /= 255;
    regions.add(marked, rows, cover.empty() ? cover : cover.rowRange(y0, y0 + rows.rows), y0);
    statistic.add(rows);
  }

  void done(Result& res, const Plan& p) {
    res.regions = regions.regions(!cover.empty());
    res.score = loc.score(statistic.value());
    res.inpainted = loc.model_.score ? res.score >= loc.model_.score->threshold : !res.regions.empty();
    res.tiles = static_cast<int>(p.origins.size());
  }

  const Localizer& loc;
  cv::Mat cover;  // the copy cover, of the input itself as in Python (empty: not looked for)
  std::optional<CopyRaise> raiser;
  RegionFinder regions;
  BandStatistic statistic;
};

Result Localizer::localize(const cv::Mat& rgb) {
  const Plan p = plan(rgb);
  // The copy evidence needs only the image: found beside the inference, which leaves a core idle at times.
  std::future<Found> found;
  if (config_.copies) found = std::async(std::launch::async, [&] { return find_copies(rgb, evidence_, [&](int) { check_stop(); }); });
  std::vector<cv::Mat> acc = blend(p);
  std::vector<cv::Mat> per_sample(config_.samples);
  for (size_t s = 0; s < acc.size(); ++s) {
    cv::Mat m = acc[s](cv::Rect(0, 0, p.size.width, p.size.height));
    if (m.size() != rgb.size()) cv::resize(m, m, rgb.size(), 0, 0, cv::INTER_LINEAR);
    per_sample[s] = m.isContinuous() ? m : m.clone();  // a view of acc where nothing was cropped
  }
  Result res;
  combine_samples(per_sample, res.prob, res.uncertainty);
  // The cover's undecided ends are picked by the map before the fusion (inpdiff/copies.py cover_of).
  Finish finish(*this, config_.copies ? cover_of(rgb, found.get(), evidence_, res.prob) : cv::Mat(), res.prob.size());
  res.mask.create(res.prob.size(), CV_8U);
  for (int y0 = 0; y0 < res.prob.rows; y0 += kBandRows) {
    const cv::Range r(y0, std::min(res.prob.rows, y0 + kBandRows));
    cv::Mat rows = res.prob.rowRange(r), marked = res.mask.rowRange(r);
    finish.band(rows, y0, marked);
  }
  finish.done(res, p);
  return res;
}

Result Localizer::localize(const SpilledMat& photo) {
  const cv::Mat& rgb = photo.mat();
  const cv::Size tile = tile_for(rgb.size());
  if (config_.max_side || rgb.rows < tile.height || rgb.cols < tile.width) return localize(rgb.clone());
  Plan p = plan(rgb);
  p.file = &photo;
  std::future<Found> found;
  if (config_.copies)
    found = std::async(std::launch::async, [&] {
      return find_copies(rgb, evidence_, [&](int rows) {
        photo.read(rows);
        check_stop();
      });
    });
  const int H = rgb.rows, W = rgb.cols;
  RowAccumulator acc(config_.samples, rgb.size(), p.tile, axis_weight(p, H, true), axis_weight(p, W, false));
  run(p, [&](size_t i, const float* maps) { acc.add(p.origins[i].first, p.origins[i].second, maps, p.window); });
  auto [before, uncertainty] = acc.close();
  Finish finish(*this, config_.copies ? cover_of(rgb, found.get(), evidence_, before.mat()) : cv::Mat(), rgb.size());
  RowWriter prob(W, CV_32F), mask(W, CV_8U);
  for (int y0 = 0; y0 < H; y0 += kBandRows) {
    cv::Mat rows = before.mat().rowRange(y0, std::min(H, y0 + kBandRows)).clone(), marked;
    before.read(rows.rows);
    finish.band(rows, y0, marked);
    prob.write(rows);
    mask.write(marked);
  }
  Result res;
  res.prob_file = prob.done();
  res.mask_file = mask.done();
  res.uncertainty_file = uncertainty;
  res.prob = res.prob_file.mat();
  res.mask = res.mask_file.mat();
  if (!uncertainty.empty()) res.uncertainty = uncertainty.mat();
  finish.done(res, p);
  return res;
}

}  // namespace inpdiff
