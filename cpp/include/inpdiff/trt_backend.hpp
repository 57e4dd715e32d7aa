// Backend `tensorrt`: the whole call on TensorRT engines (`inpdiff build` makes them), as one CUDA graph
// per batch size, with the engine metadata checks of inpdiff/runtime/engines.py. Built only where
// CMake finds TensorRT (TENSORRT_ROOT).
#pragma once

#include <filesystem>
#include <memory>

#include "inpdiff/backend.hpp"

namespace inpdiff {

class TrtBackend : public Backend {
 public:
  // Refuses engines built for another TensorRT, GPU, ONNX file or precision, or changed since their
  // build, naming each problem and the command that rebuilds them.
  TrtBackend(const ModelDir& model, const std::filesystem::path& engines);
  ~TrtBackend() override;
  static bool gpu_visible();
  std::string name() const override;
  int tile() const override;
  std::vector<float> sample(const uint8_t* tiles, int n, int h, int w, int samples, const std::vector<float>& noise,
                            const std::vector<long>& rows) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace inpdiff
