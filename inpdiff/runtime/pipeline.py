"""The batch pipeline: decode, infer and write overlap, with bounded queues between them.

    jobs --> decoder processes --(prefetch images)--> tiler --(tile batches)--> inference workers
         --(images whose tiles are all in)--> assemblers (copy evidence, score) --> writer thread (outputs, report)

The tiler cuts every image into tiles and batches tiles across images, so each backend call is
full; when no decoded image is waiting it splits what it holds evenly over the workers instead,
so a single image, or a slow trickle of them, is not left waiting for a batch to fill. Tiles carry
their own noise (keyed to their position), so results equal `Localizer.localize` image by image.
With the copy evidence on, an image is assembled on a thread of its own, not the inference worker's:
assembly waits for the image's copy search, and a GPU backend's one worker would otherwise sit idle
meanwhile. Without it there is nothing to wait for, and handing over cost more than it saved.

Every queue is bounded, so memory does not grow with the number of inputs, and photos are admitted by
their pixels (`_PixelBudget`), so a batch of large photos is held about as one of them is. A failure in any stage
(unreadable file, backend error, full disk) fails that image only; the run goes on. Setting `stop`
(Ctrl-C) finishes the backend calls in flight, writes the images that completed and drops the rest.
"""
from __future__ import annotations

import contextlib
import functools
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np

from ..io import MAX_PIXELS, ImageError, image_pixels, read_image
from ..near_copies import Stopped
from .decoder_pool import DECODERS
from .decoding import Decode, IsolatedDecoder, Spill, decode_or_spill
from .inputs import Job
from .localizer import Localizer, Plan, Result

_END = object()      # closes a queue
_WAITING = object()  # no decoded image is ready yet


@dataclass
class PipelineConfig:
    batch: int = 8                 # tiles per backend call, gathered across images
    workers: int = 1               # threads calling the backend at once
    decoders: int = DECODERS       # processes decoding images (see decoding.py)
    prefetch: int = 8              # decoded images waiting for inference at most
    max_pixels: int = MAX_PIXELS
    # Pixels: larger photos are worked a band of rows at a time (inpdiff.spill), and the photos in flight
    # hold at most about this many pixels in all (_PixelBudget); 0: neither.
    spill_above: int = 16_000_000
    decode: Decode = read_image    # (path, max_pixels) -> RGB uint8, a top-level function


@dataclass
class Done:
    """One input, finished: a result (with the image, for the overlay) or an error message."""
    job: Job
    image: np.ndarray | None = None
    result: Result | None = None
    error: str | None = None
    elapsed_ms: float = 0.0


class _Pending:
    """An image whose tiles are in flight. Each tile's map is blended into the image's accumulator as
    soon as every tile before it in plan order is (so the sums do not depend on which worker finished
    first), and freed: a 48 MP photo's maps, 250 MB, are never held together. The last worker to
    finish a tile assembles the image."""

    def __init__(self, job: Job, plan: Plan, started: float, acc: np.ndarray):
        self.job, self.plan, self.started, self.acc = job, plan, started, acc
        self.early: dict[int, np.ndarray] = {}  # maps that came before an earlier tile's
        self.blended = 0
        self.remaining = len(plan.origins)
        self.error: str | None = None
        self.lock = threading.Lock()

    def add(self, localizer: Localizer, i: int, m: np.ndarray | None, error: str | None) -> bool:
        """Tile i's map (None where its batch failed) -> whether it was the image's last tile."""
        with self.lock:
            self.error = self.error or error
            if not self.error:
                self.early[i] = m
                while self.blended in self.early:
                    localizer.blend(self.plan, self.acc, self.blended, self.early.pop(self.blended))
                    self.blended += 1
            self.remaining -= 1
            return self.remaining == 0


class CrashNotes(Protocol):
    """What a crash of the run leaves behind, and what the last one left (OutFolder keeps them)."""

    def in_flight(self, paths: list[str]) -> None: ...     # the photos in the run's hands now
    def refuse(self, path: Path) -> str | None: ...        # an error line instead of working it
    def alone(self, path: Path) -> bool: ...               # to be worked with no other photo in flight


