"""Training-free cues and second looks tried beside the copy evidence, and why none ships (README,
"Real-world fills" and "Tried and dropped").

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
4. How alike a patch is to its nearest neighbour elsewhere in the photo: an exemplar fill is built from
   the photo's own patches. The cue is each 7x7 patch's distance to its nearest patch at least 12
   pixels away (a vectorised PatchMatch on the gray), over the patch's variance, averaged over the
   patches that cover a pixel; low is suspect. Printed: pixel AUC per fill and save of the cue on the
   edit, and of the same cue on the untouched photo with the edit's mask (what the region alone gives).
5. A second look at half scale: the model's map of the photo downscaled 2x (twice the context per
   tile), upscaled and averaged with its map at full scale, then fused with the copy evidence as
   shipped. Printed: pixel AUC per fill and save, as shipped and with the second look, paired.

    python benchmarks/second_cues.py --model /tmp/lat --data cache/synth/val-all
    python benchmarks/second_cues.py --ncc cache/synth/val-criminisi --count 12   # about 10 minutes
    python benchmarks/second_cues.py --grid cache/synth/sun-real                 # camera JPEGs (README)
    python benchmarks/second_cues.py --nn cache/synth/val-all --count 30         # about 10 minutes
    python benchmarks/second_cues.py --half cache/synth/val-gimp                 # and val-all: 15 minutes
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


def nn_distance(gray: np.ndarray, p: int = 7, min_distance: int = 12, rounds: int = 2, seed: int = 0) -> np.ndarray:
    """Each pixel's mean, over the p x p patches that cover it, of the patch's squared distance to its
    nearest patch at least `min_distance` away (found by PatchMatch: random offsets, then in each round
    the neighbours' offsets at distances 8, 4, 2, 1 and a random search) over p^2 (2 var + 4)."""
    H, W = gray.shape
    h, w = H - p + 1, W - p + 1
    patches = np.lib.stride_tricks.sliding_window_view(gray.astype(np.float32), (p, p))[:h, :w].reshape(h * w, p * p)
    ys, xs = np.divmod(np.arange(h * w), w)
    rng = np.random.default_rng(seed)
    ty, tx = rng.integers(0, h, h * w), rng.integers(0, w, h * w)
    best = np.full(h * w, np.inf)

    def offer(cy: np.ndarray, cx: np.ndarray) -> None:
        nonlocal ty, tx, best
        cy, cx = np.clip(cy, 0, h - 1), np.clip(cx, 0, w - 1)
        d = ((patches - patches[cy * w + cx]) ** 2).sum(1)
        d[np.maximum(np.abs(cy - ys), np.abs(cx - xs)) < min_distance] = np.inf
        better = d < best
        ty, tx, best = np.where(better, cy, ty), np.where(better, cx, tx), np.where(better, d, best)

    offer(ty, tx)
    for _ in range(rounds):
        for k in (8, 4, 2, 1):
            for ey, ex in ((0, k), (k, 0), (0, -k), (-k, 0)):
                ny, nx = np.clip(ys + ey, 0, h - 1), np.clip(xs + ex, 0, w - 1)
                offer(ty[ny * w + nx] - (ny - ys), tx[ny * w + nx] - (nx - xs))
        r = max(h, w) // 2
        while r >= 1:
            offer(ty + rng.integers(-r, r + 1, h * w), tx + rng.integers(-r, r + 1, h * w))
            r //= 4
    ratio = best / (p * p * (2 * patches.var(1) + 4))
    ratio = np.where(np.isfinite(ratio), ratio, 1.0).reshape(h, w).astype(np.float32)
    return cv2.blur(np.pad(ratio, p - 1, constant_values=1.0), (p, p))[p // 2:p // 2 + H, p // 2:p // 2 + W]


def nn_table(data: Path, count: int) -> None:
    samples = [json.loads(line) for line in open(data / "samples.jsonl")]
    pristine = {s["source"]: s["name"] for s in samples if s["family"] == "pristine"}
    photos = sorted(pristine)[:count]
    aucs = defaultdict(list)
    for photo in photos:
        untouched = nn_distance(gray(data / "images" / f"{pristine[photo]}.png"))
        for s in samples:
            if s["source"] == photo and s["family"] in ("gmic", "pypatchmatch", "patch", "latent"):
                mask = cv2.imread(str(data / "masks" / f"{s['name']}.png"), cv2.IMREAD_GRAYSCALE) > 127
                cue = nn_distance(gray(data / "images" / f"{s['name']}.png"))
                same = untouched.shape == mask.shape  # a resized edit is not its photo's size
                aucs[(s["method"], s.get("post", "none"))].append(
                    [roc_auc(-cue.ravel(), mask.ravel()), roc_auc(-untouched.ravel(), mask.ravel()) if same else np.nan])
    print("| fill / save | n | cue on the edit | cue on the untouched photo, same mask |\n|---|---|---|---|")
    for (method, post), rows in sorted(aucs.items()):
        cols = [[v for v in col if not np.isnan(v)] for col in zip(*rows)]
        print(f"| {method} / {post} | {len(rows)} | " + " | ".join(f"{np.mean(c):.3f}" if c else "-" for c in cols) + " |")


def half_table(data: Path) -> None:
    from inpdiff.copies import copy_cover, raise_to_copies

    samples = [json.loads(line) for line in open(data / "samples.jsonl")]
    aucs = defaultdict(list)
    with Localizer(config=LocalizeConfig(copies=False)) as loc:
        for s in samples:
            if s["family"] == "pristine":
                continue
            image = cv2.imread(str(data / "images" / f"{s['name']}.png"))[:, :, ::-1].copy()
            mask = cv2.imread(str(data / "masks" / f"{s['name']}.png"), cv2.IMREAD_GRAYSCALE) > 127
            h, w = mask.shape
            full = loc.localize(image).prob
            small = cv2.resize(image, (round(w / 2), round(h / 2)), interpolation=cv2.INTER_AREA)
            both = (full + cv2.resize(loc.localize(small).prob, (w, h), interpolation=cv2.INTER_LINEAR)) / 2
            aucs[(s["method"], s.get("post", "none"))].append(
                [roc_auc(raise_to_copies(m.copy(), copy_cover(image, prob=m), loc.copy_settings).ravel(), mask.ravel())
                 for m in (full, both)])
    print("| fill / save | n | as shipped | with the half-scale look | difference (95% paired bootstrap) |\n|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for key, rows in [*sorted(aucs.items()), (("all", ""), [r for v in aucs.values() for r in v])]:
        v = np.array(rows)
        d = v[:, 1] - v[:, 0]
        lo, hi = np.percentile([rng.choice(d, len(d)).mean() for _ in range(2000)], [2.5, 97.5])
        print(f"| {' / '.join(filter(None, key))} | {len(v)} | {v[:, 0].mean():.3f} | {v[:, 1].mean():.3f} | "
              f"{d.mean():+.4f} ({lo:+.4f} to {hi:+.4f}) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model folder for the period-8 table (one that never saw a latent fill)")
    ap.add_argument("--data", type=Path, default=Path("cache/synth/val-all"))
    ap.add_argument("--ncc", type=Path, help="Criminisi set (images/*_criminisi.png and pristine twins) for the near-copy table")
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--ncc-best", type=float, default=0.6)
    ap.add_argument("--ncc-margin", type=float, default=0.15)
    ap.add_argument("--grid", type=Path, help="a synth set of camera JPEGs for the JPEG-grid table")
    ap.add_argument("--nn", type=Path, help="a synth set (val-all) for the nearest-patch table, --count photos of it")
    ap.add_argument("--half", type=Path, help="a synth set for the half-scale table")
    args = ap.parse_args()
    if args.model:
        latent_table(args.model, args.data)
    if args.ncc:
        ncc_table(args.ncc, args.count, args.ncc_best, args.ncc_margin)
    if args.grid:
        grid_table(args.grid)
    if args.nn:
        nn_table(args.nn, args.count)
    if args.half:
        half_table(args.half)


if __name__ == "__main__":
    main()
