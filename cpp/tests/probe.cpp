// The C++ runtime's library, driven from the parity tests (test_cpp_runtime.py):
//   cpp_probe noise SEED STEP Y X COUNT OUT.f32            the generator's first COUNT normals
//   cpp_probe localize MODEL IMAGE OUT.f32 [SAMPLES SEED STEPS]
//                                                          the probability map (float32, H x W) to OUT.f32;
//                                                          score, verdict and regions as JSON on stdout
//   cpp_probe copies IMAGE OUT.u8 [STOP_AT [PROB.f32]]     the copy cover (uint8, H x W) to OUT.u8; as JSON, how
//                                                          often the search asked to go on (and how often between
//                                                          passes that read no rows), stopped at the STOP_AT-th time
//                                                          (0: never); with PROB (float32, H x W), its ends picked by it
//   cpp_probe regions MASK.png PROB.png                    the mask's regions, with their mean PROB / 255, as JSON
//   cpp_probe decode IMAGE OUT.u8                          the photo as decoded straight into a file (RGB, H x W x 3)
//                                                          to OUT.u8, or nothing where it cannot be; JSON on stdout
//   cpp_probe runnable MODEL [no-dot-product]              the model folder the command would run, and why, as
//                                                          JSON; this CPU's int8 dot products, or none
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "inpdiff/copies.hpp"
#include "inpdiff/image_io.hpp"
#include "inpdiff/localizer.hpp"
#include "inpdiff/noise.hpp"

using namespace inpdiff;

static void write_floats(const std::string& path, const float* data, size_t n) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n * sizeof(float)));
}

int main(int argc, char** argv) {
  std::string what = argc > 1 ? argv[1] : "";
  try {
    if (what == "noise" && argc == 8) {
      std::vector<float> z;
      normals(std::stoull(argv[2]), std::stoul(argv[3]), std::stoul(argv[4]), std::stoul(argv[5]), std::stoul(argv[6]), z);
      write_floats(argv[7], z.data(), z.size());
      return 0;
    }
    if (what == "copies" && argc >= 4 && argc <= 6) {
      const long stop_at = argc >= 5 ? std::stol(argv[4]) : 0;
      long asked = 0, between = 0;
      bool stopped = false;
      try {
        const cv::Mat rgb = read_image(argv[2]);
        cv::Mat prob;
        if (argc == 6) {
          prob.create(rgb.size(), CV_32F);
          std::ifstream(argv[5], std::ios::binary).read(reinterpret_cast<char*>(prob.data), static_cast<std::streamsize>(prob.total() * sizeof(float)));
        }
        const cv::Mat cover = cover_of(rgb, find_copies(rgb, {}, [&](int rows) {
          between += rows == 0;
          if (++asked == stop_at) throw Stopped();
        }), {}, prob);
        std::ofstream(argv[3], std::ios::binary).write(reinterpret_cast<const char*>(cover.data),
                                                       static_cast<std::streamsize>(cover.total()));
      } catch (const Stopped&) {
        stopped = true;
      }
      std::cout << nlohmann::json{{"asked", asked}, {"between", between}, {"stopped", stopped}}.dump() << std::endl;
      return 0;
    }
    if (what == "decode" && argc == 4) {
      const SpilledMat file = spill_image(argv[2]);
      if (!file.empty())
        std::ofstream(argv[3], std::ios::binary).write(reinterpret_cast<const char*>(file.mat().data),
                                                       static_cast<std::streamsize>(file.mat().total() * 3));
      std::cout << nlohmann::json{{"streamed", !file.empty()}, {"height", file.mat().rows}, {"width", file.mat().cols}}.dump()
                << std::endl;
      return 0;
    }
    if (what == "regions" && argc == 4) {
      const cv::Mat mask = cv::imread(argv[2], cv::IMREAD_GRAYSCALE) / 255;
      cv::Mat prob;
      cv::imread(argv[3], cv::IMREAD_GRAYSCALE).convertTo(prob, CV_32F, 1.0 / 255);
      std::cout << nlohmann::json(find_regions(mask, prob, 1)).dump() << std::endl;
      return 0;
    }
    if (what == "runnable" && (argc == 3 || argc == 4)) {
      const auto cpu = argc == 4 ? std::make_pair(false, std::string("a CPU without them (as told)")) : cpu_int8_dot_product();
      std::string why;
      const ModelDir model = runnable_here(ModelDir::load(argv[2]), cpu, why);
      std::cout << nlohmann::json{{"dot_product", cpu.first}, {"path", model.path.string()}, {"why", why}}.dump() << std::endl;
      return 0;
    }
    if (what == "localize" && (argc == 5 || argc == 8)) {
      LocalizeConfig cfg;
      if (argc == 8) {
        cfg.samples = std::stoi(argv[5]);
        cfg.seed = std::stoull(argv[6]);
        cfg.steps = std::stoi(argv[7]);
      }
      ModelDir model = ModelDir::load(argv[2]);
      auto backend = make_backend("onnxruntime", model, 0);
      Localizer loc(std::move(model), std::move(backend), cfg);
      Result r = loc.localize(read_image(argv[3]));
      write_floats(argv[4], r.prob.ptr<float>(), r.prob.total());
      nlohmann::json out = {{"height", r.prob.rows}, {"width", r.prob.cols}, {"score", r.score},
                            {"inpainted", r.inpainted}, {"tiles", r.tiles}, {"regions", r.regions}};
      std::cout << out.dump() << std::endl;
      return 0;
    }
  } catch (const std::exception& e) {
    std::cerr << "cpp_probe: " << e.what() << "\n";
    return 1;
  }
  std::cerr << "usage: cpp_probe noise SEED STEP Y X COUNT OUT | localize MODEL IMAGE OUT [SAMPLES SEED STEPS] | "
               "copies IMAGE OUT | regions MASK PROB | decode IMAGE OUT | runnable MODEL [no-dot-product]\n";
  return 2;
}
