"""What real edits go through after the fill, so that a seam alone does not give the region away:
blending at the hole's border, then a global JPEG recompression or resize of the whole image.

Blends: `poisson` (gradient-domain: the fill's gradients, the photo's values at the border; OpenCV's
seamlessClone), `feather` (the fill is made over the hole grown by a few pixels and alpha-blended
into the photo across that ring, as a soft brush does). The mask returned is the region the edit
touched: the hole, or the grown hole for `feather`. A global post-process changes every pixel a
little, as it does in the wild; the mask stays the edited region (resized with the image).

So that a smooth fill is not given away by its missing sensor noise alone, `grain` adds Gaussian
noise at the photo's own noise level to the filled region; `jpeg` recompresses at the photo's own JPEG
quality where the photo is a JPEG; `resize2` resamples the photo before the edit and again after it.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..augment import jpeg

BLENDS = ("none", "poisson", "feather")
POSTS = ("none", "jpeg", "resize", "resize2")


def poisson(image: np.ndarray, filled: np.ndarray, hole: np.ndarray) -> np.ndarray:
    pad = 3  # seamlessClone needs known pixels around the mask, also at the image border
    img = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    src = cv2.copyMakeBorder(np.where(hole[:, :, None], filled, image), pad, pad, pad, pad, cv2.BORDER_REFLECT)
    # The mask's own edge pixels are the solver's boundary (kept from the photo): grow it by one so
    # that every hole pixel is solved for.
    m = cv2.dilate(hole.astype(np.uint8) * 255, np.ones((3, 3), np.uint8))
    m = cv2.copyMakeBorder(m, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    x, y, w, h = cv2.boundingRect(m)
    # OpenCV places the mask's bounding box at centre - size // 2: this centre puts it back in place.
    out = cv2.seamlessClone(src, img, m, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
    return out[pad:-pad, pad:-pad]


def noise_sigma(image: np.ndarray, where: np.ndarray | None = None) -> float:
    """Immerkaer's estimate of additive noise (8-bit units) from a Laplacian-difference residual."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = np.abs(cv2.filter2D(gray, -1, k, borderType=cv2.BORDER_REFLECT))
    r = r[where] if where is not None and where.any() else r
    return float(np.sqrt(np.pi / 2) * r.mean() / 6)


def with_grain(fill, image: np.ndarray, rng: np.random.Generator):
    """`fill`, plus Gaussian grain at the photo's own noise level where the fill adds too little."""
    sigma = noise_sigma(image)

    def grainy(img: np.ndarray, region: np.ndarray, r: np.random.Generator) -> np.ndarray:
        out = fill(img, region, r).astype(np.float32)
        missing = max(0.0, sigma ** 2 - noise_sigma(out.astype(np.uint8), region > 0) ** 2) ** 0.5
        out += rng.normal(0, missing, out.shape).astype(np.float32)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return grainy


def resample(image: np.ndarray, scale: float) -> np.ndarray:
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def edit(image: np.ndarray, hole: np.ndarray, fill, blend: str, post: str, rng: np.random.Generator,
         grain: bool = False, jpeg_quality: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fill `hole` with `fill(image, region, rng)`, blend, post-process -> (edited image, mask).

    grain: add noise matched to the photo's to the fill; jpeg_quality: the photo's own (for `jpeg`).
    """
    hole = hole.astype(bool)
    if post == "resize2":  # resampled before the edit too, so the whole photo carries the trace
        image = resample(image, rng.uniform(0.6, 0.9))
    if grain:
        fill = with_grain(fill, image, rng)
    if blend == "feather":
        ring = int(rng.integers(2, 6))
        region = cv2.dilate(hole.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE,
                                                                             (2 * ring + 1, 2 * ring + 1))) > 0
        filled = fill(image, region.astype(np.uint8), rng).astype(np.float32)
        # alpha: 1 on the hole, falling linearly to 0 across the ring (distance from the hole).
        dist = cv2.distanceTransform((~hole).astype(np.uint8), cv2.DIST_L2, 3)
        alpha = np.where(region, np.clip(1 - dist / (ring + 1), 0, 1), 0)[:, :, None]
        out = np.clip(alpha * filled + (1 - alpha) * image + 0.5, 0, 255).astype(np.uint8)
        mask = region
    else:
        filled = fill(image, hole.astype(np.uint8), rng)
        if blend == "poisson":
            filled = poisson(image, filled, hole)
        elif blend != "none":
            raise ValueError(f"unknown blend {blend!r}; choose from {BLENDS}")
        out, mask = np.where(hole[:, :, None], filled, image), hole
    out = np.where(mask[:, :, None], out, image)  # nothing outside the edited region has changed
    if post == "jpeg":
        quality = jpeg_quality or int(rng.integers(70, 96))
        out = jpeg(out, quality)
    elif post in ("resize", "resize2"):
        s = rng.uniform(0.5, 0.9)
        size = (max(1, round(out.shape[1] * s)), max(1, round(out.shape[0] * s)))
        out = cv2.resize(out, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    elif post != "none":
        raise ValueError(f"unknown post-processing {post!r}; choose from {POSTS}")
    return out, mask.astype(np.uint8)
