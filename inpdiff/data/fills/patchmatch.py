"""Exemplar fill: PatchMatch (Barnes et al. 2009) inside Wexler-style EM, as content-aware fill
does. Every hole pixel's patch is matched to a patch wholly outside the hole; the matches improve by
propagation from neighbours and random search, and the hole is rewritten by voting: each pixel the
mean of what the matched patches put there. The result copies real texture, sensor noise included,
from elsewhere in the same photo, which is what makes it hard for a "too smooth" detector.

Vectorised over all hole pixels: patches are flattened descriptors (5x5x3), propagation runs over
all pixels at once with jump distances 8, 4, 2, 1 (as GPU PatchMatch does), starting from a Telea
fill, at half resolution first. The final pass copies each match's centre pixel (votes would average
the copied texture into a blur).
"""
from __future__ import annotations

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PATCH = 5
R = PATCH // 2


def _descriptors(image: np.ndarray) -> np.ndarray:
    """(H, W, PATCH*PATCH*3) float32: the patch centred at every pixel (reflected at the border)."""
    padded = np.pad(image.astype(np.float32), ((R, R), (R, R), (0, 0)), mode="reflect")
    win = sliding_window_view(padded, (PATCH, PATCH), axis=(0, 1))  # (H, W, 3, P, P)
    return win.reshape(*image.shape[:2], -1)


def _match(cur: np.ndarray, source: np.ndarray, hole: np.ndarray, valid: np.ndarray, nnf: np.ndarray,
           rng: np.random.Generator, iters: int) -> np.ndarray:
    """Improve the nearest-neighbour field `nnf` (N, 2: source centre of each hole pixel)."""
    H, W = hole.shape
    tgt = np.argwhere(hole)
    tdesc = _descriptors(cur)[hole]
    sdesc = _descriptors(source)
    index = np.full((H, W), -1)
    index[hole] = np.arange(len(tgt))

    def cost(rows: np.ndarray, cand: np.ndarray) -> np.ndarray:
        return ((tdesc[rows] - sdesc[cand[:, 0], cand[:, 1]]) ** 2).sum(-1)

    def improve(cand: np.ndarray, ok: np.ndarray) -> None:
        ok &= (cand[:, 0] >= 0) & (cand[:, 0] < H) & (cand[:, 1] >= 0) & (cand[:, 1] < W)
        ok &= valid[np.clip(cand[:, 0], 0, H - 1), np.clip(cand[:, 1], 0, W - 1)]
        rows = np.flatnonzero(ok)
        if len(rows):
            c = cost(rows, cand[rows])
            better = c < best[rows]
            nnf[rows[better]], best[rows[better]] = cand[rows[better]], c[better]

    best = cost(np.arange(len(tgt)), nnf)
    for _ in range(iters):
        for jump in (8, 4, 2, 1):
            for d in ((jump, 0), (-jump, 0), (0, jump), (0, -jump)):
                nb = tgt + d
                inside = (nb[:, 0] >= 0) & (nb[:, 0] < H) & (nb[:, 1] >= 0) & (nb[:, 1] < W)
                nb_idx = np.where(inside, index[np.clip(nb[:, 0], 0, H - 1), np.clip(nb[:, 1], 0, W - 1)], -1)
                has = nb_idx >= 0
                improve(nnf[np.maximum(nb_idx, 0)] - d, has)  # the neighbour's match, shifted back
        radius = max(H, W)
        while radius >= 1:
            improve(nnf + rng.integers(-radius, radius + 1, nnf.shape), np.ones(len(tgt), bool))
            radius //= 2
    return nnf


def _vote(source: np.ndarray, hole: np.ndarray, nnf: np.ndarray) -> np.ndarray:
    """Each hole pixel: the mean of the colours the overlapping matched patches give it."""
    H, W = hole.shape
    tgt = np.argwhere(hole)
    acc = np.zeros((H * W, 3), np.float64)
    cnt = np.zeros(H * W)
    for dy in range(-R, R + 1):
        for dx in range(-R, R + 1):
            ty, tx = tgt[:, 0] + dy, tgt[:, 1] + dx
            sy, sx = nnf[:, 0] + dy, nnf[:, 1] + dx
            ok = (ty >= 0) & (ty < H) & (tx >= 0) & (tx < W) & (sy >= 0) & (sy < H) & (sx >= 0) & (sx < W)
            flat = ty[ok] * W + tx[ok]
            cnt += np.bincount(flat, minlength=H * W)
            for ch in range(3):
                acc[:, ch] += np.bincount(flat, weights=source[sy[ok], sx[ok], ch], minlength=H * W)
    out = source.astype(np.float32).copy()
    filled = cnt.reshape(H, W) > 0
    out[filled & hole] = (acc.reshape(H, W, 3) / np.maximum(cnt.reshape(H, W, 1), 1))[filled & hole]
    return out


def _fill(image: np.ndarray, hole: np.ndarray, start: np.ndarray, rng: np.random.Generator,
          em: int, iters: int) -> np.ndarray:
    H, W = hole.shape
    # Sources: centres whose whole patch lies outside the hole.
    valid = cv2.dilate(hole.astype(np.uint8), np.ones((PATCH, PATCH), np.uint8)) == 0
    src = np.argwhere(valid)
    if len(src) == 0:
        return start
    cur = start.astype(np.float32)
    cur[~hole] = image[~hole]
    nnf = src[rng.integers(len(src), size=int(hole.sum()))]
    for _ in range(em):
        nnf = _match(cur, image, hole, valid, nnf, rng, iters)
        cur = _vote(image, hole, nnf)
    # The last pass copies each match's centre instead of averaging the votes, which would blur away
    # the very texture and noise an exemplar fill brings.
    nnf = _match(cur, image, hole, valid, nnf, rng, iters)
    cur[hole] = image[nnf[:, 0], nnf[:, 1]]
    return cur


def patchmatch(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, em: int = 3,
               iters: int = 2) -> np.ndarray:
    hole = mask.astype(bool)
    start = cv2.inpaint(image, hole.astype(np.uint8), 3, cv2.INPAINT_TELEA).astype(np.float32)
    H, W = hole.shape
    if min(H, W) >= 64:  # coarse pass: structure from far away, cheaply
        small = cv2.resize(image, (W // 2, H // 2), interpolation=cv2.INTER_AREA)
        small_hole = cv2.resize(hole.astype(np.uint8), (W // 2, H // 2), interpolation=cv2.INTER_NEAREST) > 0
        coarse = _fill(small, small_hole, cv2.resize(start, (W // 2, H // 2)), rng, em, iters)
        start = cv2.resize(coarse, (W, H), interpolation=cv2.INTER_LINEAR)
    out = _fill(image, hole, start, rng, em, iters)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
