// The TensorRT backend, as inpdiff/runtime/trt.py: static device buffers for the largest batch, one
// stream, one execution context per engine; the whole call (copies in, the condition engine, every
// step and its running sum, the copy out) captured as one CUDA graph per batch size after a warm-up
// enqueue; fresh noise goes into the pinned host buffer the captured copy reads. Where capture
// fails, the same enqueues run without a graph, with a warning.
#include "inpdiff/trt_backend.hpp"

#include <NvInferRuntime.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace fs = std::filesystem;
using nlohmann::json;

namespace inpdiff {

namespace {

const char* const kEngines[] = {"condition", "denoise_step", "accumulate"};

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA ") + what + ": " + cudaGetErrorString(e));
}

class Logger : public nvinfer1::ILogger {
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::cerr << "TensorRT: " << msg << "\n";
  }
};

nvinfer1::Dims dims(std::vector<int64_t> v) {
  nvinfer1::Dims d{};
  d.nbDims = static_cast<int32_t>(v.size());
  for (size_t i = 0; i < v.size(); ++i) d.d[i] = v[i];
  return d;
}

// What the engines must have been built for: this TensorRT (major.minor.patch, as Python's
// tensorrt.__version__ begins) and this GPU.
struct Target {
  std::string tensorrt, gpu, compute_capability;
};

Target current_target() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
    throw ModelError("no CUDA GPU is visible; TensorRT engines need one; use --backend onnxruntime");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  return {std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." +
              std::to_string(NV_TENSORRT_PATCH),
          prop.name, std::to_string(prop.major) + "." + std::to_string(prop.minor)};
}

// engines.py engine_problems: why the engines cannot run this model here (empty when they can).
std::vector<std::string> engine_problems(const ModelDir& model, const fs::path& dir, const Target& t,
                                         std::map<std::string, json>& metas) {
  std::vector<std::string> problems;
  for (const char* name : kEngines) {
    fs::path plan = dir / (std::string(name) + ".plan"), meta_path = dir / (std::string(name) + ".json");
    if (!fs::is_regular_file(plan) || !fs::is_regular_file(meta_path)) {
      problems.push_back(plan.filename().string() + ": not built");
      continue;
    }
    std::ifstream in(meta_path);
    json meta = json::parse(in, nullptr, false);
    if (meta.is_discarded() || !meta.is_object()) {
      problems.push_back(meta_path.filename().string() + ": unreadable");
      continue;
    }
    std::string onnx = std::string(name) + ".onnx";
    json expected = {{"gpu", t.gpu}, {"compute_capability", t.compute_capability},
                     {"onnx_sha256", model.files.count(onnx) ? json(model.files.at(onnx)) : json(nullptr)},
                     {"precision", model.precision}};
    std::string built = meta.value("tensorrt", "");
    if (built.compare(0, t.tensorrt.size(), t.tensorrt) != 0 || (built.size() > t.tensorrt.size() && built[t.tensorrt.size()] != '.'))
      problems.push_back(plan.filename().string() + ": built for TensorRT " + built + ", this is " + t.tensorrt);
    for (const auto& [key, want] : expected.items())
      if (!meta.contains(key) || meta[key] != want)
        problems.push_back(plan.filename().string() + ": built for " + key + " " + (meta.contains(key) ? meta[key].dump() : "?") +
                           ", this is " + want.dump());
    if (meta.value("plan_sha256", "") != sha256_file(plan))
      problems.push_back(plan.filename().string() + ": does not match its metadata's sha256 (changed or truncated)");
    metas[name] = meta;
  }
  return problems;
}

struct DeviceBuffer {
  explicit DeviceBuffer(size_t n) { check(cudaMalloc(&ptr, n), "cudaMalloc"); }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  char* at(size_t offset) const { return static_cast<char*>(ptr) + offset; }
  void* ptr = nullptr;
};

