"""Fills made by real third-party inpainting tools, each its own family, run as users run them.

| method         | tool                                              | licence  | installed by                 |
|----------------|---------------------------------------------------|----------|------------------------------|
| `gmic`         | G'MIC's patch-based `inpaint` (GIMP's engine)     | CeCILL   | Debian package `gmic`        |
| `pypatchmatch` | PyPatchMatch (the PatchMatch of popular inpainting apps) | MIT | PyPI `pypatchmatch`          |
| `criminisi`    | Criminisi et al. exemplar-based inpainting        | LGPL-3.0 | PyPI `exemplar-based-inpainting` |

Each tool only produces training and test data (run in a subprocess or imported on demand); none is
part of the runtime. A missing tool is a `ToolMissing` error naming the package that provides it.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np


class ToolMissing(RuntimeError):
    """A third-party inpainting tool is not installed."""


def gmic(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """G'MIC 2.9's patch-based inpainting: `inpaint[0] [1],PATCH_SIZE` (a size of 0 is a smooth fill)."""
    exe = shutil.which("gmic")
    if exe is None:
        raise ToolMissing("fill method 'gmic' needs the G'MIC command line: apt-get install gmic")
    patch = int(rng.integers(5, 12))
    with tempfile.TemporaryDirectory(prefix="inpdiff-gmic-") as tmp:
        src, hole, out = (str(Path(tmp) / n) for n in ("image.png", "mask.png", "out.png"))
        cv2.imwrite(src, image[:, :, ::-1])
        cv2.imwrite(hole, mask.astype(np.uint8) * 255)
        cmd = [exe, "-v", "-1", src, hole, "inpaint[0]", f"[1],{patch}", "remove[1]", "output", out]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        filled = cv2.imread(out, cv2.IMREAD_COLOR)
        if done.returncode or filled is None:
            raise RuntimeError(f"gmic failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return filled[:, :, ::-1].copy()


def pypatchmatch(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    try:
        from patchmatch import patch_match
    except ImportError as e:
        raise ToolMissing("fill method 'pypatchmatch' needs PyPatchMatch: pip install 'inpdiff[fills]' "
                          "(or pip install pypatchmatch)") from e
    if not patch_match.patchmatch_available:
        raise ToolMissing("fill method 'pypatchmatch': PyPatchMatch is installed but its native library "
                          "does not load (reinstall pypatchmatch)")
    patch_match.set_random_seed(int(rng.integers(2**32)))
    return np.asarray(patch_match.inpaint(image, mask.astype(np.uint8) * 255, patch_size=int(rng.integers(3, 8))))


def criminisi(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    try:
        from exemplar_based_inpainting.inpainter import Inpainter
    except ImportError as e:
        raise ToolMissing("fill method 'criminisi' needs exemplar-based-inpainting: "
                          "pip install --no-deps exemplar-based-inpainting==0.2.0 (README: Data)") from e
    # "closest" breaks ties deterministically, so a seeded run is repeatable.
    tool = Inpainter(patch_size=int(rng.choice([7, 9, 11])), show_progress_bar=False, patch_preference="closest")
    return tool.inpaint(image[:, :, ::-1].copy(), mask.astype(np.uint8) * 255)[:, :, ::-1].copy()
