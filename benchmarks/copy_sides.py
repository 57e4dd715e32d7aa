"""Which end of a copy is the edit? The check behind the copy evidence's seam rule (inpdiff.copies).

    python benchmarks/copy_sides.py cache/synth/val-gimp:gimp-clone cache/synth/val-criminisi:criminisi

For every edit of the named method saved losslessly (`post` none in samples.jsonl): the exact copies
of textured 4x4 blocks (the copy evidence's own blocks and keys) grouped by their offset; for each
offset with at least --min-blocks pairs, the two ends A and B (the blocks at p and at p + offset),
and, for each end, the gradient magnitude on its border over that inside it. A pasted region meets
the photo around it at a seam; the region it was copied from does not. Counted: the groups where one
end lies mostly in the edit's mask and the other mostly outside it, and the share of them where the
end with the stronger border is the one in the mask (0.5: the seam says nothing).

With --maps DIR (the edits' `NAME.prob.png` from `trt-localize --no-copies`, one set at a time) it
also prints what the cue could be worth: the pixel AUC of a simplified copy map (exact copies only,
the pairs of every offset, blurred and scaled as the runtime's, maxed with the network's map; no near
copies, no lift) with both ends of every group marked, and with only each group's stronger end.
The runtime's rule differs: 16 or more pairs of one offset, exact and near copies together.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from inpdiff.copies import BLOCK, CopySettings, _border_strength, _sorted_parts
from inpdiff.io import read_image, read_mask
from inpdiff.metrics import roc_auc
from inpdiff.near_copies import mark_blocks


def strength(image: np.ndarray, corners: tuple[np.ndarray, np.ndarray]) -> float:
    """The runtime's border strength of one end (its blocks' top-left corners), NaN where it has none."""
    ys, xs = corners
    value = _border_strength(image, ys, xs, np.full(len(ys), BLOCK), CopySettings(seam_area=1 << 62))
    return float("nan") if value is None else value


def copy_groups(image: np.ndarray, s: CopySettings, min_blocks: int):
    """The two ends of each offset shared by at least min_blocks pairs of copied blocks, as (2, H, W)
    uint8 masks and as their blocks' corners: the runtime's textured blocks and their keys
    (inpdiff.copies), each pair of equal neighbours in the sorted keys a copy; end 0 holds the blocks
    that come first in raster order."""
    H, W = image.shape[:2]
    w = W - BLOCK + 1
    bits = np.uint64(int((H - BLOCK + 1) * w).bit_length())
    keys = next(_sorted_parts(image, s, 1, bits))  # one part: the whole photo's keys, sorted
    a = np.flatnonzero((keys[1:] >> bits) == (keys[:-1] >> bits))
    # Sorted by hash, then index: the first of a pair is the first in raster order.
    (ay, ax), (by, bx) = (np.divmod((keys[i] & ((np.uint64(1) << bits) - np.uint64(1))).astype(np.int64), w)
                          for i in (a, a + 1))
    dy, dx = by - ay, bx - ax
    far = np.maximum(np.abs(dy), np.abs(dx)) >= s.min_distance
    ay, ax, by, bx, dy, dx = ay[far], ax[far], by[far], bx[far], dy[far], dx[far]
    for (oy, ox), n in Counter(zip(dy.tolist(), dx.tolist())).items():
        if n >= min_blocks:
            sel = (dy == oy) & (dx == ox)
            ends = np.zeros((2, H, W), np.uint8)
            mark_blocks(ends[0], ay[sel], ax[sel], BLOCK)
            mark_blocks(ends[1], by[sel], bx[sel], BLOCK)
            yield ends, ((ay[sel], ax[sel]), (by[sel], bx[sel]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="+", help="FOLDER:METHOD, a synth folder and the fill method to look at")
    ap.add_argument("--min-blocks", type=int, default=30, help="copied blocks an offset needs to count")
    ap.add_argument("--maps", help="folder of the network's maps (trt-localize --no-copies) of the one set")
    args = ap.parse_args()
    s = CopySettings()
    print("| set | method | lossless edits | copy groups, one end in the edit | stronger border is the edit |")
    print("|---|---|---|---|---|")
    for spec in args.sets:
        folder, method = spec.rsplit(":", 1)
        folder = Path(folder)
        samples = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
        names = [r["name"] for r in samples if r["method"] == method and r.get("post") == "none"]
        right = []
        for name in names:
            image = read_image(folder / "images" / f"{name}.png")
            mask = read_mask(folder / "masks" / f"{name}.png") > 0
            for ends, corners in copy_groups(image, s, args.min_blocks):
                inside = [mask[e > 0].mean() for e in ends]
                border = [strength(image, c) for c in corners]
                if abs(inside[0] - inside[1]) >= 0.5 and not np.isnan(border).any():
                    right.append((border[0] > border[1]) == (inside[0] > inside[1]))
        share = f"{np.mean(right):.3f}" if right else "-"
        print(f"| {folder.name} | {method} | {len(names)} | {len(right)} | {share} |", flush=True)
        if args.maps:
            worth(folder, names, Path(args.maps), s)


def worth(folder: Path, names: list[str], maps: Path, s: CopySettings) -> None:
    """Pixel AUC of the network's map, and of it maxed with a simplified copy map of both ends or of
    the stronger end only; the last two paired over the edits."""
    auc: dict[str, list[float]] = {"network": [], "both ends": [], "stronger end": []}
    for name in names:
        image = read_image(folder / "images" / f"{name}.png")
        mask = read_mask(folder / "masks" / f"{name}.png") > 0
        prob = cv2.imread(str(maps / f"{name}.prob.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
        both, stronger = np.zeros(mask.shape, np.float32), np.zeros(mask.shape, np.float32)
        for ends, corners in copy_groups(image, s, 1):
            border = [strength(image, c) for c in corners]
            both = np.maximum(both, ends.max(0))
            stronger = np.maximum(stronger, ends.max(0) if np.isnan(border).any() else ends[int(border[1] > border[0])])
        auc["network"].append(roc_auc(prob.ravel(), mask.ravel()))
        for key, cover in (("both ends", both), ("stronger end", stronger)):
            copies = np.clip(s.gain * cv2.GaussianBlur(cover, (0, 0), s.sigma), 0, 1)
            auc[key].append(roc_auc(np.maximum(prob, copies).ravel(), mask.ravel()))
    d = np.array(auc["stronger end"]) - np.array(auc["both ends"])
    rng = np.random.default_rng(0)
    boot = [rng.choice(d, len(d)).mean() for _ in range(2000)]
    print("\n" + ", ".join(f"{k} {np.mean(v):.3f}" for k, v in auc.items()) + f"; stronger - both {d.mean():+.3f} "
          f"({np.percentile(boot, 2.5):+.3f} to {np.percentile(boot, 97.5):+.3f}), better on {(d > 0).sum()} of {len(d)}\n")


if __name__ == "__main__":
    main()
