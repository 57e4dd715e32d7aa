"""Calibration data: the inputs both graphs really see, on real images, at every denoising step.

Images are cut into tiles by the runtime's own Localizer (same reading, downscaling, padding and
tiling), and the runtime's own sampling loop runs on them with the FP32 model, behind a backend that
records what it is given: the condition graph's tiles, and the step graph's inputs at each of the
10 steps (its activations differ by timestep, so every step must be covered). Data is produced in
chunks of a few images, so memory does not grow with the number of calibration images.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import sampling
from .. import steps as step_rows
from ..io import ImageError, read_image
from ..runtime.backends import Backend
from ..runtime.inputs import walk
from ..runtime.localizer import Localizer, LocalizeConfig


class CalibrationError(ValueError):
    """Calibration cannot go on; the message says why and what to do."""


def recording_localizer(model_dir: Path, seed: int = 0, threads: int = 0, require_score: bool = True) -> Localizer:
    """The Localizer whose tiles calibration records: the model's own tiles (max_tile=0), which TensorRT
    runs, whatever sizes the graphs would take."""
    return Localizer(model_dir, "onnxruntime", LocalizeConfig(seed=seed, max_tile=0), threads,
                     require_score=require_score)


class Recorder:
    """A backend that passes every call to `inner` and keeps its inputs."""

    def __init__(self, inner: Backend):
        self.inner, self.name = inner, f"recording {inner.name}"
        self.condition_feeds: list[dict] = []
        self.step_feeds: list[dict] = []
        self.rows: set[int] = set()

    def condition(self, tiles):
        self.condition_feeds.append({sampling.IMAGE: tiles})
        return self.inner.condition(tiles)

    def step(self, x_t, row, noise, conds):
        self.step_feeds.append(sampling.step_feed(x_t, row, noise, conds))
        self.rows.add(int(row))
        return self.inner.step(x_t, row, noise, conds)


@dataclass
class Collected:
    images: list[str] = field(default_factory=list)    # used
    skipped: list[str] = field(default_factory=list)   # unreadable: "path: problem"
    tiles: int = 0
    steps_covered: list[int] = field(default_factory=list)  # step indices i the step graph was fed at


def find_images(folder: str | Path, count: int, seed: int) -> list[Path]:
    """Up to `count` image files below `folder`, spread over it by a seeded shuffle."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"{folder}: not a folder of calibration images")
    files = list(walk(folder))
    order = np.random.default_rng(seed).permutation(len(files))
    return [files[i] for i in order[:count]]


def chunks(localizer: Localizer, paths: list[Path], tiles_per_image: int, images_per_chunk: int,
           seed: int, report: Collected) -> Iterator[Recorder]:
    """Run the FP32 sampling loop on the images, a few at a time; yield each chunk's recorded inputs.
    Each image gives up to `tiles_per_image` tiles, picked by a seeded draw."""
    inner = localizer.backend
    rng = np.random.default_rng(seed)
    row_to_step = {step_rows.row(localizer.mode, localizer.steps, i, localizer.max_steps): i
                   for i in range(localizer.steps)}
    covered: set[int] = set()
    try:
        for start in range(0, len(paths), images_per_chunk):
            recorder = Recorder(inner)
            localizer.backend = recorder
            for path in paths[start:start + images_per_chunk]:
                try:
                    plan = localizer.plan(read_image(path))
                except (ImageError, OSError, ValueError) as e:
                    report.skipped.append(str(e))
                    continue
                picked = sorted(rng.choice(len(plan.origins), min(tiles_per_image, len(plan.origins)),
                                           replace=False))
                localizer.infer(np.stack([plan.tile(i) for i in picked]),
                                [plan.origins[i] for i in picked])
                report.images.append(str(path))
                report.tiles += len(picked)
            covered |= {row_to_step[r] for r in recorder.rows}
            report.steps_covered = sorted(covered)
            if recorder.condition_feeds:
                yield recorder
    finally:
        localizer.backend = inner
