"""Inference backends behind one small interface: run the condition graph, run one denoising step.

The sampling loop, tiling and ensembling are written once (localizer.py) against this interface.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np


class Backend(Protocol):
    name: str

    def condition(self, tiles: np.ndarray) -> dict[str, np.ndarray]:
        """(B, T, T, 3) uint8 RGB tiles -> the named condition tensors."""

    def step(self, x_t: np.ndarray, row: int, noise: np.ndarray, conds: dict[str, np.ndarray]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One denoising step -> (x_next, prob, edge), each (B, 1, T, T) float32."""


class OnnxRuntimeBackend:
    """ONNX Runtime: its CUDA provider when onnxruntime-gpu is installed, else the CPU."""

    def __init__(self, model_dir: Path, threads: int = 0):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
        opts.log_severity_level = 3
        self._cond = ort.InferenceSession(str(model_dir / "condition.onnx"), opts, providers=providers)
        self._step = ort.InferenceSession(str(model_dir / "denoise_step.onnx"), opts, providers=providers)
        self._cond_names = [o.name for o in self._cond.get_outputs()]
        self.name = "onnxruntime-cuda" if providers[0] == "CUDAExecutionProvider" else "onnxruntime-cpu"

    def condition(self, tiles: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self._cond_names, self._cond.run(None, {"image": tiles})))

    def step(self, x_t, row, noise, conds):
        x_next, prob, edge = self._step.run(None, {"x_t": x_t, "row": np.array([row], np.int64), "noise": noise,
                                                   **conds})
        return x_next, prob, edge


BACKENDS = ("auto", "onnxruntime")


def uses_gpu(name: str) -> bool:
    """Whether `name` would run on a GPU here (one inference call at a time keeps a GPU busy;
    on the CPU the pipeline runs one single-threaded call per core instead)."""
    import onnxruntime as ort

    return name in ("auto", "onnxruntime") and "CUDAExecutionProvider" in ort.get_available_providers()


def make_backend(name: str, model_dir: Path, threads: int = 0) -> Backend:
    if name in ("auto", "onnxruntime"):
        return OnnxRuntimeBackend(model_dir, threads)
    raise ValueError(f"unknown backend {name!r}; choose from {BACKENDS}")
