"""Arrays too large to hold, kept in files and read a band of rows at a time (numpy only).

A 100 MP photo is 300 MB decoded and its float probability map 400 MB, so above a size (trt-localize's
`--spill-above`) the runtime holds no image-sized array but the copy cover: a decoder process streams
the photo into a raw file (io.spill_image, runtime.decoding), the maps are written row by row as they
are finished (runtime.bands), and the copy search keeps its blocks here between passes. The files live
in the page cache, which the kernel may drop or write out; this process keeps only what it works on
resident.
"""
from __future__ import annotations

import mmap
import tempfile
import threading
from pathlib import Path

import numpy as np

RELEASE_BYTES = 32 << 20  # pages read from a spilled array are dropped from our resident set this often


class SpilledArray:
    """A read-only array in a file, sliced like an ndarray (rows first), each slice a copy. The pages a
    slice faults in are dropped from this process's resident set every RELEASE_BYTES of rows read into
    (MADV_DONTNEED on a file mapping: the page cache keeps them, and a later read refaults them from
    there). Rows, not bytes copied, are counted: a tile's few hundred bytes of a row fault in pages of it."""

    def __init__(self, file, shape: tuple[int, ...], dtype: np.dtype):
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self._file = file  # keeps an unlinked file alive while the array is
        self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) if np.prod(shape) else None
        self._array = (np.ndarray(self.shape, self.dtype, self._map) if self._map is not None
                       else np.zeros(self.shape, self.dtype))
        self._read, self._lock = 0, threading.Lock()
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        out = np.array(self._array[key])
        with self._lock:
            self._read += (len(out) if out.ndim == self.ndim else 1) * self._row_bytes
            if self._read >= RELEASE_BYTES and self._map is not None:
                self._map.madvise(mmap.MADV_DONTNEED)
                self._read = 0
        return out

    def bands(self, rows: int):
        """(y0, rows y0..y0 + rows) for every band, in order."""
        for y0 in range(0, self.shape[0], rows):
            yield y0, self[y0:y0 + rows]

    def close(self) -> None:
        self._array = None
        if self._map is not None:
            self._map.close()
        self._file.close()


class RowWriter:
    """Rows of a (H, ...) array appended to an anonymous temporary file (gone when closed, or when the
    process dies), then read back as a SpilledArray."""

    def __init__(self, folder: str | Path | None, row_shape: tuple[int, ...], dtype: np.dtype):
        self.row_shape, self.dtype, self.rows = tuple(row_shape), np.dtype(dtype), 0
        self._file = tempfile.TemporaryFile(dir=folder)

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, self.dtype)
        assert rows.shape[1:] == self.row_shape, (rows.shape, self.row_shape)
        self._file.write(memoryview(rows).cast("B"))
        self.rows += len(rows)

    def done(self) -> SpilledArray:
        self._file.flush()
        return SpilledArray(self._file, (self.rows, *self.row_shape), self.dtype)

    def read(self) -> np.ndarray:
        """Every row written, as one array (read, not mapped: the file's pages are not ours after), and
        the file closed."""
        self._file.flush()
        self._file.seek(0)
        size = int(np.prod(self.row_shape, dtype=np.int64))
        rows = np.fromfile(self._file, self.dtype, self.rows * size).reshape(self.rows, *self.row_shape)
        self._file.close()
        return rows


class ColumnWriter:
    """Columns of one length, each (n,) or (rows, n), appended a chunk at a time to an anonymous
    temporary file, then read back whole. Each of a chunk's rows is written as it lies and read into
    its place in the arrays made once: records of a row dtype would be transposed on the way in and
    again on the way out (for the copy search, 40% of a near-copy search's time)."""

    def __init__(self, folder: str | Path | None, columns: list[tuple[int, np.dtype]]):
        self._columns = [(rows, np.dtype(dtype)) for rows, dtype in columns]  # rows 0: a (n,) column
        self._file, self._lengths = tempfile.TemporaryFile(dir=folder), []

    def write(self, *columns: np.ndarray) -> None:
        for column, (_, dtype) in zip(columns, self._columns, strict=True):
            for row in column if column.ndim == 2 else [column]:  # a row of a slice (rows, a:b) lies in one piece
                self._file.write(memoryview(np.ascontiguousarray(row, dtype)).cast("B"))
        self._lengths.append(columns[0].shape[-1])

    def read(self) -> list[np.ndarray]:
        """Every chunk written, joined into one array a column, and the file closed."""
        n = sum(self._lengths)
        out = [np.empty((rows, n) if rows else n, dtype) for rows, dtype in self._columns]
        self._file.flush()
        self._file.seek(0)
        at = 0
        for length in self._lengths:
            for column in out:
                for row in column[:, at:at + length] if column.ndim == 2 else [column[at:at + length]]:
                    self._file.readinto(memoryview(row).cast("B"))
            at += length
        self._file.close()
        return out


def spill_array(image: np.ndarray, folder: str | Path | None = None) -> SpilledArray:
    """An in-memory array, spilled (tests, and callers that hold an image already)."""
    w = RowWriter(folder, image.shape[1:], image.dtype)
    w.write(image)
    return w.done()
