"""Reading images and masks with clear errors, and writing files atomically. numpy + OpenCV only."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
MAX_PIXELS = 100_000_000  # refuse larger images: a decompression bomb, not a photo


class ImageError(ValueError):
    """An input that cannot be used; the message names the file and the problem."""


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Any common image file -> HxWx3 uint8 RGB (grey replicated, alpha dropped, 16-bit scaled)."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise ImageError(f"{path}: empty file")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError(f"{path}: cannot decode the image (corrupt, truncated or not an image)")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise ImageError(f"{path}: {img.shape[1]}x{img.shape[0]} is over the {max_pixels} pixel limit")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f"{path}: unsupported sample type {img.dtype}")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:
        img = img[:, :, :3]
    elif img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[:, :, ::-1])  # BGR -> RGB


def read_mask(path: str | Path, threshold: int = 127) -> np.ndarray:
    """A ground-truth mask file -> HxW uint8 in {0, 1} (any channel > threshold counts as inpainted)."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such mask file")
    m = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise ImageError(f"{path}: cannot decode the mask")
    if m.dtype == np.uint16:
        m = (m // 257).astype(np.uint8)
    if m.ndim == 3:
        m = m[:, :, :3].max(axis=2)
    return (m > threshold).astype(np.uint8)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call write(tmp) on a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_png(path: str | Path, array: np.ndarray) -> None:
    """uint8 HxW or HxWx3 RGB -> PNG, atomically."""
    img = array[:, :, ::-1] if array.ndim == 3 else array
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img))
    if not ok:
        raise IOError(f"{path}: PNG encoding failed")
    atomic_write(path, lambda p: p.write_bytes(buf.tobytes()))


def list_images(folder: str | Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
