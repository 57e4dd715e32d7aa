"""The reprocessed family, a training signal rather than a fill anyone makes: the hole keeps the
photo's own content, put through another processing history (resampled, blurred, denoised, re-noised,
or JPEG-compressed on a shifted grid; one or two of these). Its content cannot give it away, only
whether its noise, compression and resampling agree with the rest of the photo, which is what a
detector has to ask of fills made by tools it never saw (issue 12, item 5)."""
from __future__ import annotations

import cv2
import numpy as np

OPS = ("resample", "blur", "denoise", "noise", "jpeg")


def reprocess(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = image
    for op in rng.choice(OPS, size=int(rng.integers(1, 3)), replace=False):
        out = _apply(str(op), out, rng)
    return out


def _apply(op: str, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    if op == "resample":  # down and up again, so the region's detail is another camera's or editor's
        f = rng.uniform(0.4, 0.85)
        down = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))),
                          interpolation=int(rng.choice([cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC])))
        return cv2.resize(down, (w, h), interpolation=int(rng.choice([cv2.INTER_LINEAR, cv2.INTER_CUBIC,
                                                                         cv2.INTER_LANCZOS4])))
    if op == "blur":
        return cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.3))
    if op == "denoise":
        return cv2.bilateralFilter(image, 5, rng.uniform(10, 35), 3)
    if op == "noise":
        noisy = image + rng.normal(0, rng.uniform(1.5, 5.0), image.shape)
        return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
    # jpeg: on a grid shifted from the photo's own, as a region pasted from another JPEG would be
    dy, dx = (int(v) for v in rng.integers(1, 8, size=2))
    shifted = np.roll(image, (dy, dx), axis=(0, 1))
    ok, data = cv2.imencode(".jpg", shifted[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 91))])
    return np.roll(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1], (-dy, -dx), axis=(0, 1))
