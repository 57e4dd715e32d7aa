"""Backend `torch`: the PyTorch checkpoint that an export keeps beside its ONNX (model.safetensors +
config.json), run by the same graph modules the export writes. For checking the engines on a GPU,
and for users with torch but no TensorRT. It lives beside the model, not in the runtime: the runtime
finds it by name through the `inpdiff.backends` entry point (setup.py) and never imports model code.

Variants: `torch` (eager fp32; on the CPU where there is no CUDA GPU), `torch-fp16` (autocast fp16,
which keeps normalisation statistics, sigmoid and the sampler's arithmetic in fp32), and `-graph`
(the whole call -- conditions and every denoising step -- captured in one torch.cuda.CUDAGraph per
batch size, replayed with the call's tiles and noise copied into its static inputs).
"""
from __future__ import annotations

import contextlib
import threading
import warnings
from pathlib import Path

import numpy as np

from .. import sampling
from ..runtime.model_dir import ModelDir, ModelError


class TorchBackend:
    def __init__(self, model_dir: str | Path, fp16: bool = False, graph: bool = False, threads: int = 0,
                 device: str | None = None):
        import torch

        from . import load_model
        from .graphs import ConditionGraph, StepGraph

        model_dir = Path(model_dir)
        folder = ModelDir.load(model_dir, verify=False)
        if not (model_dir / "model.safetensors").is_file():
            raise ModelError(f"{model_dir}: no PyTorch checkpoint (model.safetensors + config.json) for the torch "
                             "backend; use the FP32 model folder it was exported from")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if (fp16 or graph) and self.device.type != "cuda":
            raise ModelError("the torch backend's fp16 and graph variants need a CUDA GPU; use --backend torch")
        if threads and self.device.type == "cpu":
            torch.set_num_threads(threads)
        model = load_model(model_dir, self.device).eval()
        model.cfg.tile = folder.tile
        self.torch, self.fp16, self.graph = torch, fp16, graph
        self.cond = ConditionGraph(model).eval()
        # The step graph's sampler tables are made on the CPU: they follow the model to its device.
        self.step_graph = StepGraph(model, folder.max_steps).to(self.device).eval()
        self.tile = None  # any size: eager runs it, the graph variants capture one graph per shape
        self.name = "torch-" + "-".join([self.device.type, "fp16" if fp16 else "fp32"] + (["graph"] if graph else []))
        self._graphs: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._graphs.clear()
            self.cond = self.step_graph = None
            if self.device.type == "cuda":
                self.torch.cuda.empty_cache()

    def _autocast(self):
        if not self.fp16:
            return contextlib.nullcontext()
        # No weight cache: cached casts made during capture would be freed under the graph.
        return self.torch.autocast("cuda", dtype=self.torch.float16, cache_enabled=False)

    def _loop(self, tiles, samples: int, noise, rows):
        """The one sampling loop (inpdiff.sampling), all on the device; rows is a device tensor, so
        that a captured graph reads each step's row from memory."""
        def condition(t):
            return dict(zip(sampling.CONDITIONS, self.cond(t)))

        def step(x, row, fresh, conds):
            x_next, prob, edge = self.step_graph(x, row, fresh, *conds.values())
            return x_next.float(), prob.float(), edge

        return sampling.sample_loop(condition, step, tiles, samples, noise,
                                    [rows[i:i + 1] for i in range(rows.shape[0])],
                                    lambda c, n: c.repeat_interleave(n, dim=0))

    def sample(self, tiles: np.ndarray, samples: int, noise: np.ndarray, rows: list[int]) -> np.ndarray:
        torch = self.torch
        with self._lock, torch.inference_mode():
            args = (torch.from_numpy(tiles).to(self.device), torch.from_numpy(noise).to(self.device),
                    torch.tensor(rows, dtype=torch.int64, device=self.device))
            if not self.graph:
                with self._autocast():
                    out = self._loop(args[0], samples, args[1], args[2])
                return out.cpu().numpy()
            key = (args[0].shape, samples, args[1].shape, tuple(rows))
            if key not in self._graphs:
                self._graphs[key] = self._capture(args, samples)
            captured = self._graphs[key]
            if captured is None:
                with self._autocast():
                    return self._loop(args[0], samples, args[1], args[2]).cpu().numpy()
            graph, static, out = captured
            for dst, src in zip(static, args):
                dst.copy_(src)
            graph.replay()
            return out.cpu().numpy()

    def _capture(self, args, samples: int):
        torch = self.torch
        static = [a.clone() for a in args]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), self._autocast():  # warm-up off the default stream, as torch advises
            for _ in range(2):
                self._loop(static[0], samples, static[1], static[2])
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph), self._autocast():
                out = self._loop(static[0], samples, static[1], static[2])
        except RuntimeError as e:
            warnings.warn(f"CUDA graph capture failed ({e}); running eagerly", stacklevel=3)
            return None
        return graph, static, out


def make(name: str, model_dir: Path, threads: int = 0) -> TorchBackend:
    """The `inpdiff.backends` entry point: torch, torch-fp16, torch-graph or torch-fp16-graph."""
    return TorchBackend(model_dir, fp16="fp16" in name, graph=name.endswith("graph"), threads=threads)
