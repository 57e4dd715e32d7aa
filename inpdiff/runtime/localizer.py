"""The localizer: tiling, the sampling loop and ensembling, written once for every backend.

Tiling policy. Inpainting leaves high-frequency traces that resizing destroys, so the model runs at
the image's native resolution, on tiles. Graphs of a fixed size (TensorRT's engines, older exports)
take tiles of the export's size (256); graphs that take any size (ONNX Runtime on a current export)
take, along each axis, the tile of 256 to `max_tile` pixels (a multiple of 32) that covers the image
with the fewest computed pixels: a 481x321 photo is one 512x352 tile instead of six 256-pixel ones,
and the model compares each region with more of its image (photos up to 16 MP: LARGE_TILES_UP_TO). Tiles overlap by at least `overlap`
pixels, are spread evenly so the last one ends at the border, and are blended with a linear ramp at
their edges (the model sees zero padding there, so edge pixels are trusted less). An image smaller
than its tile is mirror-padded to it. `max_side` downscales very large images first
(trading the finest traces for speed); the maps are then resized back, so every output has the
input's exact size.

The probability map is the model's, raised to the copy evidence (inpdiff.copies) where that is higher:
the network finds fills by their texture, the copy map finds exemplar fills by their repetition, which
the network's tiles see poorly.
"""
from __future__ import annotations

import math
import os
import threading
import time
import warnings
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .. import sampling
from ..copies import CopySettings, cover_of, find_copies, raise_to_copies
from ..io import read_image
from ..noise import tile_noise
from ..scoring import ScoreCalibration, image_score
from .backends import Backend, BackendSpec, FusedBackend, cpu_int8_dot_product, make_backend
from .bands import BAND, RegionFinder, RowAccumulator, finish as finish_bands
from .model_dir import ModelDir, ModelError, model_path
from ..spill import SpilledArray

# Larger tiles only up to this many pixels: above it they save under 5% of the time (the overlap is
# already a small share of 256-pixel tiles), and the bands a large photo is worked in grow with the
# tile's height, which took a 99 MP photo past 600 MB.
LARGE_TILES_UP_TO = 16_000_000


@dataclass
class LocalizeConfig:
    steps: int | None = None      # None: the model's default (10)
    samples: int = 1              # ensemble size, run as one batch; uncertainty = std across samples
    seed: int = 0
    threshold: float | None = None  # mask threshold; None: the model's calibrated one (else 0.5)
    max_side: int | None = None   # downscale images whose longer side exceeds this
    batch: int = 8                # tiles per backend call, counted in tiles of the model's size (256)
    overlap: int | None = None    # minimum overlap of neighbouring tiles (None: an eighth of the model's tile)
    # Largest tile side where the graphs take any size; 0: the model's tile only, as TensorRT runs it
    # (calibration records those tiles)
    max_tile: int = 512
    min_region: int = 16          # connected regions smaller than this (pixels) are not reported
    copies: bool = True           # fuse the copy evidence (inpdiff.copies) into the probability map
    near_copies: bool = True      # and its near copies (inpdiff.near_copies): re-saved exemplar fills, at a cost in speed
    copy_threads: int = 0         # images whose copies are searched at once (0: one per core)
    flips: int = 1                # 1, 2, 4 or 8: views of each tile (FLIPS), their maps averaged, at that cost


# Test-time views of a tile, (rows mirrored, columns mirrored, transposed), in the order their maps are
# summed; `flips` N takes the first N. The network is neither mirror- nor transpose-symmetric, so its
# views err differently and their mean is steadier. The order puts first the views that, added, gained
# most on tools no model saw (turned 180 degrees; then mirrored top-bottom and transposed): chosen on
# OpenCV's two tools and Resynthesizer, checked on GIMP (README, "Which views first").
FLIPS = ((False, False, False), (True, True, False), (True, False, False), (False, False, True),
         (False, True, False), (False, True, True), (True, False, True), (True, True, True))


def flip(a: np.ndarray, rows: bool, columns: bool, axes: tuple[int, int], transposed: bool = False) -> np.ndarray:
    """A view of `a` mirrored along its `axes` (rows, columns) as asked, then, if `transposed`, with those
    two axes swapped. Its inverse is the same with `rows` and `columns` exchanged where `transposed`
    (unflip)."""
    index = [slice(None)] * a.ndim
    index[axes[0]], index[axes[1]] = slice(None, None, -1 if rows else 1), slice(None, None, -1 if columns else 1)
    mirrored = a[tuple(index)]
    return mirrored.swapaxes(*axes) if transposed else mirrored