class _PixelBudget:
    """Admits photos to the pipeline while those in flight (admitted, not yet written) hold at most
    `limit` pixels in all, so that five 12 MP photos are not held at once where one fits the memory a
    run is meant to stay in. A photo counts its pixels, at most `limit` (a spilled photo is worked in
    about that photo's memory); one over what is left waits, except that a photo is always admitted
    when nothing else is in flight. 0: no limit. A photo admitted `alone` waits for an empty pipeline
    and keeps it to itself. `on_change` hears the paths in flight as they change."""

    def __init__(self, limit: int, on_change: Callable[[list[str]], None] = lambda paths: None):
        self.limit, self.held, self.total, self.closed = limit, {}, 0, False
        self.lone = None  # the job admitted alone, while it is in flight
        self.on_change = on_change
        self.cond = threading.Condition()

    def admit(self, job: Job, pixels: int, alone: bool = False) -> None:
        """Waits for room for `pixels` (0 where the header did not say: see `correct`)."""
        n = min(pixels, self.limit) if self.limit else 0
        with self.cond:
            self.cond.wait_for(lambda: self.closed or not self.held or (
                not alone and self.lone is None and (not self.limit or self.total + n <= self.limit)))
            self.held[id(job)] = (n, str(job.path))
            self.total += n
            self.lone = id(job) if alone else self.lone
            self.on_change([path for _, path in self.held.values()])

    def correct(self, job: Job, pixels: int) -> None:
        """The decoded size of an admitted photo, which its header may not have given (TIFF, WebP)."""
        with self.cond:
            if id(job) in self.held and self.limit:
                n, path = self.held[id(job)]
                self.total += min(pixels, self.limit) - n
                self.held[id(job)] = (min(pixels, self.limit), path)

    def release(self, job: Job) -> None:
        with self.cond:
            if id(job) not in self.held:
                return
            self.total -= self.held.pop(id(job))[0]
            self.lone = None if self.lone == id(job) else self.lone
            self.on_change([path for _, path in self.held.values()])
            self.cond.notify_all()

    def close(self) -> None:
        """Lets a waiting admission through: the run is ending."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()


def run_pipeline(localizer: Localizer, jobs: Iterable[Job], cfg: PipelineConfig,
                 write: Callable[[Done], None], stop: threading.Event | None = None,
                 on_tiles: Callable[[int, int], None] | None = None, crashes: CrashNotes | None = None,
                 decoders: ProcessPoolExecutor | None = None) -> None:
    """Localize every job; `write` is called once per job, from one writer thread, in completion order.
    `on_tiles(planned, inferred)` hears of tiles as images are cut up and as batches finish (progress);
    `crashes` keeps the photos in flight for a crash to leave behind, and says what the last one left;
    `decoders`, a pool started early (decoder_pool.new_pool), is the pipeline's to use and shut down."""
    stop = stop or threading.Event()
    on_tiles = on_tiles or (lambda planned, inferred: None)
    decoded: queue.Queue = queue.Queue(cfg.prefetch)
    batches: queue.Queue = queue.Queue(2 * cfg.workers)
    complete: queue.Queue = queue.Queue(cfg.workers)  # images whose tiles are all in, to assemble
    finished: queue.Queue = queue.Queue(cfg.prefetch)
    input_errors: list[Exception] = []
    budget = _PixelBudget(cfg.spill_above, crashes.in_flight if crashes else lambda paths: None)

    def feed() -> None:
        try:
            for job in jobs:
                if crashes and (error := crashes.refuse(job.path)):
                    finished.put(Done(job, error=error))
                    continue
                budget.admit(job, (image_pixels(job.path) or 0) if budget.limit else 0,
                             alone=bool(crashes and crashes.alone(job.path)))
                if stop.is_set():
                    break
                decoded.put((job, time.perf_counter(), decoder.submit(job.path)))
        except Exception as e:  # an unreadable list file, say: finish what was read, then fail the run
            input_errors.append(e)
        finally:
            decoded.put(_END)

    def infer() -> None:
        while (chunk := batches.get()) is not _END:
            if stop.is_set():
                continue  # drain without running
            try:
                tiles = np.stack([p.plan.tile(i) for p, i in chunk])
                maps = localizer.infer(tiles, [p.plan.origins[i] for p, i in chunk])
                error = None
            except Exception as e:
                maps, error = [None] * len(chunk), f"inference failed: {type(e).__name__}: {e}"
            on_tiles(0, len(chunk))
            for (p, i), m in zip(chunk, maps):
                if p.add(localizer, i, m, error):
                    if assemblers:
                        complete.put(p)
                    else:
                        _assemble(localizer, p, finished)

    def assemble() -> None:
        while (p := complete.get()) is not _END:
            _assemble(localizer, p, finished)

    def writer() -> None:
        while (done := finished.get()) is not _END:
            try:
                write(done)
            except Exception:  # a bug in the writer must not stall the pipeline
                print(f"trt-localize: writing {done.job.path} failed:\n{traceback.format_exc()}", file=sys.stderr)
            job, done = done.job, None  # the photo and its maps go before the next photo is admitted
            budget.release(job)

    write_thread = threading.Thread(target=writer, name="writer", daemon=True)
    workers = [threading.Thread(target=infer, name=f"infer{i}", daemon=True) for i in range(cfg.workers)]
    assemblers = [threading.Thread(target=assemble, name=f"assemble{i}", daemon=True)
                  for i in range(cfg.workers if localizer.config.copies else 0)]
    for t in [write_thread, *assemblers, *workers]:
        t.start()
    spills, decode = _spill_folder(), cfg.decode
    if cfg.spill_above and decode is read_image and not localizer.config.max_side:  # max_side makes them small
        decode = functools.partial(decode_or_spill, spill_above=cfg.spill_above, folder=spills)
    decoder = IsolatedDecoder(cfg.decoders, cfg.max_pixels, decode, decoders, spills)
    feeder = threading.Thread(target=feed, name="feeder", daemon=True)
    feeder.start()
    try:
        _tile(localizer, cfg, decoder, budget, decoded, batches, finished, stop, on_tiles)
    except BaseException:  # Ctrl-C: stop every stage, keep what completed
        stop.set()
        raise
    finally:
        with _interrupts_deferred(stop):
            for _ in workers:
                batches.put(_END)
            for t in workers:
                t.join()
            for _ in assemblers:
                complete.put(_END)
            for t in assemblers:
                t.join()
            finished.put(_END)
            write_thread.join()
            budget.close()
            while feeder.is_alive():  # unblock a feeder waiting on a full queue
                try:
                    decoded.get_nowait()
                except queue.Empty:
                    feeder.join(0.05)
            decoder.close()
            shutil.rmtree(spills, ignore_errors=True)  # photos decoded but never opened (a stopped run)
    if input_errors:
        raise RuntimeError(f"reading the inputs failed: {input_errors[0]}") from input_errors[0]


