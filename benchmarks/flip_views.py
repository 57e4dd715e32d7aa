"""Which test-time views of a tile are worth their cost: every view of FLIPS scored alone and in sets.

`--flips N` averages the first N views of FLIPS (inpdiff.runtime.localizer). This computes each view's
network map once per edit, exactly as the runtime does (a `flips 2` run of the identity and that view,
the identity's call cached), then scores the mean of every set of views that holds the identity,
fused with the copy evidence as `trt-localize` fuses it: pixel AUC averaged over edits, per family.

    python benchmarks/flip_views.py cache/synth/val-xphoto cache/synth/val-resynth [--model models/edge-c]
        [--maps cache/views] [--sizes 2,4] [--json OUT.json]

--maps keeps the view maps (SET/NAME.npy, float16, views first) for a second run; --json writes each
edit's pixel AUC for every set ({family: {"0,3": [...]}}), to pair two sets over the same edits.
"""
from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from inpdiff.copies import CopySettings, cover_of, find_copies, raise_to_copies
from inpdiff.io import read_image, read_mask
from inpdiff.metrics import roc_auc
from inpdiff.runtime import localizer
from inpdiff.runtime.localizer import FLIPS, LocalizeConfig, Localizer


class IdentityOnce:
    """Localizer._run, with the identity view's output kept: the `flips 2` runs of one image all start
    with the same identity call."""

    def __init__(self, run):
        self.run, self.key, self.out = run, None, None

    def __call__(self, tiles: np.ndarray, origins):
        key = (tiles.shape, origins, tiles.tobytes())
        if key != self.key:
            self.key, self.out = key, self.run(tiles, origins).copy()
        return self.out.copy()


def view_maps(loc: Localizer, image: np.ndarray) -> np.ndarray:
    """(8, H, W) float32: the network's map (copy evidence off) of each view of FLIPS, turned back."""
    run = IdentityOnce(loc._run)
    loc._run = run
    try:
        loc.config.flips = 1
        identity = loc.localize(image).prob.astype(np.float32)
        views = [identity]
        loc.config.flips = 2
        for view in FLIPS[1:]:
            localizer.FLIPS = (FLIPS[0], view)
            views.append(2 * loc.localize(image).prob.astype(np.float32) - identity)
    finally:
        localizer.FLIPS, loc.config.flips = FLIPS, 1
        del loc._run
    return np.stack(views)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="+", help="synth folders (samples.jsonl, images/, masks/)")
    ap.add_argument("--model", default="models/edge-c")
    ap.add_argument("--maps", help="folder to keep the view maps in")
    ap.add_argument("--sizes", default="1,2,4,8", help="sizes of the view sets scored (each holds the identity)")
    ap.add_argument("--json", help="write each edit's scores here")
    args = ap.parse_args()
    sets = [(0, *rest) for n in map(int, args.sizes.split(",")) for rest in itertools.combinations(range(1, 8), n - 1)]
    s = CopySettings()
    scores: dict[str, list[list[float]]] = {}
    with Localizer(args.model, config=LocalizeConfig(copies=False)) as loc:
        for folder in map(Path, args.data):
            cache = Path(args.maps) / folder.name if args.maps else None
            for r in map(json.loads, (folder / "samples.jsonl").read_text().splitlines()):
                if r["method"] == "pristine":
                    continue
                image = read_image(folder / "images" / f"{r['name']}.png")
                mask = read_mask(folder / "masks" / f"{r['name']}.png").ravel() > 0
                path = cache / f"{r['name']}.npy" if cache else None
                if path and path.exists():
                    views = np.load(path).astype(np.float32)
                else:
                    views = view_maps(loc, image)
                    if path:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        np.save(path, views.astype(np.float16))
                found = find_copies(image, s)
                row = []
                for chosen in sets:
                    prob = views[list(chosen)].mean(0)
                    cover = cover_of(image, replace(found, cover=found.cover.copy()), s, prob=prob)
                    row.append(roc_auc(raise_to_copies(prob, cover, s).ravel(), mask))
                scores.setdefault(r["family"], []).append(row)
    if args.json:
        Path(args.json).write_text(json.dumps({f: {",".join(map(str, c)): [row[k] for row in v] for k, c in enumerate(sets)}
                                               for f, v in scores.items()}))
    names = ["".join("-hvb"[2 * a + b] + ("t" if t else "") for a, b, t in [FLIPS[i]]) for i in range(8)]
    families = sorted(scores)
    print("| views (FLIPS indices: " + ", ".join(f"{i} {n}" for i, n in enumerate(names)) + ") | "
          + " | ".join(f"{f} ({len(scores[f])})" for f in families) + " | mean |")
    print("|---" * (len(families) + 2) + "|")
    for k, chosen in enumerate(sets):
        means = [np.mean([row[k] for row in scores[f]]) for f in families]
        print(f"| {','.join(map(str, chosen))} | " + " | ".join(f"{m:.4f}" for m in means) + f" | {np.mean(means):.4f} |")


if __name__ == "__main__":
    main()