struct HostBuffer {  // pinned: the captured copies read and write it
  explicit HostBuffer(size_t n) { check(cudaMallocHost(&ptr, n), "cudaMallocHost"); }
  ~HostBuffer() { cudaFreeHost(ptr); }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  template <typename T> T* as() const { return static_cast<T*>(ptr); }
  void* ptr = nullptr;
};

}  // namespace

struct TrtBackend::Impl {
  Logger logger;
  std::unique_ptr<nvinfer1::IRuntime> runtime;
  std::map<std::string, std::unique_ptr<nvinfer1::ICudaEngine>> engines;
  std::map<std::string, std::unique_ptr<nvinfer1::IExecutionContext>> contexts;
  cudaStream_t stream = nullptr;
  int tile = 0, max_batch = 0;
  std::string precision;
  std::vector<std::pair<std::string, std::vector<int64_t>>> conditions;  // name -> (C, h, w)
  // Buffers for calls of up to max_batch tiles and rows.size() steps (remade when the rows change).
  std::vector<long> rows;
  std::unique_ptr<HostBuffer> host_image, host_noise, host_total, host_rows;
  std::unique_ptr<DeviceBuffer> image, noise, rows_dev, prob, edge;
  std::vector<std::unique_ptr<DeviceBuffer>> conds, x, total;
  std::map<int, cudaGraphExec_t> graphs;  // batch size -> graph, nullptr where capture failed

  size_t map_bytes() const { return static_cast<size_t>(tile) * tile * sizeof(float); }

  void free_graphs() {
    for (auto& [b, g] : graphs)
      if (g) cudaGraphExecDestroy(g);
    graphs.clear();
  }

  void allocate(const std::vector<long>& new_rows) {
    free_graphs();
    rows = new_rows;
    const size_t B = max_batch, T = tile, steps = rows.size();
    host_image = std::make_unique<HostBuffer>(B * T * T * 3);
    host_noise = std::make_unique<HostBuffer>((steps + 1) * B * map_bytes());
    host_total = std::make_unique<HostBuffer>(B * map_bytes());
    host_rows = std::make_unique<HostBuffer>(steps * sizeof(int64_t));
    for (size_t i = 0; i < steps; ++i) host_rows->as<int64_t>()[i] = rows[i];
    image = std::make_unique<DeviceBuffer>(B * T * T * 3);
    noise = std::make_unique<DeviceBuffer>((steps + 1) * B * map_bytes());
    rows_dev = std::make_unique<DeviceBuffer>(steps * sizeof(int64_t));
    prob = std::make_unique<DeviceBuffer>(B * map_bytes());
    edge = std::make_unique<DeviceBuffer>(B * map_bytes());
    conds.clear();
    for (const auto& [name, shape] : conditions)
      conds.push_back(std::make_unique<DeviceBuffer>(B * shape[0] * shape[1] * shape[2] * sizeof(float)));
    x.clear();
    total.clear();
    for (int i = 0; i < 2; ++i) {  // ping-pong
      x.push_back(std::make_unique<DeviceBuffer>(B * map_bytes()));
      total.push_back(std::make_unique<DeviceBuffer>(B * map_bytes()));
    }
    check(cudaMemcpyAsync(rows_dev->ptr, host_rows->ptr, steps * sizeof(int64_t), cudaMemcpyHostToDevice, stream), "copy");
    check(cudaStreamSynchronize(stream), "sync");
  }

  void execute(const std::string& name, const std::map<std::string, void*>& addresses,
               const std::map<std::string, std::vector<int64_t>>& shapes) {
    nvinfer1::IExecutionContext& ctx = *contexts.at(name);
    for (const auto& [tensor, shape] : shapes)
      if (!ctx.setInputShape(tensor.c_str(), dims(shape))) throw std::runtime_error("TensorRT " + name + ": bad shape for " + tensor);
    for (const auto& [tensor, ptr] : addresses)
      if (!ctx.setTensorAddress(tensor.c_str(), ptr)) throw std::runtime_error("TensorRT " + name + ": no tensor " + tensor);
    if (!ctx.enqueueV3(stream)) throw std::runtime_error("TensorRT " + name + " engine: enqueue failed");
  }

