"""Fills made by real third-party inpainting tools, each its own family, run as users run them.

| method         | tool                                              | licence  | installed by                 |
|----------------|---------------------------------------------------|----------|------------------------------|
| `gmic`         | G'MIC's patch-based `inpaint` (GIMP's engine)     | CeCILL   | Debian package `gmic`        |
| `gmic-matchpatch` | G'MIC's multi-scale PatchMatch (`inpaint_matchpatch`) | CeCILL | Debian package `gmic`   |
| `gmic-pde`     | G'MIC's multi-scale transport-diffusion (`inpaint_pde`) | CeCILL | Debian package `gmic`      |
| `pypatchmatch` | PyPatchMatch (the PatchMatch of popular inpainting apps) | MIT | PyPI `pypatchmatch`          |
| `criminisi`    | Criminisi et al. exemplar-based inpainting        | LGPL-3.0 | PyPI `exemplar-based-inpainting` |
| `shiftmap`     | OpenCV contrib's shift-map inpainting (`xphoto`)  | Apache-2.0 | Debian package `python3-opencv` |
| `fsr`          | OpenCV contrib's frequency-selective reconstruction (`xphoto`, fast) | Apache-2.0 | Debian package `python3-opencv` |
| `gimp-heal`, `gimp-clone` | GIMP 2.10's healing brush and clone tool, stroked over the hole | GPL-3.0 | Debian package `gimp` |
| `resynth`      | Resynthesizer, the engine of GIMP's "Heal selection" content-aware fill | GPL-3.0 | PyPI `resynthesizer` |

The two OpenCV contrib methods run in Debian's own Python (`/usr/bin/python3`), whose OpenCV has
the contrib modules: the pip wheel the project uses has none, and the contrib wheel would replace it.
Each tool only produces training and test data (run in a subprocess or imported on demand); none is
part of the runtime. A missing tool is a `ToolMissing` error naming the package that provides it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np


class ToolMissing(FileNotFoundError):
    """A third-party inpainting tool is not installed (a missing file, to the command line: exit 2)."""


class FillFailed(RuntimeError):
    """A tool ran but gave no fill for this hole (`synth` skips the sample and says so)."""


def _run_on_files(name: str, command: Callable[[str, str, str], list[str]], image: np.ndarray,
                  mask: np.ndarray, env: dict[str, str] | None = None) -> np.ndarray:
    """Run a tool that reads an image file and a mask file (255 in the hole) and writes the fill to a
    third; command(image, mask, out) is its argument list."""
    with tempfile.TemporaryDirectory(prefix=f"inpdiff-{name}-") as tmp:
        src, hole, out = (str(Path(tmp) / n) for n in ("image.png", "mask.png", "out.png"))
        cv2.imwrite(src, image[:, :, ::-1])
        cv2.imwrite(hole, mask.astype(np.uint8) * 255)
        done = subprocess.run(command(src, hole, out), capture_output=True, text=True, timeout=600, env=env)
        filled = cv2.imread(out, cv2.IMREAD_COLOR)
        if done.returncode or filled is None:
            raise RuntimeError(f"{name} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return filled[:, :, ::-1].copy()


def _gmic(name: str, command: list[str], image: np.ndarray, mask: np.ndarray,
          rng: np.random.Generator | None = None) -> np.ndarray:
    """Run a G'MIC inpainting command on image [0] and mask [1]. With `rng`, `srand` and one thread make
    a seeded run repeatable (G'MIC's random patches, drawn on several threads, are not otherwise), and
    `round` writes the float result as a user's saved file has it (unrounded, every pixel was one level
    low). `inpaint` needs neither, and is run as it always was, so that its fills stay as they were."""
    exe = shutil.which("gmic")
    if exe is None:
        raise ToolMissing(f"fill method {name!r} needs the G'MIC command line: apt-get install gmic")
    first, last, env = [], [], None
    if rng is not None:
        first, last, env = ["srand", str(int(rng.integers(2**31)))], ["round"], {**os.environ, "OMP_NUM_THREADS": "1"}
    filled = _run_on_files(name, lambda src, hole, out: [exe, "-v", "-1", *first, src, hole, *command, "remove[1]",
                                                        *last, "output", out], image, mask, env=env)
    # `inpaint_matchpatch` leaves about 3% of holes black and exits 0; a user would not keep such an edit.
    if (filled[mask > 0] == 0).all(axis=-1).mean() > 0.5:
        raise FillFailed(f"{name} left the hole black")
    return filled


def gmic(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """G'MIC 2.9's patch-based inpainting: `inpaint[0] [1],PATCH_SIZE` (a size of 0 is a smooth fill)."""
    patch = int(rng.integers(5, 12))
    return _gmic("gmic", ["inpaint[0]", f"[1],{patch}"], image, mask)


def gmic_matchpatch(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """G'MIC's multi-scale PatchMatch inpainting (`inpaint_matchpatch`): the hole rebuilt coarse to
    fine from patches matched in the photo, then blended; a content-aware fill of another
    implementation than PyPatchMatch's. Its blending outside the hole is off, so that the mask is the
    changed region."""
    patch, blend = int(rng.choice([5, 7, 9, 11])), int(rng.integers(0, 8))
    return _gmic("gmic-matchpatch", ["inpaint_matchpatch[0]", f"[1],0,{patch},10,{blend},0"], image, mask, rng)


def gmic_pde(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """G'MIC's multi-scale transport-diffusion inpainting (`inpaint_pde`, isotropic): the hole's border
    transported inwards, coarse to fine. Its Delaunay- and edge-guided modes left a third of the holes
    of brush-stroke masks black on one photo (2.9.4), so they are not used."""
    return _gmic("gmic-pde", ["inpaint_pde[0]", "[1],75%,0,20"], image, mask, rng)


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


def resynth(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Resynthesizer's content-aware fill (the engine of GIMP's "Heal selection" plug-in, in the C
    library that PyPI's `resynthesizer` wraps): each hole pixel takes the photo pixel whose
    neighbourhood matches best, matched with its context in one of the engine's first three synthesis
    orders (1, the original, is random), with Heal selection's search (16 neighbours, 500 probes) or
    the library's (30, 200). Deterministic."""
    try:
        from PIL import Image
        from resynthesizer.resynthesizer import getDefaultParams, resynthesize
    except ImportError as e:
        raise ToolMissing("fill method 'resynth' needs Resynthesizer: pip install 'inpdiff[fills]' "
                          "(or pip install resynthesizer)") from e
    except OSError as e:  # its wheel's native library is built for x86_64 only
        raise ToolMissing(f"fill method 'resynth': Resynthesizer's native library does not load here ({e})") from e
    params = getDefaultParams()
    params.matchContextType = int(rng.integers(1, 4))
    params.patchSize, params.maxProbeCount = ((16, 500), (30, 200))[int(rng.integers(2))]
    return np.asarray(resynthesize(Image.fromarray(image), Image.fromarray(mask.astype(np.uint8) * 255), params))


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


