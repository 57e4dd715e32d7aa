"""The copy evidence's seam rule on and off, on one synth set: the shipped model's network map (copy
evidence off) is computed once per edit and fused as the runtime fuses it, with the seam rule's cover
and with both ends marked (`seam_pairs=0`); printed per method and post-process, paired.

    python benchmarks/seam_rule.py cache/synth/val-all [--model models/edge-c] [--maps DIR]

--maps keeps the network maps (NAME.npy) to reuse on a second run.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from inpdiff.copies import CopySettings, copy_cover, raise_to_copies
from inpdiff.io import read_image, read_mask
from inpdiff.metrics import pixel_metrics, roc_auc
from inpdiff.runtime.localizer import LocalizeConfig, Localizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="a synth folder (samples.jsonl, images/, masks/)")
    ap.add_argument("--model", default="models/edge-c")
    ap.add_argument("--maps", help="folder to keep the network maps in (default: a temporary one)")
    args = ap.parse_args()
    folder = Path(args.data)
    maps = Path(args.maps or tempfile.mkdtemp())
    maps.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    rule, both = CopySettings(), CopySettings(seam_pairs=0)
    results: dict[tuple[str, str], list] = {}
    with Localizer(args.model, config=LocalizeConfig(copies=False)) as loc:
        for r in rows:
            if r["method"] == "pristine":
                continue
            image = read_image(folder / "images" / f"{r['name']}.png")
            cached = maps / f"{r['name']}.npy"
            if cached.exists():
                prob = np.load(cached)
            else:
                prob = loc.localize(image).prob.astype(np.float32)
                np.save(cached, prob)
            mask = read_mask(folder / "masks" / f"{r['name']}.png") > 0
            scores = []
            for s in (both, rule):
                fused = raise_to_copies(prob.copy(), copy_cover(image, s), s)
                scores.append((roc_auc(fused.ravel(), mask.ravel()), pixel_metrics(fused, mask, loc.mask_threshold)["f1"]))
            results.setdefault((r["method"], r.get("post", "none")), []).append(scores)
    rng = np.random.default_rng(0)
    print("| method | post | edits | both ends: AUC (F1) | seam rule: AUC (F1) | difference (95% paired bootstrap) |")
    print("|---|---|---|---|---|---|")
    for (method, post), v in sorted(results.items()):
        v = np.array(v)
        d = v[:, 1, 0] - v[:, 0, 0]
        boot = [rng.choice(d, len(d)).mean() for _ in range(2000)]
        print(f"| {method} | {post} | {len(v)} | {v[:, 0, 0].mean():.3f} ({v[:, 0, 1].mean():.3f}) | "
              f"{v[:, 1, 0].mean():.3f} ({v[:, 1, 1].mean():.3f}) | {d.mean():+.4f} "
              f"({np.percentile(boot, 2.5):+.4f} to {np.percentile(boot, 97.5):+.4f}) |", flush=True)


if __name__ == "__main__":
    main()