  // Everything one call does, on the stream: what is captured, or run as is without a graph.
  void enqueue(int b) {
    const size_t B = max_batch, T = tile, maps = b * map_bytes(), steps = rows.size();
    const int64_t bb = b;
    check(cudaMemcpyAsync(image->ptr, host_image->ptr, b * T * T * 3, cudaMemcpyHostToDevice, stream), "copy");
    for (size_t i = 0; i <= steps; ++i)  // noise is (steps + 1, B, ...): the first b of each step
      check(cudaMemcpyAsync(noise->at(i * B * map_bytes()), host_noise->as<char>() + i * B * map_bytes(), maps,
                            cudaMemcpyHostToDevice, stream), "copy");
    std::map<std::string, void*> cond_ptrs;
    std::map<std::string, std::vector<int64_t>> cond_shapes;
    for (size_t k = 0; k < conditions.size(); ++k) {
      const auto& [name, shape] = conditions[k];
      cond_ptrs[name] = conds[k]->ptr;
      cond_shapes[name] = {bb, shape[0], shape[1], shape[2]};
    }
    auto addresses = cond_ptrs;
    addresses["image"] = image->ptr;
    execute("condition", addresses, {{"image", {bb, tile, tile, 3}}});
    check(cudaMemsetAsync(total[0]->ptr, 0, maps, stream), "memset");
    const std::vector<int64_t> map_shape = {bb, 1, tile, tile};
    for (size_t i = 0; i < steps; ++i) {
      auto step_addresses = cond_ptrs;
      step_addresses["x_t"] = i == 0 ? noise->ptr : x[(i - 1) % 2]->ptr;
      step_addresses["row"] = rows_dev->at(sizeof(int64_t) * i);
      step_addresses["noise"] = noise->at((i + 1) * B * map_bytes());
      step_addresses["x_next"] = x[i % 2]->ptr;
      step_addresses["prob"] = prob->ptr;
      step_addresses["edge"] = edge->ptr;
      auto shapes = cond_shapes;
      shapes["x_t"] = shapes["noise"] = map_shape;
      execute("denoise_step", step_addresses, shapes);
      execute("accumulate", {{"total", total[i % 2]->ptr}, {"prob", prob->ptr}, {"total_next", total[(i + 1) % 2]->ptr}},
              {{"total", map_shape}, {"prob", map_shape}});
    }
    check(cudaMemcpyAsync(host_total->ptr, total[steps % 2]->ptr, maps, cudaMemcpyDeviceToHost, stream), "copy");
  }

  cudaGraphExec_t capture(int b) {
    enqueue(b);  // warm-up: TensorRT allocates and initialises on its first enqueue
    check(cudaStreamSynchronize(stream), "sync");
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) == cudaSuccess) {
      try {
        enqueue(b);
      } catch (const std::exception&) {
      }
      if (cudaStreamEndCapture(stream, &graph) == cudaSuccess && graph &&
          cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess) {
        cudaGraphDestroy(graph);
        return exec;
      }
      if (graph) cudaGraphDestroy(graph);
    }
    cudaGetLastError();  // clear the capture's error: the plain enqueues run instead
    std::cerr << "warning: CUDA graph capture failed for batch " << b << "; running plain enqueues\n";
    return nullptr;
  }

  ~Impl() {  // graphs and buffers, then the stream, then contexts before their engines (TensorRT's order)
    free_graphs();
    host_image.reset(); host_noise.reset(); host_total.reset(); host_rows.reset();
    image.reset(); noise.reset(); rows_dev.reset(); prob.reset(); edge.reset();
    conds.clear(); x.clear(); total.clear();
    if (stream) cudaStreamDestroy(stream);
    contexts.clear();
    engines.clear();
    runtime.reset();
  }
};

