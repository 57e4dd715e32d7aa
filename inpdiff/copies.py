"""Copy evidence: pixels that are exact copies of pixels elsewhere in the same photo.

Exemplar fills (Criminisi, G'MIC's and GIMP's patch-based inpainting, shift-map, "content-aware"
fills) paste blocks of the photo's own pixels into the hole, so they carry the photo's own noise and
compression and a detector of fill textures sees them poorly. What gives them away is repetition: a
textured 4x4 block of a camera photo almost never occurs twice, while a copied hole is tiled with
blocks that also occur somewhere else. This map needs no training, so no fill family it is judged on
informed it. It finds copies that were saved losslessly; a JPEG re-save or a resize after the edit
breaks the exact equality it relies on.

Defined exactly, so that every runtime computes the same map (the C++ runtime does):
- every 4x4 block of the RGB uint8 image (W pixels wide), at top-left (y, x), is hashed with wrapping
  uint64 arithmetic: each of its rows is 12 bytes, read little-endian as a uint64 (bytes 0-7) and a
  uint32 (bytes 8-11), row = u64 * K[0] + u32 * K[1]; the block's hash is sum over dy < 4 of
  row(y + dy) * K[2 + dy], with K[i] = splitmix64(i) | 1;
- a block counts if it is textured, max - min of R+G+B over the block >= `min_range`, and not drawn:
  fewer than `max_equal_pairs` of the 24 pairs of side-by-side pixels inside it (12 across, 12 down)
  are exactly equal, since rendered text and graphics repeat runs of one colour and camera texture
  does not;
- the sort key of a counted block is its hash with the low n bits replaced by its index y * (W - 3) + x,
  n the bit length of the number of blocks; counted blocks whose keys agree above those n bits form a
  group; a group of 2..`max_group` blocks whose positions span at least `min_distance` pixels in y or
  x is a copy (larger groups are repetitive patterns, not copies): a group of three or more marks its
  blocks, and a group of two is a pair (its block of the lower index first);
- the near-copy evidence (inpdiff.near_copies, which finds the copies a JPEG re-save or a blended fill
  leaves) gives pairs of 8x8 blocks, ordered so that the second lies later in raster order (a greater
  y, or the same y and a greater x): those of each search in `near` (none if it is empty), each
  pair once, and of those only the pairs whose offset (second corner minus first) at least
  `near_min_pairs` of them share;
- which end of a copy is the edit: a pasted region meets the photo around it at a seam, the region it
  was copied from does not. The pairs of both kinds are grouped by offset (second corner minus
  first). If a group holds at least `seam_pairs` pairs, each of its two ends is the union of its
  pairs' blocks at that end (4x4 or 8x8), drawn in the end's box: the blocks' extent grown by 2
  pixels and cut at the photo's edges. If that box exceeds `seam_area` pixels, the group keeps both
  ends. Otherwise g = |Sobel_x| + |Sobel_y| of R+G+B over the box (OpenCV's 3x3 kernels, reflected
  border), the border is the 3x3 dilation minus the 3x3 erosion of the end, the inside its 5x5
  erosion (OpenCV's default borders). An end's strength is (sum of g on the border / its pixels) /
  (sum of g inside / its pixels + 0.001), the sums exact in float64. If both ends have a border and
  an inside and the stronger exceeds `seam_margin` times the weaker (one float64 product), the group
  marks only its stronger end's blocks;
- where the network's map p is known (`cover_of`'s prob; the runtimes pass the map before it is fused),
  a group of at least `pick_pairs` pairs that still keeps both ends keeps only the end where p is
  higher: with S_e the sum of floor(255 p + 0.5) (float32 operations in that order) over the union of
  the end's blocks and n_e its pixels, end a alone if S_a n_b > `pick_margin` S_b n_a (the products
  exact integers, the comparison in float64), end b alone if the same holds the other way, both
  otherwise (and where the union's box exceeds `seam_area`). A healing brush blends its seam away,
  so the seam rule cannot tell its ends apart, but the network's map around a pasted region is
  raised, and around its source it is not; every other pair marks both ends;
- a pixel is covered if a marked block contains it, or if copy growth (inpdiff.copy_growth, with
  `grow`; None: none) grows the near pairs and the ends kept of them into it;
  the map is the coverage blurred with a Gaussian of `sigma` (OpenCV's kernel size for that sigma,
  reflected border), times `gain`, clipped to 1;
- fused with the network's probability map p (`raise_to_copies`): where the photo has any cover, p is
  first lifted by `lift` * D / max(D) and clipped to 1, where D is, on a grid of 8x8 cells from the
  top-left (the last ones cut by the border), the share of each cell's 64 pixels that is covered
  (pixels past the border count as uncovered), blurred with a Gaussian of `lift_sigma` / 8 on that
  grid; every pixel takes its cell's term, and the term and the sum are computed in float32 one
  operation at a time in that order (D / max, times lift, plus p). Pixels near copies are likelier to
  be edited whatever the network says: a re-saved exemplar fill leaves a few copies found and a
  network map that is barely raised around them. Then p is raised to the map where that is higher.
Memory stays bounded by working a band of rows and a share of the hashes at a time (the shares kept in
files meanwhile, inpdiff.spill); neither changes the map.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import cv2
import numpy as np

from .copy_growth import GrowSettings, grow
from .near_copies import B as NEAR_BLOCK
from .near_copies import NearCopySettings, Stop, check, mark_blocks, near_pairs
from .spill import RowWriter

_MASK64 = (1 << 64) - 1
BLOCK = 4  # a block's row is 12 bytes: one uint64 and one uint32 load


@dataclass(frozen=True)
class CopySettings:
    min_range: int = 24        # R+G+B range over the block: flat and clipped areas repeat naturally
    min_distance: int = 12     # copies closer than this are the block's own neighbourhood
    max_group: int = 8
    max_equal_pairs: int = 4   # a caption drawn on a photo repeats exactly; this stops it at a cost of 0.001-0.005 AUC
    sigma: float = 6.0         # the map is a density: a hole is tiled with copies, a source is not
    gain: float = 2.0          # chosen on pristine photos only: their maps stay below 0.81 (README)
    lift: float = 0.4          # added to the network's map near the densest copies (README, "The lift near copies")
    lift_sigma: float = 48.0   # pixels; the lift is computed on 8x8 cells, so this is 6 cells
    # The near-copy searches (empty: exact copies only). The first compares features that a smooth change
    # of brightness leaves alone (a healed copy), the second the smooth ones of the gray summed over 2x2
    # (a re-saved copy), with 4x q and abs_tol for its 4x larger features, 3x rel_tol and max_matches 1,
    # chosen on val-gimp's and val-xphoto's edits and 100 of BSDS500-test's pristine photos (README,
    # "Near copies of the gray summed over 2x2" and "Near copies blind to a change of brightness").
    near: tuple[NearCopySettings, ...] = (NearCopySettings(),
                                          NearCopySettings(q=2640, abs_tol=880.0, rel_tol=79.2, max_matches=1, blur=True,
                                                           ramp_free=False))
    near_min_pairs: int = 3    # near pairs of one offset: fewer are a lookalike or two, which pristine photos have too
    seam_pairs: int = 16       # copies of one offset that mark only the end with the stronger border (0: both ends, always)
    seam_margin: float = 1.05  # how much stronger; closer than that, a healed or blended seam picks the source as often
    seam_area: int = 1 << 20   # pixels: an end whose box is larger keeps both (bounded memory)
    grow: GrowSettings | None = GrowSettings()  # each shared offset grown into its whole copy (inpdiff.copy_growth; None: not)
    pick_pairs: int = 5        # copies of one offset whose seam says nothing, and whose end the network's map picks (0: never)
    pick_margin: float = 1.5   # how much higher the map's mean at the picked end


def splitmix64(i: int) -> int:
    z = (i * 0x9E3779B97F4A7C15 + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


_K = np.array([splitmix64(i) | 1 for i in range(2 + BLOCK)], np.uint64)


def block_hashes(image: np.ndarray) -> np.ndarray:
    """(H - 3, W - 3) uint64: the hash of every 4x4 RGB block, by its top-left corner."""
    H, W = image.shape[:2]
    h, w = H - BLOCK + 1, W - BLOCK + 1
    buf = np.ascontiguousarray(image).reshape(-1).astype("<u1", copy=False)
    # Every row of every block, read in place: 12 bytes at byte 3x of image row y.
    u64 = np.ndarray((H, w), "<u8", buf, 0, (3 * W, 3)).astype(np.uint64)
    u32 = np.ndarray((H, w), "<u4", buf, 8, (3 * W, 3)).astype(np.uint64)
    row = u64 * _K[0] + u32 * _K[1]
    out = row[:h] * _K[2]
    for dy in range(1, BLOCK):
        out += row[dy:dy + h] * _K[2 + dy]
    return out


BAND = 128             # rows raised to the copy map at a time
HASH_BLOCKS = 1 << 18   # blocks hashed at a time, in whole rows: small arrays, reused, not faulted in afresh
PASS_BLOCKS = 1 << 22   # blocks per sorting pass: about 32 MB of keys, 100 MB with the pass's temporaries


def _band_keys(image, s: CopySettings, y0: int, y1: int, bits: np.uint64) -> np.ndarray:
    """Keys (hash above, index below) of the textured blocks with top rows y0..y1, in raster order."""
    w = image.shape[1] - BLOCK + 1
    kernel, anchor = np.ones((BLOCK, BLOCK), np.uint8), (0, 0)  # anchored at the top-left: the block at (y, x)
    rows = np.asarray(image[y0:y1 + BLOCK - 1])
    total = np.add(rows[..., 0], rows[..., 1], dtype=np.uint16) + rows[..., 2]
    spread = (cv2.dilate(total, kernel, anchor=anchor) - cv2.erode(total, kernel, anchor=anchor))[:y1 - y0, :w]
    textured = spread >= s.min_range
    r, g, b = rows[..., 0], rows[..., 1], rows[..., 2]  # channel by channel: a reduction over 3 is slow
    across = ((r[:, 1:] == r[:, :-1]) & (g[:, 1:] == g[:, :-1]) & (b[:, 1:] == b[:, :-1])).view(np.uint8)
    down = ((r[1:] == r[:-1]) & (g[1:] == g[:-1]) & (b[1:] == b[:-1])).view(np.uint8)
    equal = (cv2.boxFilter(across, cv2.CV_16U, (3, BLOCK), anchor=anchor, normalize=False, borderType=cv2.BORDER_CONSTANT)[:y1 - y0, :w]
             + cv2.boxFilter(down, cv2.CV_16U, (BLOCK, 3), anchor=anchor, normalize=False, borderType=cv2.BORDER_CONSTANT)[:y1 - y0, :w])
    textured &= equal < s.max_equal_pairs
    at = np.flatnonzero(textured).astype(np.uint64)
    return (block_hashes(rows).ravel()[at] >> bits << bits) | (at + np.uint64(y0 * w))


def _sorted_parts(image, s: CopySettings, parts: int, bits: np.uint64, stop: Stop) -> Iterator[np.ndarray]:
    """Sorted keys of the textured blocks, a part of the hashes at a time (equal hashes always fall in
    the same part, so groups are whole). Hashes are computed once, a band of rows at a time; with more
    than one part, each band's keys are written to their part's file (inpdiff.spill) until its turn."""
    h, w = image.shape[0] - BLOCK + 1, image.shape[1] - BLOCK + 1
    rows = max(1, HASH_BLOCKS // w)
    bands = [(y0, min(y0 + rows, h)) for y0 in range(0, h, rows)]

    def band_keys():
        for a, b in bands:
            check(stop)
            yield _band_keys(image, s, a, b, bits)

    if parts == 1:
        keys = np.concatenate(list(band_keys()))
        keys.sort()  # one sort of plain uint64 keys (hash above, index below): several times faster than an argsort
        yield keys
        return
    top = np.uint64(64 - (parts.bit_length() - 1))
    files = [RowWriter(None, (), np.uint64) for _ in range(parts)]
    for keys in band_keys():
        part_of = (keys >> top).astype(np.uint16)
        order = np.argsort(part_of, kind="stable")  # a radix sort, on 16 bits
        for file, part in zip(files, np.split(keys[order], np.searchsorted(part_of[order], np.arange(1, parts)))):
            if len(part):
                file.write(part)
    for file in files:
        check(stop)
        keys = file.read()
        keys.sort()
        yield keys


@dataclass
class Found:
    """What the copy searches found, before the network's map is known: the cover with the groups of
    three or more marked, the pairs (n, 4) with their block sizes (n,), and the seam rule's ends (n, 2)."""
    cover: np.ndarray
    pairs: np.ndarray
    sizes: np.ndarray
    keep: np.ndarray


