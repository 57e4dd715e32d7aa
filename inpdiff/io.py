"""Reading images and masks with clear errors, and writing files atomically. numpy + OpenCV only."""
from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
MAX_PIXELS = 100_000_000  # refuse larger images: a decompression bomb, not a photo


class ImageError(ValueError):
    """An input that cannot be used; the message names the file and the problem."""


def header_size(data: np.ndarray) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header without decoding, or None for other formats."""
    b = data[:1 << 16].tobytes()
    if b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) >= 24:
        return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")
    if b[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(b) and b[i] == 0xFF:
            marker, length = b[i + 1], int.from_bytes(b[i + 2:i + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                return int.from_bytes(b[i + 7:i + 9], "big"), int.from_bytes(b[i + 5:i + 7], "big")
            i += 2 + length
    return None


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Any common image file -> HxWx3 uint8 RGB: grey replicated, alpha dropped, CMYK converted,
    16-bit scaled to 8, EXIF orientation applied (so it is aligned with what a viewer shows)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as e:  # a symlink loop, a permission problem...
        raise ImageError(f"{path}: cannot be opened ({e.strerror})") from None
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a device")
        raise ImageError(f"{path}: not a regular file but {kind}")
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise ImageError(f"{path}: empty file")
    size = header_size(data)  # refuse a decompression bomb before decoding it
    if size and size[0] * size[1] > max_pixels:
        raise ImageError(f"{path}: {size[0]}x{size[1]} is over the {max_pixels} pixel limit")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if img is None:
        raise ImageError(f"{path}: cannot decode the image (corrupt, truncated or not an image)")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise ImageError(f"{path}: {img.shape[1]}x{img.shape[0]} is over the {max_pixels} pixel limit")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f"{path}: unsupported sample type {img.dtype}")
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


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    atomic_write(path, lambda p: p.write_bytes(buf))


def write_jpeg(path: str | Path, image: np.ndarray, quality: int, bgr: bool = False) -> None:
    """uint8 HxWx3 RGB (or BGR, OpenCV's order, which a large image then needs no copy for) -> JPEG
    at `quality`, atomically."""
    ok, buf = cv2.imencode(".jpg", image if bgr else np.ascontiguousarray(image[:, :, ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise IOError(f"{path}: JPEG encoding failed")
    atomic_write(path, lambda p: p.write_bytes(buf))


def list_images(folder: str | Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())


# The IJG standard luminance table at quality 50 (the reference libjpeg scales for a quality setting).
_IJG_LUMA_SUM = 3688


def jpeg_quality(path: str | Path) -> int | None:
    """The IJG quality a JPEG was saved at, estimated from its first quantisation table (None if the
    file is not a baseline 8-bit JPEG). Order-free: the table's sum against the standard table's."""
    data = Path(path).read_bytes()
    if data[:2] != b"\xff\xd8":
        return None
    i = data.find(b"\xff\xdb")
    if i < 0 or i + 69 > len(data) or data[i + 4] >> 4 != 0:  # 16-bit tables: not a libjpeg quality
        return None
    scale = 100.0 * sum(data[i + 5:i + 69]) / _IJG_LUMA_SUM
    quality = 5000.0 / scale if scale > 100 else (200.0 - scale) / 2
    return int(np.clip(round(quality), 1, 100))
