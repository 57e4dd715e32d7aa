// Backend `onnxruntime` (C++ API): runs the two graphs; GraphBackend's loop drives them.
#pragma once

#include <memory>

#include "inpdiff/backend.hpp"

namespace inpdiff {

class OrtBackend : public GraphBackend {
 public:
  // threads: intra-op threads of each call (0: all cores; 1 where one call runs per core)
  OrtBackend(const ModelDir& model, int threads);
  ~OrtBackend() override;
  std::string name() const override;
  int tile() const override;
  bool concurrent() const override { return true; }

 protected:
  std::vector<Tensor> condition(const uint8_t* tiles, int n, int h, int w) override;
  void step(const float* x_t, long row, const float* noise, std::vector<Tensor>& conds, int b, int h, int w,
            float* x_next, float* prob) override;

 private:
  struct Impl;  // ONNX Runtime's types stay out of the public headers
  std::unique_ptr<Impl> impl_;
};

}  // namespace inpdiff
