"""Tiles of the graphs' own size against the larger tiles ONNX Runtime takes (LocalizeConfig.max_tile):
for photos of several sizes, the tile each axis gets, the pixels computed per output pixel, and the
seconds of `Localizer.localize` (the network alone, the copy evidence off, both cores), best of
--repeat, side by side in one run.

    python benchmarks/tile_size.py [--model models/edge-c] [--max-tiles 0,512,768] [--repeat 3]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2

from inpdiff.io import list_images, read_image
from inpdiff.runtime.localizer import Localizer, LocalizeConfig

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(321, 481), (512, 512), (768, 1024), (2048, 2048), (3000, 4000)]  # (h, w)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "edge-c"), help="model folder")
    ap.add_argument("--max-tiles", default="0,512,768", help="max_tile settings (0: the graphs' own tile)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per row (the best is kept)")
    a = ap.parse_args()
    photo = read_image(list_images(ROOT.parent / "shared" / "data" / "photos" / "sun-hays80")[0])
    locs = {m: Localizer(a.model, "onnxruntime", LocalizeConfig(max_tile=m, copies=False))
            for m in map(int, a.max_tiles.split(","))}
    print(f"{a.model}, a SUN-Hays photo resized; seconds: best of {a.repeat}\n")
    print("| photo | max_tile | tile | tiles | pixels computed per output pixel | seconds | s/MP |\n"
          "|---|---|---|---|---|---|---|")
    for h, w in SIZES:
        image = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA if w <= photo.shape[1] else cv2.INTER_CUBIC)
        for m, loc in locs.items():
            plan = loc.plan(image)
            computed = len(plan.origins) * plan.shape[0] * plan.shape[1] / (h * w)
            best = float("inf")
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                loc.localize(image)
                best = min(best, time.perf_counter() - t0)
            print(f"| {w}x{h} | {m or loc.tile} | {plan.shape[1]}x{plan.shape[0]} | {len(plan.origins)} | "
                  f"{computed:.2f} | {best:.2f} | {best / (h * w / 1e6):.2f} |", flush=True)


if __name__ == "__main__":
    main()
