"""`inpdiff build SOURCE --precision fp32|fp16|int8`: one front door from a checkpoint to engines, as
`yolo export format=engine half=True int8=True` is for Ultralytics' users.

It runs, in order, what is not already up to date (judged by hashes, not dates):
1. the ONNX export, when SOURCE is a checkpoint whose export is missing or was made from other weights;
2. the INT8 calibration (`--images`; `int8` in TensorRT's form, `int8-cpu` in ONNX Runtime's) or the
   FP16 conversion, into SOURCE-PRECISION, when that folder is missing or was made from another FP32 export;
3. the score calibration (`--data`, a validation set), when the model has none for its current graphs;
4. the TensorRT engines, where TensorRT and a GPU are present and the engines do not fit.
The step commands (`export`, `calibrate`, `fp16`, `calibrate-score`, and `build` of a model folder)
stay for those who want them.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .io import sha256
from .runtime.model_dir import ModelDir

PRECISIONS = ("fp32", "fp16", "int8", "int8-cpu")  # int8: TensorRT's form; int8-cpu: ONNX Runtime's VNNI form


@dataclass
class MakeConfig:
    precision: str = "fp32"
    images: str | None = None    # calibration photos (int8) or reference photos (fp16)
    data: str | None = None      # a validation set (edits and pristine photos) for the score calibration
    out: str | None = None       # the derived model's folder (default SOURCE-PRECISION)
    min_images: int = 16         # fewer readable calibration photos is an error
    engines: bool = True         # build TensorRT engines where TensorRT and a GPU are present


def _model(folder: Path) -> ModelDir | None:
    return ModelDir.load(folder, verify=False) if (folder / "manifest.json").is_file() else None


def make_model(source: str | Path, cfg: MakeConfig, log=print) -> Path:
    """Bring the model of `cfg.precision` made from `source` up to date; returns its folder."""
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"unknown precision {cfg.precision!r}; choose from {', '.join(PRECISIONS)}")
    fp32 = Path(source)
    checkpoint = fp32 / "model.safetensors"
    model = _model(fp32)
    if checkpoint.is_file() and (model is None or model.manifest.get("checkpoint_sha256") != sha256(checkpoint)):
        from .export.onnx_export import export

        log(f"export: {fp32} (the checkpoint has no export, or another one)")
        export(fp32, fp32)
        model = _model(fp32)
    elif model is None:
        raise ValueError(f"{fp32}: neither a checkpoint (model.safetensors) nor a model folder (manifest.json)")
    else:
        log(f"export: {fp32} is up to date")

    target = fp32
    if cfg.precision != "fp32":
        target = Path(cfg.out or f"{fp32}-{cfg.precision}")
        derived = _model(target)
        section = "fp16" if cfg.precision == "fp16" else "quantization"
        form = "cpu" if cfg.precision == "int8-cpu" else "tensorrt"
        made = (derived.manifest.get(section, {}) if derived else {})
        if made.get("source", {}).get("files") != model.files or (section == "quantization" and
                                                                    made.get("target", "tensorrt") != form):
            if not cfg.images:
                raise ValueError(f"{target}: {cfg.precision} needs photos to calibrate on: give --images DIR")
            log(f"{cfg.precision}: {fp32} -> {target}")
            if cfg.precision.startswith("int8"):
                from .calibration.qdq import CalibrateConfig
                from .calibration.quantize import calibrate

                calibrate(fp32, target, cfg.images, CalibrateConfig(min_images=cfg.min_images, target=form))
            else:
                from .calibration.fp16 import Fp16Config, convert

                convert(fp32, target, cfg.images, Fp16Config())
        else:
            log(f"{cfg.precision}: {target} is up to date")

    current = _model(target)
    if (current.score or {}).get("model_files") != current.files:
        if not cfg.data:
            raise ValueError(f"{target}: no calibrated score for its current graphs: give --data VALIDATION_DIR")
        from .calibration.score import calibrate_score

        log(f"score: calibrating {target} on {cfg.data}")
        calibrate_score(target, cfg.data)
    else:
        log(f"score: {target} is up to date")

    if cfg.precision == "int8-cpu":
        log("engines: none (the CPU form is for ONNX Runtime)")
    elif cfg.engines and importlib.util.find_spec("tensorrt") is not None:
        from .runtime.cuda import device_count

        if device_count() > 0:
            from .runtime.engines import current_target, engine_problems
            from .runtime.trt_build import build

            engines = target / "engines"
            if engine_problems(target, engines, current_target()):
                build(target, engines, log=log)
            else:
                log(f"engines: {engines} are up to date")
    else:
        log("engines: TensorRT is not installed here; the model folder runs on ONNX Runtime")
    return target
