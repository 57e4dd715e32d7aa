"""Two `inpdiff eval -o` results on the same set, paired edit by edit: per fill family, the mean pixel
AUC of each, their difference with a 95% bootstrap interval over edits, and the share of edits the
second is better on; then both runs' summaries (F1, image AUC, pristine area marked, seconds a photo).

    python benchmarks/paired_eval.py A.json B.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="the first run's OUT.json")
    ap.add_argument("b", help="the second run's OUT.json, on the same set")
    ap.add_argument("--resamples", type=int, default=2000)
    args = ap.parse_args()
    runs = [json.load(open(path)) for path in (args.a, args.b)]
    # Keyed by file name: a run made from another folder (a worktree) records the same set's paths otherwise.
    a, b = ({(Path(i["image"]).name, i["method"]): i for i in run["images"] if not i["pristine"]} for run in runs)
    rng = np.random.default_rng(0)
    print("| family | edits | A | B | B - A (95% paired bootstrap) | B better on |\n|---|---|---|---|---|---|")
    for family in sorted({i["family"] for i in a.values()}):
        keys = [k for k, i in a.items() if i["family"] == family and k in b and i["pixel_auc"] is not None]
        d = np.array([b[k]["pixel_auc"] - a[k]["pixel_auc"] for k in keys])
        boot = [rng.choice(d, len(d)).mean() for _ in range(args.resamples)]
        print(f"| {family} | {len(d)} | {np.mean([a[k]['pixel_auc'] for k in keys]):.3f} | "
              f"{np.mean([b[k]['pixel_auc'] for k in keys]):.3f} | {d.mean():+.4f} ({np.percentile(boot, 2.5):+.4f} "
              f"to {np.percentile(boot, 97.5):+.4f}) | {int((d > 0).sum())} |")
    for name, run in zip("AB", runs):
        s = run["summary"]["clean"]
        print(f"\n{name}: pixel AUC {s['pixel_auc']:.4f}, F1 {s['f1']:.4f} at {s['threshold']}, image AUC "
              f"{s['image_auc']:.4f}, pristine area marked {s['pristine_marked']:.2%}, {s['seconds_per_image']:.3f} s a photo",
              end="")
    print()


if __name__ == "__main__":
    main()
