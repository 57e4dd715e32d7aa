"""Copy growth: from the pairs the copy searches found to the whole copied region.

After a JPEG re-save or a resize, the near-copy search (inpdiff.near_copies) finds only some blocks
of a copied region: on GIMP's clone stamp and healing brush re-saved or resized, 5-22% of the edit.
But the pairs it does find name the copy's offset, and one offset is cheap to check everywhere: a
copied region's fine texture correlates with the texture one offset away, up to JPEG's noise and a
smooth change of brightness, which a local correlation ignores. So each offset that several pairs
share is grown into the connected region around its pairs where that correlation is high, unless
the texture also repeats at -offset or 2x offset there (a periodic pattern, such as a building's
rows of windows, repeats at every multiple of its period; a copy repeats once) or runs one way (a
straight edge correlates with itself moved along it).

Defined in integers and float64 operations done in one order, so that every runtime computes the
same cover (the C++ runtime does):
- gray is OpenCV's RGB -> gray of the uint8 image, 0 past the photo's edge; R = 49 * S3 - 9 * S7,
  with Sk the sum of gray over the k x k square centred on the pixel (a band-pass: 441 x the 3x3 mean
  less the 7x7 mean, blind to a smooth change of brightness and to the finest JPEG noise);
- for a pixel p and an offset e, over the n = (2 `radius` + 1)^2 pixels of the squares centred on p
  and on p + e (both wholly inside the photo; elsewhere the test below fails): Sa, Sb, Saa, Sbb,
  Sab, the sums of R(a), R(b), R(a)^2, R(b)^2 and R(a) R(b) (exact integers), va = n Saa - Sa^2,
  vb = n Sbb - Sb^2, c = n Sab - Sa Sb (exact integers), and p *correlates at e above t* if c > 0 and
  c * c >= t * t * (va * vb) in float64, evaluated in that order;
- the pairs are the near-copy pairs the copy evidence kept (each as the top-left corners of its two
  8x8 blocks, the later in raster order second): exact copies need no growing, since a copy saved
  losslessly repeats on every block, and a caption that repeats a line of text exactly would grow
  along it. Their offsets (second corner minus first) shared by at least `pairs` pairs and at least
  `distance` pixels long in y or x are taken in turn, the most shared first (equal counts: the
  smaller (dy, dx) first), at most `offsets` of them;
- an offset d's box is the extent of its pairs' first blocks grown by `margin` pixels, cut to the
  photo and to where p + d lies in the photo; a box larger than `area` pixels is passed over
  (bounded memory);
- in the box, p is *verified* if va >= (n * 441 * `min_std`)^2 and vb >= the same at e = d (both
  squares textured: at least `min_std` gray levels of band-passed texture), p correlates at d above
  `ncc`, p correlates neither at -d nor at 2d above `periodic`, and p's texture is not one-way: with
  gx = R(y, x + 1) - R(y, x - 1), gy = R(y + 1, x) - R(y - 1, x) and Sxx, Syy, Sxy the sums of gx^2,
  gy^2 and gx gy over p's square (exact integers), (Sxx - Syy)^2 + 4 (Sxy^2) <= `coherence` *
  ((Sxx + Syy)^2) in float64 (a straight edge or line correlates with itself moved along it, as a
  copy does with its source);
- the region is the union of the 8-connected components of verified pixels that hold a verified
  pixel of one of d's first blocks; the cover is set on the region if any of d's pairs keeps its
  first end (inpdiff.copies's seam rule), and on the region moved by d if any keeps its second.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .near_copies import B, Stop, check

SCALE = 441  # R is 441 x (3x3 mean - 7x7 mean): the gray levels of min_std in R's units
HALO = 3     # R reads gray up to 3 pixels away


@dataclass(frozen=True)
class GrowSettings:
    pairs: int = 5          # pairs that share an offset before it is grown: fewer are lookalikes, which pristine photos have
    distance: int = 24      # offsets shorter than this are textures that repeat close by, seldom copies
    offsets: int = 8        # the most shared ones grown
    margin: int = 32        # pixels: how far a region may grow past its pairs' extent
    area: int = 1 << 20     # pixels: a larger box is passed over (each box holds a few float64 arrays)
    radius: int = 4         # the correlation's square: 9x9
    min_std: int = 2        # gray levels of band-passed texture in both squares: flat areas correlate anyhow
    ncc: float = 0.9        # a copy's texture correlates above this after a re-save
    periodic: float = 0.7   # correlation at -d or 2d above this: a periodic pattern, not a copy
    coherence: float = 0.9  # above this, the texture runs one way (an edge, a line): it correlates along itself


def _residual(image, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """R (int64) over rows y0..y1, columns x0..x1 of the photo (which may reach past its edge: R is
    computed there too, from gray that is 0 past the edge)."""
    H, W = image.shape[:2]
    a, b, c, d = max(0, y0 - HALO), min(H, y1 + HALO), max(0, x0 - HALO), min(W, x1 + HALO)
    gray = np.zeros((y1 - y0 + 2 * HALO, x1 - x0 + 2 * HALO), np.uint8)
    if a < b and c < d:
        gray[a - y0 + HALO:b - y0 + HALO, c - x0 + HALO:d - x0 + HALO] = cv2.cvtColor(
            np.ascontiguousarray(np.asarray(image[a:b])[:, c:d]), cv2.COLOR_RGB2GRAY)
    s3, s7 = (cv2.boxFilter(gray, cv2.CV_32S, (k, k), normalize=False, borderType=cv2.BORDER_CONSTANT) for k in (3, 7))
    return (49 * s3.astype(np.int64) - 9 * s7)[HALO:-HALO, HALO:-HALO]


def _box(a: np.ndarray, r: int) -> np.ndarray:
    """Sums over the (2r + 1)^2 square centred on each pixel of a float64 array of integers (exact:
    every sum an integer below 2^53), for the pixels whose square lies inside the array."""
    k = 2 * r + 1
    return cv2.boxFilter(a, cv2.CV_64F, (k, k), normalize=False, borderType=cv2.BORDER_CONSTANT)[r:-r, r:-r]


def _own_sums(a: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Sa and va of the module's docstring for the pixels of the box, from `a`, R (float64) over the box
    grown by the square's radius: the same for every offset the box is compared at."""
    sa = _box(a, r)
    return sa, float((2 * r + 1) ** 2) * _box(a * a, r) - sa * sa


