"""The shipped model on each GPU path against ONNX Runtime on the CPU, on real photos: how far the maps
move, whether the score and verdict hold, and the time per photo (the whole localize call).

    python benchmarks/gpu_parity.py [--model models/edge-c] [PHOTO ...]     (default: the examples)

Without a CUDA GPU only the `torch` row runs (on the CPU), to check the script itself.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from inpdiff.io import read_image
from inpdiff.runtime.localizer import Localizer

ROOT = Path(__file__).resolve().parents[1]


def run(localizer: Localizer, images: list[np.ndarray], repeat: int) -> tuple[list, float]:
    """The results of one pass, and the best of `repeat` timed passes in seconds per photo (after
    that first pass, which captures the CUDA graphs)."""
    results = [localizer.localize(im) for im in images]
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for im in images:
            localizer.localize(im)
        best = min(best, (time.perf_counter() - t) / len(images))
    return results, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", nargs="*", help="photos (default: examples/images)")
    ap.add_argument("--model", default=str(ROOT / "models" / "edge-c"), help="FP32 folder with its checkpoint")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    import torch

    paths = [Path(p) for p in a.photos] or sorted((ROOT / "examples" / "images").glob("*.png"))
    images = [read_image(p) for p in paths]
    ref, ref_s = run(Localizer(a.model, "onnxruntime"), images, a.repeat)
    variants = ["torch", "torch-graph", "torch-fp16-graph"] if torch.cuda.is_available() else ["torch"]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    print(f"{Path(a.model).name} on {len(images)} photos ({device}; reference: ONNX Runtime on the CPU, "
          f"{ref_s * 1000:.0f} ms a photo)\n")
    print("| path | max abs dprob | mean abs dprob | max abs dscore | verdicts equal | ms per photo |\n|---|---|---|---|---|---|")
    for name in variants:
        out, secs = run(Localizer(a.model, name), images, a.repeat)
        d = [np.abs(o.prob - r.prob) for o, r in zip(out, ref)]
        print(f"| {name} | {max(x.max() for x in d):.2e} | {np.mean([x.mean() for x in d]):.2e} | "
              f"{max(abs(o.score - r.score) for o, r in zip(out, ref)):.4f} | "
              f"{sum(o.inpainted == r.inpainted for o, r in zip(out, ref))}/{len(out)} | {secs * 1000:.1f} |", flush=True)


if __name__ == "__main__":
    main()
