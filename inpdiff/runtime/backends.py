"""Inference backends behind one small interface.

A backend either runs the two graphs separately (`condition`, `step`), and the Localizer drives the
sampling loop, or runs a whole call itself (`sample`): the TensorRT and torch backends do, so that
the loop can be one CUDA graph. Tiling and ensembling are written once (localizer.py).
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .. import sampling


class Backend(Protocol):
    name: str

    def close(self) -> None:
        """Free what the backend holds (sessions, engines, buffers); it is not used again."""

    def condition(self, tiles: np.ndarray) -> dict[str, np.ndarray]:
        """(B, h, w, 3) uint8 RGB tiles -> the named condition tensors."""

    def step(self, x_t: np.ndarray, row: int, noise: np.ndarray, conds: dict[str, np.ndarray]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One denoising step -> (x_next, prob, edge), each (B, 1, T, T) float32."""


class FusedBackend(Protocol):
    name: str

    def close(self) -> None:
        """Free what the backend holds (engines, streams, buffers, graphs); it is not used again."""

    def sample(self, tiles: np.ndarray, samples: int, noise: np.ndarray, rows: list[int]) -> np.ndarray:
        """(N, h, w, 3) uint8 tiles; noise (steps + 1, N * samples, 1, h, w), tile-major, noise[0] the
        start; rows the step-table rows -> the mean over the steps of prob, (N * samples, 1, T, T)."""


@dataclass(frozen=True)
class BackendSpec:
    """Which backend, and its settings (picklable: Ray workers make their own)."""
    name: str = "auto"
    engines: str | None = None     # TensorRT engine folder (default MODEL_DIR/engines)
    build_missing: bool = False    # TensorRT: build missing or stale engines instead of refusing


def _import_onnxruntime():
    """onnxruntime, with its telemetry off before it starts: the runtime writes nothing outside OUT.
    ORT_DISABLE_TELEMETRY is what ONNX Runtime 1.32 honours (ORT_TELEMETRY_DISABLED alone still
    leaves a device id under ~/.cache there); ORT_TELEMETRY_DISABLED is the name of later releases."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("ORT_TELEMETRY_DISABLED", "1")
    import onnxruntime

    return onnxruntime


class OnnxRuntimeBackend:
    """ONNX Runtime: its CUDA provider when onnxruntime-gpu is installed, else the CPU."""

    def __init__(self, model_dir: Path, threads: int = 0):
        ort = _import_onnxruntime()

        providers = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
        opts.log_severity_level = 3
        self._cond, self._step = (ort.InferenceSession(str(model_dir / sampling.onnx_file(g)), opts, providers=providers)
                                  for g in sampling.GRAPHS)
        self._cond_names = [o.name for o in self._cond.get_outputs()]
        side = self._cond.get_inputs()[0].shape[1]
        self.tile = side if isinstance(side, int) else None  # what the graph takes (None: any size)
        self.name = "onnxruntime-cuda" if providers[0] == "CUDAExecutionProvider" else "onnxruntime-cpu"

    def close(self) -> None:
        self._cond = self._step = None

    def condition(self, tiles: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self._cond_names, self._cond.run(None, {sampling.IMAGE: tiles})))

    def step(self, x_t, row, noise, conds):
        x_next, prob, edge = self._step.run(None, sampling.step_feed(x_t, row, noise, conds))
        return x_next, prob, edge


TORCH_BACKENDS = ("torch", "torch-fp16", "torch-graph", "torch-fp16-graph")
BACKENDS = ("auto", "onnxruntime", "tensorrt", *TORCH_BACKENDS)


def resolve(name: str) -> str:
    """`auto`: TensorRT where it is installed and a CUDA GPU is visible, else ONNX Runtime."""
    if name != "auto":
        return name
    from .cuda import device_count

    has_trt = importlib.util.find_spec("tensorrt") is not None
    return "tensorrt" if has_trt and device_count() > 0 else "onnxruntime"


def uses_gpu(name: str) -> bool:
    """Whether `name` would run on a GPU here (one inference call at a time keeps a GPU busy;
    on the CPU the pipeline runs one single-threaded call per core instead)."""
    name = resolve(name)
    if name == "tensorrt":
        return True
    if name in TORCH_BACKENDS:
        from .cuda import device_count

        return device_count() > 0
    return "CUDAExecutionProvider" in _import_onnxruntime().get_available_providers()


def cpu_int8_dot_product() -> tuple[bool, str]:
    """Whether this CPU has the int8 dot-product instructions ONNX Runtime's uint8 x int8 kernels need
    to be fast and exact (x86: AVX-512 VNNI or AVX-VNNI; ARM: the dot-product extension), and what it has."""
    import platform

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False, f"an unknown {platform.machine()} CPU (no /proc/cpuinfo)"
    flags = set(" ".join(line.split(":", 1)[1] for line in info.splitlines()
                         if line.startswith(("flags", "Features"))).split())
    found = sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})
    if found:
        return True, "a CPU with " + ", ".join(found)
    return False, f"a {platform.machine()} CPU without VNNI or the dot-product extension"


def _plugin(name: str):
    """A backend registered under the `inpdiff.backends` entry point (the torch one lives beside the
    model, which the runtime never imports)."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group="inpdiff.backends") if ep.name == name]
    if not found:
        raise ValueError(f"the {name} backends are not installed: they come with the training install "
                         "(pip install -e '.[train]'); use --backend onnxruntime")
    return found[0].load()


def make_backend(spec: str | BackendSpec, model_dir: Path, threads: int = 0) -> Backend | FusedBackend:
    spec = BackendSpec(spec) if isinstance(spec, str) else spec
    name = resolve(spec.name)
    if name == "onnxruntime":
        return OnnxRuntimeBackend(model_dir, threads)
    if name == "tensorrt":
        from .trt import TensorRTBackend

        return TensorRTBackend(model_dir, Path(spec.engines) if spec.engines else None, spec.build_missing)
    if name in TORCH_BACKENDS:
        return _plugin("torch")(name, model_dir, threads)
    raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
