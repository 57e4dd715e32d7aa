#include "inpdiff/model_dir.hpp"

#include <openssl/evp.h>

#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <vector>

#ifndef INPDIFF_SOURCE_MODELS
#define INPDIFF_SOURCE_MODELS ""
#endif
#ifndef INPDIFF_INSTALLED_MODELS
#define INPDIFF_INSTALLED_MODELS ""
#endif

namespace fs = std::filesystem;
using nlohmann::json;

namespace inpdiff {

std::string sha256_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ModelError(path.string() + ": cannot be read");
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &n);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

long step_row(const std::string& mode, int steps, int i, int max_steps) {
  long m = mode == "ddim" ? 0 : mode == "ddpm" ? 1 : -1;
  if (m < 0) throw std::invalid_argument("unknown sampling mode '" + mode + "'; choose from ddim, ddpm");
  if (steps < 1 || steps > max_steps)
    throw std::invalid_argument("steps must be between 1 and " + std::to_string(max_steps) +
                                " for this model, got " + std::to_string(steps));
  if (i < 0 || i >= steps) throw std::invalid_argument("step " + std::to_string(i) + " is outside the sampler");
  long rows_per_mode = static_cast<long>(max_steps) * (max_steps + 1) / 2;
  return m * rows_per_mode + static_cast<long>(steps) * (steps - 1) / 2 + i;
}

static json read_manifest(const fs::path& dir, bool verify) {
  fs::path path = dir / "manifest.json";
  if (!fs::is_directory(dir)) throw ModelError(dir.string() + ": no such model folder");
  if (!fs::is_regular_file(path))
    throw ModelError(dir.string() + ": no manifest.json (not an exported model; run `inpdiff export`)");
  json m;
  try {
    std::ifstream in(path);
    m = json::parse(in);
  } catch (const json::exception& e) {
    throw ModelError(path.string() + ": not valid JSON (" + e.what() + ")");
  }
  if (!m.is_object()) throw ModelError(path.string() + ": not a manifest (a JSON object is expected)");
  for (const char* field : {"files", "tile", "steps", "max_steps"}) {
    bool mapping = std::string(field) == "files";
    const json* v = m.contains(field) ? &m[field] : nullptr;
    bool ok = v && (mapping ? v->is_object() : v->is_number_integer());
    if (!ok) {
      std::string what = !v ? "missing" : mapping ? "not a mapping" : "not an integer";
      throw ModelError(path.string() + ": field '" + field + "' is " + what +
                       " (re-export the model with `inpdiff export`)");
    }
  }
  if (int tile = m["tile"].get<int>(); tile <= 0 || tile % 32)  // the network's coarsest stride
    throw ModelError(path.string() + ": field 'tile' is " + std::to_string(tile) +
                     ", not a positive multiple of 32 (the manifest was edited; re-export the model with "
                     "`inpdiff export`)");
  if (verify) {
    for (const auto& [name, digest] : m["files"].items()) {
      fs::path f = dir / name;
      if (!fs::is_regular_file(f)) throw ModelError(f.string() + ": missing (listed in the manifest)");
      if (!digest.is_string() || sha256_file(f) != digest.get<std::string>())
        throw ModelError(f.string() +
                         ": does not match the manifest's sha256 (changed or truncated); re-export the model "
                         "with `inpdiff export`");
    }
  }
  return m;
}

