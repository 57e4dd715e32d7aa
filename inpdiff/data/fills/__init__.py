"""Fill methods for `inpdiff synth`: one registry, name -> fill(image, mask, rng) -> RGB uint8, by
family, one module a family. Blending and post-processing (post.py) wrap any of them.

- classical: diffusion-style fills (telea, ns, biharmonic), which leave a region with no noise;
- patch: an exemplar fill (patchmatch) that copies real texture from the same photo;
- learned: CNN inpainters the project trains itself (models/inpainters/): two L1 U-Nets (unet-w16,
  unet-w24) and two adversarial ones with sharp texture (unet-gan, ffc-gan: LaMa's Fourier design);
- latent: a real latent-diffusion autoencoder's decoder renders the hole (taef2, taef2-paste);
- latent-own: the same with the project's own latent autoencoder (ae8, ae8-paste), a second decoder;
- gmic, pypatchmatch, criminisi, shiftmap, fsr, resynth: real third-party tools, one family each
  (tools.py), so that each can be held out of training in turn; gimp: GIMP's healing brush and clone
  tool; gmic-matchpatch, gmic-pde: G'MIC's two other inpainting commands (multi-scale PatchMatch,
  transport-diffusion), families apart from gmic's, so that `inpaint` can be held out with or without
  them.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .classical import biharmonic, opencv
from .latent import OwnLatentFill, taef2, taef2_paste
from .learned import LearnedFill
from .patchmatch import patchmatch
from .tools import (criminisi, fsr, gimp_clone, gimp_heal, gmic, gmic_matchpatch, gmic_pde, pypatchmatch, resynth,
                    shiftmap)

Fill = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]

FAMILIES: dict[str, tuple[str, ...]] = {
    "classical": ("telea", "ns", "biharmonic"),
    "patch": ("patchmatch",),
    "learned": ("unet-w16", "unet-w24", "unet-gan", "ffc-gan"),
    "latent": ("taef2", "taef2-paste"),
    "latent-own": ("ae8", "ae8-paste"),
    "gmic": ("gmic",),
    "pypatchmatch": ("pypatchmatch",),
    "criminisi": ("criminisi",),
    "shiftmap": ("shiftmap",),
    "fsr": ("fsr",),
    "gimp": ("gimp-heal", "gimp-clone"),
    "resynth": ("resynth",),
    "gmic-matchpatch": ("gmic-matchpatch",),
    "gmic-pde": ("gmic-pde",),
}


def inpainters_dir() -> Path:
    """The shipped inpainter checkpoints: inside the installed package, or models/ in a checkout."""
    pkg = Path(__file__).resolve().parents[2]
    for candidate in (pkg / "models" / "inpainters", pkg.parent / "models" / "inpainters"):
        if candidate.is_dir():
            return candidate
    return pkg.parent / "models" / "inpainters"


FILLS: dict[str, Fill] = {
    "telea": opencv(cv2.INPAINT_TELEA),
    "ns": opencv(cv2.INPAINT_NS),
    "biharmonic": biharmonic,
    "patchmatch": patchmatch,
    **{name: LearnedFill(inpainters_dir() / name) for name in FAMILIES["learned"]},
    "taef2": taef2,
    "taef2-paste": taef2_paste,
    "ae8": OwnLatentFill(inpainters_dir() / "ae8", paste=False),
    "ae8-paste": OwnLatentFill(inpainters_dir() / "ae8", paste=True),
    "gmic": gmic,
    "pypatchmatch": pypatchmatch,
    "criminisi": criminisi,
    "shiftmap": shiftmap,
    "fsr": fsr,
    "gimp-heal": gimp_heal,
    "gimp-clone": gimp_clone,
    "resynth": resynth,
    # Last: a method's place here seeds its fills (synth.py), so new ones go at the end.
    "gmic-matchpatch": gmic_matchpatch,
    "gmic-pde": gmic_pde,
}


def family(method: str) -> str:
    """The family of a fill method; a method from elsewhere (another dataset's) is its own family."""
    return next((f for f, names in FAMILIES.items() if method in names), method)


def expand(methods: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Method names, with family names standing for all their methods."""
    out: list[str] = []
    for m in methods:
        for name in FAMILIES.get(m, (m,)):
            if name not in FILLS:
                raise ValueError(f"unknown fill method {name!r}; choose from {sorted(FILLS)} or a family "
                                 f"({', '.join(FAMILIES)})")
            if name not in out:
                out.append(name)
    return tuple(out)


def inpaint(image: np.ndarray, mask: np.ndarray, method: str, rng: np.random.Generator) -> np.ndarray:
    """Fill `mask` (HxW, {0,1}) of an RGB uint8 image; pixels outside the mask are kept bit-exact."""
    if method not in FILLS:
        raise ValueError(f"unknown fill method {method!r}; choose from {sorted(FILLS)}")
    filled = FILLS[method](image, mask, rng)
    return np.where(mask[:, :, None].astype(bool), filled, image)
