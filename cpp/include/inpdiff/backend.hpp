// Inference backends behind one small interface (inpdiff/runtime/backends.py): a backend runs a whole
// call (`sample`). GraphBackend runs the two graphs and lets the library's loop drive them (ONNX
// Runtime); a fused backend runs the loop itself (TensorRT, as one captured CUDA graph).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "inpdiff/model_dir.hpp"

namespace inpdiff {

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual int tile() const = 0;  // the spatial size the graphs take (0: any multiple of 32)
  // Whether sample() may run on several threads at once (ONNX Runtime's sessions allow it; the
  // TensorRT backend's buffers and graphs are one call's).
  virtual bool concurrent() const { return false; }
  // tiles: (n, h, w, 3) uint8 RGB; noise: (rows + 1, n * samples, 1, h, w), tile-major, noise[0] the
  // start; rows: the step-table rows -> the mean over the steps of prob, (n * samples, h, w).
  virtual std::vector<float> sample(const uint8_t* tiles, int n, int h, int w, int samples,
                                    const std::vector<float>& noise, const std::vector<long>& rows) = 0;
};

// Runs the condition graph once per tile and the step graph per step; the loop is written once, here.
class GraphBackend : public Backend {
 public:
  std::vector<float> sample(const uint8_t* tiles, int n, int h, int w, int samples, const std::vector<float>& noise,
                            const std::vector<long>& rows) final;

 protected:
  // (n, h, w, 3) uint8 -> cond0..cond3, each (n, C, h / stride, w / stride)
  virtual std::vector<Tensor> condition(const uint8_t* tiles, int n, int h, int w) = 0;
  // One step over b maps (b, 1, h, w): writes x_next and prob (each b * h * w floats).
  virtual void step(const float* x_t, long row, const float* noise, std::vector<Tensor>& conds, int b, int h,
                    int w, float* x_next, float* prob) = 0;
};

// "onnxruntime", "tensorrt" (where built with it) or "auto" (TensorRT where built and a GPU is
// visible, else ONNX Runtime). `engines`: the TensorRT engine folder (default MODEL/engines).
std::unique_ptr<Backend> make_backend(const std::string& name, const ModelDir& model, int threads,
                                      const std::string& engines = "");

}  // namespace inpdiff
