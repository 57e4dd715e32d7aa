"""Speed of every fill method, blend and post-process of `inpdiff synth`, per megapixel.

    python benchmarks/fill_speed.py [--photos ../shared/data/photos/bsds300/val] [--count 8]

One process, one thread (synth runs one process per core), masks of 2-30% of the image as synth
draws them. Prints a Markdown table: method, seconds per image, seconds per megapixel, how many
samples an hour two cores make, and the holes the tool left unfilled (synth skips those samples).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from inpdiff.data.fills import FAMILIES, FILLS, family
from inpdiff.data.fills.post import BLENDS, POSTS, edit
from inpdiff.data.fills.tools import FillFailed
from inpdiff.io import list_images, read_image
from inpdiff.data.masks import random_mask

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default=str(ROOT.parent / "shared" / "data" / "photos" / "bsds300" / "val"),
                    help="folder of photos to fill")
    ap.add_argument("--count", type=int, default=8, help="photos per fill method")
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    cv2.setNumThreads(1)
    photos = [read_image(p) for p in list_images(a.photos)[:a.count]]
    masks = [random_mask(*p.shape[:2], np.random.default_rng(i)) for i, p in enumerate(photos)]
    mp = sum(p.shape[0] * p.shape[1] for p in photos) / 1e6
    print(f"{len(photos)} photos from {a.photos}, {mp / len(photos):.2f} MP each, masks covering "
          f"{100 * np.mean([m.mean() for m in masks]):.0f}% on average; one thread\n")
    print("| method | family | blend | post | s per image | s per MP | samples per hour on 2 cores | holes left unfilled |")
    print("|---|---|---|---|---|---|---|---|")
    runs = [(m, "none", "none") for f in FAMILIES.values() for m in f]
    runs += [("telea", b, "none") for b in BLENDS[1:]] + [("telea", "none", p) for p in POSTS[1:]]
    for method, blend, post in runs:
        _filled(photos[0], masks[0], FILLS[method], blend, post, 0)  # loads, warms up
        t = time.perf_counter()
        failed = sum(not _filled(p, m, FILLS[method], blend, post, i) for i, (p, m) in enumerate(zip(photos, masks)))
        secs = time.perf_counter() - t
        print(f"| {method} | {family(method)} | {blend} | {post} | {secs / len(photos):.3f} | {secs / mp:.2f} | "
              f"{2 * 3600 * len(photos) / secs:.0f} | {failed} |", flush=True)


def _filled(photo: np.ndarray, mask: np.ndarray, fill, blend: str, post: str, seed: int) -> bool:
    """One edit; False where the tool left the hole unfilled."""
    try:
        edit(photo, mask, fill, blend, post, np.random.default_rng(seed))
        return True
    except FillFailed:
        return False


if __name__ == "__main__":
    main()
