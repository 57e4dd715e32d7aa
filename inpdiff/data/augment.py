"""Training augmentations that keep the mask aligned with the image. numpy + OpenCV only."""
from __future__ import annotations

import cv2
import numpy as np

from ..config import DataConfig


def resize(image: np.ndarray, mask: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = mask.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interp), cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma)


def random_crop(image: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A size x size crop; half the time centred near a masked pixel so that most crops see a fill."""
    h, w = mask.shape
    if h < size or w < size:  # pad small images (reflect the image, mask stays empty there)
        ph, pw = max(0, size - h), max(0, size - w)
        image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_REFLECT_101)
        mask = cv2.copyMakeBorder(mask, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=0)
        h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if len(ys) and rng.random() < 0.5:
        j = rng.integers(len(ys))
        y0 = int(np.clip(ys[j] - rng.integers(size), 0, h - size))
        x0 = int(np.clip(xs[j] - rng.integers(size), 0, w - size))
    else:
        y0, x0 = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
    return image[y0:y0 + size, x0:x0 + size], mask[y0:y0 + size, x0:x0 + size]


def augment(image: np.ndarray, mask: np.ndarray, cfg: DataConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Resize, crop to cfg.crop, flip, then the degradations a photo meets after editing."""
    if rng.random() < cfg.p_resize:
        image, mask = resize(image, mask, rng.uniform(0.6, 1.4))
    image, mask = random_crop(image, mask, cfg.crop, rng)
    if rng.random() < cfg.p_flip:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < cfg.p_flip:
        image, mask = image[::-1], mask[::-1]
    image = np.ascontiguousarray(image)
    if rng.random() < cfg.p_blur:
        image = blur(image, rng.uniform(0.4, 1.2))
    if rng.random() < cfg.p_noise:
        image = gaussian_noise(image, rng.uniform(1, 6), rng)
    if rng.random() < cfg.p_jpeg:
        image = jpeg(image, int(rng.integers(60, 96)))
    return image, np.ascontiguousarray(mask)
