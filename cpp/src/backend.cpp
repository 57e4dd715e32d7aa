#include "inpdiff/backend.hpp"

#include <stdexcept>

#include "inpdiff/ort_backend.hpp"
#ifdef INPDIFF_WITH_TENSORRT
#include "inpdiff/trt_backend.hpp"
#endif

namespace inpdiff {

std::unique_ptr<Backend> make_backend(const std::string& name, const ModelDir& model, int threads,
                                      const std::string& engines) {
#ifdef INPDIFF_WITH_TENSORRT
  if (name == "tensorrt" || (name == "auto" && TrtBackend::gpu_visible()))
    return std::make_unique<TrtBackend>(model, engines.empty() ? model.path / "engines" : std::filesystem::path(engines));
#else
  (void)engines;
  if (name == "tensorrt")
    throw ModelError("this build has no TensorRT backend (configure with -DTENSORRT_ROOT=DIR on a machine with "
                     "TensorRT); use --backend onnxruntime");
#endif
  if (name == "onnxruntime" || name == "auto") return std::make_unique<OrtBackend>(model, threads);
  throw std::invalid_argument("unknown backend '" + name + "'; choose from auto, onnxruntime, tensorrt");
}

}  // namespace inpdiff
