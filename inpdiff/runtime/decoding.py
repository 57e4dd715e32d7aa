"""Image decoding in worker processes, so that a file that crashes a codec fails alone.

Forensic inputs are untrusted: a crafted or damaged file can crash an image library outright (a
segfault, not an exception), which in a thread would end the whole run, and the same file would end
the resumed run again. Decoding in processes turns that into one failed input. When a decoder
process dies, every decode in flight fails with it; each of those is then retried alone in a
process of its own, so the innocent ones still decode and only the culprit is reported.
"""
from __future__ import annotations

import os
import tempfile
import threading
import warnings
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..io import ImageError, image_pixels, read_image, spill_image
from ..spill import SpilledArray
from .decoder_pool import new_pool
from .malloc import fixed_mmap_threshold, trim

Decode = Callable[[Path, int], "np.ndarray | Spill"]  # (path, max_pixels) -> RGB uint8; picklable (top level)


@dataclass(frozen=True)
class Spill:
    """What a decoder process hands back for a spilled photo: where its raw RGB rows are, and their
    shape. The process that opens it (`open`) unlinks the file, so it goes when that array does."""
    path: str
    shape: tuple[int, int, int]

    def open(self) -> SpilledArray:
        fixed_mmap_threshold()
        if _in_memory_fs(self.path):
            warnings.warn(f"{Path(self.path).parent} is on a tmpfs: photos above --spill-above are worked from "
                          "files there, which are then held in memory after all; set TMPDIR to a folder on disk",
                          stacklevel=2)
        file = open(self.path, "rb")
        os.unlink(self.path)
        return SpilledArray(file, self.shape, np.uint8)


def _in_memory_fs(path: str) -> bool:
    """Whether `path` lies on a tmpfs or ramfs (by the longest mount point above it, /proc/mounts)."""
    path, best, kind = os.path.realpath(path), "", None
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                _, point, fstype = line.split()[:3]
                point = point.replace("\\040", " ")
                if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                    best, kind = point, fstype
    except OSError:
        return False
    return kind in ("tmpfs", "ramfs")


def decode_or_spill(path: Path, max_pixels: int, spill_above: int, folder: str | None = None) -> np.ndarray | Spill:
    """read_image; but a PNG or JPEG of more than `spill_above` pixels (0: none) is decoded into a raw
    file in `folder` (TMPDIR by default) instead (io.spill_image) and handed back as a Spill."""
    pixels = image_pixels(path) if spill_above else None
    if pixels is not None and spill_above < pixels <= max_pixels:
        fd, dest = tempfile.mkstemp(prefix="photo-", suffix=".rgb", dir=folder)
        os.close(fd)
        try:
            shape = spill_image(path, dest, max_pixels)
        except BaseException:
            os.unlink(dest)
            raise
        if shape is not None:
            return Spill(dest, shape)
        os.unlink(dest)
    return read_image(path, max_pixels)


@dataclass(frozen=True)
class Handover:
    """A photo a decoder process decoded whole, handed back in a raw file rather than pickled: pickling
    a 16 MP photo held it twice more in the decoder (the pickle, and its buffer as it grew) and once more
    here as it arrived, 100-150 MB on top of a batch's peak. `open` reads it whole and unlinks the file."""
    path: str
    shape: tuple[int, int, int]

    def open(self) -> np.ndarray:
        try:
            return np.fromfile(self.path, np.uint8).reshape(self.shape)
        finally:
            os.unlink(self.path)


def _hand_over(image: np.ndarray, folder: str) -> np.ndarray | Handover:
    """The photo written to a raw file in `folder`; the photo itself (pickled, then) where that fails,
    a full TMPDIR say, so that no photo fails for it."""
    try:
        fd, dest = tempfile.mkstemp(prefix="photo-", suffix=".rgb", dir=folder)
    except OSError:
        return image
    try:
        with os.fdopen(fd, "wb") as f:
            image.tofile(f)
    except OSError:
        os.unlink(dest)
        return image
    return Handover(dest, image.shape)


def _decode(decode: Decode, path: Path, max_pixels: int, folder: str | None) -> np.ndarray | Spill | Handover:
    try:
        image = decode(path, max_pixels)
        return _hand_over(image, folder) if folder and isinstance(image, np.ndarray) else image
    finally:
        trim()


class IsolatedDecoder:
    """Decodes in a pool of processes: `pool`, one started earlier (decoder_pool.new_pool) that this takes
    over, or a new one. Photos come back through files in `folder` (Handover) where one is given."""

    def __init__(self, processes: int, max_pixels: int, decode: Decode = read_image,
                 pool: ProcessPoolExecutor | None = None, folder: str | None = None):
        self.processes, self.max_pixels, self.decode, self.folder = processes, max_pixels, decode, folder
        self._lock = threading.Lock()
        self._pool = pool or new_pool(processes)

    def submit(self, path: Path) -> Future:
        pool = self._pool
        try:
            future = pool.submit(_decode, self.decode, path, self.max_pixels, self.folder)
        except BrokenProcessPool:
            pool = self._replace(pool)
            future = pool.submit(_decode, self.decode, path, self.max_pixels, self.folder)
        future.pool = pool  # the pool to replace if this decode finds it broken
        return future

    def result(self, path: Path, future: Future) -> np.ndarray | Spill:
        try:
            image = future.result()
        except BrokenProcessPool:
            self._replace(future.pool)
            with new_pool(1) as alone:  # which file was it? this one, alone
                try:
                    image = alone.submit(_decode, self.decode, path, self.max_pixels, self.folder).result()
                except BrokenProcessPool:
                    raise ImageError(f"{path}: the image decoder crashed on this file (damaged or hostile data)") from None
        return image.open() if isinstance(image, Handover) else image

    def _replace(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is broken:
                broken.shutdown(wait=False, cancel_futures=True)
                self._pool = new_pool(self.processes)
            return self._pool

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