def find_copies(image: np.ndarray, s: CopySettings = CopySettings(), stop: Stop = None) -> Found:
    """RGB uint8 (H, W, 3), or any array-like whose rows slice as one (inpdiff.spill) -> the copies
    found (cover_of makes the cover of them). `stop()` is asked between bands, parts, shares and chunks
    of pairs, and True ends the search with Stopped: a 48 MP photo's search takes 20 s, too long for a
    stopping run to wait for."""
    H, W = image.shape[:2]
    cover = np.zeros((H, W), np.uint8)
    pairs, sizes = [np.zeros((0, 4), np.int64)], [np.zeros(0, np.int64)]
    if s.near:
        near = np.unique(np.concatenate([near_pairs(image, n, stop) for n in s.near]), axis=0)
        _, group, count = np.unique(near[:, 2:] - near[:, :2], axis=0, return_inverse=True, return_counts=True)
        near = near[count[group.ravel()] >= s.near_min_pairs]
        pairs.append(near)
        sizes.append(np.full(len(near), NEAR_BLOCK, np.int64))
    if H >= BLOCK and W >= BLOCK:
        h, w = H - BLOCK + 1, W - BLOCK + 1
        bits = np.uint64(int(h * w).bit_length())
        parts = 1 << max(0, (h * w - 1) // PASS_BLOCKS).bit_length()
        for keys in _sorted_parts(image, s, parts, bits, stop):
            exact = _mark_groups(cover, keys, bits, w, s)
            pairs.append(exact)
            sizes.append(np.full(len(exact), BLOCK, np.int64))
            del keys  # before the next part is read
    pairs, sizes = np.concatenate(pairs), np.concatenate(sizes)
    check(stop)
    return Found(cover, pairs, sizes, _seam_ends(image, pairs, sizes, s))


def cover_of(image: np.ndarray, found: Found, s: CopySettings = CopySettings(), prob=None, stop: Stop = None) -> np.ndarray:
    """The copies found -> (H, W) uint8, 1 where a pixel lies in a marked block or a near copy (the
    module's docstring). prob: the network's map (H, W float32, or rows that slice as one), which picks
    the end of the copies whose seam says nothing; None: both ends of those. Takes found.cover."""
    keep = found.keep if prob is None else _pick_ends(prob, found, s)
    cover, pairs, sizes = found.cover, found.pairs, found.sizes
    for end in (0, 1):
        for size in (NEAR_BLOCK, BLOCK):
            sel = keep[:, end] & (sizes == size)
            mark_blocks(cover, pairs[sel, 2 * end], pairs[sel, 2 * end + 1], size)
    if s.grow:
        near = sizes == NEAR_BLOCK
        grow(image, cover, pairs[near], keep[near], s.grow, stop)
    return cover


def copy_cover(image: np.ndarray, s: CopySettings = CopySettings(), stop: Stop = None, prob=None) -> np.ndarray:
    """find_copies, then cover_of: the photo's copy cover in one call."""
    return cover_of(image, find_copies(image, s, stop), s, prob, stop)


def _mark_groups(cover: np.ndarray, keys: np.ndarray, bits: np.uint64, w: int, s: CopySettings) -> np.ndarray:
    """Mark the blocks of every group of equal hashes among the sorted `keys` that is a copy of three
    or more; return those of two as pairs (n, 4): the corners (y, x, y', x'), the later block second."""
    hashes = keys >> bits
    same = hashes[1:] == hashes[:-1]
    shared = np.r_[same, False] | np.r_[False, same]  # most blocks are unique: keep the rest only
    if not shared.any():
        return np.zeros((0, 4), np.int64)
    hashes, (ys, xs) = hashes[shared], np.divmod((keys[shared] & ((np.uint64(1) << bits) - np.uint64(1))).astype(np.int64), w)
    starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
    counts = np.diff(np.r_[starts, len(hashes)])
    span = np.maximum(np.maximum.reduceat(ys, starts) - np.minimum.reduceat(ys, starts),
                      np.maximum.reduceat(xs, starts) - np.minimum.reduceat(xs, starts))
    copy = (counts <= s.max_group) & (span >= s.min_distance)
    marked = np.repeat(copy & (counts > 2), counts)
    mark_blocks(cover, ys[marked], xs[marked], BLOCK)
    first = starts[copy & (counts == 2)]  # sorted by index within a group: the later block second
    return np.stack([ys[first], xs[first], ys[first + 1], xs[first + 1]], axis=1)


def _seam_ends(image, pairs: np.ndarray, sizes: np.ndarray, s: CopySettings) -> np.ndarray:
    """(n, 2) bool: which ends of each pair to mark. Pairs of one offset, if there are `seam_pairs` of
    them, keep only the end whose border is stronger by `seam_margin` (_border_strength); all else
    keeps both."""
    keep = np.ones((len(pairs), 2), bool)
    if not s.seam_pairs or not len(pairs):
        return keep
    for group in _offset_groups(pairs):
        if len(group) < s.seam_pairs:
            continue
        a, b = (_border_strength(image, pairs[group, 2 * e], pairs[group, 2 * e + 1], sizes[group], s) for e in (0, 1))
        if a is not None and b is not None and max(a, b) > s.seam_margin * min(a, b):
            keep[group, int(a > b)] = False  # the weaker end
    return keep


def _offset_groups(pairs: np.ndarray) -> list[np.ndarray]:
    """The pairs' indices grouped by offset (second corner minus first), in the order of (dy, dx)."""
    dy, dx = pairs[:, 2] - pairs[:, 0], pairs[:, 3] - pairs[:, 1]
    order = np.lexsort((dx, dy))
    new = np.r_[True, (dy[order][1:] != dy[order][:-1]) | (dx[order][1:] != dx[order][:-1])]
    return np.split(order, np.flatnonzero(new)[1:])


def _pick_ends(prob, found: Found, s: CopySettings) -> np.ndarray:
    """found.keep, but a group of at least `pick_pairs` pairs of one offset that keeps both ends keeps
    only the one where the network's map is higher by `pick_margin` (_map_sum)."""
    keep = found.keep.copy()
    if not s.pick_pairs or not len(found.pairs):
        return keep
    for group in _offset_groups(found.pairs):
        if len(group) < s.pick_pairs or not keep[group].all():
            continue
        ends = [_map_sum(prob, found.pairs[group, 2 * e], found.pairs[group, 2 * e + 1], found.sizes[group], s)
                for e in (0, 1)]
        if None in ends:
            continue
        (sa, na), (sb, nb) = ends
        if float(sa * nb) > s.pick_margin * float(sb * na):  # mean a > margin * mean b, in float64
            keep[group, 1] = False
        elif float(sb * na) > s.pick_margin * float(sa * nb):
            keep[group, 0] = False
    return keep


def _map_sum(prob, ys: np.ndarray, xs: np.ndarray, sizes: np.ndarray, s: CopySettings) -> tuple[int, int] | None:
    """(the sum of floor(255 p + 0.5) over the blocks' union, its pixels), in integers; None where the
    union's box exceeds `seam_area`."""
    drawn = _blocks_in_box(ys, xs, sizes, 0, prob.shape, s.seam_area)
    if drawn is None:
        return None
    (y0, y1, x0, x1), region = drawn
    levels = np.floor(np.asarray(prob[y0:y1])[:, x0:x1] * np.float32(255) + np.float32(0.5)).astype(np.int64)
    return int(levels[region.view(bool)].sum()), int(np.count_nonzero(region))


def _blocks_in_box(ys: np.ndarray, xs: np.ndarray, sizes: np.ndarray, pad: int, shape: tuple[int, ...], area: int):
    """The union of the blocks at (ys, xs), of sides `sizes`, drawn (uint8 0/1) in their extent grown by
    `pad` pixels and cut to `shape`: ((y0, y1, x0, x1), region); None where that box exceeds `area`."""
    y0, x0 = max(0, int(ys.min()) - pad), max(0, int(xs.min()) - pad)
    y1, x1 = min(shape[0], int((ys + sizes).max()) + pad), min(shape[1], int((xs + sizes).max()) + pad)
    if (y1 - y0) * (x1 - x0) > area:
        return None
    region = np.zeros((y1 - y0, x1 - x0), np.uint8)
    for size in np.unique(sizes):
        mark_blocks(region, ys[sizes == size] - y0, xs[sizes == size] - x0, int(size))
    return (y0, y1, x0, x1), region


def _border_strength(image, ys: np.ndarray, xs: np.ndarray, sizes: np.ndarray, s: CopySettings) -> float | None:
    """The gradient on the border of the blocks' union (a pixel either side) over that inside it (at
    least 2 pixels in), or None where nothing is inside or its box exceeds `seam_area`."""
    drawn = _blocks_in_box(ys, xs, sizes, 2, image.shape, s.seam_area)
    if drawn is None:
        return None
    (y0, y1, x0, x1), region = drawn
    total = np.asarray(image[y0:y1])[:, x0:x1].sum(axis=2, dtype=np.int16)
    grad = np.abs(cv2.Sobel(total, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(total, cv2.CV_32F, 0, 1))
    k3 = np.ones((3, 3), np.uint8)
    border = (cv2.dilate(region, k3) - cv2.erode(region, k3)).view(bool)
    inner = cv2.erode(region, np.ones((5, 5), np.uint8)).view(bool)
    n_border, n_inner = np.count_nonzero(border), np.count_nonzero(inner)
    if not n_border or not n_inner:
        return None
    # Sums of integers in float64: exact, so every runtime compares the same numbers.
    return float(grad[border].sum(dtype=np.float64)) / n_border / (float(grad[inner].sum(dtype=np.float64)) / n_inner + 1e-3)


CELL = 8  # the lift's grid: its blur is wide (6 cells), so a coarse grid changes little and costs a 64th of full resolution's


class CopyRaise:
    """raise_to_copies a band of rows at a time (a photo too large to hold whole: inpdiff.spill). The
    lift's terms are computed from the whole cover first, on the 8x8 grid; each band then needs the
    cover only within the blur's reach of it."""

    def __init__(self, cover: np.ndarray, s: CopySettings = CopySettings()):
        self.cover, self.s = cover, s
        self.term = self._lift_terms() if s.lift and cover.any() else None
        self.halo = int(4 * s.sigma) + 2  # OpenCV's float kernel reaches 4 sigma

    def _lift_terms(self) -> np.ndarray | None:
        """(cell rows, cell columns) float32: lift * D / max(D) (the module's docstring)."""
        H, W = self.cover.shape
        w = -(-W // CELL)
        share = np.zeros((-(-H // CELL), w), np.float32)
        step = 16 * CELL
        cells = np.zeros((step, w * CELL), np.uint8)  # a band of rows, padded to whole cells
        for y0 in range(0, H, step):
            rows = self.cover[y0:y0 + step]
            n = -(-len(rows) // CELL)
            cells[:len(rows), :W] = rows
            cells[len(rows):] = 0
            share[y0 // CELL:y0 // CELL + n] = cells[:n * CELL].reshape(n, CELL, w, CELL).sum(axis=(1, 3), dtype=np.float32)
        share /= np.float32(CELL * CELL)
        density = cv2.GaussianBlur(share, (0, 0), self.s.lift_sigma / CELL)
        peak = density.max()
        if peak <= 0:
            return None
        term = density / peak
        term *= np.float32(self.s.lift)
        return term

    def band(self, prob: np.ndarray, y0: int) -> None:
        """prob: rows y0.. of the network's map, raised in place."""
        y1, W = y0 + len(prob), self.cover.shape[1]
        if self.term is not None:
            for r in range(y0 // CELL, -(-y1 // CELL)):
                t = self.term[r]
                if (t > 0).any():  # a cell row near any cover
                    rows = prob[max(r * CELL, y0) - y0:min((r + 1) * CELL, y1) - y0]
                    rows += np.repeat(t, CELL)[:W]
                    np.minimum(rows, np.float32(1.0), out=rows)
        a, b = max(0, y0 - self.halo), min(self.cover.shape[0], y1 + self.halo)
        if not self.cover[a:b].any():  # a blur of nothing is exactly nothing: most bands of most photos
            return
        density = cv2.GaussianBlur(self.cover[a:b].astype(np.float32), (0, 0), self.s.sigma)[y0 - a:y1 - a]
        density *= np.float32(self.s.gain)
        np.minimum(density, np.float32(1.0), out=density)
        np.maximum(prob, density, out=prob)


def raise_to_copies(prob: np.ndarray, cover: np.ndarray, s: CopySettings = CopySettings()) -> np.ndarray:
    """prob (H, W) float32, the network's map: lifted in place near the cover (copy_cover's), then
    raised to the copy map of `cover` where that is higher (the module's docstring defines both). The
    copy map's blur runs a band at a time with a halo wider than its kernel, which gives the whole
    image's values."""
    raiser = CopyRaise(cover, s)
    for y0 in range(0, cover.shape[0], BAND):
        raiser.band(prob[y0:y0 + BAND], y0)
    return prob


def copy_map(image: np.ndarray, s: CopySettings = CopySettings()) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> (H, W) float32 in [0, 1]: how densely the area is tiled with copies (the
    copy map alone: no network map to lift)."""
    s = replace(s, lift=0.0)
    return raise_to_copies(np.zeros(image.shape[:2], np.float32), copy_cover(image, s), s)
