// Backend `onnxruntime`: the two graphs on ONNX Runtime's CPU provider; the library's loop drives them.
#include "inpdiff/ort_backend.hpp"

#include <cstdlib>
#include <thread>

#include <onnxruntime_cxx_api.h>

namespace inpdiff {

namespace {
const char* const kConditions[] = {"cond0", "cond1", "cond2", "cond3"};
const char* const kStepInputs[] = {"x_t", "row", "noise", "cond0", "cond1", "cond2", "cond3"};
const char* const kStepOutputs[] = {"x_next", "prob"};
const char* const kImage[] = {"image"};
}  // namespace

// ONNX Runtime 1.32 writes a device id and an SQLite telemetry file under ~/.cache unless this is
// set before its environment starts; DisableTelemetryEvents() alone does not stop it. The runtime
// writes nothing outside OUT; a user's own setting is kept. (The Python runtime does the same.)
static bool telemetry_off() {
  return ::setenv("ORT_DISABLE_TELEMETRY", "1", 0) == 0 && ::setenv("ORT_TELEMETRY_DISABLED", "1", 0) == 0;
}

struct OrtBackend::Impl {
  bool no_telemetry = telemetry_off();  // first member: set before `env` is made
  Ort::Env env{ORT_LOGGING_LEVEL_ERROR, "inpdiff"};
  Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  Ort::Session cond{nullptr}, step{nullptr};
  int tile = 0;
};

OrtBackend::OrtBackend(const ModelDir& model, int threads) : impl_(std::make_unique<Impl>()) {
  impl_->env.DisableTelemetryEvents();
  Ort::SessionOptions opts;
  opts.SetIntraOpNumThreads(threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  opts.SetLogSeverityLevel(3);
  impl_->cond = Ort::Session(impl_->env, (model.path / "condition.onnx").c_str(), opts);
  impl_->step = Ort::Session(impl_->env, (model.path / "denoise_step.onnx").c_str(), opts);
  // -1 where the graphs take any size (a current export): tile() says 0
  impl_->tile = std::max(0, static_cast<int>(impl_->cond.GetInputTypeInfo(0).GetTensorTypeAndShapeInfo().GetShape().at(1)));
}

OrtBackend::~OrtBackend() = default;

std::string OrtBackend::name() const { return "onnxruntime-cpu"; }

int OrtBackend::tile() const { return impl_->tile; }

std::vector<Tensor> OrtBackend::condition(const uint8_t* tiles, int n, int h, int w) {
  const int64_t shape[] = {n, h, w, 3};
  Ort::Value image = Ort::Value::CreateTensor<uint8_t>(impl_->cpu, const_cast<uint8_t*>(tiles),
                                                       static_cast<size_t>(n) * h * w * 3, shape, 4);
  auto outs = impl_->cond.Run(Ort::RunOptions{nullptr}, kImage, &image, 1, kConditions, 4);
  std::vector<Tensor> conds(4);
  for (size_t i = 0; i < 4; ++i) {
    auto info = outs[i].GetTensorTypeAndShapeInfo();
    const float* data = outs[i].GetTensorData<float>();
    conds[i].shape = info.GetShape();
    conds[i].data.assign(data, data + info.GetElementCount());
  }
  return conds;
}

void OrtBackend::step(const float* x_t, long row, const float* noise, std::vector<Tensor>& conds, int b, int h,
                      int w, float* x_next, float* prob) {
  const int64_t map_shape[] = {b, 1, h, w}, row_shape[] = {1};
  const size_t maps = static_cast<size_t>(b) * h * w;
  int64_t row_value = row;
  std::vector<Ort::Value> in;
  in.push_back(Ort::Value::CreateTensor<float>(impl_->cpu, const_cast<float*>(x_t), maps, map_shape, 4));
  in.push_back(Ort::Value::CreateTensor<int64_t>(impl_->cpu, &row_value, 1, row_shape, 1));
  in.push_back(Ort::Value::CreateTensor<float>(impl_->cpu, const_cast<float*>(noise), maps, map_shape, 4));
  for (Tensor& c : conds)
    in.push_back(Ort::Value::CreateTensor<float>(impl_->cpu, c.data.data(), c.data.size(), c.shape.data(), c.shape.size()));
  // The outputs go straight into the caller's buffers.
  Ort::Value out[] = {Ort::Value::CreateTensor<float>(impl_->cpu, x_next, maps, map_shape, 4),
                      Ort::Value::CreateTensor<float>(impl_->cpu, prob, maps, map_shape, 4)};
  impl_->step.Run(Ort::RunOptions{nullptr}, kStepInputs, in.data(), in.size(), kStepOutputs, out, 2);
}

}  // namespace inpdiff
