"""Inpainting methods used to make training data: one registry, name -> fill(image, mask, rng)."""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

Fill = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def _opencv(flag: int) -> Fill:
    def fill(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        radius = int(rng.integers(3, 8))
        return cv2.inpaint(image, mask.astype(np.uint8), radius, flag)
    return fill


def biharmonic(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic

    out = inpaint_biharmonic(image, mask.astype(bool), split_into_regions=True, channel_axis=-1)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


FILLS: dict[str, Fill] = {
    "telea": _opencv(cv2.INPAINT_TELEA),
    "ns": _opencv(cv2.INPAINT_NS),
    "biharmonic": biharmonic,
}


def inpaint(image: np.ndarray, mask: np.ndarray, method: str, rng: np.random.Generator) -> np.ndarray:
    """Fill `mask` (HxW, {0,1}) of an RGB uint8 image; pixels outside the mask are kept bit-exact."""
    if method not in FILLS:
        raise ValueError(f"unknown fill method {method!r}; choose from {sorted(FILLS)}")
    filled = FILLS[method](image, mask, rng)
    return np.where(mask[:, :, None].astype(bool), filled, image)
