"""`inpdiff synth PHOTOS OUT`: inpainted training pairs from pristine photos, seeded and cached.

Writes OUT/images/NAME.png, OUT/masks/NAME.png (255 = filled) and OUT/samples.jsonl, one line per
sample with its source photo, method and seed. A sample whose files exist is not made again, so an
interrupted run resumes and a finished one is a cache.
"""
from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .fills import FILLS, inpaint
from .io import ImageError, atomic_write, list_images, read_image, write_png
from .masks import random_mask


@dataclass
class SynthConfig:
    per_image: int = 6                 # masks per photo
    methods: tuple[str, ...] = tuple(FILLS)
    all_methods: bool = False          # True: every mask filled by every method (for per-method eval)
    pristine: bool = True              # also write each photo untouched, with an empty mask
    min_frac: float = 0.02
    max_frac: float = 0.30
    seed: int = 0
    workers: int = 2


@dataclass
class Job:
    photo: str
    index: int
    cfg: SynthConfig
    out: str


def _make(job: Job) -> list[dict]:
    cfg, out, photo = job.cfg, Path(job.out), Path(job.photo)
    image = read_image(photo)
    h, w = image.shape[:2]
    records = []

    def emit(name: str, make: Callable[[], np.ndarray], mask: np.ndarray, method: str, seed: list[int]) -> None:
        img_path, mask_path = out / "images" / f"{name}.png", out / "masks" / f"{name}.png"
        if not (img_path.exists() and mask_path.exists()):  # a cached sample is not filled again
            write_png(mask_path, mask * 255)
            write_png(img_path, make())
        records.append({"name": name, "source": photo.name, "method": method, "seed": seed,
                        "mask_frac": round(float(mask.mean()), 4)})

    if cfg.pristine:
        emit(f"{photo.stem}_pristine", lambda: image, np.zeros((h, w), np.uint8), "pristine", [cfg.seed, job.index])
    for k in range(cfg.per_image):
        seed = [cfg.seed, job.index, k]
        rng = np.random.default_rng(seed)
        mask = random_mask(h, w, rng, cfg.min_frac, cfg.max_frac)
        methods = cfg.methods if cfg.all_methods else [cfg.methods[(job.index + k) % len(cfg.methods)]]
        for method in methods:
            # Each method gets its own stream so that adding a method does not change the others.
            mrng = np.random.default_rng(seed + [cfg.methods.index(method)])
            emit(f"{photo.stem}_{k:02d}_{method}", lambda: inpaint(image, mask, method, mrng), mask, method, seed)
    return records


def synthesize(photos_dir: str | Path, out_dir: str | Path, cfg: SynthConfig, progress: bool = True) -> list[dict]:
    unknown = [m for m in cfg.methods if m not in FILLS]
    if unknown:
        raise ValueError(f"unknown fill methods {unknown}; choose from {sorted(FILLS)}")
    photos = list_images(photos_dir) if Path(photos_dir).is_dir() else []
    if not photos:
        raise FileNotFoundError(f"{photos_dir}: no images found (png, jpg, bmp, tif, webp)")
    out = Path(out_dir)
    jobs = [Job(str(p), i, cfg, str(out)) for i, p in enumerate(photos)]
    records, errors = [], []
    with ProcessPoolExecutor(max_workers=max(1, cfg.workers)) as pool:
        futures = [pool.submit(_make, j) for j in jobs]
        for fut in _progress(futures, progress):
            try:
                records.extend(fut.result())
            except ImageError as e:  # one bad photo never costs the others their samples
                errors.append(str(e))
    lines = "".join(json.dumps(r) + "\n" for r in records)
    atomic_write(out / "samples.jsonl", lambda p: p.write_text(lines))
    atomic_write(out / "synth.json", lambda p: p.write_text(json.dumps({**asdict(cfg), "skipped": errors}, indent=2)))
    for e in errors:
        print(f"skipped: {e}")
    return records


def _progress(items, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="synth", unit="photo")
