"""Near-copy evidence: blocks that repeat elsewhere in the photo up to JPEG noise and a smooth change of
brightness.

The exact copy evidence (inpdiff.copies) finds exemplar fills saved losslessly; a JPEG re-save breaks
the equality it relies on, and PatchMatch-style fills blend their copies slightly. This finds the same
repetition by comparing low-frequency features of 8x8 blocks instead of their bytes: the classical
copy-move detector (sort block features, compare neighbours in sort order), with a check that a
copy's neighbours were copied by the same offset, which natural self-similarity rarely passes.

Defined in integers, so that every runtime computes the same cover (the C++ runtime does):
- gray is OpenCV's RGB -> gray of the uint8 image; every 8x8 block, by its top-left (y, x), gets nine
  features F[i] = sum over the block of gray * KY[v](dy) * KX[u](dx) for the (u, v) in `RAMP_FREE`
  (with `ramp_free`, the default) or in `PAIRS`, with the small integer cosine-like kernels `KERNELS`
  (exact in float32: every partial sum is an integer below 2^24), and var = 64 * sum(gray^2) -
  sum(gray)^2 over the block;
- with `blur`, the features are those of the gray summed over 2x2 (each pixel with the ones right of
  and below it, 0 past the photo's edge): the same sums over 9x9 pixels with the kernels `BLURRED`
  (each of `KERNELS` convolved with [1, 1]), about 4 times the gray's. JPEG's noise, which is fine,
  averages out of them, so a re-saved copy still matches; var and the clip test stay the gray's;
- a block counts if var >= (64 * min_std)^2 and none of its gray pixels is below `clip` or above
  255 - `clip` (OpenCV's erode and dilate of the 8x8 block); its key is (floor(F0 / q), floor(F1 / q),
  floor(F2 / q), y * (W - 7) + x), and counted blocks are taken in key order;
- a block is compared with the next `window` blocks in that order that share its first key part; a
  pair matches if sum((Fa - Fb)^2) <= (abs_tol + rel_tol * min(std_a, std_b))^2 in float64, with
  std = sqrt(var) / 64, and its blocks are at least `min_distance` apart in y or x;
- matches whose blocks match more than `max_matches` blocks each are dropped (repetitive patterns);
- a match's offset d is from its block earlier in raster order to the later one; a match (p, d) is
  kept if at least `support` of p's 8 neighbouring blocks also match with the same d;
- the cover is 1 on every pixel of both blocks of every kept match.
The runtime searches twice (inpdiff.copies CopySettings.near): with the RAMP_FREE features on the gray,
and with PAIRS' on its 2x2 sums, and takes both searches' matches. Blocks are compared a share of
first key parts at a time, which bounds memory and changes nothing, since blocks are only compared
within one first key part: their features are computed once, and each block is written to the file
of its share (inpdiff.spill) until that share's turn.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import cv2
import numpy as np

from .spill import ColumnWriter

Stop = Callable[[], bool] | None  # asked at the searches' checkpoints: True ends the search with Stopped


class Stopped(Exception):
    """The copy search was asked to stop (the run is stopping): it has no cover to give."""


def check(stop: Stop) -> None:
    """Raise Stopped if `stop` says so: called by the searches at each of their checkpoints."""
    if stop is not None and stop():
        raise Stopped


B = 8
KERNELS = np.array([[4, 4, 4, 4, 4, 4, 4, 4],
                    [5, 4, 3, 1, -1, -3, -4, -5],
                    [5, 2, -2, -5, -5, -2, 2, 5],
                    [4, -1, -5, -3, 3, 5, 1, -4]], np.float32)  # about 10x the first four DCT-II rows
BLURRED = np.array([np.convolve(k, [1, 1]) for k in KERNELS], np.float32)  # KERNELS of the gray summed over 2x2
PAIRS = [(u, v) for u in range(4) for v in range(4) if 0 < u + v <= 3]  # (x, y) frequencies: the smooth ones survive JPEG
# Pairs whose feature a plane added over the block leaves unchanged (the smooth change of brightness a
# healing brush or a blending fill makes): the kernels but the first sum to 0, and the first and third
# are symmetric, so a ramp in x moves only (1, 0) and (3, 0), and one in y only (0, 1) and (0, 3). The
# first three are the key; the fourth and seventh, which the first test in `_matches` reads, are the
# largest of the rest (with (1, 3) seventh, the comparisons took 2.5 times as long).
RAMP_FREE = [(0, 2), (2, 0), (1, 1), (1, 2), (2, 2), (1, 3), (2, 1), (3, 1), (3, 3)]
BAND_BLOCKS = 1 << 18     # blocks whose features are computed at a time, in whole rows: about 20 MB of temporaries
# Blocks compared at a time: about 100 MB of features, keys and sort order at most. Comparing a 4 MP photo's
# 4M blocks at once took 300 MB (trt-localize's peak 517-530 MB, against 449-451) to be 2-5% faster.
PASS_BLOCKS = 1 << 20


@dataclass(frozen=True)
class NearCopySettings:
    min_std: int = 6           # gray levels: flat blocks match anything
    clip: int = 5              # blocks with a pixel below this or above 255 - this: clipped light and drawn captions repeat
    q: int = 660               # key quantisation, in feature units (about 110 per gray level of a DCT coefficient)
    window: int = 6            # neighbours in key order compared with each block
    abs_tol: float = 220.0     # feature distance allowed whatever the texture: JPEG's noise
    rel_tol: float = 26.4      # and in proportion to the block's contrast
    min_distance: int = 12
    support: int = 3           # of 8 neighbouring blocks that moved by the same offset
    max_matches: int = 2       # a block like more others is part of a repetitive pattern (windows, railings)
    blur: bool = False         # features of the gray summed over 2x2, which a JPEG re-save moves less
    ramp_free: bool = True     # the RAMP_FREE features, blind to a smooth change of brightness; else PAIRS


def _band_features(image, y0: int, y1: int, s: NearCopySettings,
                   count: int = len(PAIRS)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blocks with top rows y0..y1: (the first `count` features (count, n) float32, std (n,) float64,
    index (n,) int64) of the counted ones, in raster order. Gray is made of the band's own rows (a
    per-pixel conversion, so the same as the whole image's), so no image-sized gray is held."""
    rows = cv2.cvtColor(np.asarray(image[y0:y1 + B - 1 + s.blur]), cv2.COLOR_RGB2GRAY)
    w = image.shape[1] - B + 1
    h = y1 - y0
    kernels = BLURRED if s.blur else KERNELS
    gray = rows[:h + B - 1]  # without blur's extra row: var and the clip test are the gray's
    total = cv2.boxFilter(gray, cv2.CV_32S, (B, B), anchor=(0, 0), normalize=False, borderType=cv2.BORDER_CONSTANT)[:h, :w]
    squares = cv2.sqrBoxFilter(gray, cv2.CV_64F, (B, B), anchor=(0, 0), normalize=False, borderType=cv2.BORDER_CONSTANT)[:h, :w]
    var = (B * B * squares - np.square(total, dtype=np.float64)).ravel()  # exact: integers far below 2^53
    kernel = np.ones((B, B), np.uint8)
    clipped = ((cv2.dilate(gray, kernel, anchor=(0, 0)) > 255 - s.clip) | (cv2.erode(gray, kernel, anchor=(0, 0)) < s.clip))[:h, :w]
    at = np.flatnonzero((var >= float((B * B * s.min_std) ** 2)) & ~clipped.ravel())
    at_row = at // w * rows.shape[1] + at % w  # the counted blocks in a filtered band, which is W wide
    feats = np.empty((count, len(at)), np.float32)  # integers, |F| <= 4 * 64 * 255 * 25 < 2^24: exact; a feature's row is contiguous
    for i, (u, v) in enumerate((RAMP_FREE if s.ramp_free else PAIRS)[:count]):
        f = cv2.sepFilter2D(rows, cv2.CV_32F, kernels[u], kernels[v], anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
        np.take(f.reshape(-1), at_row, out=feats[i])
    return feats, np.sqrt(var[at]) / (B * B), at + y0 * w


def near_copy_cover(image: np.ndarray, s: NearCopySettings = NearCopySettings(),
                    cover: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3), or any array-like whose rows slice as one (inpdiff.spill), -> (H, W)
    uint8, 1 where a pixel lies in a block of a kept match; marked into `cover` where one is given."""
    cover = np.zeros(image.shape[:2], np.uint8) if cover is None else cover
    pairs = near_pairs(image, s)
    mark_blocks(cover, np.r_[pairs[:, 0], pairs[:, 2]], np.r_[pairs[:, 1], pairs[:, 3]], B)
    return cover


def near_pairs(image: np.ndarray, s: NearCopySettings = NearCopySettings(), stop: Stop = None) -> np.ndarray:
    """(n, 4) int64: the kept matches as the top-left corners (y, x, y', x') of their two 8x8 blocks,
    the later block in raster order second (as in an exact pair of inpdiff.copies). `stop` is asked
    between bands and chunks of pairs (Stopped)."""
    H, W = image.shape[:2]
    if H < B or W < B:
        return np.zeros((0, 4), np.int64)
    h, w = H - B + 1, W - B + 1
    rows = max(1, BAND_BLOCKS // w)
    bands = [(y0, min(y0 + rows, h)) for y0 in range(0, h, rows)]
    matches = []
    for blocks in _shares(image, bands, s, h * w, stop):
        matches.append(_matches(blocks, s, w, stop))
        del blocks  # before the next share is read
    p = np.concatenate([m[0] for m in matches] or [np.zeros(0, np.int64)])
    d = np.concatenate([m[1] for m in matches] or [np.zeros(0, np.int64)])
    if not len(p):
        return np.zeros((0, 4), np.int64)
    # Keep a match if its neighbours moved by the same offset: a copied area, not one lookalike.
    code = np.unique(d.astype(np.int64) * (h * w) + p)  # sorted: offset first, then position
    d, p = np.divmod(code, h * w)
    py, px = np.divmod(p, w)
    support = np.zeros(len(p), np.int32)
    for ey in (-1, 0, 1):
        for ex in (-1, 0, 1):
            if ey == ex == 0:
                continue
            ny, nx = py + ey, px + ex
            inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
            want = d * (h * w) + np.where(inside, ny * w + nx, 0)
            at = np.minimum(np.searchsorted(code, want), len(code) - 1)
            support += inside & (code[at] == want)
    kept = support >= s.support
    py, px, d = py[kept], px[kept], d[kept]
    dy, dx = np.divmod(d, 2 * w)
    dx -= w
    pairs = np.stack([py, px, py + dy, px + dx], axis=1).astype(np.int64)
    earlier = (dy < 0) | ((dy == 0) & (dx < 0))
    pairs[earlier] = pairs[earlier][:, [2, 3, 0, 1]]
    return pairs


def mark_blocks(cover: np.ndarray, ys: np.ndarray, xs: np.ndarray, size: int) -> None:
    """cover[y:y + size, x:x + size] = 1 for every (y, x) (cover holds 0 and 1): the marks are set in bit 1
    of the cover itself and dilated into bit 0 a band of rows at a time, so no image-sized array of them
    is made, and only bands that hold a mark, or lie below one, are visited."""
    if not len(ys):
        return
    H = cover.shape[0]
    cover[ys, xs] |= 2
    kernel = np.ones((size, size), np.uint8)
    band = 128
    for y0 in np.unique(np.r_[ys // band, (ys + size - 1) // band]) * band:
        a, y1 = max(0, y0 - size + 1), min(H, y0 + band)
        marks = cover[a:y1] >> 1
        grown = cv2.dilate(marks, kernel, anchor=(size - 1, size - 1), borderType=cv2.BORDER_CONSTANT, borderValue=0)
        cover[y0:y1] |= grown[y0 - a:]
    np.bitwise_and(cover, 1, out=cover)


def _part(feature: np.ndarray, s: NearCopySettings) -> np.ndarray:
    """A key part, floor(F / q), in integers (numpy's floor division of floats is ten times slower)."""
    return feature.astype(np.int32) // s.q


Blocks = tuple[np.ndarray, np.ndarray, np.ndarray]  # features (9, n) float32, std (n,) float64, index (n,) int64


def _shares(image, bands: list[tuple[int, int]], s: NearCopySettings, blocks: int, stop: Stop) -> Iterator[Blocks]:
    """The counted blocks in raster order, a share of whole first key parts of about PASS_BLOCKS blocks
    at a time (all at once up to PASS_BLOCKS blocks). The shares are cut from the first key parts'
    histogram, estimated from every fourth band; then each block's features are computed once and
    written to its share's file (columns, inpdiff.spill), and the shares are read back one by one."""
    def features(bands: list[tuple[int, int]], count: int = len(PAIRS)):
        for a, b in bands:
            check(stop)
            yield _band_features(image, a, b, s, count)

    if blocks <= PASS_BLOCKS:
        yield _columns(features(bands), blocks)
        return
    counts = 4 * sum(np.bincount(_part(f[0], s) + 1024, minlength=2048)
                     for f, _, _ in features(bands[::4], 1))  # |F| / q < 1024
    starts, n = [-1024], 0  # the first share takes every part below the next one's, seen in the sample or not
    for part, c in zip((np.flatnonzero(counts) - 1024).tolist(), counts[counts > 0].tolist()):
        if n and n + c > PASS_BLOCKS:
            starts.append(part)
            n = 0
        n += c
    files = [ColumnWriter(None, [(len(PAIRS), np.float32), (0, np.float64), (0, np.int64)]) for _ in starts]
    for f, sd, at in features(bands):
        share = (np.searchsorted(starts, _part(f[0], s), side="right") - 1).astype(np.uint16)
        if len(starts) > 1:
            order = np.argsort(share, kind="stable")  # raster order within each share (a radix sort, on 16 bits)
            f, sd, at, share = f[:, order], sd[order], at[order], share[order]
        cuts = np.searchsorted(share, np.arange(len(starts) + 1))
        for file, a, b in zip(files, cuts[:-1], cuts[1:]):
            if b > a:
                file.write(f[:, a:b], sd[a:b], at[a:b])
    for file in files:
        yield tuple(file.read())


def _columns(parts, most: int) -> Blocks:
    """Blocks given as (features, std, index) parts, joined. The arrays are made `most` long and filled
    part by part (only the pages written become resident), rather than gathered and joined, which held
    them twice."""
    f, sd, at, n = np.empty((len(PAIRS), most), np.float32), np.empty(most), np.empty(most, np.int64), 0
    for pf, psd, pat in parts:
        f[:, n:n + len(pat)], sd[n:n + len(pat)], at[n:n + len(pat)] = pf, psd, pat
        n += len(pat)
    return f[:, :n], sd[:n], at[:n]


INDEX = (1 << 31) - 1  # a packed key's position bits


def _sorted_keys(f: np.ndarray, s: NearCopySettings) -> tuple[np.ndarray, np.ndarray]:
    """(sorted packed keys, and `order`, which takes the blocks' raster order to key order). Only the
    keys are sorted, not the features (they are gathered for the few pairs that pass a first test,
    `_matches`), and with each block's position in their low bits, so a plain sort gives the order too:
    several times faster than an argsort, and the same order, since positions follow raster order."""
    # Each key part in 11 bits (|F| / q < 1024), the position in the low 31.
    key = (_part(f[0], s).astype(np.int64) + 1024) << 53
    key |= (_part(f[1], s).astype(np.int64) + 1024) << 42
    key |= (_part(f[2], s).astype(np.int64) + 1024) << 31
    key |= np.arange(len(key))
    key.sort()
    return key, key & INDEX


# The features in the order `_matches` sums their squared differences: the largest of the rest first
# (feature 3 and 6 passed the first test, and the key's three are close in every pair compared).
DISTANCE_ORDER = (4, 5, 7, 8, 3, 6, 0, 1, 2)
CHUNK = 1 << 20  # pairs compared at a time: bounds the temporaries, changes nothing


def _matches(blocks: Blocks, s: NearCopySettings, w: int, stop: Stop = None) -> tuple[np.ndarray, np.ndarray]:
    """(p, d) of the matches among `blocks`: p the earlier block's index, d its offset coded as
    dy * 2w + (dx + w)."""
    f, sd, at = blocks
    key, order = _sorted_keys(f, s)
    n = len(key)
    # A first test on two features in key order, which most pairs fail: a pair whose feature 3 or 6
    # differs by more than its tolerance (+1, for float32's rounding of it) is too far apart whatever
    # the others.
    f3, f6 = f[3][order], f[6][order]
    tol = (s.abs_tol + s.rel_tol * sd[order]).astype(np.float32) + np.float32(1)
    gaps = np.empty(min(CHUNK, n), np.float32)
    P, Q, D, S = [], [], [], []
    for j in range(1, min(s.window, n - 1) + 1):
        for c in range(0, n - j, CHUNK):
            check(stop)
            a, b = slice(c, min(c + CHUNK, n - j)), slice(c + j, min(c + CHUNK, n - j) + j)
            t, gap = np.minimum(tol[a], tol[b]), gaps[:a.stop - c]
            ok = np.abs(np.subtract(f3[a], f3[b], out=gap), out=gap) <= t
            ok &= np.abs(np.subtract(f6[a], f6[b], out=gap), out=gap) <= t
            maybe = np.flatnonzero(ok) + c
            maybe = maybe[(key[maybe] >> 53) == (key[maybe + j] >> 53)]  # blocks are compared within a first key part
            p, q = order[maybe], order[maybe + j]
            limit = s.abs_tol + s.rel_tol * np.minimum(sd[p], sd[q])
            limit *= limit
            dist = np.zeros(len(limit))  # sums of integers in float64: exact in any order
            for k, i in enumerate(DISTANCE_ORDER):
                dist += np.square((f[i, p] - f[i, q]).astype(np.float64))
                if k == 2:  # a partial sum past the limit is past it whole: most pairs go here
                    near = dist <= limit
                    maybe, p, q, dist, limit = maybe[near], p[near], q[near], dist[near], limit[near]
            alike = maybe[dist <= limit]
            p, q = at[order[alike]], at[order[alike + j]]
            S.append(p), S.append(q)
            (py, px), (qy, qx) = np.divmod(p, w), np.divmod(q, w)
            dy, dx = qy - py, qx - px
            far = (np.abs(dy) >= s.min_distance) | (np.abs(dx) >= s.min_distance)
            p, q, dy, dx = p[far], q[far], dy[far], dx[far]
            later = q < p  # the offset runs from the earlier block in raster order to the later one
            P.append(np.where(later, q, p))
            Q.append(np.where(later, p, q))
            D.append(np.where(later, -dy, dy) * 2 * w + np.where(later, -dx, dx) + w)
    if not P:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    p, q, d = np.concatenate(P), np.concatenate(Q), np.concatenate(D)
    blocks, count = np.unique(np.concatenate(S), return_counts=True)  # near ones too: edges and patterns
    few = count[np.searchsorted(blocks, p)] <= s.max_matches
    few &= count[np.searchsorted(blocks, q)] <= s.max_matches
    return p[few], d[few]
