"""GPU benchmark: one localizer call (conditions + 10 denoising steps on a batch of 256x256 tiles) on
each GPU path, with the lower bound the model's FLOPs and the GPU's peak allow.

    python benchmarks/gpu_bench.py [--model models/edge-c] [--trt-model models/edge-c-fp16]

Rows: torch eager fp32, torch fp16 (autocast), torch fp16 with the whole call in one CUDA graph,
and, where TensorRT is importable and engines are built (`inpdiff build`), TensorRT with its CUDA
graph. Columns: latency at batch 1, throughput (tiles/s) at batch 8 and 32, peak GPU memory.
Without a CUDA GPU only the eager fp32 row runs, on the CPU, to check the script itself.
"""
from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np

from inpdiff import sampling
from inpdiff.runtime.model_dir import ModelDir

ROOT = Path(__file__).resolve().parents[1]
# Dense peak TFLOPS (fp16 tensor cores, fp32 CUDA cores) from NVIDIA's data sheets, by device name.
PEAKS = {"H100 80GB HBM3": (989, 67), "H100 PCIe": (756, 51), "H100 NVL": (835, 60), "H200": (989, 67),
         "A100": (312, 19.5), "L4": (121, 30), "L40S": (362, 91.6), "RTX 4090": (165, 82.6)}


def flops_per_tile(model_dir: Path, steps: int) -> float:
    """FLOPs of one tile's call: the conditions once and `steps` denoising steps (torch's counter)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from inpdiff.model import load_model
    from inpdiff.model.graphs import ConditionGraph, StepGraph

    folder = ModelDir.load(model_dir, verify=False)
    T = folder.tile
    model = load_model(model_dir).eval()
    cond, step = ConditionGraph(model), StepGraph(model, folder.max_steps)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        conds = cond(torch.zeros(1, T, T, 3, dtype=torch.uint8))
        x = torch.zeros(1, 1, T, T)
        step(x, torch.tensor([0]), x, *conds)
    c = counter.get_total_flops()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        cond(torch.zeros(1, T, T, 3, dtype=torch.uint8))
    cond_flops = counter.get_total_flops()
    return cond_flops + steps * (c - cond_flops)


def time_calls(backend, batch: int, folder: ModelDir, steps: int, repeat: int) -> float:
    """Seconds per call, best of `repeat` after two warm-up calls (the first captures a graph)."""
    T = folder.tile
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (batch, T, T, 3), dtype=np.uint8)
    rows = sampling.step_rows(folder.mode, steps, folder.max_steps)
    best = float("inf")
    for k in range(repeat + 2):
        noise = rng.standard_normal((steps + 1, batch, 1, T, T), dtype=np.float32)
        t = time.perf_counter()
        backend.sample(tiles, 1, noise, rows)  # returns host arrays: the call has finished
        if k >= 2:
            best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "edge-c"), help="FP32 folder with its checkpoint")
    ap.add_argument("--trt-model", default=str(ROOT / "models" / "edge-c-fp16"), help="engines' model folder")
    ap.add_argument("--engines", help="TensorRT engine folder (default: TRT_MODEL/engines)")
    ap.add_argument("--batches", default="1,8,32", help="batch sizes: the first timed as latency, the rest as throughput")
    ap.add_argument("--steps", type=int, default=10, help="denoising steps per call")
    ap.add_argument("--repeat", type=int, default=10, help="timed calls per cell (the best is kept)")
    ap.add_argument("--peak-tflops", type=float, nargs=2, metavar=("FP16", "FP32"), help="the GPU's dense peaks")
    a = ap.parse_args()

    import torch

    from inpdiff.model.torch_backend import TorchBackend

    model = Path(a.model)
    folder = ModelDir.load(model, verify=False)
    batches = [int(b) for b in a.batches.split(",")]
    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name(0) if cuda else "none (CPU only: the eager fp32 row, to check the script)"
    variants = {"torch eager fp32": lambda: TorchBackend(model)}
    if cuda:
        variants |= {"torch fp16": lambda: TorchBackend(model, fp16=True),
                     "torch fp32 + CUDA graph": lambda: TorchBackend(model, graph=True),
                     "torch fp16 + CUDA graph": lambda: TorchBackend(model, fp16=True, graph=True)}
        if importlib.util.find_spec("tensorrt"):
            from inpdiff.runtime.trt import TensorRTBackend

            trt_model = Path(a.trt_model)
            variants[f"TensorRT {ModelDir.load(trt_model).precision} + CUDA graph"] = lambda: TensorRTBackend(
                trt_model, Path(a.engines) if a.engines else None)
    flops = flops_per_tile(model, a.steps)
    peaks = a.peak_tflops or next((v for k, v in PEAKS.items() if k in gpu), None)
    print(f"GPU: {gpu}; torch {torch.__version__}; model {model.name}, {folder.tile}x{folder.tile} tiles, "
          f"{a.steps} steps, {flops / 1e9:.2f} GFLOP per tile\n")
    head = ["path", f"batch {batches[0]} ms"] + [f"batch {b} tiles/s" for b in batches[1:]] + ["peak GPU MiB"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    rows = {}
    for name, make in variants.items():
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            free_before = torch.cuda.mem_get_info()[0]
        backend = make()
        secs = [time_calls(backend, b, folder, a.steps, a.repeat) for b in batches]
        # torch's allocator sees torch's memory; TensorRT allocates outside it, so take the device's.
        mem = "-"
        if cuda:
            used = (torch.cuda.max_memory_allocated() if name.startswith("torch")
                    else free_before - torch.cuda.mem_get_info()[0])
            mem = f"{used / 2**20:.0f}"
        rows[name] = secs
        cells = [f"{secs[0] * 1000:.2f}"] + [f"{b / s:.0f}" for b, s in zip(batches[1:], secs[1:])] + [mem]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
        del backend
    if peaks:
        floor16, floor32 = (flops / (p * 1e12) for p in peaks)
        print(f"| floor at peak (fp16 {peaks[0]:g} / fp32 {peaks[1]:g} TFLOPS) | {floor16 * 1e3:.3f} / "
              f"{floor32 * 1e3:.3f} | " + " | ".join(f"{1 / floor16:.0f} / {1 / floor32:.0f}" for _ in batches[1:])
              + " | - |")
    base, best = rows["torch eager fp32"][0], rows.get("torch fp16 + CUDA graph", [None])[0]
    if best:
        print(f"\nbatch {batches[0]}: fp16 + one CUDA graph is {base / best:.1f}x faster than eager fp32 (goal 5x)")


if __name__ == "__main__":
    main()
