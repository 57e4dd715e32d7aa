#include "inpdiff/copies.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "inpdiff/spill.hpp"

namespace inpdiff {

namespace {

constexpr int kBlock = 4;                     // a block's row is 12 bytes: one uint64 and one uint32 load

uint64_t splitmix64(uint64_t i) {
  uint64_t z = i * 0x9E3779B97F4A7C15ull + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Little-endian loads, as inpdiff/copies.py reads the bytes, byte by byte (the addresses are unaligned).
uint64_t load64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t load32(const uint8_t* p) { return uint64_t{p[0]} | uint64_t{p[1]} << 8 | uint64_t{p[2]} << 16 | uint64_t{p[3]} << 24; }

constexpr int kBand = 128;                   // block rows hashed at a time
constexpr uint64_t kPassBlocks = 1ull << 22;  // blocks per sorting pass: 32 MB of keys, and as much to sort them

int bit_length(uint64_t n) {
  int bits = 0;
  while (bits < 64 && (n >> bits)) ++bits;
  return bits;
}

// Orders keys so that equal hashes are adjacent (all the grouping needs): an LSD radix sort on the
// top 32 bits, then a full sort of the rare runs that share them. Several times faster than std::sort.
void group_sort(std::vector<uint64_t>& keys) {
  std::vector<uint64_t> tmp(keys.size());
  std::vector<size_t> count(1 << 16);
  for (int shift = 32; shift < 64; shift += 16) {
    std::fill(count.begin(), count.end(), 0);
    for (uint64_t k : keys) ++count[(k >> shift) & 0xFFFF];
    size_t sum = 0;
    for (size_t& c : count) sum += std::exchange(c, sum);
    for (uint64_t k : keys) tmp[count[(k >> shift) & 0xFFFF]++] = k;
    keys.swap(tmp);
  }
  for (size_t i = 0, j; i < keys.size(); i = j) {
    for (j = i + 1; j < keys.size() && (keys[j] >> 32) == (keys[i] >> 32); ++j) {}
    if (j - i > 1) std::sort(keys.begin() + i, keys.begin() + j);
  }
}

// The key of every textured block (its hash above `bits`, its index below), to `take`, computed a band
// of rows at a time.
template <class Take>
void block_keys(const cv::Mat& img, const CopySettings& s, int bits, const RowsRead& read, Take&& take) {
  const int H = img.rows, W = img.cols, b = kBlock, h = H - b + 1, w = W - b + 1;
  uint64_t K[2 + kBlock];
  for (int i = 0; i < 2 + kBlock; ++i) K[i] = splitmix64(static_cast<uint64_t>(i)) | 1ull;
  const cv::Mat kernel = cv::Mat::ones(b, b, CV_8U);
  std::vector<uint64_t> row;
  cv::Mat total, hi, lo, across, down, across_sum, down_sum;
  for (int y0 = 0; y0 < h; y0 += kBand) {
    const int y1 = std::min(y0 + kBand, h), n = y1 - y0 + b - 1;  // image rows y0 .. y1 + 2
    total.create(n, W, CV_16U);
    across.create(n, W - 1, CV_8U);
    down.create(n - 1, W, CV_8U);
    row.resize(static_cast<size_t>(n) * w);
    for (int r = 0; r < n; ++r) {
      const uint8_t* p = img.ptr<uint8_t>(y0 + r);
      uint16_t* t = total.ptr<uint16_t>(r);
      for (int x = 0; x < W; ++x) t[x] = static_cast<uint16_t>(p[3 * x] + p[3 * x + 1] + p[3 * x + 2]);
      // Side-by-side pixels exactly equal: runs of one colour, which drawn text and graphics have.
      uint8_t* a = across.ptr<uint8_t>(r);
      for (int x = 0; x + 1 < W; ++x) a[x] = std::equal(p + 3 * x, p + 3 * x + 3, p + 3 * x + 3);
      if (r + 1 < n) {
        const uint8_t* q = img.ptr<uint8_t>(y0 + r + 1);
        uint8_t* d = down.ptr<uint8_t>(r);
        for (int x = 0; x < W; ++x) d[x] = std::equal(p + 3 * x, p + 3 * x + 3, q + 3 * x);
      }
      uint64_t* q = row.data() + static_cast<size_t>(r) * w;
      for (int x = 0; x < w; ++x) q[x] = load64(p + 3 * x) * K[0] + load32(p + 3 * x + 8) * K[1];
    }
    if (read) read(n);
    cv::dilate(total, hi, kernel, cv::Point(0, 0));  // anchored at the top-left: the block at (y, x)
    cv::erode(total, lo, kernel, cv::Point(0, 0));
    cv::boxFilter(across, across_sum, CV_16U, cv::Size(3, b), cv::Point(0, 0), false, cv::BORDER_CONSTANT);
    cv::boxFilter(down, down_sum, CV_16U, cv::Size(b, 3), cv::Point(0, 0), false, cv::BORDER_CONSTANT);
    for (int r = 0; r < y1 - y0; ++r) {
      const uint16_t *top = hi.ptr<uint16_t>(r), *bottom = lo.ptr<uint16_t>(r);
      const uint16_t *ea = across_sum.ptr<uint16_t>(r), *ed = down_sum.ptr<uint16_t>(r);
      for (int x = 0; x < w; ++x) {
        if (top[x] - bottom[x] < s.min_range || ea[x] + ed[x] >= s.max_equal_pairs) continue;
        uint64_t v = 0;
        for (int dy = 0; dy < b; ++dy) v += row[static_cast<size_t>(r + dy) * w + x] * K[2 + dy];
        take(((v >> bits) << bits) | (static_cast<uint64_t>(y0 + r) * w + x));
      }
    }
  }
}

// ---- Near copies (inpdiff/near_copies.py) ----

constexpr int kNear = 8;                       // block side
constexpr int kNearBand = 64;                  // block rows whose features are computed at a time
// A photo of at most this many blocks (4 MP) is compared at once (290 MB): the shares' file round trip
// cost 0.1-0.2 s of a 1.3 s run at 4 MP, which the C++ runtime's CPU INT8 speed cannot spare.
constexpr int64_t kNearOnePass = 1 << 22;
constexpr int64_t kNearShareBlocks = 1 << 20;  // else, blocks compared at a time: about 75 MB of them
constexpr int kFeatures = 9;
const float kKernels[4][kNear] = {{4, 4, 4, 4, 4, 4, 4, 4},
                                  {5, 4, 3, 1, -1, -3, -4, -5},
                                  {5, 2, -2, -5, -5, -2, 2, 5},
                                  {4, -1, -5, -3, 3, 5, 1, -4}};
const float kBlurred[4][kNear + 1] = {{4, 8, 8, 8, 8, 8, 8, 8, 4},  // kKernels of the gray summed over 2x2
                                      {5, 9, 7, 4, 0, -4, -7, -9, -5},
                                      {5, 7, 0, -7, -10, -7, 0, 7, 5},
                                      {4, 3, -6, -8, 0, 8, 6, -3, -4}};
const int kPairs[kFeatures][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 0}, {1, 1}, {1, 2}, {2, 0}, {2, 1}, {3, 0}};  // (u, v)
// The (u, v) whose feature a plane added over the block leaves unchanged (near_copies.py RAMP_FREE).
const int kRampFree[kFeatures][2] = {{0, 2}, {2, 0}, {1, 1}, {1, 2}, {2, 2}, {1, 3}, {2, 1}, {3, 1}, {3, 3}};

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

struct NearBlock {  // what near_band hands over for one counted block
  int32_t k0, k1, k2;
  int32_t f[kFeatures];
  int64_t at;
  double sd;
};

struct NearFeatures {  // 48 bytes, in raster order: read only for the pairs that pass the first test
  int32_t f[kFeatures];
  double sd;
};

struct NearKey {  // 24 bytes, sorted: what the first test reads, in key order
  uint64_t key;    // key parts in 11 bits each (|F| / q < 1024) and the block index in the low 31, as in Python
  uint32_t block;  // into the pass's NearFeatures
  float f3, f6, tol;
};

// The counted blocks with top rows y0 .. y1 of the RGB photo, in raster order, passed to `take`, with
// their first `count` features (and key parts) filled in. Grey a band at a time: no image-sized copy.
template <class Take>
void near_band(const cv::Mat& rgb, int y0, int y1, const NearCopySettings& s, int count, const RowsRead& read, Take&& take) {
  const int W = rgb.cols, w = W - kNear + 1, h = y1 - y0;
  cv::Mat band;  // with blur, one more row for the 2x2 sums (none past the photo's edge: 0 there)
  cv::cvtColor(rgb.rowRange(y0, std::min(rgb.rows, y1 + kNear - 1 + s.blur)), band, cv::COLOR_RGB2GRAY);
  if (read) read(band.rows);
  cv::Mat f[kFeatures], total, squares;
  const int taps = kNear + s.blur;
  for (int i = 0; i < count; ++i) {
    const int* uv = s.ramp_free ? kRampFree[i] : kPairs[i];
    const float* x = s.blur ? kBlurred[uv[0]] : kKernels[uv[0]];
    const float* y = s.blur ? kBlurred[uv[1]] : kKernels[uv[1]];
    const cv::Mat kx(1, taps, CV_32F, const_cast<float*>(x)), ky(1, taps, CV_32F, const_cast<float*>(y));
    cv::sepFilter2D(band, f[i], CV_32F, kx, ky, cv::Point(0, 0), 0, cv::BORDER_CONSTANT);
  }
  const cv::Mat rows = band.rowRange(0, h + kNear - 1);  // var and the clip test: the gray's blocks
  cv::boxFilter(rows, total, CV_64F, cv::Size(kNear, kNear), cv::Point(0, 0), false, cv::BORDER_CONSTANT);
  cv::sqrBoxFilter(rows, squares, CV_64F, cv::Size(kNear, kNear), cv::Point(0, 0), false, cv::BORDER_CONSTANT);
  const double min_var = static_cast<double>(kNear * kNear * s.min_std) * (kNear * kNear * s.min_std);
  cv::Mat hi, lo;  // clipped light and drawn captions repeat
  const cv::Mat kernel = cv::Mat::ones(kNear, kNear, CV_8U);
  cv::dilate(rows, hi, kernel, cv::Point(0, 0));
  cv::erode(rows, lo, kernel, cv::Point(0, 0));
  NearBlock blk;
  for (int r = 0; r < h; ++r) {
    const double *t = total.ptr<double>(r), *sq = squares.ptr<double>(r);
    for (int x = 0; x < w; ++x) {
      const double var = kNear * kNear * sq[x] - t[x] * t[x];  // exact: integers far below 2^53
      if (var < min_var || hi.ptr<uint8_t>(r)[x] > 255 - s.clip || lo.ptr<uint8_t>(r)[x] < s.clip) continue;
      for (int i = 0; i < count; ++i) blk.f[i] = static_cast<int32_t>(f[i].ptr<float>(r)[x]);
      blk.k0 = static_cast<int32_t>(floor_div(blk.f[0], s.q));
      if (count > 2) {
        blk.k1 = static_cast<int32_t>(floor_div(blk.f[1], s.q));
        blk.k2 = static_cast<int32_t>(floor_div(blk.f[2], s.q));
      }
      blk.at = static_cast<int64_t>(y0 + r) * w + x;
      blk.sd = std::sqrt(var) / (kNear * kNear);
      take(blk);
    }
  }
}

NearKey near_key(const NearBlock& b, const NearCopySettings& s) {
  const uint64_t key = (static_cast<uint64_t>(b.k0 + 1024) << 53) | (static_cast<uint64_t>(b.k1 + 1024) << 42) |
                       (static_cast<uint64_t>(b.k2 + 1024) << 31) | static_cast<uint64_t>(b.at);
  // +1: a pair is ruled out on f3 or f6 only if it is past its tolerance despite float's rounding
  const float tol = static_cast<float>(s.abs_tol + s.rel_tol * b.sd) + 1.0f;
  return {key, 0, static_cast<float>(b.f[3]), static_cast<float>(b.f[6]), tol};
}

NearFeatures near_features(const NearBlock& b) {
  NearFeatures nf;
  std::copy(b.f, b.f + kFeatures, nf.f);
  nf.sd = b.sd;
  return nf;
}

// A search's buffers, kept for the next search (the same photo's): fresh ones cost about 0.05 s of page faults at 4 MP.
struct NearScratch {
  std::vector<NearKey> keys, spare;
  std::vector<NearFeatures> feats;
};

// Sorts keys given in raster order (their low 31 bits ascending): a stable LSD radix sort on the 33 bits
// of key parts above them is then a full sort, and several times faster than std::sort of these structs.
void near_sort(std::vector<NearKey>& keys, std::vector<NearKey>& tmp) {
  tmp.resize(keys.size());
  std::vector<size_t> count(1 << 11);
  for (int shift = 31; shift < 64; shift += 11) {
    std::fill(count.begin(), count.end(), 0);
    for (const NearKey& k : keys) ++count[(k.key >> shift) & 0x7FF];
    size_t sum = 0;
    for (size_t& c : count) sum += std::exchange(c, sum);
    for (const NearKey& k : keys) tmp[count[(k.key >> shift) & 0x7FF]++] = k;
    keys.swap(tmp);
  }
}

// Matches (p, offset code) among `keys` (their `block` indexing `feats`), which are sorted here.
void near_matches(NearScratch& scratch, const NearCopySettings& s, int w, std::vector<std::pair<int64_t, int64_t>>& out) {
  std::vector<NearKey>& keys = scratch.keys;
  const std::vector<NearFeatures>& feats = scratch.feats;
  near_sort(keys, scratch.spare);
  const auto at = [](const NearKey& k) { return static_cast<int64_t>(k.key & ((uint64_t{1} << 31) - 1)); };
  struct Match { int64_t p, q, d; };
  std::vector<Match> found;
  std::vector<int64_t> ends;  // both blocks of every alike pair
  // Each block with the next `window` in key order that share its first key part, in one pass (a pass
  // per j, as Python makes, reads the keys `window` times from memory); the matches' order does not matter.
  for (size_t i = 0; i < keys.size(); ++i) {
    const NearKey& ka = keys[i];
    for (size_t j = i + 1; j <= i + s.window && j < keys.size() && (keys[j].key >> 53) == (ka.key >> 53); ++j) {
      const NearKey& kb = keys[j];
      const float t = std::min(ka.tol, kb.tol);  // the first test: most pairs fail it (as in Python)
      if (std::abs(ka.f3 - kb.f3) > t || std::abs(ka.f6 - kb.f6) > t) continue;
      const NearFeatures &a = feats[ka.block], &b = feats[kb.block];
      double dist = 0;
      for (int k = 0; k < kFeatures; ++k) {
        const double d = static_cast<double>(a.f[k] - b.f[k]);
        dist += d * d;
      }
      const double limit = s.abs_tol + s.rel_tol * std::min(a.sd, b.sd);
      if (!(dist <= limit * limit)) continue;
      const int64_t pa = at(ka), pb = at(kb);
      ends.push_back(pa), ends.push_back(pb);  // near ones too: edges and patterns
      int64_t dy = pb / w - pa / w, dx = pb % w - pa % w;
      if (std::abs(dy) < s.min_distance && std::abs(dx) < s.min_distance) continue;
      int64_t p = pa, q = pb;
      if (q < p) std::swap(p, q), dy = -dy, dx = -dx;  // from the earlier block in raster order
      found.push_back({p, q, dy * 2 * w + dx + w});
    }
  }
  std::sort(ends.begin(), ends.end());
  const auto count = [&](int64_t v) {
    const auto r = std::equal_range(ends.begin(), ends.end(), v);
    return r.second - r.first;
  };
  for (const Match& m : found)
    if (count(m.p) <= s.max_matches && count(m.q) <= s.max_matches) out.emplace_back(m.p, m.d);
}

// Blocks compared a share of whole first key parts at a time, as inpdiff/near_copies.py _shares cuts
// them (which changes no match: blocks are only compared within one first key part). The shares are
// cut from the first key parts' histogram, estimated from every fourth band; then each block's features
// are computed once and written to its share's file, and the shares are read back one by one.
void near_matches_in_shares(const cv::Mat& rgb, const NearCopySettings& s, const RowsRead& read, NearScratch& scratch,
                            std::vector<std::pair<int64_t, int64_t>>& out) {
  const int h = rgb.rows - kNear + 1, w = rgb.cols - kNear + 1;
  std::vector<int64_t> counts(2048);  // |F| / q < 1024
  for (int y0 = 0; y0 < h; y0 += 4 * kNearBand)
    near_band(rgb, y0, std::min(y0 + kNearBand, h), s, 1, read, [&](const NearBlock& b) { counts[b.k0 + 1024] += 4; });
  std::vector<int32_t> starts = {-1024};  // the first share takes every part below the next one's
  int64_t used = 0;
  for (int part = 0; part < 2048; ++part) {
    if (!counts[part]) continue;
    if (used && used + counts[part] > kNearShareBlocks) starts.push_back(part - 1024), used = 0;
    used += counts[part];
  }
  struct Record { NearKey key; NearFeatures f; };
  std::vector<File> files;
  std::vector<int64_t> sizes(starts.size());
  for (size_t i = 0; i < starts.size(); ++i) files.push_back(anonymous_file());
  for (int y0 = 0; y0 < h; y0 += kNearBand)
    near_band(rgb, y0, std::min(y0 + kNearBand, h), s, kFeatures, read, [&](const NearBlock& b) {
      const size_t i = std::upper_bound(starts.begin(), starts.end(), b.k0) - starts.begin() - 1;
      const Record r{near_key(b, s), near_features(b)};
      if (std::fwrite(&r, sizeof r, 1, files[i].get()) != 1) throw std::runtime_error("writing a temporary file failed");
      ++sizes[i];
    });
  for (size_t i = 0; i < files.size(); ++i) {
    if (read) read(0);  // a share reads no rows of the photo: this is where a stopping run ends the search
    std::vector<NearKey>& keys = scratch.keys;
    std::vector<NearFeatures>& feats = scratch.feats;
    keys.resize(sizes[i]), feats.resize(sizes[i]);
    std::FILE* f = files[i].get();
    std::rewind(f);
    for (int64_t k = 0; k < sizes[i]; ++k) {
      Record r;
      if (std::fread(&r, sizeof r, 1, f) != 1) throw std::runtime_error("reading a temporary file failed");
      keys[k] = r.key, keys[k].block = static_cast<uint32_t>(k), feats[k] = r.f;
    }
    files[i].reset();  // its pages, before the next share is read
    near_matches(scratch, s, w, out);
  }
}

// Marks (bit 1) become cover (bit 0) over the k x k pixels below and right of each, as cv::dilate
// anchored at (k - 1, k - 1) would make them, and are cleared: in place, with no second image (at
// 100 MP, another 100 MB), in two passes that take the window across, then down.
void dilate_marks(cv::Mat& cover, int k) {
  const int H = cover.rows, W = cover.cols;
  std::vector<char> marked(H, 0);  // rows with a mark: few, in most photos
  for (int y = 0; y < H; ++y) {  // bit 2: a mark among the k pixels of this row that end here
    uint8_t* c = cover.ptr<uint8_t>(y);
    uint8_t any = 0;
    for (int x = 0; x < W; ++x) any |= c[x];
    if (!(any & 2)) continue;
    marked[y] = 1;
    for (int x = 0, last = -k; x < W; ++x) {
      if (c[x] & 2) last = x;
      if (x - last < k) c[x] |= 4;
    }
  }
  std::vector<int> last(W, -k);  // the latest row with bit 2 in each column
  for (int y = 0, last_row = -k; y < H; ++y) {
    if (marked[y]) last_row = y;
    if (y - last_row >= k) continue;  // no mark within reach above: nothing to cover, nothing to clear
    uint8_t* c = cover.ptr<uint8_t>(y);
    for (int x = 0; x < W; ++x) {
      if (c[x] & 4) last[x] = y;
      c[x] = static_cast<uint8_t>((c[x] & 1) | (y - last[x] < k));
    }
  }
}

std::pair<int, int> offset(const CopyPair& p) { return {p.y[1] - p.y[0], p.x[1] - p.x[0]}; }

// The kept near-copy matches, as inpdiff/near_copies.py's near_pairs gives them (in no particular
// order; within a pair, the later block in raster order second).
std::vector<CopyPair> near_pairs(const cv::Mat& rgb, const NearCopySettings& s, const RowsRead& read, NearScratch& scratch) {
  const int H = rgb.rows, W = rgb.cols;
  std::vector<CopyPair> pairs;
  if (H < kNear || W < kNear) return pairs;
  const int h = H - kNear + 1, w = W - kNear + 1;
  const int64_t n = static_cast<int64_t>(h) * w;
  std::vector<std::pair<int64_t, int64_t>> matches;  // (p, d)
  if (n <= kNearOnePass) {
    std::vector<NearKey>& keys = scratch.keys;
    std::vector<NearFeatures>& feats = scratch.feats;
    keys.clear(), feats.clear();
    keys.reserve(static_cast<size_t>(n));  // no regrowth copies; pages never written are never resident
    feats.reserve(static_cast<size_t>(n));
    for (int y0 = 0; y0 < h; y0 += kNearBand)
      near_band(rgb, y0, std::min(y0 + kNearBand, h), s, kFeatures, read, [&](const NearBlock& b) {
        keys.push_back(near_key(b, s));
        keys.back().block = static_cast<uint32_t>(feats.size());
        feats.push_back(near_features(b));
      });
    near_matches(scratch, s, w, matches);
  } else {
    near_matches_in_shares(rgb, s, read, scratch, matches);
  }
  // Keep a match if its neighbours moved by the same offset: a copied area, not one lookalike.
  std::vector<int64_t> code;
  code.reserve(matches.size());
  for (const auto& [p, d] : matches) code.push_back(d * n + p);
  std::sort(code.begin(), code.end());
  code.erase(std::unique(code.begin(), code.end()), code.end());
  for (const int64_t c : code) {
    const int64_t d = c / n, p = c % n, py = p / w, px = p % w;
    int support = 0;
    for (int ey = -1; ey <= 1; ++ey)
      for (int ex = -1; ex <= 1; ++ex) {
        const int64_t ny = py + ey, nx = px + ex;
        if ((ey == 0 && ex == 0) || ny < 0 || ny >= h || nx < 0 || nx >= w) continue;
        support += std::binary_search(code.begin(), code.end(), d * n + ny * w + nx);
      }
    if (support < s.support) continue;
    const int64_t dy = d / (2 * w), dx = d % (2 * w) - w;
    CopyPair pair{{static_cast<int>(py), static_cast<int>(py + dy)}, {static_cast<int>(px), static_cast<int>(px + dx)}, kNear};
    if (dy < 0 || (dy == 0 && dx < 0)) std::swap(pair.y[0], pair.y[1]), std::swap(pair.x[0], pair.x[1]);
    pairs.push_back(pair);
  }
  return pairs;
}

// The union of one end's blocks (CV_8U, 0 or 1), drawn in their extent grown by `pad` pixels and cut
// to `size` (inpdiff/copies.py _blocks_in_box); false where that box exceeds `area` pixels.
bool blocks_in_box(const std::vector<const CopyPair*>& group, int end, int pad, cv::Size size, int64_t area,
                   cv::Rect& box, cv::Mat& region) {
  int y0 = size.height, x0 = size.width, y1 = 0, x1 = 0;
  for (const CopyPair* p : group) {
    y0 = std::min(y0, p->y[end]), x0 = std::min(x0, p->x[end]);
    y1 = std::max(y1, p->y[end] + p->size), x1 = std::max(x1, p->x[end] + p->size);
  }
  y0 = std::max(0, y0 - pad), x0 = std::max(0, x0 - pad), y1 = std::min(size.height, y1 + pad), x1 = std::min(size.width, x1 + pad);
  if (static_cast<int64_t>(y1 - y0) * (x1 - x0) > area) return false;
  box = cv::Rect(x0, y0, x1 - x0, y1 - y0);
  region = cv::Mat::zeros(box.size(), CV_8U);
  for (const CopyPair* p : group) region(cv::Rect(p->x[end] - x0, p->y[end] - y0, p->size, p->size)) = 1;
  return true;
}

// An end's border strength (inpdiff/copies.py _border_strength): the gradient on the border of its
// blocks' union over that inside it; negative where nothing is inside or its box exceeds seam_area.
double border_strength(const cv::Mat& rgb, const std::vector<const CopyPair*>& group, int end, const CopySettings& s) {
  cv::Rect box;
  cv::Mat region;
  if (!blocks_in_box(group, end, 2, rgb.size(), s.seam_area, box, region)) return -1;
  const int y0 = box.y, x0 = box.x, y1 = box.y + box.height, x1 = box.x + box.width;
  cv::Mat total(box.size(), CV_16S);
  for (int y = y0; y < y1; ++y) {
    const uint8_t* c = rgb.ptr<uint8_t>(y) + 3 * x0;
    int16_t* t = total.ptr<int16_t>(y - y0);
    for (int x = 0; x < x1 - x0; ++x) t[x] = static_cast<int16_t>(c[3 * x] + c[3 * x + 1] + c[3 * x + 2]);
  }
  cv::Mat gx, gy, grown, shrunk, inner;
  cv::Sobel(total, gx, CV_32F, 1, 0);
  cv::Sobel(total, gy, CV_32F, 0, 1);
  const cv::Mat grad = cv::abs(gx) + cv::abs(gy);
  cv::dilate(region, grown, cv::Mat::ones(3, 3, CV_8U));
  cv::erode(region, shrunk, cv::Mat::ones(3, 3, CV_8U));
  cv::erode(region, inner, cv::Mat::ones(5, 5, CV_8U));
  double on_border = 0, inside = 0;  // sums of integers: exact, as Python's float64 sums
  int64_t n_border = 0, n_inner = 0;
  for (int y = 0; y < region.rows; ++y) {
    const float* g = grad.ptr<float>(y);
    const uint8_t *a = grown.ptr<uint8_t>(y), *b = shrunk.ptr<uint8_t>(y), *i = inner.ptr<uint8_t>(y);
    for (int x = 0; x < region.cols; ++x) {
      if (a[x] && !b[x]) on_border += g[x], ++n_border;
      if (i[x]) inside += g[x], ++n_inner;
    }
  }
  if (!n_border || !n_inner) return -1;
  return on_border / static_cast<double>(n_border) / (inside / static_cast<double>(n_inner) + 1e-3);
}

// The pairs grouped by offset (inpdiff/copies.py _offset_groups): fn(group) for each, in the order of
// (dy, dx), a group being the indices of its pairs.
template <class Fn>
void for_each_offset(const std::vector<CopyPair>& pairs, Fn fn) {
  std::vector<size_t> order(pairs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return offset(pairs[a]) < offset(pairs[b]); });
  for (size_t i = 0, j; i < order.size(); i = j) {
    for (j = i + 1; j < order.size() && offset(pairs[order[j]]) == offset(pairs[order[i]]); ++j) {}
    fn(std::vector<size_t>(order.begin() + static_cast<std::ptrdiff_t>(i), order.begin() + static_cast<std::ptrdiff_t>(j)));
  }
}

// Which ends of each pair to mark (inpdiff/copies.py _seam_ends): a group of at least seam_pairs
// pairs of one offset keeps only its end whose border is stronger by seam_margin.
std::vector<std::array<bool, 2>> seam_ends(const cv::Mat& rgb, const std::vector<CopyPair>& pairs, const CopySettings& s) {
  std::vector<std::array<bool, 2>> keep(pairs.size(), {true, true});
  if (!s.seam_pairs) return keep;
  for_each_offset(pairs, [&](const std::vector<size_t>& idx) {
    if (idx.size() < static_cast<size_t>(s.seam_pairs)) return;
    std::vector<const CopyPair*> group;
    for (size_t k : idx) group.push_back(&pairs[k]);
    const double a = border_strength(rgb, group, 0, s), b = border_strength(rgb, group, 1, s);
    if (a < 0 || b < 0 || !(std::max(a, b) > s.seam_margin * std::min(a, b))) return;
    for (size_t k : idx) keep[k][a > b ? 1 : 0] = false;  // the weaker end
  });
  return keep;
}

// The sum of floor(255 p + 0.5) over the union of an end's blocks, and its pixels (inpdiff/copies.py
// _map_sum); false where the union's box exceeds seam_area.
bool map_sum(const cv::Mat& prob, const std::vector<const CopyPair*>& group, int end, const CopySettings& s,
             int64_t& sum, int64_t& n) {
  cv::Rect box;
  cv::Mat region;
  if (!blocks_in_box(group, end, 0, prob.size(), s.seam_area, box, region)) return false;
  sum = 0, n = 0;
  for (int y = 0; y < box.height; ++y) {
    const float* q = prob.ptr<float>(box.y + y) + box.x;
    const uint8_t* r = region.ptr<uint8_t>(y);
    for (int x = 0; x < box.width; ++x)
      if (r[x]) sum += static_cast<int64_t>(std::floor(q[x] * 255.0f + 0.5f)), ++n;  // float operations, as NumPy's
  }
  return true;
}

// The ends the network's map picks (inpdiff/copies.py _pick_ends): a group of at least pick_pairs
// pairs that keeps both ends keeps only the one where the map's mean is higher by pick_margin.
void pick_ends(const cv::Mat& prob, const std::vector<CopyPair>& pairs, std::vector<std::array<bool, 2>>& keep,
               const CopySettings& s) {
  if (!s.pick_pairs) return;
  for_each_offset(pairs, [&](const std::vector<size_t>& idx) {
    if (idx.size() < static_cast<size_t>(s.pick_pairs)) return;
    std::vector<const CopyPair*> group;
    for (size_t k : idx) {
      if (!keep[k][0] || !keep[k][1]) return;
      group.push_back(&pairs[k]);
    }
    int64_t sa, na, sb, nb;
    if (!map_sum(prob, group, 0, s, sa, na) || !map_sum(prob, group, 1, s, sb, nb)) return;
    int drop = -1;
    if (static_cast<double>(sa * nb) > s.pick_margin * static_cast<double>(sb * na)) drop = 1;
    else if (static_cast<double>(sb * na) > s.pick_margin * static_cast<double>(sa * nb)) drop = 0;
    if (drop >= 0)
      for (size_t k : idx) keep[k][drop] = false;
  });
}

// Copy growth (inpdiff/copy_growth.py): each offset that several near pairs share, grown into the connected
// region around its pairs where the band-passed gray correlates with itself moved by that offset, not
// with itself moved by minus it or twice it (a periodic pattern), and runs more than one way (not an edge).
constexpr int kScale = 441, kHalo = 3;

// R = 49 * S3 - 9 * S7 of the gray over rows y0..y1, columns x0..x1 (gray 0 past the photo's edge), as
// doubles (exact integers).
cv::Mat residual(const cv::Mat& rgb, int y0, int y1, int x0, int x1) {
  const int a = std::max(0, y0 - kHalo), b = std::min(rgb.rows, y1 + kHalo);
  const int c = std::max(0, x0 - kHalo), d = std::min(rgb.cols, x1 + kHalo);
  cv::Mat gray = cv::Mat::zeros(y1 - y0 + 2 * kHalo, x1 - x0 + 2 * kHalo, CV_8U), part, s3, s7;
  if (a < b && c < d) {
    cv::cvtColor(rgb(cv::Rect(c, a, d - c, b - a)), part, cv::COLOR_RGB2GRAY);
    part.copyTo(gray(cv::Rect(c - x0 + kHalo, a - y0 + kHalo, d - c, b - a)));
  }
  cv::boxFilter(gray, s3, CV_32S, {3, 3}, {-1, -1}, false, cv::BORDER_CONSTANT);
  cv::boxFilter(gray, s7, CV_32S, {7, 7}, {-1, -1}, false, cv::BORDER_CONSTANT);
  cv::Mat r(y1 - y0, x1 - x0, CV_64F);
  for (int y = 0; y < r.rows; ++y) {
    const int32_t *p3 = s3.ptr<int32_t>(y + kHalo) + kHalo, *p7 = s7.ptr<int32_t>(y + kHalo) + kHalo;
    double* o = r.ptr<double>(y);
    for (int x = 0; x < r.cols; ++x) o[x] = 49.0 * p3[x] - 9.0 * p7[x];
  }
  return r;
}

// Sums over the (2r + 1)^2 square centred on each pixel (exact: integers below 2^53), for the pixels
// whose square lies inside `a`.
cv::Mat window_sums(const cv::Mat& a, int r) {
  cv::Mat out;
  cv::boxFilter(a, out, CV_64F, {2 * r + 1, 2 * r + 1}, {-1, -1}, false, cv::BORDER_CONSTANT);
  return out(cv::Rect(r, r, a.cols - 2 * r, a.rows - 2 * r));
}

// R's own sums over the squares of the box's pixels, the same at every offset (inpdiff/copy_growth.py
// _own_sums): Sa and va, from `a`, R over the box grown by the square's radius.
struct OwnSums {
  cv::Mat sa, va;
  OwnSums(const cv::Mat& a, int r) : sa(window_sums(a, r)) {
    const double n = (2 * r + 1) * (2 * r + 1);
    va = n * window_sums(a.mul(a), r) - sa.mul(sa);  // exact: every term an integer below 2^53
  }
};

// Whether each pixel of the box [y0, y1) x [x0, x1) correlates at (dy, dx) above t (CV_8U, 0 or 1), and
// where both its squares are textured (min_std), as inpdiff/copy_growth.py defines both.
std::pair<cv::Mat, cv::Mat> correlates(const cv::Mat& rgb, const cv::Mat& a, const OwnSums& own, int y0, int y1, int x0,
                                       int x1, int dy, int dx, double t, const GrowSettings& s) {
  const int r = s.radius, H = rgb.rows, W = rgb.cols;
  const cv::Mat b = residual(rgb, y0 + dy - r, y1 + dy + r, x0 + dx - r, x1 + dx + r);
  const cv::Mat sb = window_sums(b, r), sab = window_sums(a.mul(b), r), sbb = window_sums(b.mul(b), r);
  const double n = (2 * r + 1) * (2 * r + 1), tt = t * t, side = n * kScale * s.min_std, texture = side * side;
  cv::Mat above = cv::Mat::zeros(y1 - y0, x1 - x0, CV_8U), textured = cv::Mat::zeros(y1 - y0, x1 - x0, CV_8U);
  for (int y = y0; y < y1; ++y) {
    if (y < r || y >= H - r || y + dy < r || y + dy >= H - r) continue;
    const int i = y - y0;
    const double *pa = own.sa.ptr<double>(i), *va = own.va.ptr<double>(i);
    const double *pb = sb.ptr<double>(i), *pab = sab.ptr<double>(i), *pbb = sbb.ptr<double>(i);
    for (int x = std::max({x0, r, r - dx}); x < std::min({x1, W - r, W - r - dx}); ++x) {
      const int j = x - x0;
      const double c = n * pab[j] - pa[j] * pb[j];  // exact: every term an integer below 2^53
      const double vb = n * pbb[j] - pb[j] * pb[j];
      above.at<uint8_t>(i, j) = c > 0 && c * c >= tt * (va[j] * vb);
      textured.at<uint8_t>(i, j) = va[j] >= texture && vb >= texture;
    }
  }
  return {above, textured};
}

// Where the texture of R (`grown`: over the box grown by radius + 1) runs more than one way (CV_8U, 0 or 1).
cv::Mat two_way(const cv::Mat& grown, int r, double coherence) {
  const cv::Rect inner(1, 1, grown.cols - 2, grown.rows - 2);
  const cv::Mat gx = grown(inner + cv::Point(1, 0)) - grown(inner - cv::Point(1, 0));
  const cv::Mat gy = grown(inner + cv::Point(0, 1)) - grown(inner - cv::Point(0, 1));
  const cv::Mat sxx = window_sums(gx.mul(gx), r), syy = window_sums(gy.mul(gy), r), sxy = window_sums(gx.mul(gy), r);
  cv::Mat out(sxx.size(), CV_8U);
  for (int y = 0; y < out.rows; ++y)
    for (int x = 0; x < out.cols; ++x) {
      const double xx = sxx.at<double>(y, x), yy = syy.at<double>(y, x), xy = sxy.at<double>(y, x);
      const double u = xx - yy, v = xx + yy;
      out.at<uint8_t>(y, x) = u * u + 4 * (xy * xy) <= coherence * (v * v);
    }
  return out;
}

void grow(const cv::Mat& rgb, cv::Mat& cover, const std::vector<CopyPair>& pairs, const std::vector<std::array<bool, 2>>& keep,
          const GrowSettings& s) {
  const int H = rgb.rows, W = rgb.cols;
  std::map<std::pair<int, int>, std::vector<size_t>> groups;  // by offset, in (dy, dx) order
  for (size_t i = 0; i < pairs.size(); ++i)  // near pairs only: exact copies need no growing
    if (pairs[i].size == kNear) groups[offset(pairs[i])].push_back(i);
  std::vector<const decltype(groups)::value_type*> order;
  for (const auto& g : groups) order.push_back(&g);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) { return a->second.size() > b->second.size(); });
  if (order.size() > static_cast<size_t>(s.offsets)) order.resize(static_cast<size_t>(s.offsets));
  for (const auto* group : order) {
    const auto& [d, members] = *group;
    const auto [dy, dx] = d;
    if (members.size() < static_cast<size_t>(s.pairs)) break;
    if (std::max(std::abs(dy), std::abs(dx)) < s.distance) continue;
    int ymin = H, xmin = W, ymax = 0, xmax = 0;
    bool first = false, second = false;
    for (const size_t i : members) {
      ymin = std::min(ymin, pairs[i].y[0]), xmin = std::min(xmin, pairs[i].x[0]);
      ymax = std::max(ymax, pairs[i].y[0] + pairs[i].size), xmax = std::max(xmax, pairs[i].x[0] + pairs[i].size);
      first |= keep[i][0], second |= keep[i][1];
    }
    const int y0 = std::max({0, -dy, ymin - s.margin}), y1 = std::min({H, H - dy, ymax + s.margin});
    const int x0 = std::max({0, -dx, xmin - s.margin}), x1 = std::min({W, W - dx, xmax + s.margin});
    if (y1 <= y0 || x1 <= x0 || static_cast<int64_t>(y1 - y0) * (x1 - x0) > s.area) continue;
    const int r = s.radius;
    const cv::Mat grown = residual(rgb, y0 - r - 1, y1 + r + 1, x0 - r - 1, x1 + r + 1);
    const cv::Mat a = grown(cv::Rect(1, 1, grown.cols - 2, grown.rows - 2));
    const OwnSums own(a, r);
    auto [verified, textured] = correlates(rgb, a, own, y0, y1, x0, x1, dy, dx, s.ncc, s);
    verified &= textured;
    for (const int k : {-1, 2}) verified &= ~correlates(rgb, a, own, y0, y1, x0, x1, k * dy, k * dx, s.periodic, s).first;
    verified &= two_way(grown, r, s.coherence);
    cv::Mat seeds = cv::Mat::zeros(verified.size(), CV_8U), labels;
    for (const size_t i : members) seeds(cv::Rect(pairs[i].x[0] - x0, pairs[i].y[0] - y0, pairs[i].size, pairs[i].size)) = 1;
    std::vector<uint8_t> hit(static_cast<size_t>(cv::connectedComponents(verified, labels, 8, CV_32S)), 0);
    for (int y = 0; y < verified.rows; ++y)
      for (int x = 0; x < verified.cols; ++x)
        if (seeds.at<uint8_t>(y, x) && verified.at<uint8_t>(y, x)) hit[static_cast<size_t>(labels.at<int32_t>(y, x))] = 1;
    for (int y = 0; y < verified.rows; ++y)
      for (int x = 0; x < verified.cols; ++x) {
        const int32_t label = labels.at<int32_t>(y, x);
        if (!label || !hit[static_cast<size_t>(label)]) continue;
        if (first) cover.at<uint8_t>(y0 + y, x0 + x) = 1;
        if (second) cover.at<uint8_t>(y0 + dy + y, x0 + dx + x) = 1;
      }
  }
}

}  // namespace

