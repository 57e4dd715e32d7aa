// An exported model folder: manifest.json read, its required fields typed, its files verified against
// their sha256, with the same refusals (and messages) as inpdiff/runtime/model_dir.py.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

namespace inpdiff {

// A model folder that cannot be used; the message names the file and what is wrong.
class ModelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The calibrated image-level score: sigmoid(a * logit(statistic) + b), flagged at `threshold`.
struct ScoreCalibration {
  std::string statistic;  // top1 | marked
  double a = 1.0, b = 0.0, threshold = 0.5;
};

struct ModelDir {
  std::filesystem::path path;
  nlohmann::json manifest;                    // the whole manifest, as written
  int tile = 0;                               // the graphs' spatial size
  int steps = 0;                              // the sampler's default number of steps
  int max_steps = 0;                          // the step tables cover 1..max_steps
  std::map<std::string, std::string> files;   // graph file -> sha256
  std::string mode = "ddim";                  // ddim | ddpm
  bool diffusion = true;                      // false: the single-pass model
  std::string precision = "fp32";             // fp32 | fp16 | int8
  std::optional<ScoreCalibration> score;      // the calibrated image score, if any
  double mask_threshold = 0.5;                // the calibrated pixel threshold, else 0.5

  static ModelDir load(const std::filesystem::path& dir, bool verify = true);
};

// A model folder: a path, or the name of a shipped model (edge-c, edge-c-int8-cpu, ...), looked up where
// the shipped models are installed, as trt-localize's model_path does; empty: the shipped edge-c.
std::filesystem::path model_path(const std::string& model = "");

// Whether this CPU has the int8 dot products ONNX Runtime's uint8 x int8 kernels need to be fast and
// exact (x86: AVX-512 VNNI or AVX-VNNI; ARM: the dot-product extension), and what it has, from
// /proc/cpuinfo (trt-localize's cpu_int8_dot_product).
std::pair<bool, std::string> cpu_int8_dot_product();

// `model`, or where it is a CPU INT8 model and `dot_product` is false, the FP32 model it was made from
// (its manifest's source folder, or a sibling of that name), with the reason in `why` (trt-localize's
// Localizer does the same): on such a CPU those kernels are slow and can saturate.
ModelDir runnable_here(ModelDir model, const std::pair<bool, std::string>& dot_product, std::string& why);

// Row of step i (0-based) of a `steps`-step sampler in `mode` (inpdiff/steps.py).
long step_row(const std::string& mode, int steps, int i, int max_steps);

// Lower-case hex SHA-256 of a file's bytes.
std::string sha256_file(const std::filesystem::path& path);

}  // namespace inpdiff
