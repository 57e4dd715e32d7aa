"""Model folders derived from an FP32 export (INT8, FP16): the FP32 manifest they start from, and
the manifest they write."""
from __future__ import annotations

from pathlib import Path

from ..runtime.model_dir import ModelDir
from .collect import CalibrationError


def fp32_manifest(model_dir: Path) -> dict:
    """The manifest of an FP32 export; anything else (an INT8 or FP16 folder) is refused."""
    model = ModelDir.load(model_dir)
    if model.precision != "fp32":
        raise CalibrationError(f"{model_dir}: a {model.precision} model; calibrate the FP32 export it was made from")
    return model.manifest


def write_derived_manifest(out: Path, manifest: dict) -> dict:
    """Write the manifest of a model derived from an FP32 export (INT8, FP16), without the fields
    that describe the FP32 model alone: its export check and its score calibration."""
    derived = {k: v for k, v in manifest.items() if k not in ("parity", "score")}
    return ModelDir.write(out, derived).manifest
