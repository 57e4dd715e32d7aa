"""Model folders derived from an FP32 export (INT8, FP16): the FP32 manifest they start from, and
the manifest they write."""
from __future__ import annotations

import json
from pathlib import Path

from ..io import atomic_write
from ..runtime.model_dir import load_manifest
from .collect import CalibrationError


def fp32_manifest(model_dir: Path) -> dict:
    """The manifest of an FP32 export; anything else (an INT8 or FP16 folder) is refused."""
    manifest = load_manifest(model_dir)
    precision = manifest.get("precision", "fp32")
    if precision != "fp32":
        raise CalibrationError(f"{model_dir}: a {precision} model; calibrate the FP32 export it was made from")
    return manifest


def write_derived_manifest(out: Path, manifest: dict) -> dict:
    """Write the manifest of a model derived from an FP32 export (INT8, FP16), without the fields
    that describe the FP32 model alone: its export check and its score calibration."""
    derived = {k: v for k, v in manifest.items() if k not in ("parity", "score")}
    text = json.dumps(derived, indent=2)
    atomic_write(out / "manifest.json", lambda p: p.write_text(text))
    return json.loads(text)
