"""CPU benchmark of the lean runtime (prints Markdown tables).

1. ONNX Runtime vs PyTorch eager, per image: the same checkpoint, tiles, steps, noise and image; only
   the engine differs (PyTorch runs the very modules that were exported).
2. `trt-localize` on the example from process start to written outputs: wall time and peak RSS.
3. Cost per megapixel as images grow (0.25, 1, 4, 12 MP).

Run from the repository root: python benchmarks/cpu_bench.py [--model models/edge-c] [--repeat 3]
Needs the `train` extra for the PyTorch column.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inpdiff.io import read_image  # noqa: E402
from inpdiff.runtime.localizer import Localizer, LocalizeConfig  # noqa: E402

EXAMPLE = ROOT / "examples" / "images" / "astronaut_00_telea.png"
# `python -c PEAK_RSS_CHILD ARGS...` runs trt-localize ARGS and prints its own peak RSS (VmHWM, kB,
# Linux) last on stderr: ru_maxrss would include the forked copy of a torch-loaded parent.
PEAK_RSS_CHILD = ("import re, sys\nfrom inpdiff.runtime.cli import main\ncode = main(sys.argv[1:])\n"
                  "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1], file=sys.stderr)\n"
                  "sys.exit(code)")


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _steps(model: Path) -> str:
    from inpdiff.runtime.model_dir import ModelDir

    m = ModelDir.load(model, verify=False)
    return f"{m.steps} steps" if m.diffusion else "single pass"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "edge-c"), help="model folder")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per row (the best is kept)")
    ap.add_argument("--skip-torch", action="store_true", help="leave out the PyTorch rows")
    ap.add_argument("--sizes", default="0.25,1,4,12", help="megapixels for the scaling table")
    a = ap.parse_args()
    model = Path(a.model)
    image = read_image(EXAMPLE)
    cpu = platform.processor() or platform.machine()
    print(f"machine: {os.cpu_count()} cores ({cpu}), image {EXAMPLE.name} {image.shape[1]}x{image.shape[0]}, "
          f"model {model.name}, {_steps(model)}, 1 sample\n")

    ort_loc = Localizer(model, "onnxruntime", LocalizeConfig())
    ort_s = best_of(lambda: ort_loc.localize(image), a.repeat)
    print("| engine | seconds per image | tiles | speed-up |\n|---|---|---|---|")
    tiles = ort_loc.localize(image).timings["tiles"]
    if not a.skip_torch:
        import torch

        torch_loc = Localizer(model, "torch", LocalizeConfig())
        torch_s = best_of(lambda: torch_loc.localize(image), a.repeat)
        diff = np.abs(torch_loc.localize(image).prob - ort_loc.localize(image).prob).max()
        print(f"| PyTorch {torch.__version__} eager | {torch_s:.2f} | {tiles} | 1.0x |")
        print(f"| ONNX Runtime CPU | {ort_s:.2f} | {tiles} | {torch_s / ort_s:.1f}x |")
        print(f"\nmax abs difference of the two probability maps: {diff:.1e}\n")
    else:
        print(f"| ONNX Runtime CPU | {ort_s:.2f} | {tiles} | - |\n")

    out = Path(tempfile.mkdtemp())
    runs, rss = [], []
    for _ in range(a.repeat):
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", PEAK_RSS_CHILD, str(EXAMPLE), "-o", str(out), "--quiet", "--restart",
                            "--model", str(model)], capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
        runs.append(time.perf_counter() - t)
        assert r.returncode == 0, r.stderr
        rss.append(int(r.stderr.strip().splitlines()[-1]) / 1024)
    print("| trt-localize on the 512x512 example | best | median | peak RSS |\n|---|---|---|---|")
    print(f"| process start to written outputs | {min(runs):.2f} s | {np.median(runs):.2f} s | {max(rss):.0f} MB |\n")

    print("| megapixels | size | tiles | seconds | seconds per MP |\n|---|---|---|---|---|")
    for mp in (float(s) for s in a.sizes.split(",")):
        side = (mp * 1e6 * 4 / 3) ** 0.5
        w, h = round(side), round(side * 3 / 4)
        big = cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC)
        t = time.perf_counter()
        r = ort_loc.localize(big)
        s = time.perf_counter() - t
        print(f"| {mp:g} | {w}x{h} | {r.timings['tiles']} | {s:.2f} | {s / (w * h / 1e6):.2f} |")


if __name__ == "__main__":
    main()