# GIMP's healing brush and clone tool as a user removing an object works them: the hole selected (so
# nothing outside it changes), then piece by piece a source spot picked beside the piece and the
# brush swept over it in rows. Run by GIMP's batch mode with a profile and caches of its own, so
# nothing in the user's home folder is created or changed.
GIMP_SCRIPT = """
(define (inpdiff-paint src hole out heal size pieces)
  (let* ((image (car (gimp-file-load RUN-NONINTERACTIVE src src)))
         (layer (car (gimp-image-get-active-layer image)))
         (holes (car (gimp-file-load-layer RUN-NONINTERACTIVE image hole))))
    (gimp-image-insert-layer image holes 0 -1)
    (gimp-context-set-antialias FALSE)
    (gimp-context-set-feather FALSE)
    (gimp-context-set-sample-threshold 0)
    (gimp-image-select-color image CHANNEL-OP-REPLACE holes '(255 255 255))
    (gimp-image-remove-layer image holes)
    (gimp-context-set-brush "2. Hardness 075")
    (gimp-context-set-brush-size size)
    (for-each
      (lambda (piece)
        (let ((sx (car piece)) (sy (cadr piece)) (strokes (caddr piece)))
          (if (= heal 1)
              (gimp-heal layer layer sx sy (vector-length strokes) strokes)
              (gimp-clone layer layer CLONE-IMAGE sx sy (vector-length strokes) strokes))))
      pieces)
    (gimp-file-save RUN-NONINTERACTIVE image layer out out)))
"""
DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))


