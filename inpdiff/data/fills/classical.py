"""Diffusion-style classical fills: OpenCV Telea and Navier-Stokes, scikit-image biharmonic. They
propagate the border's colours smoothly into the hole, leaving a region with no sensor noise."""
from __future__ import annotations

import cv2
import numpy as np


def opencv(flag: int):
    def fill(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        radius = int(rng.integers(3, 8))
        return cv2.inpaint(image, mask.astype(np.uint8), radius, flag)
    return fill


def biharmonic(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic

    out = inpaint_biharmonic(image, mask.astype(bool), split_into_regions=True, channel_axis=-1)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)