cv::Mat near_copy_cover(const cv::Mat& rgb, const NearCopySettings& s) {
  cv::Mat cover = cv::Mat::zeros(rgb.size(), CV_8U);
  NearScratch scratch;
  for (const CopyPair& p : near_pairs(rgb, s, {}, scratch))
    for (int e = 0; e < 2; ++e) cover.at<uint8_t>(p.y[e], p.x[e]) |= 2;
  dilate_marks(cover, kNear);
  return cover;
}

Found find_copies(const cv::Mat& rgb, const CopySettings& s, const RowsRead& read) {
  const int H = rgb.rows, W = rgb.cols, b = kBlock;
  cv::Mat cover = cv::Mat::zeros(H, W, CV_8U);
  std::vector<CopyPair> pairs;
  {
    NearScratch scratch;  // freed before the exact copies' sort
    for (const NearCopySettings& n : s.near) {  // each search's pairs, each pair once
      const std::vector<CopyPair> found = near_pairs(rgb, n, read, scratch);
      pairs.insert(pairs.end(), found.begin(), found.end());
    }
  }
  const auto corners = [](const CopyPair& p) { return std::make_tuple(p.y[0], p.x[0], p.y[1], p.x[1]); };
  std::sort(pairs.begin(), pairs.end(), [&](const CopyPair& a, const CopyPair& b) { return corners(a) < corners(b); });
  pairs.erase(std::unique(pairs.begin(), pairs.end(), [&](const CopyPair& a, const CopyPair& b) { return corners(a) == corners(b); }),
              pairs.end());
  std::map<std::pair<int, int>, int> shared;  // pairs of each offset: fewer than near_min_pairs are lookalikes
  for (const CopyPair& p : pairs) ++shared[offset(p)];
  pairs.erase(std::remove_if(pairs.begin(), pairs.end(), [&](const CopyPair& p) { return shared[offset(p)] < s.near_min_pairs; }),
              pairs.end());
  if (H < b || W < b) {
    std::vector<std::array<bool, 2>> keep = seam_ends(rgb, pairs, s);
    return {cover, std::move(pairs), std::move(keep)};
  }
  const cv::Mat img = rgb.isContinuous() ? rgb : rgb.clone();
  const int h = H - b + 1, w = W - b + 1;
  const uint64_t n = static_cast<uint64_t>(h) * w;
  const int bits = bit_length(n), part_bits = bit_length((n - 1) / kPassBlocks);
  const uint64_t low = (uint64_t{1} << bits) - 1;
  const auto mark = [&](std::vector<uint64_t>& keys) {  // the blocks of every group of equal hashes
    group_sort(keys);
    for (size_t i = 0, j; i < keys.size(); i = j) {
      if (i + 1 == keys.size() || (keys[i + 1] >> bits) != (keys[i] >> bits)) {  // most blocks are unique
        j = i + 1;
        continue;
      }
      int ymin = h, ymax = -1, xmin = w, xmax = -1;
      for (j = i; j < keys.size() && (keys[j] >> bits) == (keys[i] >> bits); ++j) {
        const int y = static_cast<int>((keys[j] & low) / w), x = static_cast<int>((keys[j] & low) % w);
        ymin = std::min(ymin, y), ymax = std::max(ymax, y), xmin = std::min(xmin, x), xmax = std::max(xmax, x);
      }
      const size_t count = j - i;
      if (count > static_cast<size_t>(s.max_group) || std::max(ymax - ymin, xmax - xmin) < s.min_distance)
        continue;
      if (count == 2) {  // a pair, for the seam rule; the group sort leaves the lower index first
        const int64_t p = static_cast<int64_t>(keys[i] & low), q = static_cast<int64_t>(keys[i + 1] & low);
        pairs.push_back({{static_cast<int>(p / w), static_cast<int>(q / w)}, {static_cast<int>(p % w), static_cast<int>(q % w)}, b});
        continue;
      }
      for (size_t k = i; k < j; ++k)
        cover.at<uint8_t>(static_cast<int>((keys[k] & low) / w), static_cast<int>((keys[k] & low) % w)) |= 2;
    }
  };
  std::vector<uint64_t> keys;
  if (!part_bits) {
    block_keys(img, s, bits, read, [&](uint64_t key) { keys.push_back(key); });
    mark(keys);
  } else {  // equal hashes share their top bits: each block's key is computed once, into its part's file
    std::vector<File> files;
    std::vector<size_t> sizes(size_t{1} << part_bits);
    for (size_t i = 0; i < sizes.size(); ++i) files.push_back(anonymous_file());
    block_keys(img, s, bits, read, [&](uint64_t key) {
      const size_t i = key >> (64 - part_bits);
      if (std::fwrite(&key, sizeof key, 1, files[i].get()) != 1) throw std::runtime_error("writing a temporary file failed");
      ++sizes[i];
    });
    for (size_t i = 0; i < files.size(); ++i) {
      if (read) read(0);
      keys.resize(sizes[i]);
      std::rewind(files[i].get());
      if (std::fread(keys.data(), sizeof(uint64_t), sizes[i], files[i].get()) != sizes[i])
        throw std::runtime_error("reading a temporary file failed");
      files[i].reset();
      mark(keys);
    }
  }
  dilate_marks(cover, b);  // the groups of three or more
  std::vector<std::array<bool, 2>> keep = seam_ends(rgb, pairs, s);
  return {cover, std::move(pairs), std::move(keep)};
}