bool TrtBackend::gpu_visible() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

TrtBackend::TrtBackend(const ModelDir& model, const fs::path& dir) : impl_(std::make_unique<Impl>()) {
  Target target = current_target();
  std::map<std::string, json> metas;
  auto problems = engine_problems(model, dir, target, metas);
  if (!problems.empty()) {
    std::string all;
    for (const auto& p : problems) all += (all.empty() ? "" : "; ") + p;
    throw ModelError(dir.string() + ": TensorRT engines cannot be used here: " + all + ". Rebuild them: inpdiff build " +
                     model.path.string() + " --engines " + dir.string());
  }
  Impl& m = *impl_;
  m.tile = model.tile;
  m.precision = model.precision;
  m.max_batch = 1 << 30;
  for (const auto& [name, meta] : metas) m.max_batch = std::min(m.max_batch, meta["build"]["max_batch"].get<int>());
  for (const auto& [name, shape] : model.manifest.at("conditions").items())
    m.conditions.emplace_back(name, shape.get<std::vector<int64_t>>());
  m.runtime.reset(nvinfer1::createInferRuntime(m.logger));
  for (const char* name : kEngines) {
    std::ifstream in(dir / (std::string(name) + ".plan"), std::ios::binary);
    std::vector<char> blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    m.engines[name].reset(m.runtime->deserializeCudaEngine(blob.data(), blob.size()));
    if (!m.engines[name])
      throw ModelError(dir.string() + ": TensorRT could not load the engines; rebuild them with inpdiff build " +
                       model.path.string() + " --engines " + dir.string());
    m.contexts[name].reset(m.engines[name]->createExecutionContext());
  }
  check(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking), "cudaStreamCreate");
}

TrtBackend::~TrtBackend() = default;

std::string TrtBackend::name() const { return "tensorrt-" + impl_->precision; }

int TrtBackend::tile() const { return impl_->tile; }

std::vector<float> TrtBackend::sample(const uint8_t* tiles, int n, int h, int w, int samples,
                                      const std::vector<float>& noise, const std::vector<long>& rows) {
  Impl& m = *impl_;
  if (h != m.tile || w != m.tile)  // the Localizer plans the engines' tile (tile() is not 0)
    throw std::invalid_argument("the TensorRT engines take " + std::to_string(m.tile) + "-pixel tiles, not " +
                                std::to_string(h) + "x" + std::to_string(w));
  if (m.rows != rows || !m.image) m.allocate(rows);
  // The condition engine runs once per (tile, sample), so both engines share one batch size and one
  // graph covers the call.
  const size_t T = m.tile, plane = T * T, image_bytes = T * T * 3, total = static_cast<size_t>(n) * samples;
  const size_t steps = rows.size(), B = m.max_batch;
  std::vector<float> out(total * plane);
  for (size_t first = 0; first < total; first += B) {
    const int b = static_cast<int>(std::min(B, total - first));
    for (int j = 0; j < b; ++j)
      std::memcpy(m.host_image->as<uint8_t>() + j * image_bytes, tiles + ((first + j) / samples) * image_bytes, image_bytes);
    for (size_t s = 0; s <= steps; ++s)
      std::memcpy(m.host_noise->as<float>() + s * B * plane, noise.data() + (s * total + first) * plane, b * plane * sizeof(float));
    if (!m.graphs.count(b)) m.graphs[b] = m.capture(b);
    if (m.graphs[b]) check(cudaGraphLaunch(m.graphs[b], m.stream), "cudaGraphLaunch");
    else m.enqueue(b);
    check(cudaStreamSynchronize(m.stream), "sync");
    for (size_t k = 0; k < b * plane; ++k) out[first * plane + k] = m.host_total->as<float>()[k] / static_cast<float>(steps);
  }
  return out;
}

}  // namespace inpdiff
