"""The pool of decoder processes (decoding.py says why decoding runs in processes). Kept apart from
decoding itself so that it imports the standard library only: `trt-localize` starts a decoder process
first thing (launch.py), before importing the runtime."""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from .malloc import few_arenas

DECODERS = 2  # processes, by default


def _init_decoder(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    few_arenas()

    # A parent killed outright (SIGKILL) cannot shut the pool down: the decoder notices that it was
    # orphaned and exits, so no process outlives the run. (PR_SET_PDEATHSIG would fire when the
    # parent *thread* that started this process ends, which the pool's threads do.)
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()
    import cv2  # noqa: F401  (the decoder's libraries now, not when the first photo comes)
    import numpy  # noqa: F401


def _ready() -> None:
    """Nothing: submitted to a new pool, it makes the pool start a process at once."""


def new_pool(processes: int, start: bool = False) -> ProcessPoolExecutor:
    """A pool of `processes` decoder processes. start=True starts one now rather than at the first photo,
    so that its start-up (about 0.2 s) overlaps the parent's."""
    # spawn, not fork: the parent runs ONNX Runtime's threads, which a fork would copy mid-flight.
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"), initializer=_init_decoder,
                               initargs=(os.getpid(),))
    if start:
        pool.submit(_ready)
    return pool
