"""Image decoding in worker processes, so that a file that crashes a codec fails alone.

Forensic inputs are untrusted: a crafted or damaged file can crash an image library outright (a
segfault, not an exception), which in a thread would end the whole run, and the same file would end
the resumed run again. Decoding in processes turns that into one failed input. When a decoder
process dies, every decode in flight fails with it; each of those is then retried alone in a
process of its own, so the innocent ones still decode and only the culprit is reported.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable

import numpy as np

from ..io import ImageError, read_image

Decode = Callable[[Path, int], np.ndarray]  # (path, max_pixels) -> RGB uint8; picklable (top level)


def _init_decoder(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle

    # A parent killed outright (SIGKILL) cannot shut the pool down: the decoder notices that it was
    # orphaned and exits, so no process outlives the run. (PR_SET_PDEATHSIG would fire when the
    # parent *thread* that started this process ends, which the pool's threads do.)
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


class IsolatedDecoder:
    def __init__(self, processes: int, max_pixels: int, decode: Decode = read_image):
        self.processes, self.max_pixels, self.decode = processes, max_pixels, decode
        self._lock = threading.Lock()
        self._pool = self._new_pool(processes)

    def _new_pool(self, n: int) -> ProcessPoolExecutor:
        # spawn, not fork: the parent runs ONNX Runtime's threads, which a fork would copy mid-flight.
        return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"), initializer=_init_decoder,
                                   initargs=(os.getpid(),))

    def submit(self, path: Path) -> Future:
        pool = self._pool
        try:
            future = pool.submit(self.decode, path, self.max_pixels)
        except BrokenProcessPool:
            pool = self._replace(pool)
            future = pool.submit(self.decode, path, self.max_pixels)
        future.pool = pool  # the pool to replace if this decode finds it broken
        return future

    def result(self, path: Path, future: Future) -> np.ndarray:
        try:
            return future.result()
        except BrokenProcessPool:
            self._replace(future.pool)
        with self._new_pool(1) as alone:  # which file was it? this one, alone
            try:
                return alone.submit(self.decode, path, self.max_pixels).result()
            except BrokenProcessPool:
                raise ImageError(f"{path}: the image decoder crashed on this file (damaged or hostile data)") from None

    def _replace(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is broken:
                broken.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool(self.processes)
            return self._pool

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
