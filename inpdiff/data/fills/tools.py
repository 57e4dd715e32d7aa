"""Fills made by real third-party inpainting tools, each its own family, run as users run them.

| method         | tool                                              | licence  | installed by                 |
|----------------|---------------------------------------------------|----------|------------------------------|
| `gmic`         | G'MIC's patch-based `inpaint` (GIMP's engine)     | CeCILL   | Debian package `gmic`        |
| `pypatchmatch` | PyPatchMatch (the PatchMatch of popular inpainting apps) | MIT | PyPI `pypatchmatch`          |
| `criminisi`    | Criminisi et al. exemplar-based inpainting        | LGPL-3.0 | PyPI `exemplar-based-inpainting` |
| `shiftmap`     | OpenCV contrib's shift-map inpainting (`xphoto`)  | Apache-2.0 | Debian package `python3-opencv` |
| `fsr`          | OpenCV contrib's frequency-selective reconstruction (`xphoto`, fast) | Apache-2.0 | Debian package `python3-opencv` |

The two OpenCV contrib methods run in Debian's own Python (`/usr/bin/python3`), whose OpenCV has
the contrib modules: the pip wheel the project uses has none, and the contrib wheel would replace it.
Each tool only produces training and test data (run in a subprocess or imported on demand); none is
part of the runtime. A missing tool is a `ToolMissing` error naming the package that provides it.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np


class ToolMissing(RuntimeError):
    """A third-party inpainting tool is not installed."""


def _run_on_files(name: str, command: Callable[[str, str, str], list[str]], image: np.ndarray,
                  mask: np.ndarray) -> np.ndarray:
    """Run a tool that reads an image file and a mask file (255 in the hole) and writes the fill to a
    third; command(image, mask, out) is its argument list."""
    with tempfile.TemporaryDirectory(prefix=f"inpdiff-{name}-") as tmp:
        src, hole, out = (str(Path(tmp) / n) for n in ("image.png", "mask.png", "out.png"))
        cv2.imwrite(src, image[:, :, ::-1])
        cv2.imwrite(hole, mask.astype(np.uint8) * 255)
        done = subprocess.run(command(src, hole, out), capture_output=True, text=True, timeout=600)
        filled = cv2.imread(out, cv2.IMREAD_COLOR)
        if done.returncode or filled is None:
            raise RuntimeError(f"{name} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return filled[:, :, ::-1].copy()


def gmic(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """G'MIC 2.9's patch-based inpainting: `inpaint[0] [1],PATCH_SIZE` (a size of 0 is a smooth fill)."""
    exe = shutil.which("gmic")
    if exe is None:
        raise ToolMissing("fill method 'gmic' needs the G'MIC command line: apt-get install gmic")
    patch = int(rng.integers(5, 12))
    return _run_on_files("gmic", lambda src, hole, out: [exe, "-v", "-1", src, hole, "inpaint[0]", f"[1],{patch}",
                                                        "remove[1]", "output", out], image, mask)


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


# Run by Debian's Python: image and mask in, the fill out. xphoto marks the hole with 0, and shift-map
# expects CIELab colour (OpenCV's documentation), as a user following it would pass.
XPHOTO = """
import sys, cv2, numpy as np
src, hole, out, method = sys.argv[1:]
image, mask = cv2.imread(src, cv2.IMREAD_COLOR), cv2.imread(hole, cv2.IMREAD_GRAYSCALE)
valid = np.where(mask > 0, 0, 255).astype(np.uint8)
filled = np.zeros_like(image)
if method == "shiftmap":
    cv2.xphoto.inpaint(cv2.cvtColor(image, cv2.COLOR_BGR2Lab), valid, filled, cv2.xphoto.INPAINT_SHIFTMAP)
    filled = cv2.cvtColor(filled, cv2.COLOR_Lab2BGR)
else:
    cv2.xphoto.inpaint(image, valid, filled, cv2.xphoto.INPAINT_FSR_FAST)
cv2.imwrite(out, filled)
"""
DEBIAN_PYTHON = "/usr/bin/python3"


def _xphoto(method: str, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    missing = ToolMissing(f"fill method {method!r} needs OpenCV's contrib modules in Debian's Python: "
                          "apt-get install python3-opencv")
    if not Path(DEBIAN_PYTHON).is_file():
        raise missing
    try:
        return _run_on_files(method, lambda src, hole, out: [DEBIAN_PYTHON, "-c", XPHOTO, src, hole, out, method],
                             image, mask)
    except RuntimeError as e:  # the message ends with the script's last error line
        if "No module named 'cv2'" in str(e) or "has no attribute 'xphoto'" in str(e):
            raise missing from e
        raise


def shiftmap(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift-map inpainting (He and Sun's statistics of patch offsets): whole regions copied at the
    photo's dominant offsets, an exemplar method of another kind than PatchMatch's. Deterministic."""
    return _xphoto("shiftmap", image, mask)


def fsr(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Frequency-selective reconstruction (Seiler et al.): the hole extrapolated block by block from a
    sparse Fourier model of its surroundings. Deterministic."""
    return _xphoto("fsr", image, mask)
