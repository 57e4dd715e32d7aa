"""TensorRT engines' metadata: what each engine is bound to and why a set of engines cannot run here.

Each `NAME.plan` has `NAME.json` beside it: TensorRT version, GPU name and compute capability, the
ONNX file's sha256, precision, profiles, the plan's sha256. An engine runs only on the TensorRT and
GPU it was built for, and only matches the ONNX it was built from; a mismatch is refused at load with
the command that rebuilds. Polygraphy checks none of this, so it stays ours. `tensorrt` is imported
only where a target is read.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..io import sha256
from ..sampling import GRAPHS
from .model_dir import ModelDir, ModelError

ACCUMULATE = "accumulate"  # running sum of the per-step probability maps
ENGINES = (*GRAPHS, ACCUMULATE)


class EngineError(ModelError):
    """No usable engine: TensorRT missing, engines missing or built for something else."""


@dataclass(frozen=True)
class Target:
    """What an engine is bound to."""
    tensorrt: str
    gpu: str
    compute_capability: str


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as e:
        raise EngineError("TensorRT is not installed (the Python package `tensorrt` cannot be imported: "
                          f"{e}). On a machine with an NVIDIA GPU: pip install 'inpdiff[trt]' (or JetPack's "
                          "python3-libnvinfer on Jetson). Without it, trt-localize runs on ONNX Runtime "
                          "(--backend onnxruntime)") from e
    return tensorrt


def current_target() -> Target:
    trt = import_tensorrt()
    from .cuda import device_count, device_properties

    if device_count() == 0:
        raise EngineError("no CUDA GPU is visible (or cuda-python is missing: pip install 'inpdiff[trt]'); "
                          "TensorRT engines need one; use --backend onnxruntime")
    gpu, cc = device_properties(0)
    return Target(trt.__version__, gpu, cc)


def profiles(model: ModelDir, max_batch: int, opt_batch: int) -> dict[str, dict[str, list[list[int]]]]:
    """Per engine, per dynamic input: [min, opt, max] shapes for batch 1 .. max_batch."""
    if max_batch < 1:
        raise ValueError(f"max batch must be at least 1, got {max_batch}")
    opt = min(max(1, opt_batch), max_batch)
    T = model.tile

    def batched(*shape: int) -> list[list[int]]:
        return [[b, *shape] for b in (1, opt, max_batch)]

    conds = {name: batched(*shape) for name, shape in model.conditions.items()}
    return {"condition": {"image": batched(T, T, 3)},
            "denoise_step": {"x_t": batched(1, T, T), "noise": batched(1, T, T), **conds},
            ACCUMULATE: {"total": batched(1, T, T), "prob": batched(1, T, T)}}


def engine_files(engines_dir: Path, name: str) -> tuple[Path, Path]:
    return engines_dir / f"{name}.plan", engines_dir / f"{name}.json"


def expected_metadata(model: ModelDir, name: str, target: Target) -> dict:
    """The fields an engine's metadata must have to be used with this model on this machine."""
    onnx = f"{name}.onnx" if name in GRAPHS else None
    return {"engine": name, "tensorrt": target.tensorrt, "gpu": target.gpu,
            "compute_capability": target.compute_capability, "onnx": onnx,
            "onnx_sha256": model.files[onnx] if onnx else None,
            "precision": model.precision}


def engine_problems(model_dir: Path, engines_dir: Path, target: Target) -> list[str]:
    """Why the engines in `engines_dir` cannot run `model_dir` here; empty when they can."""
    model = ModelDir.load(model_dir, verify=False)
    problems = []
    for name in ENGINES:
        plan, meta_path = engine_files(engines_dir, name)
        if not plan.is_file() or not meta_path.is_file():
            problems.append(f"{plan.name}: not built")
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError as e:
            problems.append(f"{meta_path.name}: unreadable ({e})")
            continue
        expected = expected_metadata(model, name, target)
        what = {"tensorrt": "TensorRT", "gpu": "GPU", "compute_capability": "compute capability",
                "onnx_sha256": "ONNX sha256", "precision": "precision"}
        for key, label in what.items():
            if meta.get(key) != expected[key]:
                problems.append(f"{plan.name}: built for {label} {meta.get(key)}, this is {expected[key]}")
        if meta.get("plan_sha256") != sha256(plan):
            problems.append(f"{plan.name}: does not match its metadata's sha256 (changed or truncated)")
    return problems


def check_engines(model_dir: Path, engines_dir: Path, target: Target) -> dict[str, dict]:
    problems = engine_problems(model_dir, engines_dir, target)
    if problems:
        raise EngineError(f"{engines_dir}: TensorRT engines cannot be used here: " + "; ".join(problems)
                          + f". Rebuild them: inpdiff build {model_dir} --engines {engines_dir} "
                          "(or run trt-localize with --build-missing)")
    return {n: json.loads(engine_files(engines_dir, n)[1].read_text()) for n in ENGINES}
