"""What the binary mask marks on photos nobody edited, against how well it covers the edits, for a plain
threshold and for hysteresis (a region of the map above LOW is kept only if it reaches HIGH somewhere).

The maps are the runtime's as users get them (copy evidence fused), computed once and cached. Pristine
area is measured on the BSDS300 validation photos as they are and re-saved at JPEG 90 and 75 (what
`inpdiff calibrate-score` fits the mask threshold on) and on the 80 larger SUN-Hays camera JPEGs; F1 is
the mean over the edits of each synth set (of each family, for val-all) at that rule. Run from the
repository root:
python benchmarks/mask_rules.py cache/synth/val-all cache/synth/val-gimp [--model models/edge-c] [--maps DIR]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from inpdiff.data.augment import jpeg
from inpdiff.io import list_images, read_image, read_mask
from inpdiff.runtime.localizer import Localizer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
RULES = [(t, None) for t in (0.66, 0.72, 0.78, 0.84)] + [(low, high) for high in (0.9, 0.95, 0.98) for low in (0.4, 0.5, 0.6)]


def marked(prob: np.ndarray, low: float, high: float | None) -> np.ndarray:
    m = prob >= low
    if high is None or not m.any():
        return m
    n, labels = cv2.connectedComponents(m.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    keep = np.zeros(n, bool)
    keep[np.unique(labels[prob >= high])] = True
    keep[0] = False
    return keep[labels]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sets", nargs="+", type=Path, help="synth folders whose edits give F1")
    p.add_argument("--model", default="models/edge-c")
    p.add_argument("--maps", type=Path, default=Path("cache/maps"), help="where the maps are cached")
    a = p.parse_args()
    a.maps.mkdir(parents=True, exist_ok=True)
    with Localizer(a.model) as loc:
        def prob(key: str, load) -> np.ndarray:
            f = a.maps / f"{key}.npy"
            if not f.exists():
                np.save(f, loc.localize(load()).prob.astype(np.float16))
            return np.load(f).astype(np.float32)

        bsds = [prob(f"bsds-val-{q}-{path.stem}", lambda path=path, q=q: jpeg(read_image(path), q) if q else read_image(path))
                for path in list_images(SHARED / "bsds300" / "val") for q in (0, 90, 75)]
        sun = [prob(f"sun-{path.stem}", lambda path=path: read_image(path)) for path in list_images(SHARED / "sun-hays80")]
        edits: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for folder in a.sets:
            for r in map(json.loads, (folder / "samples.jsonl").read_text().splitlines()):
                if r["family"] != "pristine":
                    group = r["family"] if folder.name == "val-all" else folder.name
                    image = lambda r=r, folder=folder: read_image(folder / "images" / f"{r['name']}.png")
                    edits.setdefault(group, []).append(
                        (prob(f"{folder.name}-{r['name']}", image), read_mask(folder / "masks" / f"{r['name']}.png") > 0))
    print(f"Model {a.model}, mask threshold {loc.mask_threshold}.")
    print("| rule | BSDS val pristine and JPEG copies: area | SUN-Hays: area (photos with a mark) | mean F1 | "
          + " | ".join(edits) + " |\n|" + "---|" * (4 + len(edits)))
    for low, high in RULES:
        f1 = [np.mean([2 * (m & g).sum() / max(1, m.sum() + g.sum()) for m, g in ((marked(q, low, high), g) for q, g in e)])
              for e in edits.values()]
        sun_marks = [marked(q, low, high) for q in sun]
        rule = f">= {low}" if high is None else f"hysteresis {low} / {high}"
        print(f"| {rule} | {100 * np.mean([marked(q, low, high).mean() for q in bsds]):.2f}% | "
              f"{100 * np.mean([m.mean() for m in sun_marks]):.2f}% ({sum(m.any() for m in sun_marks)} of {len(sun)}) | "
              f"{np.mean(f1):.3f} | " + " | ".join(f"{v:.3f}" for v in f1) + " |", flush=True)


if __name__ == "__main__":
    main()
