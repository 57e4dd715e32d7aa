"""Localizing a photo too large to hold, a band of rows at a time (inpdiff.spill keeps the rows).

Localizer.finish's steps, with the same arithmetic per pixel, taken band by band:
- RowAccumulator blends the tiles' maps (in plan order, as every caller already does) into a window
  one tile tall; rows that no later tile reaches are normalised at once and written out;
- finish: once the copy cover is in, each band of that map is raised to it (copies.CopyRaise),
  thresholded and written out again, while the regions (each band's connected components, joined
  where they touch across band edges) and the image score are gathered.
The result's maps are SpilledArrays; runtime.outputs writes them a band at a time.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from ..copies import CopyRaise, CopySettings
from ..scoring import BandStatistic, ScoreCalibration
from ..spill import RowWriter, SpilledArray

BAND = 128  # rows per band: a few MB at the widest photos


class RowAccumulator:
    """The (S, H, W) sum of a plan's tiles, held one tile tall: rows above the tile row being blended
    are final, so they are divided by the tiles' summed ramps (as Localizer.finish does) and written."""

    def __init__(self, samples: int, shape: tuple[int, int], tile_rows: int, wy: np.ndarray, wx: np.ndarray):
        self.H, self.W = shape
        self.tile_rows, self.wy, self.wx = tile_rows, wy, wx
        self.buf = np.zeros((samples, tile_rows, self.W), np.float32)
        self.lo = 0  # the image row of buf's first row
        self.prob = RowWriter(None, (self.W,), np.float32)
        self.uncertainty = RowWriter(None, (self.W,), np.float32) if samples > 1 else None

    def add(self, y: int, x: int, block: np.ndarray) -> None:
        """A tile's (S, h, w) weighted map at (y, x); tiles come in plan order (row by row)."""
        if y > self.lo:
            self._flush(y)
        h, w = block.shape[1:]
        self.buf[:, y - self.lo:y - self.lo + h, x:x + w] += block

    def _flush(self, upto: int) -> None:
        n = min(upto, self.H) - self.lo
        rows = self.buf[:, :n]
        rows /= self.wy[self.lo:self.lo + n, None]
        rows /= self.wx
        self.prob.write(rows.mean(axis=0) if rows.shape[0] > 1 else rows[0])
        if self.uncertainty:
            self.uncertainty.write(rows.std(axis=0))
        self.buf[:, :self.tile_rows - n] = self.buf[:, n:].copy()
        self.buf[:, self.tile_rows - n:] = 0
        self.lo += n

    def close(self) -> tuple[SpilledArray, SpilledArray | None]:
        """The map before copies and the spread across samples (None for one sample)."""
        self._flush(self.H)
        self.buf = None
        return self.prob.done(), self.uncertainty.done() if self.uncertainty else None