def unflip(a: np.ndarray, rows: bool, columns: bool, axes: tuple[int, int], transposed: bool = False) -> np.ndarray:
    """`a` = flip(b, rows, columns, axes, transposed) -> b."""
    return flip(a, columns, rows, axes, True) if transposed else flip(a, rows, columns, axes)


@dataclass
class Region:
    bbox: tuple[int, int, int, int]  # x, y, width, height
    area: int
    mean_prob: float
    copied: float | None = None  # share of its pixels that exactly repeat pixels elsewhere (None: not looked for)


@dataclass
class Result:
    """The maps are SpilledArrays (read by rows, inpdiff.spill) where the input was one."""
    prob: np.ndarray          # (H, W) float32 in [0, 1], the input's size
    uncertainty: np.ndarray   # (H, W) float32, std across samples (zeros for one sample)
    mask: np.ndarray          # (H, W) bool, prob >= threshold
    score: float              # image-level, 0..1 (calibrated where the model carries a calibration)
    regions: list[Region]
    inpainted: bool           # the image-level decision: score >= the calibrated threshold, else any region
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        return {"score": round(self.score, 4), "inpainted": self.inpainted,
                "regions": [asdict(r) for r in self.regions]}


def axis_tile(length: int, tile: int, max_tile: int, overlap: int) -> int:
    """The tile length along one axis: `tile` where the graphs are fixed (max_tile <= tile), else the
    multiple of 32 from `tile` to `max_tile` whose tiles compute the fewest pixels (the larger on a tie:
    fewer calls, more context)."""
    sizes = range(tile, max(tile, max_tile) + 1, 32)
    return min(sizes, key=lambda t: (len(tile_origins(length, t, overlap)) * t, -t))


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering [0, length) with at least `overlap` pixels shared."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [int(round(v)) for v in np.linspace(0, length - tile, n)]


def blend_ramp(tile: int, overlap: int) -> np.ndarray:
    ramp = np.minimum(np.arange(tile), np.arange(tile)[::-1]) + 1.0
    return np.clip(ramp / (overlap + 1), 1.0 / (overlap + 1), 1.0).astype(np.float32)


def axis_weight(length: int, origins: list[int], ramp: np.ndarray) -> np.ndarray:
    """The ramps of the tiles starting at `origins`, summed along one axis."""
    w = np.zeros(length, np.float32)
    for o in origins:
        w[o:o + len(ramp)] += ramp
    return w


def find_regions(mask: np.ndarray, prob: np.ndarray, min_area: int, cover: np.ndarray | None = None) -> list[Region]:
    """Connected regions (8-connected) of at least `min_area` pixels, largest first, ties in raster order,
    with their mean probability and copied share; found a band of rows at a time (bands.RegionFinder), so
    no label map is larger than a band, and in 32-bit labels (OpenCV 4.6's 16-bit ones corrupt its heap
    once a mask needs more than 65535 provisional labels; releases from 2025 on throw instead)."""
    finder = RegionFinder(min_area)
    for y0 in range(0, mask.shape[0], BAND):
        finder.add(mask[y0:y0 + BAND], prob[y0:y0 + BAND], None if cover is None else cover[y0:y0 + BAND], y0)
    return [Region(*r) for r in finder.regions(cover is not None)]


@dataclass
class Plan:
    """One image cut into tiles: what the backend runs, and how the maps go back together."""
    image: np.ndarray                 # the input, as given (a SpilledArray: worked a band at a time)
    work: np.ndarray                  # downscaled (max_side) and padded to at least a tile
    size: tuple[int, int]             # (h, w) of `work` before padding
    shape: tuple[int, int]            # (h, w) of every tile
    origins: list[tuple[int, int]]    # (y, x) of every tile in `work`
    copies: Future | None = None      # the copies found in `image` (copies.Found), once start_copies has begun it

    def tile(self, i: int) -> np.ndarray:
        (y, x), (h, w) = self.origins[i], self.shape
        return self.work[y:y + h, x:x + w]


