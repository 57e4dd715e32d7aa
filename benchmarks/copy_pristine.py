"""What the copy evidence marks on photos nobody edited: every photo of BSDS300 (train, val), BSDS500
test and SUN-Hays, as it is and re-saved at JPEG 90 and 75, with exact copies alone and with the near
copies added (the default). Prints, per source, the share of images with any pixel at or above the
shipped mask threshold (0.65) and at 0.81, and the mean share of area at 0.65 or above.
python benchmarks/copy_pristine.py [--limit N]   (N photos per source, for a quick look)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from inpdiff.copies import CopySettings, copy_map
from inpdiff.data.augment import jpeg
from inpdiff.io import list_images, read_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
SOURCES = {"bsds300 train": SHARED / "bsds300" / "train", "bsds300 val": SHARED / "bsds300" / "val",
           "bsds500-test": SHARED / "bsds500-test", "sun-hays80": SHARED / "sun-hays80"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=0)
    args = p.parse_args()
    kinds = {"exact copies": CopySettings(near=None), "exact + near (default)": CopySettings()}
    print("| source | images | evidence | any pixel >= 0.65 | any pixel >= 0.81 | area >= 0.65 |")
    print("|---|---|---|---|---|---|")
    for name, folder in SOURCES.items():
        photos = list_images(folder)[:args.limit or None]
        stats = {k: [] for k in kinds}
        for path in photos:
            photo = read_image(path)
            for image in (photo, jpeg(photo, 90), jpeg(photo, 75)):
                for k, s in kinds.items():
                    m = copy_map(image, s)
                    stats[k].append(((m >= 0.65).any(), (m >= 0.81).any(), (m >= 0.65).mean()))
        for k, rows in stats.items():
            a = np.array(rows, np.float64)
            print(f"| {name} | {len(rows)} | {k} | {a[:, 0].mean():.1%} | {a[:, 1].mean():.1%} | {a[:, 2].mean():.4%} |",
                  flush=True)


if __name__ == "__main__":
    main()