@contextlib.contextmanager
def _interrupts_deferred(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C or SIGTERM while the stages shut down hurries them (`stop`) and is raised as
    KeyboardInterrupt once they are all joined. Raised in the middle, it left threads inside ONNX
    Runtime as the sessions were freed (an abort, exit -6) and the writer writing to a closed report."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread takes signals
        yield
        return
    caught: list[int] = []

    def defer(signum, frame) -> None:
        stop.set()
        caught.append(signum)

    previous = {s: signal.signal(s, defer) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            if handler is not None:  # None: a handler set outside Python, which cannot be put back
                signal.signal(s, handler)
    if caught:
        raise KeyboardInterrupt


def _spill_folder() -> str:
    """A new folder in TMPDIR for the run's photo files: photos come back from the decoders through
    files there (decoding.Handover), and photos above spill_above are worked from files there
    (inpdiff.spill). It is named for this process, and the folders of runs whose process is gone (a
    kill -9 cannot clean up) are removed first."""
    for old in Path(tempfile.gettempdir()).glob("inpdiff-spill-*-*"):
        pid = old.name.split("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"inpdiff-spill-{os.getpid()}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        pass
    return True


def _tile(localizer: Localizer, cfg: PipelineConfig, decoder: IsolatedDecoder, budget: _PixelBudget,
          decoded: queue.Queue, batches: queue.Queue, finished: queue.Queue, stop: threading.Event,
          on_tiles: Callable[[int, int], None]) -> None:
    """The tiler (runs in the calling thread, so Ctrl-C reaches it): images -> batches of tiles of one
    shape. Full batches while more images are waiting; otherwise what is held is sent at once, so the
    last image, or a lone one, is not kept waiting for a batch to fill."""
    held: dict[tuple[int, int], list[tuple[_Pending, int]]] = {}  # by tile shape: a call takes one
    item = decoded.get()
    while item is not _END and not stop.is_set():
        for tile in _cut(localizer, decoder, budget, *item, finished, stop, on_tiles):
            held.setdefault(tile[0].plan.shape, []).append(tile)
        try:
            item = decoded.get_nowait()
        except queue.Empty:
            item = _WAITING
        for shape, tiles in held.items():
            batch = localizer.batch(shape, cfg.batch)
            if item is _WAITING or item is _END:
                # Spread what is held over the workers, in calls of at most a batch, so that a lone large
                # image keeps every worker busy and its progress shows tile by tile.
                batch = max(1, min(batch, -(-len(tiles) // cfg.workers)))
                for k in range(0, len(tiles), batch):
                    batches.put(tiles[k:k + batch])
                tiles.clear()
            else:
                while len(tiles) >= batch:
                    batches.put(tiles[:batch])
                    del tiles[:batch]
        held = {shape: tiles for shape, tiles in held.items() if tiles}
        if item is _WAITING:
            item = decoded.get()


def _cut(localizer: Localizer, decoder: IsolatedDecoder, budget: _PixelBudget, job: Job, started: float,
         future, finished: queue.Queue, stop: threading.Event,
         on_tiles: Callable[[int, int], None]) -> list[tuple[_Pending, int]]:
    """One decoded image -> its tiles, to infer (none where it failed, which goes to the writer). A
    function of its own so that the tiler keeps no reference to the image once its tiles are sent."""
    try:
        image = decoder.result(job.path, future)
        budget.correct(job, image.shape[0] * image.shape[1])
        plan = localizer.start_copies(localizer.plan(image.open() if isinstance(image, Spill) else image), stop)
        pending = _Pending(job, plan, started, localizer.accumulator(plan))
        on_tiles(len(plan.origins), 0)
        return [(pending, i) for i in range(len(plan.origins))]
    except Exception as e:
        finished.put(Done(job, error=error_message(job, e), elapsed_ms=_ms(started)))
        return []


def _assemble(localizer: Localizer, p: _Pending, finished: queue.Queue) -> None:
    """The image's Done onto `finished`; nothing where the run stopped its copy search, so that the next
    run redoes it. No reference to it stays here: the photo goes as soon as it is written."""
    # Taken out of the pending image, which other threads may still refer to (their last batch).
    plan, acc, p.plan, p.acc = p.plan, p.acc, None, None
    if p.error:
        done = Done(p.job, error=f"{p.job.path}: {p.error}", elapsed_ms=_ms(p.started))
    else:
        try:
            done = Done(p.job, plan.image, localizer.finish(plan, acc), elapsed_ms=_ms(p.started))
        except Stopped:
            return
        except Exception as e:
            done = Done(p.job, error=error_message(p.job, e), elapsed_ms=_ms(p.started))
    finished.put(done)


def error_message(job: Job, e: Exception) -> str:
    """An input's failure as a report line says it: ImageErrors name the file already."""
    return str(e) if isinstance(e, ImageError) else f"{job.path}: {type(e).__name__}: {e}"


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
