"""An exported model folder: find it, read its manifest, verify its files against their hashes.

`ModelDir` owns manifest.json: it is loaded and verified once, its fields typed, and passed down;
the export, the INT8 and FP16 conversions and the score calibration all write it through
`ModelDir.write`. The whole manifest stays available (`.manifest`) for provenance and reports.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..io import atomic_write, sha256

DEFAULT_MODEL = "edge-c"


class ModelError(ValueError):
    """A model folder that cannot be used; the message says which file and what is wrong."""


def model_path(model: str | Path | None = None) -> Path:
    """A model folder: a path, or the name of a shipped model (edge-c, edge-c-int8-cpu, edge-c-int8,
    edge-c-fp16), found inside the installed package or under models/ in a source checkout, so that
    nobody has to look up where pip put it; None: the shipped default. A folder of that name in the
    working folder wins."""
    if model is not None and (Path(model).exists() or len(Path(model).parts) > 1):
        return Path(model)  # a path: the loader says what is wrong with it
    pkg = Path(__file__).resolve().parents[1]
    roots = [r for r in (pkg / "models", pkg.parent / "models") if r.is_dir()]
    name = str(model or DEFAULT_MODEL)
    for root in roots:
        if (root / name / "manifest.json").is_file():
            return root / name
    if model is None:
        raise ModelError(f"the shipped model {DEFAULT_MODEL} is not installed; name one with --model DIR")
    shipped = sorted({d.name for r in roots for d in r.iterdir() if (d / "manifest.json").is_file()})
    raise ModelError(f"{model}: no such model folder, nor a shipped model of that name "
                     f"(shipped: {', '.join(shipped) or 'none'})")


# Fields the runtime reads, and their types: a manifest without them is refused at load, naming the field.
REQUIRED = {"files": dict, "tile": int, "steps": int, "max_steps": int}


def _read(model_dir: str | Path, verify: bool) -> dict:
    """The manifest as a dict, its required fields checked, its files verified (ModelDir.load's reader)."""
    model_dir = Path(model_dir)
    path = model_dir / "manifest.json"
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: no such model folder")
    if not path.is_file():
        raise ModelError(f"{model_dir}: no manifest.json (not an exported model; run `inpdiff export`)")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(manifest, dict):
        raise ModelError(f"{path}: not a manifest (a JSON object is expected)")
    for field, kind in REQUIRED.items():
        if not isinstance(manifest.get(field), kind) or isinstance(manifest.get(field), bool):
            what = "missing" if field not in manifest else f"not {'an integer' if kind is int else 'a mapping'}"
            raise ModelError(f"{path}: field '{field}' is {what} (re-export the model with `inpdiff export`)")
    if manifest["tile"] <= 0 or manifest["tile"] % 32:  # the network's coarsest stride
        raise ModelError(f"{path}: field 'tile' is {manifest['tile']}, not a positive multiple of 32 (the manifest "
                         "was edited; re-export the model with `inpdiff export`)")
    files = manifest["files"]
    if verify:
        for name, digest in files.items():
            f = model_dir / name
            if not f.is_file():
                raise ModelError(f"{f}: missing (listed in the manifest)")
            if sha256(f) != digest:
                raise ModelError(f"{f}: does not match the manifest's sha256 (changed or truncated); "
                                 f"re-export the model with `inpdiff export`")
    return manifest


@dataclass(frozen=True)
class ModelDir:
    path: Path
    manifest: dict                      # the whole manifest, as written
    tile: int                           # the graphs' spatial size
    steps: int                          # the sampler's default number of steps
    max_steps: int                      # the step tables cover 1..max_steps
    files: dict[str, str]               # graph file -> sha256
    mode: str                           # ddim | ddpm
    diffusion: bool                     # False: the single-pass model (one step from an empty mask)
    precision: str                      # fp32 | fp16 | int8
    conditions: dict[str, list[int]]    # condition tensor -> its shape without the batch
    score: dict | None                  # the calibrated image score and pixel threshold, if any

    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> "ModelDir":
        m = _read(path, verify)
        return cls(Path(path), m, m["tile"], m["steps"], m["max_steps"], m["files"], m.get("mode", "ddim"),
                   bool(m.get("diffusion", True)), m.get("precision", "fp32"), m.get("conditions", {}),
                   m.get("score"))

    @property
    def mask_threshold(self) -> float:
        return float((self.score or {}).get("mask_threshold", 0.5))

    @staticmethod
    def write(path: str | Path, manifest: dict) -> "ModelDir":
        """Write `manifest` as PATH/manifest.json, atomically, and load the folder back (verified)."""
        text = json.dumps(manifest, indent=2)
        atomic_write(Path(path) / "manifest.json", lambda p: p.write_text(text))
        return ModelDir.load(path)
