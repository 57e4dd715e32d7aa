"""`inpdiff synth PHOTOS OUT`: inpainted training pairs from pristine photos, seeded and cached.

Writes OUT/images/NAME.png, OUT/masks/NAME.png (255 = filled) and OUT/samples.jsonl, one line per
sample with its source photo, method and seed. A sample whose files exist is not made again, so an
interrupted run resumes and a finished one is a cache.
"""
from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .fills import FAMILIES, FILLS, expand, family
from .fills.post import BLENDS, POSTS, edit
from .fills.tools import FillFailed, ToolMissing
from ..io import ImageError, atomic_write, jpeg_quality, list_images, read_image, read_mask, write_png
from .masks import random_mask, with_shadow

# A method's random stream is keyed by its place in the registry, so that choosing fewer or more
# methods does not change what the others make (the classical three keep their old seeds).
FILLS_ORDER = tuple(FILLS)


@dataclass
class SynthConfig:
    per_image: int = 6                 # masks per photo
    methods: tuple[str, ...] = FAMILIES["classical"]  # method or family names
    all_methods: bool = False          # True: every mask filled by every method (for per-method eval)
    blends: tuple[str, ...] = ("none",)  # each sample draws one (seeded): none, poisson, feather
    posts: tuple[str, ...] = ("none",)   # and one global post-process: none, jpeg, resize, resize2
    grain: float = 0.0                 # share of fills given grain matched to the photo's noise
    shadows: float = 0.0               # share of masks that also cover the object's cast shadow
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


def _make(job: Job) -> tuple[list[dict], list[str]]:
    """One photo's samples: their records, and a line for each sample a tool failed to fill."""
    cfg, out, photo = job.cfg, Path(job.out), Path(job.photo)
    image = read_image(photo)
    quality = jpeg_quality(photo)
    h, w = image.shape[:2]
    records, failed = [], []

    def emit(name: str, make: Callable[[], tuple[np.ndarray, np.ndarray]], record: dict) -> None:
        img_path, mask_path = out / "images" / f"{name}.png", out / "masks" / f"{name}.png"
        if img_path.exists() and mask_path.exists():  # a cached sample is not made again
            frac = float(read_mask(mask_path).mean())
        else:
            try:
                edited, mask = make()
            except FillFailed as e:
                failed.append(f"{photo}: {name}: {e}")
                return
            write_png(mask_path, mask * 255)
            write_png(img_path, edited)
            frac = float(mask.mean())
        records.append({"name": name, "source": photo.name, **record, "mask_frac": round(frac, 4)})

    if cfg.pristine:
        emit(f"{photo.stem}_pristine", lambda: (image, np.zeros((h, w), np.uint8)),
             {"method": "pristine", "family": "pristine", "seed": [cfg.seed, job.index]})
    methods = expand(cfg.methods)
    for k in range(cfg.per_image):
        seed = [cfg.seed, job.index, k]
        rng = np.random.default_rng(seed)
        mask = random_mask(h, w, rng, cfg.min_frac, cfg.max_frac)
        if cfg.shadows:  # its own stream: masks without shadows stay as they were
            srng = np.random.default_rng(seed + [10**6])
            if srng.random() < cfg.shadows:
                mask = with_shadow(mask, srng)
        for method in methods if cfg.all_methods else [methods[(job.index + k) % len(methods)]]:
            # Each method gets its own stream so that adding a method does not change the others.
            mrng = np.random.default_rng(seed + [FILLS_ORDER.index(method)])
            pick = np.random.default_rng(seed + [FILLS_ORDER.index(method), 1])  # leaves mrng as it was
            blend, post = cfg.blends[pick.integers(len(cfg.blends))], cfg.posts[pick.integers(len(cfg.posts))]
            grain = bool(cfg.grain) and bool(pick.random() < cfg.grain)  # no draw when off: old seeds hold
            name = f"{photo.stem}_{k:02d}_{method}" + "".join(f"+{x}" for x in (blend, post) if x != "none")
            name += "+grain" if grain else ""
            emit(name, lambda m=method, b=blend, p=post, r=mrng, g=grain:
                 edit(image, mask, FILLS[m], b, p, r, g, quality),
                 {"method": method, "family": family(method), "blend": blend, "post": post, "grain": grain,
                  "seed": seed})
    return records, failed


def synthesize(photos_dirs: str | Path | list, out_dir: str | Path, cfg: SynthConfig,
               progress: bool = True) -> list[dict]:
    """Samples from the photos of one or more folders (indexed in order, so seeds follow the list)."""
    expand(cfg.methods)  # unknown names fail here, before any work
    for value, allowed in ((cfg.blends, BLENDS), (cfg.posts, POSTS)):
        if not value or set(value) - set(allowed):
            raise ValueError(f"choose from {', '.join(allowed)}, got {', '.join(value) or 'nothing'}")
    dirs = [photos_dirs] if isinstance(photos_dirs, (str, Path)) else list(photos_dirs)
    photos = []
    for d in dirs:
        found = list_images(d) if Path(d).is_dir() else []
        if not found:
            raise FileNotFoundError(f"{d}: no images found (png, jpg, bmp, tif, webp)")
        photos += found
    out = Path(out_dir)
    jobs = [Job(str(p), i, cfg, str(out)) for i, p in enumerate(photos)]
    records, errors = [], []
    # Spawned, not forked: a fork of a process whose torch (or OpenMP) threads are running can hang
    # in the child, and learned fills run torch.
    with ProcessPoolExecutor(max_workers=max(1, cfg.workers), initializer=_one_thread,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_make, j) for j in jobs]
        for fut in _progress(futures, progress):
            try:
                made, failed = fut.result()
                records.extend(made)
                errors.extend(failed)
            except ImageError as e:  # one bad photo never costs the others their samples
                errors.append(str(e))
            except ToolMissing:  # every other photo would fail the same way: stop now
                pool.shutdown(cancel_futures=True)
                raise
    lines = "".join(json.dumps(r) + "\n" for r in records)
    atomic_write(out / "samples.jsonl", lambda p: p.write_text(lines))
    atomic_write(out / "synth.json", lambda p: p.write_text(json.dumps({**asdict(cfg), "skipped": errors}, indent=2)))
    for e in errors:
        print(f"skipped: {e}")
    return records


def _one_thread() -> None:
    """Synth runs one process per core: each fill (OpenCV, a learned fill's torch) on one thread."""
    import os
    import sys

    import cv2

    os.environ["OMP_NUM_THREADS"] = "1"  # read by torch when a learned fill first imports it
    cv2.setNumThreads(1)
    if "torch" in sys.modules:  # imported already by the main module, which a spawned worker re-imports
        sys.modules["torch"].set_num_threads(1)


def _progress(items, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="synth", unit="photo")
