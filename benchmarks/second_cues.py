"""Three training-free cues tried beside the copy evidence, and why none ships (README, "Real-world fills").

1. A JPEG-robust near-copy test: every 16x16 block (stride 8) of a photo's high-pass residual is
   matched against the whole residual (normalised cross-correlation, its own neighbourhood excluded);
   a block counts as copied when its best match is strong (>= --ncc-best), clearly better than the
   runner-up (margin >= --ncc-margin) and a neighbouring block agrees on the offset. Printed: the
   share of fill blocks found against the share of pristine blocks, and of pristine photos, hit.
2. The latent decoder's period-8 trace: a latent-diffusion decoder upsamples an 8x smaller latent, and
   leaves energy at 1/8 cycle per pixel. The cue is the local amplitude of the residual at that
   frequency (both axes, 32-pixel window) over the local residual energy. Printed: pixel AUC per fill
   family of the cue alone, of a model's map alone, of the map raised to the cue where the cue
   clears every pristine photo (as the copy evidence is fused), and of the map plus the cue.
3. The photo's own JPEG grid, which a fill breaks: a camera JPEG's blockiness falls on its 8x8 grid.
   The cue is where it does not: 1 minus the share of the residual's jumps that fall on the grid's
   phase (found from the whole photo), in 32-pixel windows, rescaled to 0..1. Printed: the photos'
   blockiness peak, then pixel AUC per fill and post-process of the network alone, as shipped (copy
   evidence fused), of the cue alone, and of the shipped map plus 0.3 times the cue.

    python benchmarks/second_cues.py --model /tmp/lat --data cache/synth/val-all
    python benchmarks/second_cues.py --ncc cache/synth/val-criminisi --count 12   # about 10 minutes
    python benchmarks/second_cues.py --grid cache/synth/sun-real                 # camera JPEGs (README)
(/tmp/lat: `inpdiff export runs/edge-lomo-latent/best -o /tmp/lat`, the model that never saw a latent fill.)
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from inpdiff.metrics import roc_auc
from inpdiff.runtime.localizer import Localizer, LocalizeConfig


def period8(gray: np.ndarray, win: int = 32) -> np.ndarray:
    r = gray - cv2.blur(gray, (3, 3))
    h, w = r.shape
    power = np.zeros_like(r)
    for phase in (np.broadcast_to(2 * np.pi * np.arange(w) / 8, (h, w)), np.broadcast_to(2 * np.pi * np.arange(h)[:, None] / 8, (h, w))):
        power += cv2.blur(r * np.cos(phase).astype(np.float32), (win, win)) ** 2
        power += cv2.blur(r * np.sin(phase).astype(np.float32), (win, win)) ** 2
    return np.sqrt(power / (cv2.blur(r * r, (win, win)) + 1.0))


def gray(path: Path, quality: int = 0) -> np.ndarray:
    g = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if quality:
        g = cv2.imdecode(cv2.imencode(".jpg", g, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_GRAYSCALE)
    return g.astype(np.float32)


def latent_table(model: str, data: Path) -> None:
    samples = [json.loads(line) for line in open(data / "samples.jsonl")]
    keep = [s for s in samples if s["family"] in ("latent", "pristine", "gmic") or s["method"] == "telea"]
    pristine = [period8(gray(data / "images" / f"{s['name']}.png", q)) for s in keep if s["family"] == "pristine" for q in (0, 90, 75)]
    level = max(float(f.max()) for f in pristine)  # the cue's largest value on any pristine photo or JPEG copy
    print(f"period-8 cue on {len(pristine)} pristine images (as is, JPEG 90, 75): largest value {level:.3f}")
    aucs: dict[tuple[str, str], list[list[float]]] = defaultdict(list)
    with Localizer(model, config=LocalizeConfig(copies=False)) as loc:
        for s in keep:
            if s["family"] == "pristine":
                continue
            image = cv2.imread(str(data / "images" / f"{s['name']}.png"))[:, :, ::-1].copy()
            mask = cv2.imread(str(data / "masks" / f"{s['name']}.png"), cv2.IMREAD_GRAYSCALE) > 127
            prob, cue = loc.localize(image).prob, period8(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32))
            raised = np.maximum(prob, np.clip((cue - level) * 4, 0, 1))
            aucs[(s["method"], s.get("post", "none"))].append(
                [roc_auc(m.ravel(), mask.ravel()) for m in (prob, cue, raised, prob + 0.5 * cue / level)])
    print("| fill / post | n | model alone | cue alone | raised to the cue above every pristine value | model + cue |\n|---|---|---|---|---|---|")
    for (method, post), rows in sorted(aucs.items()):
        print(f"| {method} / {post} | {len(rows)} | " + " | ".join(f"{v:.3f}" for v in np.nanmean(rows, axis=0)) + " |")


def ncc_blocks(g: np.ndarray, block: int = 16, stride: int = 8) -> dict[tuple[int, int], tuple[float, float, int, int]]:
    r = g - cv2.GaussianBlur(g, (0, 0), 1.0)  # the noise and finest texture, which a copy carries along
    out = {}
    for y in range(0, r.shape[0] - block + 1, stride):
        for x in range(0, r.shape[1] - block + 1, stride):
            t = r[y:y + block, x:x + block]
            if t.std() < 2.0:  # flat: nothing to match
                continue
            m = cv2.matchTemplate(r, t, cv2.TM_CCOEFF_NORMED)
            m[max(0, y - block):y + block + 1, max(0, x - block):x + block + 1] = -1
            by, bx = np.unravel_index(int(m.argmax()), m.shape)
            best = float(m[by, bx])
            m[max(0, by - 3):by + 4, max(0, bx - 3):bx + 4] = -1
            out[(y, x)] = (best, best - float(m.max()), int(by - y), int(bx - x))
    return out


def found(blocks: dict, best: float, margin: float, stride: int = 8) -> set[tuple[int, int]]:
    hits = set()
    for (y, x), (b, m, dy, dx) in blocks.items():
        if b >= best and m >= margin and any(
                (n := blocks.get((y + sy, x + sx))) and n[0] >= 0.5 and abs(n[2] - dy) <= 1 and abs(n[3] - dx) <= 1
                for sy in (-stride, 0, stride) for sx in (-stride, 0, stride) if sy or sx):
            hits.add((y, x))
    return hits


def ncc_table(data: Path, count: int, best: float, margin: float) -> None:
    print("| re-save | fill blocks found | pristine blocks hit | pristine photos hit |\n|---|---|---|---|")
    edits = sorted((data / "images").glob("*_criminisi.png"))[:count]
    for quality in (0, 90, 75):
        fill = [0, 0]
        clean = [0, 0, 0]
        for path in edits:
            mask = cv2.imread(str(data / "masks" / path.name), cv2.IMREAD_GRAYSCALE)
            blocks = ncc_blocks(gray(path, quality))
            inside = [k for k in blocks if mask[k[0]:k[0] + 16, k[1]:k[1] + 16].mean() > 127]
            fill[0] += len(set(inside) & found(blocks, best, margin))
            fill[1] += len(inside)
            pristine = ncc_blocks(gray(path.with_name(path.name.replace("_00_criminisi", "_pristine")), quality))
            hits = found(pristine, best, margin)
            clean[0] += len(hits)
            clean[1] += len(pristine)
            clean[2] += bool(hits)
        print(f"| {'lossless' if not quality else f'JPEG {quality}'} | {fill[0] / fill[1]:.3f} | {clean[0] / clean[1]:.4f} | {clean[2]} of {len(edits)} |")


def grid_cue(gray: np.ndarray, win: int = 32) -> tuple[np.ndarray, float]:
    """(where the photo's own 8x8 grid is missing, 0..1; the grid's blockiness peak over the mean)."""
    dx, dy = np.abs(np.diff(gray, axis=1)), np.abs(np.diff(gray, axis=0))
    per_x, per_y = [dx[:, p::8].mean() for p in range(8)], [dy[p::8].mean() for p in range(8)]
    on_x, on_y = np.zeros_like(dx), np.zeros_like(dy)
    px, py = int(np.argmax(per_x)), int(np.argmax(per_y))
    on_x[:, px::8], on_y[py::8] = dx[:, px::8], dy[py::8]
    h, w = gray.shape
    share = sum(cv2.resize(cv2.blur(on, (win, win)) * 8 / (cv2.blur(d, (win, win)) + 1e-3), (w, h))
                for on, d in ((on_x, dx), (on_y, dy))) / 2
    cue = -share
    return (cue - cue.min()) / (np.ptp(cue) + 1e-9), float(max(per_x) / np.mean(per_x))


def grid_table(data: Path) -> None:
    from inpdiff.copies import copy_cover, raise_to_copies

    samples = [json.loads(line) for line in open(data / "samples.jsonl")]
    peaks, aucs = [], defaultdict(list)
    with Localizer(config=LocalizeConfig(copies=False)) as loc:
        for s in samples:
            image = cv2.imread(str(data / "images" / f"{s['name']}.png"))[:, :, ::-1].copy()
            cue, peak = grid_cue(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32))
            if s["family"] == "pristine":
                peaks.append(peak)
                continue
            mask = cv2.imread(str(data / "masks" / f"{s['name']}.png"), cv2.IMREAD_GRAYSCALE) > 127
            prob = loc.localize(image).prob
            shipped = raise_to_copies(prob.copy(), copy_cover(image, prob=prob), loc.copy_settings)
            aucs[(s["method"], s.get("post", "none"))].append(
                [roc_auc(m.ravel(), mask.ravel()) for m in (prob, shipped, cue, shipped + 0.3 * cue)])
    print(f"blockiness peak of the {len(peaks)} pristine photos on their grid: {np.min(peaks):.2f}-{np.max(peaks):.2f} x the mean")
    print("| fill / post | n | network alone | as shipped | grid cue alone | shipped + 0.3 cue |\n|---|---|---|---|---|---|")
    for (method, post), rows in sorted(aucs.items()):
        print(f"| {method} / {post} | {len(rows)} | " + " | ".join(f"{v:.3f}" for v in np.nanmean(rows, axis=0)) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model folder for the period-8 table (one that never saw a latent fill)")
    ap.add_argument("--data", type=Path, default=Path("cache/synth/val-all"))
    ap.add_argument("--ncc", type=Path, help="Criminisi set (images/*_criminisi.png and pristine twins) for the near-copy table")
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--ncc-best", type=float, default=0.6)
    ap.add_argument("--ncc-margin", type=float, default=0.15)
    ap.add_argument("--grid", type=Path, help="a synth set of camera JPEGs for the JPEG-grid table")
    args = ap.parse_args()
    if args.model:
        latent_table(args.model, args.data)
    if args.ncc:
        ncc_table(args.ncc, args.count, args.ncc_best, args.ncc_margin)
    if args.grid:
        grid_table(args.grid)


if __name__ == "__main__":
    main()