class Localizer:
    """plan -> infer (tiles of any images, batched) -> assemble; `localize` runs the three on one image.
    The batch pipeline calls them separately to batch tiles across images. An INT8 or FP16 model is
    refused until it has its own score calibration, unless `require_score` is off (the calibration
    tools, which make one)."""

    def __init__(self, model_dir: str | Path | None = None,
                 backend: str | BackendSpec | Backend | FusedBackend = "auto",
                 config: LocalizeConfig | None = None, threads: int = 0, require_score: bool = True):
        self.model_dir = model_path(model_dir)
        self.model = ModelDir.load(self.model_dir)
        if self.model.manifest.get("quantization", {}).get("target") == "cpu":
            self._fp32_where_int8_is_slow()
        self.manifest = self.model.manifest
        self.config = config or LocalizeConfig()
        self.tile, self.diffusion, self.mode = self.model.tile, self.model.diffusion, self.model.mode
        self.steps = 1 if not self.diffusion else (self.config.steps or self.model.steps)
        self.max_steps = self.model.max_steps
        self.rows = sampling.step_rows(self.mode, self.steps, self.max_steps)  # also validates --steps
        if self.config.samples < 1:
            raise ValueError(f"samples must be at least 1, got {self.config.samples}")
        self.overlap = self.tile // 8 if self.config.overlap is None else self.config.overlap
        if not 0 <= self.overlap < self.tile // 2:
            raise ValueError(f"overlap must be in [0, {self.tile // 2}), got {self.overlap}")
        if self.config.max_tile % 32:
            raise ValueError(f"max_tile must be a multiple of 32, got {self.config.max_tile}")
        if self.config.flips not in (1, 2, 4, 8):
            raise ValueError(f"flips must be 1, 2, 4 or 8, got {self.config.flips}")
        if require_score and self.model.precision != "fp32" and self.model.score is None:
            # Its graphs differ from the FP32 model's, so the FP32 score calibration does not carry over,
            # and the uncalibrated "any region" rule would decide differently from the model it came from.
            raise ModelError(f"{self.model_dir}: a {self.model.precision} model without its own calibrated image "
                             f"score; run `inpdiff calibrate-score {self.model_dir} --data VALIDATION_DIR` first")
        self.calibration = ScoreCalibration.from_dict(self.model.score) if self.model.score else None
        self.mask_threshold = (self.config.threshold if self.config.threshold is not None
                               else self.model.mask_threshold)
        # The copy evidence needs only the image, so it is searched while the tiles run. Several threads: the
        # batch mode has several images in flight, and a single thread made the search its bottleneck on a
        # many-core machine (numpy and OpenCV release the GIL for most of it).
        self._copies = (ThreadPoolExecutor(self.config.copy_threads or os.cpu_count() or 1, thread_name_prefix="copies")
                        if self.config.copies else None)
        self.copy_settings = CopySettings() if self.config.near_copies else CopySettings(near=())
        self._closing = threading.Event()  # ends the searches still running, which close() would wait for
        self.backend = (make_backend(backend, self.model_dir, threads) if isinstance(backend, (str, BackendSpec))
                        else backend)
        graph_tile = getattr(self.backend, "tile", self.tile)  # None: graphs that take any size
        if graph_tile is not None and graph_tile != self.tile:
            raise ModelError(f"{self.model_dir / 'manifest.json'}: field 'tile' is {self.tile}, but condition.onnx "
                             f"takes {graph_tile}x{graph_tile} tiles (the manifest was edited; re-export the model)")
        self.max_tile = self.tile if graph_tile else max(self.tile, self.config.max_tile)
        self._windows: dict[tuple[int, int], np.ndarray] = {}  # blend windows by tile shape

    def _fp32_where_int8_is_slow(self) -> None:
        """A CPU INT8 model on a CPU without int8 dot products (where ONNX Runtime's uint8 kernels are
        slow, and may saturate): run the FP32 model it was made from instead, and say why."""
        ok, what = cpu_int8_dot_product()
        if ok:
            return
        given = Path(self.model.manifest["quantization"]["source"]["model_dir"])
        source = next((p for p in (given, self.model_dir.parent / given.name) if (p / "manifest.json").is_file()), None)
        if source is None:
            raise ModelError(f"{self.model_dir}: a CPU INT8 model, but this is {what}, and its FP32 model "
                             f"({given}) is not there; use the FP32 model folder")
        warnings.warn(f"{self.model_dir} is a CPU INT8 model, but this is {what}: running the FP32 model "
                      f"{source} instead", stacklevel=3)
        self.model_dir, self.model = source, ModelDir.load(source)

    def close(self) -> None:
        """Free the backend (its sessions or engines, streams and buffers) and the copy threads."""
        self._closing.set()
        self.backend.close()
        if self._copies:
            self._copies.shutdown(cancel_futures=True)

    def __enter__(self) -> "Localizer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def localize(self, image: np.ndarray | SpilledArray | str | Path) -> Result:
        """RGB uint8 (H, W, 3), or an image file, -> Result at the input's size."""
        t0 = time.perf_counter()
        if isinstance(image, (str, Path)):
            image = read_image(image)
        plan = self.start_copies(self.plan(image))
        n, b = len(plan.origins), self.batch(plan.shape)

        def maps():  # a batch at a time, blended as they come: a large photo's maps are not held together
            for i in range(0, n, b):
                yield from self.infer(np.stack([plan.tile(j) for j in range(i, min(i + b, n))]),
                                      plan.origins[i:i + b])
        result = self.assemble(plan, maps())
        result.timings.update(tiles=n, total_ms=(time.perf_counter() - t0) * 1000)
        return result

    def plan(self, image: np.ndarray) -> Plan:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        if isinstance(image, SpilledArray) and self.config.max_side:
            image = image[:]  # to be downscaled first: then it is small enough to hold
        work = image
        if self.config.max_side and max(h, w) > self.config.max_side:
            s = self.config.max_side / max(h, w)
            work = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        size = work.shape[:2]
        largest = self.max_tile if size[0] * size[1] <= LARGE_TILES_UP_TO else self.tile
        shape = tuple(axis_tile(n, self.tile, largest, self.overlap) for n in size)
        ph, pw = max(0, shape[0] - size[0]), max(0, shape[1] - size[1])
        if ph or pw:  # smaller than a tile: mirror-pad (replicate for 1-pixel sides, which cannot mirror)
            if isinstance(work, SpilledArray):
                work = work[:]  # within one tile on that side: small enough to hold
            border = cv2.BORDER_REFLECT_101 if min(size) > 1 else cv2.BORDER_REPLICATE
            work = cv2.copyMakeBorder(work, 0, ph, 0, pw, border)
        H, W = work.shape[:2]
        origins = [(y, x) for y in tile_origins(H, shape[0], self.overlap) for x in tile_origins(W, shape[1], self.overlap)]
        return Plan(image, work, size, shape, origins)

    def batch(self, shape: tuple[int, int], tiles: int | None = None) -> int:
        """Tiles of `shape` per backend call: `tiles` (default: config.batch) model-sized tiles' worth of
        pixels, so that a call's memory does not grow with the tile."""
        return max(1, (tiles or self.config.batch) * self.tile * self.tile // (shape[0] * shape[1]))

    def ramps(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The blend ramps of a tile of `shape`, along y and x."""
        return blend_ramp(shape[0], self.overlap), blend_ramp(shape[1], self.overlap)

    def start_copies(self, plan: Plan, stop: threading.Event | None = None) -> Plan:
        """Begin the plan's copy search on a thread of the copy pool, so that it runs beside the inference of its
        tiles (for callers that will assemble it; those that only plan and infer pay nothing). Once `stop` is
        set, or this Localizer is closed, the search ends and its result raises near_copies.Stopped."""
        if self._copies and plan.copies is None:
            closing = self._closing.is_set
            stopped = closing if stop is None else (lambda: stop.is_set() or closing())
            plan.copies = self._copies.submit(find_copies, plan.image, self.copy_settings, stopped)
        return plan

    def infer(self, tiles: np.ndarray, origins: list[tuple[int, int]]) -> np.ndarray:
        """(N, h, w, 3) uint8 tiles at `origins` -> per-sample probability maps (N, S, h, w), the mean
        over the sampling steps. Noise is Philox keyed to (seed, step, tile position) (inpdiff.noise), so
        a tile's map does not depend on which tiles, or which images' tiles, share its batch, and any
        runtime that implements the same generator draws the same numbers. With `flips`, each view of the
        tiles (FLIPS) runs as a call of its own, with its tiles' noise drawn for its shape, and a tile's map
        is the sum of its views' maps turned back, in FLIPS order, divided by their number."""
        F = self.config.flips
        if F == 1:
            return self._run(tiles, origins)
        total = self._run(tiles, origins).copy()  # a backend may reuse its output's memory in its next call
        for rows, columns, transposed in FLIPS[1:F]:  # a call a view: a call's memory stays what it is without flips
            view = np.ascontiguousarray(flip(tiles, rows, columns, (1, 2), transposed))
            total += unflip(self._run(view, origins), rows, columns, (2, 3), transposed)
        total /= np.float32(F)
        return total

    def _run(self, tiles: np.ndarray, origins: list[tuple[int, int]]) -> np.ndarray:
        S, shape = self.config.samples, tiles.shape[1:3]
        if self.diffusion:
            noise = np.concatenate([tile_noise(self.config.seed, y, x, self.steps, S, shape) for y, x in origins], axis=1)
        else:  # the single-pass model starts from an empty mask, and its probability map takes no noise
            noise = np.zeros((self.steps + 1, len(origins) * S, 1, *shape), np.float32)
        if hasattr(self.backend, "sample"):  # the backend runs the whole loop (one CUDA graph)
            return self.backend.sample(tiles, S, noise, self.rows).reshape(len(origins), S, *shape)
        mean = sampling.sample_loop(self.backend.condition, self.backend.step, tiles, S, noise, self.rows,
                                    lambda c, n: np.repeat(c, n, axis=0))
        return mean.reshape(len(origins), S, *shape)

    def assemble(self, plan: Plan, maps: Iterable[np.ndarray]) -> Result:
        """Blend the tiles' maps, (S, h, w) each in plan order, into a Result at the input's size."""
        acc = self.accumulator(plan)
        for i, m in enumerate(maps):
            self.blend(plan, acc, i, m)
        return self.finish(plan, acc)

    def accumulator(self, plan: Plan) -> np.ndarray | RowAccumulator:
        """(S, H, W) zeros at the plan's working size, for `blend` (for a spilled image, a window of them
        that writes out each row once the tiles are past it)."""
        if isinstance(plan.work, SpilledArray):
            return RowAccumulator(self.config.samples, plan.work.shape[:2], plan.shape[0], *self.axis_weights(plan))
        return np.zeros((self.config.samples, *plan.work.shape[:2]), np.float32)

    def axis_weights(self, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
        """The tiles' summed ramps along y and x: the tiles form a grid, so their summed windows are
        outer(wy, wx), and no image-sized weight map is needed."""
        (H, W), (ry, rx) = plan.work.shape[:2], self.ramps(plan.shape)
        return (axis_weight(H, sorted({y for y, _ in plan.origins}), ry),
                axis_weight(W, sorted({x for _, x in plan.origins}), rx))

    def blend(self, plan: Plan, acc: np.ndarray | RowAccumulator, i: int, m: np.ndarray) -> None:
        """Add tile i's (S, h, w) map, weighted by its window. Callers blend in plan order: float sums in
        another order would differ in the last bits from `localize` (and a RowAccumulator needs the order)."""
        if plan.shape not in self._windows:
            self._windows[plan.shape] = np.outer(*self.ramps(plan.shape))
        (y, x), (h, w) = plan.origins[i], plan.shape
        if isinstance(acc, RowAccumulator):
            acc.add(y, x, m * self._windows[plan.shape])
        else:
            acc[:, y:y + h, x:x + w] += m * self._windows[plan.shape]

    def finish(self, plan: Plan, acc: np.ndarray | RowAccumulator) -> Result:
        """Every tile blended into `acc` (which this normalises in place) -> the Result at the input's size."""
        if isinstance(acc, RowAccumulator):
            *maps, score, regions, inpainted = finish_bands(
                acc, lambda prob: self._cover(plan, prob), self.copy_settings, self.mask_threshold, self.config.min_region,
                self.calibration)
            return Result(*maps, score, [Region(*r) for r in regions], inpainted, {"tiles": len(plan.origins)})
        S = acc.shape[0]
        wy, wx = self.axis_weights(plan)
        acc /= wy[:, None]  # in place, so that a large image's maps are held once
        acc /= wx
        per_sample = acc[:, :plan.size[0], :plan.size[1]]
        h, w = plan.image.shape[:2]
        if per_sample.shape[1:] != (h, w):
            per_sample = np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) for p in per_sample])
        prob = per_sample.mean(axis=0) if S > 1 else np.ascontiguousarray(per_sample[0])
        # One sample has no spread: a read-only zero view, not an image-sized array.
        uncertainty = per_sample.std(axis=0) if S > 1 else np.broadcast_to(np.float32(0), prob.shape)
        cover = self._cover(plan, prob)
        if cover is not None:
            raise_to_copies(prob, cover, self.copy_settings)
        mask = prob >= self.mask_threshold
        regions = find_regions(mask, prob, self.config.min_region, cover)
        if self.calibration:
            score = self.calibration.score(prob)
            inpainted = score >= self.calibration.threshold
        else:
            score, inpainted = image_score(prob), bool(regions)
        return Result(prob, uncertainty, mask, score, regions, inpainted, {"tiles": len(plan.origins)})

    def _cover(self, plan: Plan, prob) -> np.ndarray | None:
        """The copy cover of the input itself (downscaling, max_side, would break exact copies), its
        undecided ends picked by `prob`, the network's map before the fusion; None without the copy
        evidence."""
        if not self.config.copies:
            return None
        found = plan.copies.result() if plan.copies else find_copies(plan.image, self.copy_settings)
        return cover_of(plan.image, found, self.copy_settings, prob)


__all__ = ["Localizer", "LocalizeConfig", "Plan", "Region", "Result", "ModelError", "axis_tile", "tile_origins",
           "blend_ramp", "axis_weight"]
