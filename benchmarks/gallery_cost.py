"""What the analyst's gallery costs a run: the thumbnails per image (by image size) and one rebuild of
OUT/index-data.js (by report size), on this machine.

    python benchmarks/gallery_cost.py [--lines 20000,100000]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from cpu_bench import best_of

from inpdiff.runtime.gallery import Gallery, write_card, write_view


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="481x321,2048x1536,4000x3000", help="image sizes WxH for the thumbnails")
    ap.add_argument("--lines", default="20000,100000", help="report sizes for the data-file rebuild")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        Gallery(out, {})
        print("| image | thumbnails (card + view) ms |\n|---|---|")
        for size in a.sizes.split(","):
            w, h = map(int, size.split("x"))
            photo = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            secs = best_of(lambda: (write_card(out, out / "img", photo), write_view(out, out / "img", photo)), 3)
            print(f"| {w}x{h} | {secs * 1000:.1f} |")
        print("\n| report lines | index-data.js rebuild s | size MB |\n|---|---|---|")
        for n in map(int, a.lines.split(",")):
            line = {"path": "/data/photos/IMG_0000.jpg", "score": 0.5, "inpainted": True, "elapsed_ms": 250.0,
                    "regions": [{"bbox": [10, 20, 30, 40], "area": 900, "mean_prob": 0.81}],
                    "outputs": {"prob": str(out / "IMG_0000.prob.png")}}
            (out / "report.jsonl").write_text((json.dumps(line) + "\n") * n)
            g = Gallery(out, {})
            secs = best_of(lambda: g.update(force=True), 2)
            print(f"| {n} | {secs:.2f} | {(out / 'index-data.js').stat().st_size / 1e6:.1f} |")


if __name__ == "__main__":
    main()
