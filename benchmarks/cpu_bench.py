"""CPU benchmark of the lean runtime (prints Markdown tables).

1. ONNX Runtime vs PyTorch eager, per image: the same checkpoint, tiles, steps, noise and image; only
   the engine differs (PyTorch runs the very modules that were exported).
2. `trt-localize` on the example from process start to written outputs: wall time and peak RSS.
3. Cost per megapixel as images grow (0.25, 1, 4, 12 MP).
4. The pipeline against pure graph compute on a 2048x2048 photo: the same tiles run on single-threaded
   sessions, one per core, side by side, with nothing else (the floor the pipeline can reach; also what
   perfect scaling of one core's time would give), against `trt-localize` and `trt-localize-cpp`
   from start to output, with and without the copy evidence (work the pure compute does not do); and
   the achieved GFLOP/s against this CPU's FP32 peak (formula printed).
5. The C++ runtime (`trt-localize-cpp`, where built: cpp/test.sh) beside `trt-localize` on the same
   photos, start to output: seconds per megapixel and peak RSS (GNU time's %M, the command's own).

Run from the repository root: python benchmarks/cpu_bench.py [--model models/edge-c] [--repeat 3]
Needs the `train` extra for the PyTorch column.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
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
PEAK_RSS_CHILD = ("import re, sys\nfrom inpdiff.runtime.launch import main\ncode = main(sys.argv[1:])\n"
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


def fp32_peak() -> tuple[float, str]:
    """GFLOP/s at FP32: cores x GHz x SIMD lanes x 2 (a fused multiply-add) x FMA units (2 assumed)."""
    info = Path("/proc/cpuinfo").read_text()
    mhz = max(float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz"))
    flags = next(line for line in info.splitlines() if line.startswith("flags")).split()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    cores = os.cpu_count() or 1
    peak = cores * mhz / 1000 * lanes * 2 * 2
    return peak, f"{cores} cores x {mhz / 1000:.2f} GHz x {lanes} fp32 lanes x 2 (FMA) x 2 FMA units = {peak:.0f} GFLOP/s"


def pipeline_vs_compute(model: Path, image: np.ndarray, cpp: Path) -> None:
    import onnxruntime as ort

    from inpdiff.noise import tile_noise
    from inpdiff.sampling import step_feed

    big = cv2.resize(image, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    loc = Localizer(model, "onnxruntime", LocalizeConfig())
    plan = loc.plan(big)
    n, cores = len(plan.origins), os.cpu_count() or 1
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    cond, step = (ort.InferenceSession(str(model / f"{g}.onnx"), opts) for g in ("condition", "denoise_step"))
    names = [o.name for o in cond.get_outputs()]

    per_call = loc.batch(plan.shape, 2)  # what `trt-localize --batch 2` (the CPU default) runs per call

    def batch(first: int) -> None:  # what one worker does for one call's tiles: conditions, then every step
        idx = list(range(first, min(first + per_call, n)))
        tiles = np.stack([plan.tile(i) for i in idx])
        noise = np.concatenate([tile_noise(0, *plan.origins[i], loc.steps, 1, plan.shape) for i in idx], axis=1)
        conds = dict(zip(names, cond.run(None, {"image": tiles})))
        x = noise[0]
        for i in range(loc.steps):
            x = step.run(None, step_feed(x, i, noise[i + 1], conds))[0]

    def on_every_core() -> None:  # the plan's batches on one single-threaded worker per core, side by side
        todo = list(range(0, n, per_call))
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    if not todo:
                        return
                    first = todo.pop(0)
                batch(first)
        threads = [threading.Thread(target=worker) for _ in range(cores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    per_tile = best_of(lambda: batch(0), 3) / per_call
    ideal = n * per_tile / cores
    compute = best_of(on_every_core, 2)
    path = Path(tempfile.mkdtemp()) / "big.png"
    cv2.imwrite(str(path), big[:, :, ::-1])
    commands = {"trt-localize": [sys.executable, "-m", "inpdiff.runtime.launch", "--no-html"]}
    if cpp.is_file():
        commands["trt-localize-cpp"] = [str(cpp)]
    print(f"\n2048x2048 photo, {n} tiles of {plan.shape[0]}x{plan.shape[1]}, {cores} cores: pure compute "
          f"{per_tile * 1000:.0f} ms a tile on one thread "
          f"({ideal:.2f} s for the {n} tiles if {cores} cores scaled perfectly); the same batches on {cores} "
          f"single-threaded workers side by side, measured: {compute:.2f} s\n")
    print("| command, start to output | with the copy evidence (default) | `--no-copies` |\n|---|---|---|")
    end_to_end = {}
    for name, command in commands.items():
        row = []
        for extra in ([], ["--no-copies"]):
            def once() -> None:
                r = subprocess.run([*command, str(path), "-o", str(path.parent / "out"), "--quiet", "--model", str(model),
                                    *extra], capture_output=True, text=True, cwd=ROOT)
                assert r.returncode == 0, r.stderr
                shutil.rmtree(path.parent / "out")
            seconds = best_of(once, 2)
            end_to_end[name, bool(extra)] = seconds
            row.append(f"{seconds:.2f} s ({seconds / compute:.2f}x the measured compute)")
        print(f"| {name} | {' | '.join(row)} |")
    flops = per_tile_flops(model, loc.steps, plan.shape)
    peak, formula = fp32_peak()
    if flops:
        print(f"\n{flops / 1e9:.2f} GFLOP a tile: {flops / per_tile / 1e9:.0f} GFLOP/s on one core in pure compute, "
              f"{n * flops / end_to_end['trt-localize', False] / 1e9:.0f} GFLOP/s end to end (trt-localize); "
              f"FP32 peak {formula}")


def per_tile_flops(model: Path, steps: int, shape: tuple[int, int]) -> float | None:
    """FLOPs of one tile's call (torch's counter on the checkpoint beside the export), or None without torch."""
    try:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from inpdiff.model import load_model
        from inpdiff.model.graphs import ConditionGraph, StepGraph
    except ImportError:
        return None
    m = load_model(model).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        conds = ConditionGraph(m)(torch.zeros(1, *shape, 3, dtype=torch.uint8))
    cond_flops = counter.get_total_flops()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        StepGraph(m, 32)(torch.zeros(1, 1, *shape), torch.tensor([0]), torch.zeros(1, 1, *shape), *conds)
    return cond_flops + steps * counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "edge-c"), help="model folder")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per row (the best is kept)")
    ap.add_argument("--skip-torch", action="store_true", help="leave out the PyTorch rows")
    ap.add_argument("--sizes", default="0.25,1,4,12", help="megapixels for the scaling table")
    ap.add_argument("--cpp", default=str(ROOT / "build" / "cpp" / "trt-localize-cpp"),
                    help="the C++ command, for the C++ against Python table (skipped where it is not built)")
    ap.add_argument("--only-cpp", action="store_true", help="only the C++ against Python table")
    a = ap.parse_args()
    model = Path(a.model)
    image = read_image(EXAMPLE)
    if a.only_cpp:
        return cpp_vs_python(model, image, Path(a.cpp), a.sizes, a.repeat)
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
    pipeline_vs_compute(model, image, Path(a.cpp))
    cpp_vs_python(model, image, Path(a.cpp), a.sizes, a.repeat)


def cpp_vs_python(model: Path, image: np.ndarray, cpp: Path, sizes: str, repeat: int) -> None:
    """Both commands from process start to written outputs on the same photos (best of `repeat`)."""
    if not cpp.is_file():
        print(f"\n(C++ runtime not built at {cpp}: cpp/test.sh builds it; its table is skipped)")
        return
    work = Path(tempfile.mkdtemp())
    print("\n| photo | megapixels | command | seconds | seconds per MP | peak RSS |\n|---|---|---|---|---|---|")
    for mp in (float(s) for s in sizes.split(",")):
        side = (mp * 1e6 * 4 / 3) ** 0.5
        w, h = round(side), round(side * 3 / 4)
        photo = work / f"photo_{mp:g}mp.png"
        cv2.imwrite(str(photo), cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC)[:, :, ::-1])
        for name, command in (("trt-localize (Python)", [sys.executable, "-m", "inpdiff.runtime.launch", "--no-html"]),
                              ("trt-localize-cpp (C++)", [str(cpp)])):
            best, rss = float("inf"), 0.0
            for _ in range(repeat):
                t = time.perf_counter()
                r = subprocess.run(["/usr/bin/time", "-f", "%M", *command, str(photo), "-o", str(work / "out"),
                                    "--quiet", "--restart", "--model", str(model)],
                                   capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
                best = min(best, time.perf_counter() - t)
                assert r.returncode == 0, r.stderr
                rss = max(rss, int(r.stderr.strip().splitlines()[-1]) / 1024)
            print(f"| {w}x{h} | {w * h / 1e6:.2f} | {name} | {best:.2f} | {best / (w * h / 1e6):.2f} | {rss:.0f} MB |")


if __name__ == "__main__":
    main()