ModelDir ModelDir::load(const fs::path& dir, bool verify) {
  ModelDir d;
  d.path = dir;
  d.manifest = read_manifest(dir, verify);
  const json& m = d.manifest;
  d.tile = m["tile"].get<int>();
  d.steps = m["steps"].get<int>();
  d.max_steps = m["max_steps"].get<int>();
  for (const auto& [name, digest] : m["files"].items()) d.files[name] = digest.is_string() ? digest.get<std::string>() : "";
  d.mode = m.value("mode", "ddim");
  d.diffusion = m.value("diffusion", true);
  d.precision = m.value("precision", "fp32");
  if (m.contains("score") && m["score"].is_object()) {
    const json& s = m["score"];
    try {
      d.score = ScoreCalibration{s.at("statistic").get<std::string>(), s.at("a").get<double>(),
                                 s.at("b").get<double>(), s.at("threshold").get<double>()};
    } catch (const json::exception& e) {
      throw ModelError((dir / "manifest.json").string() + ": field 'score' is incomplete (" + e.what() +
                       "); run `inpdiff calibrate-score` again");
    }
    if (d.score->statistic != "top1" && d.score->statistic != "marked")
      throw ModelError((dir / "manifest.json").string() + ": unknown score statistic '" + d.score->statistic +
                       "'; known: top1, marked");
    d.mask_threshold = s.value("mask_threshold", 0.5);
  }
  return d;
}

namespace {
std::string joined(const std::set<std::string>& words) {
  std::string list;
  for (const std::string& w : words) list += (list.empty() ? "" : ", ") + w;
  return list;
}
}  // namespace

fs::path model_path(const std::string& model) {
  if (!model.empty() && (fs::exists(model) || fs::path(model).has_parent_path())) return model;  // a path
  // Installed beside the running program (wherever the installed tree was copied), at the configured
  // prefix, or in the source tree this was built from.
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  std::vector<fs::path> roots = {INPDIFF_INSTALLED_MODELS, INPDIFF_SOURCE_MODELS};
  if (!ec) roots.insert(roots.begin(), exe.parent_path().parent_path() / "share" / "inpdiff" / "models");
  const std::string name = model.empty() ? "edge-c" : model;
  for (const fs::path& dir : roots)
    if (!dir.empty() && fs::is_regular_file(dir / name / "manifest.json")) return dir / name;
  if (model.empty()) throw ModelError("the shipped model edge-c is not installed; name one with --model DIR");
  std::set<std::string> shipped;
  for (const fs::path& dir : roots)
    if (!dir.empty() && fs::is_directory(dir, ec))
      for (const auto& d : fs::directory_iterator(dir, ec))
        if (fs::is_regular_file(d.path() / "manifest.json")) shipped.insert(d.path().filename().string());
  throw ModelError(model + ": no such model folder, nor a shipped model of that name (shipped: " +
                   (shipped.empty() ? "none" : joined(shipped)) + ")");
}

std::pair<bool, std::string> cpu_int8_dot_product() {
  std::ifstream info("/proc/cpuinfo");
  if (!info) return {false, "an unknown CPU (no /proc/cpuinfo)"};
  std::set<std::string> found;
  for (std::string line; std::getline(info, line);) {
    if (line.rfind("flags", 0) != 0 && line.rfind("Features", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    for (std::string w; words >> w;)
      if (w == "avx512_vnni" || w == "avx_vnni" || w == "amx_int8" || w == "asimddp") found.insert(w);
  }
  if (found.empty()) return {false, "a CPU without VNNI or the dot-product extension"};
  return {true, "a CPU with " + joined(found)};
}

ModelDir runnable_here(ModelDir model, const std::pair<bool, std::string>& dot_product, std::string& why) {
  const nlohmann::json& q = model.manifest.contains("quantization") ? model.manifest["quantization"] : nlohmann::json();
  if (dot_product.first || !q.is_object() || q.value("target", "tensorrt") != "cpu") return model;
  const fs::path given = q.contains("source") ? q["source"].value("model_dir", "") : "";
  for (const fs::path& p : {given, model.path.parent_path() / given.filename()})
    if (!given.empty() && fs::is_regular_file(p / "manifest.json")) {
      why = model.path.string() + " is a CPU INT8 model, but this is " + dot_product.second +
            ": running the FP32 model " + p.string() + " instead";
      return ModelDir::load(p);
    }
  throw ModelError(model.path.string() + ": a CPU INT8 model, but this is " + dot_product.second + ", and its FP32 model (" +
                   given.string() + ") is not there; use the FP32 model folder");
}

}  // namespace inpdiff