cv::Mat cover_of(const cv::Mat& rgb, Found found, const CopySettings& s, const cv::Mat& prob) {
  if (!prob.empty()) pick_ends(prob, found.pairs, found.keep, s);
  cv::Mat& cover = found.cover;
  const std::vector<CopyPair>& pairs = found.pairs;
  for (const int size : {kNear, kBlock}) {  // the ends kept, each kind dilated by its side
    for (size_t i = 0; i < pairs.size(); ++i)
      for (int e = 0; e < 2; ++e)
        if (pairs[i].size == size && found.keep[i][e]) cover.at<uint8_t>(pairs[i].y[e], pairs[i].x[e]) |= 2;
    dilate_marks(cover, size);
  }
  if (s.grow) grow(rgb, cover, pairs, found.keep, *s.grow);
  return cover;
}

cv::Mat copy_cover(const cv::Mat& rgb, const CopySettings& s, const RowsRead& read) {
  return cover_of(rgb, find_copies(rgb, s, read), s);
}

constexpr int kCell = 8;  // the lift's grid (inpdiff/copies.py: CELL)

CopyRaise::CopyRaise(const cv::Mat& cover, const CopySettings& s)
    : cover_(cover), s_(s), halo_(static_cast<int>(4 * s.sigma) + 2) {  // OpenCV's float kernel reaches 4 sigma
  if (s.lift == 0.0f || !cv::countNonZero(cover)) return;
  // The lift's terms, lift * D / max(D) per 8x8 cell, as inpdiff/copies.py defines them.
  const int H = cover.rows, W = cover.cols, h = (H + kCell - 1) / kCell, w = (W + kCell - 1) / kCell;
  cv::Mat share = cv::Mat::zeros(h, w, CV_32F);
  for (int y = 0; y < H; ++y) {
    const uint8_t* c = cover.ptr<uint8_t>(y);
    float* row = share.ptr<float>(y / kCell);
    for (int x = 0; x < W; ++x) row[x / kCell] += static_cast<float>(c[x]);  // counts: exact in float
  }
  share /= static_cast<float>(kCell * kCell);
  cv::Mat density;
  cv::GaussianBlur(share, density, cv::Size(0, 0), s.lift_sigma / kCell);
  double peak = 0;
  cv::minMaxLoc(density, nullptr, &peak);
  if (peak <= 0) return;
  const float top = static_cast<float>(peak);
  term_.create(h, w, CV_32F);
  for (int r = 0; r < h; ++r) {
    const float* d = density.ptr<float>(r);
    float* t = term_.ptr<float>(r);
    for (int c = 0; c < w; ++c) {
      // One float operation at a time, in Python's order (the build turns off FMA contraction).
      t[c] = d[c] / top;
      t[c] = t[c] * s.lift;
    }
  }
}

