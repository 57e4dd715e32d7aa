// What the command writes for one photo (inpdiff/runtime/outputs.py): the maps and the overlay.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>

#include "command/inputs.hpp"
#include "inpdiff/image_io.hpp"
#include "inpdiff/localizer.hpp"
#include "inpdiff/spill.hpp"

namespace inpdiff::command {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

// A detected pixel of the overlay (RGB): tinted red.
inline void tint(cv::Vec3b& p) {
  for (int c = 0; c < 3; ++c) p[c] = static_cast<uint8_t>(p[c] * 0.55 + (c == 0 ? 255 : 0) * 0.45);
}

inline int outline_width(const cv::Mat& mask) {
  return std::max(1, static_cast<int>(std::nearbyint(std::max(mask.rows, mask.cols) / 400.0)));
}

// The image with detected regions tinted red and outlined (outputs.py overlay), drawn on `out` itself:
// the photo is not needed afterwards, and a copy of a 48 MP one is 144 MB.
inline void draw_overlay(cv::Mat& out, const Result& r) {
  for (int y = 0; y < out.rows; ++y)
    for (int x = 0; x < out.cols; ++x)
      if (r.mask.at<uint8_t>(y, x)) tint(out.at<cv::Vec3b>(y, x));
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(r.mask, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  cv::drawContours(out, contours, -1, cv::Scalar(255, 255, 0), outline_width(r.mask));
}

inline constexpr int kOutBand = 256;  // rows of a photo in a file written at a time

// draw_overlay's picture of a photo in a file, rows y0.. (outputs.py overlay_bands): the same tint; the
// outline, of the same width, follows every edge of the mask (holes' too), found band by band, where
// draw_overlay traces outer contours over the whole mask.
inline cv::Mat overlay_band(const SpilledMat& photo, const Result& r, int y0) {
  const int H = r.mask.rows, y1 = std::min(H, y0 + kOutBand), t = outline_width(r.mask);
  const int a = std::max(0, y0 - t - 1), b = std::min(H, y1 + t + 1);  // a halo wider than the pen
  const cv::Mat m = r.mask.rowRange(a, b);
  cv::Mat eroded, line;
  cv::erode(m, eroded, cv::Mat::ones(3, 3, CV_8U));
  cv::dilate(m - eroded, line, cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(t, t)));
  r.mask_file.read(b - a);
  cv::Mat rows = photo.mat().rowRange(y0, y1).clone();
  photo.read(y1 - y0);
  for (int y = 0; y < rows.rows; ++y) {
    const uint8_t *mb = m.ptr<uint8_t>(y + y0 - a), *lb = line.ptr<uint8_t>(y + y0 - a);
    cv::Vec3b* p = rows.ptr<cv::Vec3b>(y);
    for (int x = 0; x < rows.cols; ++x) {
      if (mb[x]) tint(p[x]);
      if (lb[x]) p[x] = cv::Vec3b(255, 255, 0);
    }
  }
  return rows;
}

// A map of a photo in a file as 8-bit rows y0.. (`scale` and clipped to [0, 1] first where `clip`).
inline Bands map_bands(const cv::Mat& map, const SpilledMat& file, double scale, bool clip) {
  return [&map, &file, scale, clip](int y0) {
    const cv::Mat rows = map.rowRange(y0, std::min(map.rows, y0 + kOutBand));
    cv::Mat out;
    if (clip) cv::Mat(cv::min(rows * 2, 1.0)).convertTo(out, CV_8U, scale);
    else rows.convertTo(out, CV_8U, scale);
    file.read(rows.rows);
    return out;
  };
}

// The maps and overlay of one image, each written atomically -> {kind: path}; draws on `rgb`, and spends
// it. A photo in a file (`photo`, and its Result's maps) is written a band of rows at a time.
inline json write_outputs(const Job& job, cv::Mat& rgb, const SpilledMat& photo, const Result& r, const std::string& outputs) {
  json written = json::object();
  auto path = [&](const char* suffix) { return fs::path(job.stem.string() + suffix); };
  if (outputs == "report" && !r.inpainted) return written;
  // Each map is encoded on a thread of its own while the overlay is drawn and encoded here.
  auto png = [&](const char* suffix, const cv::Mat& map, const SpilledMat& file, bool stretch) {
    return std::async(std::launch::async, [&, suffix, stretch] {
      if (!photo.empty()) return write_png_bands(path(suffix), map.size(), 1, map_bands(map, file, 255.0, stretch));
      cv::Mat map8;  // saturate_cast rounds half to even, as np.round
      (stretch ? cv::Mat(cv::min(map * 2, 1.0)) : map).convertTo(map8, CV_8U, 255.0);
      write_png(path(suffix), map8);
    });
  };
  auto prob = png(".prob.png", r.prob, r.prob_file, false);
  if (outputs == "report") {
    prob.get();
    written["prob"] = path(".prob.png").string();
    return written;
  }
  auto mask = png(".mask.png", r.mask, r.mask_file, false);
  if (!r.uncertainty.empty()) png(".uncertainty.png", r.uncertainty, r.uncertainty_file, true).get();
  if (!photo.empty()) {
    write_jpeg_bands(path(".overlay.jpg"), r.prob.size(), [&](int y0) { return overlay_band(photo, r, y0); }, 90);
  } else {
    draw_overlay(rgb, r);
    write_jpeg(path(".overlay.jpg"), rgb, 90);
  }
  prob.get();  // rethrows what failed there
  mask.get();
  written["prob"] = path(".prob.png").string();
  written["mask"] = path(".mask.png").string();
  if (!r.uncertainty.empty()) written["uncertainty"] = path(".uncertainty.png").string();
  written["overlay"] = path(".overlay.jpg").string();
  return written;
}

}  // namespace inpdiff::command
