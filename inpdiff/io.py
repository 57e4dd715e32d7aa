"""Reading images and masks with clear errors, and writing files atomically. numpy + OpenCV only."""
from __future__ import annotations

import hashlib
import os
import stat
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Callable, Iterable, Iterator

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


def _check_file(path: Path) -> None:
    """An ImageError unless `path` is a regular file (the decoders' clear messages for the usual mistakes)."""
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


def image_pixels(path: str | Path) -> int | None:
    """Width x height from a PNG or JPEG header (None for other formats, and for anything but a regular
    file, which read_image then names the problem of)."""
    if not os.path.isfile(path):
        return None
    try:
        size = header_size(np.fromfile(str(path), dtype=np.uint8, count=1 << 16))
    except OSError:
        return None
    return size[0] * size[1] if size else None


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Any common image file -> HxWx3 uint8 RGB: grey replicated, alpha dropped, CMYK converted,
    16-bit scaled to 8, EXIF orientation applied (so it is aligned with what a viewer shows)."""
    path = Path(path)
    _check_file(path)
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise ImageError(f"{path}: empty file")
    size = header_size(data)  # refuse a decompression bomb before decoding it
    if size and size[0] * size[1] > max_pixels:
        raise ImageError(f"{path}: {size[0]}x{size[1]} is over the {max_pixels} pixel limit")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    del data  # the photo is what a decoder should hold from here on, not the file too
    if img is None:
        raise ImageError(f"{path}: cannot decode the image (corrupt, truncated or not an image)")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise ImageError(f"{path}: {img.shape[1]}x{img.shape[0]} is over the {max_pixels} pixel limit")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f"{path}: unsupported sample type {img.dtype}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=img)  # in place, and several times faster than a reversed copy


def spill_image(path: str | Path, dest: str | Path, max_pixels: int = MAX_PIXELS) -> tuple[int, int, int] | None:
    """A photo too large to hold, decoded into `dest` as raw RGB rows without ever being held whole
    (libvips, reading the file once from the top) -> its (H, W, 3); the same pixels as `read_image`.
    None where libvips is not installed or cannot decode this file as OpenCV does (CMYK, a sample type
    other than 8 or 16 bits): the caller reads it whole instead. A rotated photo (EXIF orientation) and an
    interlaced PNG cannot be read from the top only; libvips then holds them whole, in this process."""
    path = Path(path)
    _check_file(path)
    try:
        import pyvips
    except (ImportError, OSError):
        return None
    pyvips.cache_set_max(0)  # each photo is decoded once: the operation cache would only hold its buffers
    try:
        im = pyvips.Image.new_from_file(str(path), access="sequential")
        if im.interpretation == "cmyk":
            return None
        if im.get_typeof("orientation") and im.get("orientation") != 1:
            im = pyvips.Image.new_from_file(str(path)).autorot()
        if im.width * im.height > max_pixels:
            raise ImageError(f"{path}: {im.width}x{im.height} is over the {max_pixels} pixel limit")
        if im.format == "ushort":
            im = (im / 257).rint().cast("uchar")
        elif im.format != "uchar":
            return None
        im = im[0:3] if im.bands >= 3 else im[0].bandjoin([im[0], im[0]])  # alpha dropped, grey replicated
        im.rawsave(str(dest))
    except pyvips.Error as e:
        Path(dest).unlink(missing_ok=True)
        raise ImageError(f"{path}: cannot decode the image ({str(e).strip().splitlines()[-1]})") from None
    return im.height, im.width, 3


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


def png_stream(shape: tuple[int, ...], bands: Iterable[np.ndarray], level: int = 1) -> Iterator[bytes]:
    """A PNG file's bytes, made from uint8 rows of an (H, W) or (H, W, 3) RGB image given a band at a
    time: memory of a band, whatever the image's size. Rows are filtered with PNG's Sub filter (level 0:
    none, and stored, not compressed: a fast hand-over to another decoder)."""
    h, w = shape[:2]
    c = 1 if len(shape) == 2 else 3

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    yield b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0 if c == 1 else 2, 0, 0, 0))
    z, rows_seen = zlib.compressobj(level), 0
    for band in bands:
        rows = np.ascontiguousarray(band, np.uint8).reshape(len(band), w * c)
        out = np.empty((len(rows), 1 + w * c), np.uint8)
        out[:, 0] = 1 if level else 0
        out[:, 1:] = rows
        if level:
            np.subtract(rows[:, c:], rows[:, :-c], out=out[:, 1 + c:])  # Sub: each byte minus the pixel's to its left, mod 256
        rows_seen += len(rows)
        if data := z.compress(out):
            yield chunk(b"IDAT", data)
    if rows_seen != h:
        raise ValueError(f"a PNG of {h} rows was given {rows_seen}")
    yield chunk(b"IDAT", z.flush()) + chunk(b"IEND", b"")


def write_png_bands(path: str | Path, shape: tuple[int, ...], bands: Iterable[np.ndarray]) -> None:
    """write_png for an image given a band of rows at a time (png_stream), atomically."""
    def write(p: Path) -> None:
        with open(p, "wb") as f:
            for data in png_stream(shape, bands):
                f.write(data)
    atomic_write(path, write)


def write_jpeg_bands(path: str | Path, shape: tuple[int, int, int], bands: Iterable[np.ndarray], quality: int) -> None:
    """write_jpeg for an RGB image given a band of rows at a time, atomically. libvips encodes it as it
    reads an uncompressed PNG stream of the bands (its custom sources take encoded files only), so
    neither side holds the image. Needs pyvips."""
    import pyvips
    stream, pending = png_stream(shape, bands, level=0), bytearray()

    def read(size: int) -> bytes:
        while len(pending) < size and (data := next(stream, None)) is not None:
            pending.extend(data)
        out = bytes(pending[:size])
        del pending[:size]
        return out

    source = pyvips.SourceCustom()
    source.on_read(read)
    image = pyvips.Image.new_from_source(source, "", access="sequential")
    atomic_write(path, lambda p: image.jpegsave(str(p), Q=int(quality)))


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