class RegionFinder:
    """Connected regions (8-connected) of a mask given a band of rows at a time: each band's components,
    joined where they touch across band edges, with their boxes, areas, copied shares and (float64)
    mean probabilities (localizer.find_regions feeds it a held mask)."""

    def __init__(self, min_area: int):
        self.min_area = min_area
        self.records: list[np.ndarray] = []  # per component: x0, y0, x1, y1, area, first pixel, sum of p, copied pixels
        self.pairs: list[np.ndarray] = []    # components that touch across a band edge
        self.count = 0
        self.last: np.ndarray | None = None  # the previous band's last row, as component numbers (-1: none)

    def add(self, mask: np.ndarray, prob: np.ndarray, cover: np.ndarray | None, y0: int) -> None:
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
        W = mask.shape[1]
        if n > 1:
            at = np.flatnonzero(mask)  # the masked pixels only: most of most photos is not
            lab = labels.ravel()[at]
            psum = np.bincount(lab, weights=prob.ravel()[at], minlength=n)[1:]
            csum = (np.bincount(lab, weights=cover.ravel()[at], minlength=n)[1:] if cover is not None
                    else np.zeros(n - 1))
            first = at[np.unique(lab, return_index=True)[1]]  # each component's first pixel in raster order
            x, y, w, h, area = (stats[1:, i].astype(np.float64) for i in range(5))
            self.records.append(np.stack([x, y + y0, x + w, y + y0 + h, area, first + y0 * W, psum, csum], axis=1))
        number = labels - 1 + self.count  # labels as component numbers; background -> count - 1, masked off below
        if self.last is not None:
            top = np.where(labels[0] > 0, number[0], -1)
            for shift in (-1, 0, 1):  # 8-connectivity: the pixel above, and its two neighbours
                a = self.last[max(0, shift):W + min(0, shift)]
                b = top[max(0, -shift):W + min(0, -shift)]
                both = (a >= 0) & (b >= 0)
                if both.any():
                    self.pairs.append(np.stack([a[both], b[both]], axis=1))
        self.last = np.where(labels[-1] > 0, number[-1], -1)
        self.count += n - 1

    def regions(self, copies: bool) -> list[tuple[tuple[int, int, int, int], int, float, float | None]]:
        """(box, area, mean probability, copied share) of each region of at least min_area pixels, largest
        first, ties in the raster order of their first pixels."""
        if not self.count:
            return []
        rec = np.concatenate(self.records)
        parent = np.arange(self.count)

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        if self.pairs:
            for a, b in np.unique(np.concatenate(self.pairs), axis=0).tolist():
                ra, rb = root(a), root(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
        roots = np.array([root(i) for i in range(self.count)]) if self.pairs else parent
        merged = np.zeros((self.count, rec.shape[1]))
        merged[:, [0, 1, 5]] = np.inf
        merged[:, [2, 3]] = -np.inf
        for col, op in ((0, np.minimum), (1, np.minimum), (5, np.minimum), (2, np.maximum), (3, np.maximum),
                        (4, np.add), (6, np.add), (7, np.add)):
            if op is np.add:
                merged[:, col] = 0
            op.at(merged[:, col], roots, rec[:, col])
        keep = np.flatnonzero((roots == np.arange(self.count)) & (merged[:, 4] >= self.min_area))
        keep = keep[np.lexsort((merged[keep, 5], -merged[keep, 4]))]  # largest first; ties in the raster order of their first pixels
        return [((int(x0), int(y0), int(x1 - x0), int(y1 - y0)), int(area), round(psum / area, 4),
                 round(csum / area, 4) if copies else None)
                for x0, y0, x1, y1, area, _, psum, csum in merged[keep].tolist()]


def finish(acc: RowAccumulator, cover_for: Callable[[SpilledArray], np.ndarray | None], settings: CopySettings,
           threshold: float, min_region: int, calibration: ScoreCalibration | None):
    """Localizer.finish for a RowAccumulator (every tile blended) and the copy cover of the blended map
    (`cover_for`; None: none looked for) -> (prob, uncertainty, mask, score, regions, inpainted), the
    maps as SpilledArrays."""
    before, uncertainty = acc.close()
    H, W = before.shape
    cover = cover_for(before)
    raiser = CopyRaise(cover, settings) if cover is not None else None
    prob, mask = RowWriter(None, (W,), np.float32), RowWriter(None, (W,), np.bool_)
    finder = RegionFinder(min_region)
    statistic = BandStatistic(calibration.statistic if calibration else "top1", H * W)
    for y0, rows in before.bands(BAND):
        if raiser:
            raiser.band(rows, y0)
        marked = rows >= threshold
        prob.write(rows)
        mask.write(marked)
        finder.add(marked, rows, None if cover is None else cover[y0:y0 + BAND], y0)
        statistic.add(rows)
    before.close()
    regions = finder.regions(cover is not None)
    if calibration:
        score = calibration.calibrate(statistic.value())
        inpainted = score >= calibration.threshold
    else:
        score, inpainted = statistic.value(), bool(regions)
    zeros = np.broadcast_to(np.float32(0), (H, W))
    return prob.done(), uncertainty if uncertainty is not None else zeros, mask.done(), score, regions, inpainted
