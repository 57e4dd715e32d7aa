"""The batch mode through each backend on one machine: `trt-localize DIR --backend B` from process start
to the last output, with the copy evidence on (the default) and off, and how far the GPU backend's
outputs are from ONNX Runtime's (verdicts, scores, probability PNGs).

    python benchmarks/gpu_batch.py PHOTOS_DIR [--backends onnxruntime,torch-graph] [--repeat 2]

Prints a Markdown table; the first backend is the reference for the comparison.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def run(photos: str, out: Path, backend: str, extra: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "inpdiff.runtime.launch", photos, "-o", str(out), "--backend", backend,
                    "--quiet", *extra], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def reports(out: Path) -> dict[str, dict]:
    rows = (json.loads(line) for line in open(out / "report.jsonl"))
    return {Path(r["path"]).name: r for r in rows if "score" in r}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos")
    ap.add_argument("--backends", default="onnxruntime,torch-graph")
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    backends, tmp = a.backends.split(","), Path(tempfile.mkdtemp(prefix="inpdiff-gpu-batch-"))
    n = len(list(Path(a.photos).iterdir()))
    print(f"| backend | copy evidence on: s ({n} photos) | `--no-copies`: s |\n|---|---|---|")
    for b in backends:
        on = [run(a.photos, tmp / f"{b}-{i}", b, []) for i in range(a.repeat)]
        off = [run(a.photos, tmp / f"{b}-off-{i}", b, ["--no-copies"]) for i in range(a.repeat)]
        print(f"| {b} | {min(on):.1f}-{max(on):.1f} | {min(off):.1f}-{max(off):.1f} |", flush=True)
    ref = reports(tmp / f"{backends[0]}-0")
    for b in backends[1:]:
        got = reports(tmp / f"{b}-0")
        both = sorted(set(ref) & set(got))
        dscore = max(abs(ref[k]["score"] - got[k]["score"]) for k in both)
        same = sum(ref[k]["inpainted"] == got[k]["inpainted"] for k in both)
        diffs = [np.abs(cv2.imread(ref[k]["outputs"]["prob"], 0).astype(int) - cv2.imread(got[k]["outputs"]["prob"], 0))
                 for k in both]
        print(f"\n{b} against {backends[0]} on {len(both)} photos: verdicts equal {same}/{len(both)}, max |dscore| "
              f"{dscore:.4f}, probability PNGs within {max(d.max() for d in diffs)} grey levels "
              f"({np.mean([(d > 0).mean() for d in diffs]):.1%} of pixels differ)")


if __name__ == "__main__":
    main()
