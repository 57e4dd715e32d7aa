"""What the copy evidence marks on photos nobody edited: every photo of BSDS300 (train, val), BSDS500
test and SUN-Hays, as it is and re-saved at JPEG 90 and 75, with exact copies alone, with the near
copies of the gray added, with those of its 2x2 sums too, and with copy growth (the default). Prints, per source, the
share of images with any pixel at or above the shipped mask threshold (0.65) and at 0.81, and the
mean share of area at 0.65 or above.

With --model, each image also goes through that model's network (the runtime, copy evidence off), the
copy map is fused into its map as `trt-localize` fuses it, and the table adds what an analyst sees:
the share of images the calibrated image score calls inpainted, and the mean area at the model's mask
threshold; the network alone is a row of its own.
python benchmarks/copy_pristine.py [--limit N] [--model models/edge-c]   (N photos per source, for a quick look)
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from inpdiff.copies import CopySettings, copy_cover, raise_to_copies
from inpdiff.data.augment import jpeg
from inpdiff.io import list_images, read_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
SOURCES = {"bsds300 train": SHARED / "bsds300" / "train", "bsds300 val": SHARED / "bsds300" / "val",
           "bsds500-test": SHARED / "bsds500-test", "sun-hays80": SHARED / "sun-hays80"}
KINDS = {"exact copies": CopySettings(near=(), grow=None),
         "exact + near, the gray's search only": CopySettings(near=CopySettings().near[:1], grow=None),
         "exact + near": CopySettings(grow=None),
         "exact + near + growth (default)": CopySettings()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--model", help="a model folder: add its network, image decision and marked area")
    args = p.parse_args()
    loc = None
    if args.model:
        from inpdiff.runtime.localizer import LocalizeConfig, Localizer
        loc = Localizer(args.model, "onnxruntime", LocalizeConfig(copies=False))
    kinds = {**({"network alone": None} if loc else {}), **KINDS}
    extra = " | called inpainted | area >= mask threshold |" if loc else " |"
    print("| source | images | evidence | any copy pixel >= 0.65 | any copy pixel >= 0.81 | copy area >= 0.65" + extra)
    print("|---|---|---|---|---|---|" + ("---|---|" if loc else ""))
    for name, folder in SOURCES.items():
        photos = list_images(folder)[:args.limit or None]
        stats = {k: [] for k in kinds}
        for path in photos:
            photo = read_image(path)
            for image in (photo, jpeg(photo, 90), jpeg(photo, 75)):
                net = loc.localize(image).prob if loc else None
                for k, s in kinds.items():
                    cover = copy_cover(image, s, prob=net) if s else np.zeros(image.shape[:2], np.uint8)
                    m = raise_to_copies(np.zeros(image.shape[:2], np.float32), cover, replace(s or CopySettings(), lift=0.0))
                    row = [(m >= 0.65).any(), (m >= 0.81).any(), (m >= 0.65).mean()]
                    if loc:
                        fused = raise_to_copies(net.copy(), cover, s or CopySettings())  # as trt-localize fuses them
                        row += [loc.calibration.score(fused) >= loc.calibration.threshold,
                                (fused >= loc.mask_threshold).mean()]
                    stats[k].append(row)
        for k, rows in stats.items():
            a = np.array(rows, np.float64)
            cells = [f"{a[:, 0].mean():.1%}", f"{a[:, 1].mean():.1%}", f"{a[:, 2].mean():.4%}"]
            if loc:
                cells += [f"{a[:, 3].mean():.1%}", f"{a[:, 4].mean():.2%}"]
            print(f"| {name} | {len(rows)} | {k} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