def _correlation(image, a: np.ndarray, sa: np.ndarray, box: tuple[int, int, int, int], e: tuple[int, int],
                 s: GrowSettings):
    """For the pixels of `box` (y0, y1, x0, x1) and the offset e: c, vb (float64) and `inside` (both
    squares in the photo). `a`: R over the box grown by the square's radius, `sa` its sums (_own_sums)."""
    H, W = image.shape[:2]
    (y0, y1, x0, x1), (dy, dx), r = box, e, s.radius
    b = _residual(image, y0 + dy - r, y1 + dy + r, x0 + dx - r, x1 + dx + r).astype(np.float64)
    n = float((2 * r + 1) ** 2)
    sb = _box(b, r)
    c = n * _box(a * b, r) - sa * sb  # exact: every term an integer below 2^53
    vb = n * _box(b * b, r) - sb * sb
    ys, xs = np.arange(y0, y1)[:, None], np.arange(x0, x1)[None, :]
    inside = ((ys >= r) & (ys < H - r) & (ys + dy >= r) & (ys + dy < H - r)
              & (xs >= r) & (xs < W - r) & (xs + dx >= r) & (xs + dx < W - r))
    return c, vb, inside


def _two_way(a: np.ndarray, r: int, coherence: float) -> np.ndarray:
    """Where the texture of R (`a`, over the box grown by r + 1) runs more than one way (the module's
    docstring), for the pixels of the box."""
    gx, gy = a[1:-1, 2:] - a[1:-1, :-2], a[2:, 1:-1] - a[:-2, 1:-1]
    sxx, syy, sxy = _box(gx * gx, r), _box(gy * gy, r), _box(gx * gy, r)
    return np.square(sxx - syy) + 4 * np.square(sxy) <= coherence * np.square(sxx + syy)


def _correlates(c: np.ndarray, va: np.ndarray, vb: np.ndarray, t: float) -> np.ndarray:
    return (c > 0) & (c * c >= (t * t) * (va * vb))


def grow(image, cover: np.ndarray, pairs: np.ndarray, keep: np.ndarray, s: GrowSettings = GrowSettings(),
         stop: Stop = None) -> None:
    """Set `cover` (H, W uint8, 0 and 1) on the grown regions of the module's docstring. pairs (n, 4):
    the near pairs' corners (y, x, y', x'); keep (n, 2): the seam rule's ends of each."""
    if not len(pairs):
        return
    H, W = cover.shape
    offsets, group, count = np.unique(pairs[:, 2:] - pairs[:, :2], axis=0, return_inverse=True, return_counts=True)
    group = group.ravel()
    side = float((2 * s.radius + 1) ** 2) * SCALE * s.min_std
    texture = side * side
    for k in np.argsort(-count, kind="stable")[:s.offsets]:
        if count[k] < s.pairs:
            break
        dy, dx = (int(v) for v in offsets[k])
        if max(abs(dy), abs(dx)) < s.distance:
            continue
        check(stop)
        mine = group == k
        ys, xs = pairs[mine, 0], pairs[mine, 1]
        y0, y1 = max(0, -dy, int(ys.min()) - s.margin), min(H, H - dy, int(ys.max()) + B + s.margin)
        x0, x1 = max(0, -dx, int(xs.min()) - s.margin), min(W, W - dx, int(xs.max()) + B + s.margin)
        if y1 <= y0 or x1 <= x0 or (y1 - y0) * (x1 - x0) > s.area:
            continue
        box, r = (y0, y1, x0, x1), s.radius
        grown = _residual(image, y0 - r - 1, y1 + r + 1, x0 - r - 1, x1 + r + 1).astype(np.float64)
        a = grown[1:-1, 1:-1]
        sa, va = _own_sums(a, r)
        c, vb, inside = _correlation(image, a, sa, box, (dy, dx), s)
        verified = inside & (va >= texture) & (vb >= texture) & _correlates(c, va, vb, s.ncc)
        for e in ((-dy, -dx), (2 * dy, 2 * dx)):
            c, vb, inside = _correlation(image, a, sa, box, e, s)
            verified &= ~(inside & _correlates(c, va, vb, s.periodic))
        verified &= _two_way(grown, r, s.coherence)
        seeds = np.zeros_like(verified)
        for y, x in zip(ys.tolist(), xs.tolist()):
            seeds[y - y0:y - y0 + B, x - x0:x - x0 + B] = True
        _, labels = cv2.connectedComponents(verified.view(np.uint8), connectivity=8)
        hit = np.unique(labels[seeds & verified])
        region = np.isin(labels, hit[hit > 0])
        if keep[mine, 0].any():
            cover[y0:y1, x0:x1] |= region
        if keep[mine, 1].any():
            cover[y0 + dy:y1 + dy, x0 + dx:x1 + dx] |= region
