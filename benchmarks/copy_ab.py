"""Two settings of the copy evidence, A and B, on one synth set: the shipped model's network map (copy
evidence off) is computed once per edit and fused as the runtime fuses it, with A's cover and with
B's; printed per method and post-process, paired. By default A marks both ends of every copy
(`seam_pairs=0`) and B is the shipped default (the seam rule).

    python benchmarks/copy_ab.py cache/synth/val-all [--model models/edge-c] [--maps DIR]
        [--a "seam_pairs=0"] [--b "near=1"]

--a/--b: CopySettings fields over the defaults (`grow=0`: no copy growth); `nearK.FIELD` sets a field of near-copy search K (0, 1),
`near=N` keeps the first N searches. --maps keeps the network maps (NAME.npy) to reuse on a second run.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from inpdiff.copies import CopySettings, copy_cover, raise_to_copies
from inpdiff.io import read_image, read_mask
from inpdiff.metrics import pixel_metrics, roc_auc
from inpdiff.runtime.localizer import LocalizeConfig, Localizer


def settings(text: str) -> CopySettings:
    """"seam_pairs=0,near=1,near0.q=700" -> CopySettings with those fields over the defaults."""
    base, top, near = CopySettings(), {}, {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=")
        if key.startswith("near") and "." in key:
            k, field = key[4:].split(".")
            near.setdefault(int(k), {})[field] = value
        else:
            top[key] = value
    searches = list(base.near[:int(top.pop("near", len(base.near)))])
    if top.pop("grow", "1") == "0":
        base = replace(base, grow=None)
    for k, changes in near.items():
        n = searches[k]
        searches[k] = replace(n, **{f: _cast(getattr(n, f), v) for f, v in changes.items()})
    return replace(base, near=tuple(searches), **{f: _cast(getattr(base, f), v) for f, v in top.items()})


def _cast(default, value: str):
    return bool(int(value)) if isinstance(default, bool) else type(default)(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="a synth folder (samples.jsonl, images/, masks/)")
    ap.add_argument("--model", default="models/edge-c")
    ap.add_argument("--maps", help="folder to keep the network maps in (default: a temporary one)")
    ap.add_argument("--a", default="seam_pairs=0", help="setting A (default: both ends of every copy)")
    ap.add_argument("--b", default="", help="setting B (default: the shipped default)")
    args = ap.parse_args()
    folder = Path(args.data)
    maps = Path(args.maps or tempfile.mkdtemp())
    maps.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    a, b = settings(args.a), settings(args.b)
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
            for s in (a, b):
                fused = raise_to_copies(prob.copy(), copy_cover(image, s, prob=prob), s)
                scores.append((roc_auc(fused.ravel(), mask.ravel()), pixel_metrics(fused, mask, loc.mask_threshold)["f1"]))
            results.setdefault((r["method"], r.get("post", "none")), []).append(scores)
    rng = np.random.default_rng(0)
    print(f"| method | post | edits | A ({args.a or 'default'}): AUC (F1) | B ({args.b or 'default'}): AUC (F1) | B - A (95% paired bootstrap) |")
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
