"""Copy evidence: pixels that are exact copies of pixels elsewhere in the same photo.

Exemplar fills (Criminisi, G'MIC's and GIMP's patch-based inpainting, shift-map, "content-aware"
fills) paste blocks of the photo's own pixels into the hole, so they carry the photo's own noise and
compression and a detector of fill textures sees them poorly. What gives them away is repetition: a
textured 4x4 block of a camera photo almost never occurs twice, while a copied hole is tiled with
blocks that also occur somewhere else. This map needs no training, so no fill family it is judged on
informed it. It finds copies that were saved losslessly; a JPEG re-save or a resize after the edit
breaks the exact equality it relies on.

Defined exactly, so that every runtime computes the same map (the C++ runtime does):
- every b x b block of the RGB uint8 image, at top-left (y, x), is hashed with wrapping uint64
  arithmetic: row[y, x] = sum over dx < b, c < 3 of p[y, x + dx, c] * K[dx * 3 + c], then
  h[y, x] = sum over dy < b of row[y + dy, x] * K[3b + dy], with K[i] = splitmix64(i) | 1;
- a block counts if it is textured: max - min of R+G+B over the block >= `min_range`;
- textured blocks with equal hashes form a group; a group of 2..`max_group` blocks whose positions
  span at least `min_distance` pixels in y or x marks its blocks (larger groups are repetitive
  patterns, not copies);
- a pixel is covered if a marked block contains it; the map is the coverage blurred with a Gaussian
  of `sigma` (OpenCV's kernel size for that sigma, reflected border), times `gain`, clipped to 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class CopySettings:
    block: int = 4
    min_range: int = 24        # R+G+B range over the block: flat and clipped areas repeat naturally
    min_distance: int = 12     # copies closer than this are the block's own neighbourhood
    max_group: int = 8
    sigma: float = 6.0         # the map is a density: a hole is tiled with copies, a source is not
    gain: float = 2.0          # fitted on pristine photos only (README): their maps stay below 0.81


def splitmix64(i: int) -> int:
    z = (i * 0x9E3779B97F4A7C15 + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def block_hashes(image: np.ndarray, b: int) -> np.ndarray:
    """(H - b + 1, W - b + 1) uint64: the hash of every b x b RGB block, by its top-left corner."""
    K = np.array([splitmix64(i) | 1 for i in range(4 * b)], np.uint64)
    p = image.astype(np.uint64)
    h, w = image.shape[0] - b + 1, image.shape[1] - b + 1
    row = np.zeros((image.shape[0], w), np.uint64)
    for dx in range(b):
        for c in range(3):
            row += p[:, dx:dx + w, c] * K[dx * 3 + c]
    out = np.zeros((h, w), np.uint64)
    for dy in range(b):
        out += row[dy:dy + h] * K[3 * b + dy]
    return out


def copy_map(image: np.ndarray, s: CopySettings = CopySettings()) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> (H, W) float32 in [0, 1]: how densely the area is tiled with exact copies."""
    H, W = image.shape[:2]
    b = s.block
    if H < b or W < b:
        return np.zeros((H, W), np.float32)
    h, w = H - b + 1, W - b + 1
    total = image.sum(axis=2, dtype=np.uint16)
    kernel, anchor = np.ones((b, b), np.uint8), (0, 0)  # anchored at the top-left: the block at (y, x)
    spread = (cv2.dilate(total, kernel, anchor=anchor) - cv2.erode(total, kernel, anchor=anchor))[:h, :w]
    idx = np.flatnonzero(spread >= s.min_range)
    hashes = block_hashes(image, b).ravel()[idx]
    order = np.argsort(hashes, kind="stable")
    idx, hashes = idx[order], hashes[order]
    starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
    counts = np.diff(np.r_[starts, len(hashes)])
    ys, xs = np.divmod(idx, w)
    span = np.maximum(np.maximum.reduceat(ys, starts) - np.minimum.reduceat(ys, starts),
                      np.maximum.reduceat(xs, starts) - np.minimum.reduceat(xs, starts)) if len(idx) else counts
    marked = np.repeat((counts >= 2) & (counts <= s.max_group) & (span >= s.min_distance), counts)
    cover = np.zeros((H, W), np.uint8)
    cover[ys[marked], xs[marked]] = 1
    cover = cv2.dilate(cover, kernel, anchor=(b - 1, b - 1), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    density = cv2.GaussianBlur(cover.astype(np.float32), (0, 0), s.sigma)
    return np.minimum(density * np.float32(s.gain), np.float32(1.0))