void CopyRaise::band(cv::Mat& prob, int y0) const {
  const int H = cover_.rows, W = cover_.cols, y1 = y0 + prob.rows;
  for (int r = y0 / kCell; !term_.empty() && r * kCell < y1; ++r) {
    const float* t = term_.ptr<float>(r);
    if (std::none_of(t, t + term_.cols, [](float v) { return v > 0.0f; })) continue;  // far from every cover
    for (int y = std::max(r * kCell, y0); y < std::min((r + 1) * kCell, y1); ++y) {
      float* p = prob.ptr<float>(y - y0);
      for (int x = 0; x < W; ++x) p[x] = std::min(p[x] + t[x / kCell], 1.0f);
    }
  }
  const int a = std::max(0, y0 - halo_), b = std::min(H, y1 + halo_);
  if (!cv::countNonZero(cover_.rowRange(a, b))) return;  // a blur of nothing is exactly nothing
  cv::Mat rows, density;
  cover_.rowRange(a, b).convertTo(rows, CV_32F);
  cv::GaussianBlur(rows, density, cv::Size(0, 0), s_.sigma);
  density = cv::min(density.rowRange(y0 - a, y1 - a) * s_.gain, 1.0f);
  cv::max(prob, density, prob);
}

}  // namespace inpdiff
