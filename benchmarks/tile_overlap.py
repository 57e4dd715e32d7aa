"""How much tile overlap the probability map needs: the error at tile seams against the overlap, and
what each overlap costs in pixels computed per output pixel.

Reference: the widest overlap the tiling allows (tile/2 - 1). For each overlap, the max and the 99.9th
percentile of |p - p_ref| over a set of photos, and the pixels the graphs compute per output pixel.

    python benchmarks/tile_overlap.py [--photos DIR] [--count 12]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from inpdiff.io import list_images, read_image
from inpdiff.runtime.localizer import Localizer, LocalizeConfig

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "edge-c"), help="model folder")
    ap.add_argument("--photos", default=str(ROOT.parent / "shared" / "data" / "photos" / "sun-hays80"),
                    help="folder of photos (larger ones have more seams)")
    ap.add_argument("--count", type=int, default=12, help="photos to use")
    ap.add_argument("--overlaps", default="0,8,16,24,32,48,64", help="overlaps to test, in pixels")
    a = ap.parse_args()
    photos = [read_image(p) for p in list_images(a.photos)[:a.count]]
    ref_loc = Localizer(a.model, "onnxruntime", LocalizeConfig(overlap=Localizer(a.model, "onnxruntime").tile // 2 - 1))
    refs = [ref_loc.localize(p).prob for p in photos]
    print(f"{len(photos)} photos from {a.photos}; reference overlap {ref_loc.overlap}\n")
    print("| overlap | max abs diff | 99.9th percentile | pixels computed per output pixel |\n|---|---|---|---|")
    for overlap in map(int, a.overlaps.split(",")):
        loc = Localizer(a.model, "onnxruntime", LocalizeConfig(overlap=overlap))
        diffs, computed, out = [], 0, 0
        for photo, ref in zip(photos, refs):
            plan = loc.plan(photo)
            computed += len(plan.origins) * plan.shape[0] * plan.shape[1]
            out += photo.shape[0] * photo.shape[1]
            diffs.append(np.abs(loc.localize(photo).prob - ref).ravel())
        d = np.concatenate(diffs)
        print(f"| {overlap} | {d.max():.2e} | {np.quantile(d, 0.999):.2e} | {computed / out:.2f} |", flush=True)


if __name__ == "__main__":
    main()