def _width(region: np.ndarray) -> float:
    """The diameter of the largest disc that fits in the region: a stroke's thickness, a blob's width."""
    return 2 * float(cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, 3).max()) + 1


def _source_offset(image: np.ndarray, piece: np.ndarray, hole: np.ndarray,
                   rng: np.random.Generator) -> tuple[int, int]:
    """Where a user would take a piece's source from: of spots beside it (a little more than its width
    away, in eight directions), the one whose surroundings look most like the piece's. A spot must
    lie in the photo and overlap the hole little; failing that, the one most inside the photo."""
    h, w = hole.shape
    width = _width(piece)
    ys, xs = np.nonzero(piece)
    ry, rx = np.nonzero((cv2.dilate(piece.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0) & ~hole)
    ranked = []
    for dy, dx in DIRECTIONS:
        reach = rng.uniform(1.1, 1.8) * width / np.hypot(dy, dx)
        oy, ox = round(dy * reach), round(dx * reach)
        sy, sx = ys + oy, xs + ox
        inside = (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)
        overlap = hole[sy[inside], sx[inside]].mean() if inside.any() else 1.0
        ok = (ry + oy >= 0) & (ry + oy < h) & (rx + ox >= 0) & (rx + ox < w)
        cost = (np.abs(image[ry[ok], rx[ok]].astype(np.int16) - image[ry[ok] + oy, rx[ok] + ox]).mean()
                if ok.any() else 255.0)
        ranked.append((not (inside.all() and overlap <= 0.2), -inside.mean(), cost, (oy, ox)))
    return min(ranked)[-1]


def _gimp(heal: bool, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    exe = shutil.which("gimp-console") or shutil.which("gimp")
    name = "gimp-heal" if heal else "gimp-clone"
    if exe is None:
        raise ToolMissing(f"fill method {name!r} needs GIMP: apt-get install gimp")
    hole = mask.astype(bool)
    size = float(np.clip(rng.uniform(0.3, 0.7) * _width(hole), 8, 60))
    cell = int(max(4 * size, 48))  # the stretch a user heals before picking a new source
    pieces = []
    for y0 in range(0, hole.shape[0], cell):
        for x0 in range(0, hole.shape[1], cell):
            if not hole[y0:y0 + cell, x0:x0 + cell].any():
                continue
            piece = np.zeros_like(hole)
            piece[y0:y0 + cell, x0:x0 + cell] = hole[y0:y0 + cell, x0:x0 + cell]
            oy, ox = _source_offset(image, piece, hole, rng)
            ys, xs = np.nonzero(piece)
            # A serpentine sweep in rows a quarter of the brush apart covers every pixel of the piece.
            rows = np.arange(ys.min() - size / 4, ys.max() + 1 + size / 4, size / 4)
            ends = (xs.min() - size / 4, xs.max() + 1 + size / 4)
            points = [(x, y) for i, y in enumerate(rows) for x in (ends if i % 2 == 0 else ends[::-1])]
            strokes = " ".join(f"{v:.1f}" for p in points for v in p)
            pieces.append(f"(list {points[0][0] + ox:.1f} {points[0][1] + oy:.1f} #({strokes}))")

    with tempfile.TemporaryDirectory(prefix=f"inpdiff-{name}-") as tmp:
        def command(src: str, hole_file: str, out: str) -> list[str]:
            call = f'(inpdiff-paint "{src}" "{hole_file}" "{out}" {int(heal)} {size:.1f} (list {" ".join(pieces)}))'
            return [exe, "-i", "-n", "-f", "-b", f"(begin {GIMP_SCRIPT} {call})", "-b", "(gimp-quit 0)"]

        env = {**os.environ, "GIMP2_DIRECTORY": f"{tmp}/profile", "XDG_CACHE_HOME": f"{tmp}/cache",
               "XDG_DATA_HOME": f"{tmp}/data", "XDG_CONFIG_HOME": f"{tmp}/config"}
        return _run_on_files(name, command, image, mask, env=env)


def gimp_heal(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """GIMP's healing brush: the source's texture, with its colour and shading corrected to the
    hole's border (a Poisson-style correction), as Photoshop's healing brush does."""
    return _gimp(True, image, mask, rng)


def gimp_clone(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """GIMP's clone stamp: the source copied as it is, through a soft brush."""
    return _gimp(False, image, mask, rng)
