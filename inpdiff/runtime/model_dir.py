"""An exported model folder: find it, read its manifest, verify its files against their hashes."""
from __future__ import annotations

import json
from pathlib import Path

from ..io import sha256

DEFAULT_MODEL = "edge-c"


class ModelError(ValueError):
    """A model folder that cannot be used; the message says which file and what is wrong."""


def default_model_dir() -> Path:
    """The shipped model: inside the installed package, or under models/ in a source checkout."""
    pkg = Path(__file__).resolve().parents[1]
    for candidate in (pkg / "models" / DEFAULT_MODEL, pkg.parent / "models" / DEFAULT_MODEL):
        if (candidate / "manifest.json").is_file():
            return candidate
    raise ModelError(f"the shipped model {DEFAULT_MODEL} is not installed; name one with --model DIR")


# Fields the runtime reads, and their types: a manifest without them is refused at load, naming the field.
REQUIRED = {"files": dict, "tile": int, "steps": int, "max_steps": int}


def load_manifest(model_dir: str | Path, verify: bool = True) -> dict:
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
