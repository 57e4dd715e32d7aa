"""`trt-localize PATH... [-o OUT] [--model DIR]`: the deployment command (no torch).

For each input NAME.ext, under OUT (sub-folders mirrored for a directory input; see inputs.py):
NAME.prob.png (round(255 p), the input's size), NAME.mask.png (0/255), NAME.overlay.jpg (with
--samples N > 1 also NAME.uncertainty.png), and one line in OUT/report.jsonl naming them;
OUT/summary.csv at the end, and OUT/index.html, a gallery of the whole report (gallery.py). A name
another file holds is never reused (out_folder.py). Inputs stream through a pipeline (pipeline.py) and the run resumes where it
stopped (report.py). Exit status: 0 all processed, 1 some inputs failed, 2 bad usage, a bad model or
OUT in use by another run, 3 with --fail-on-detect when anything was detected, 4 no space left on
OUT (free some and run the same command again), 130 interrupted (run the same command again to resume).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

from .backends import BACKENDS, BackendSpec, uses_gpu
from .decoder_pool import DECODERS, new_pool
from .inputs import iter_jobs
from .localizer import Localizer, LocalizeConfig
from .malloc import few_arenas
from .model_dir import ModelDir, ModelError, model_path
from .gallery import Gallery
from .out_folder import OutFolder
from .outputs import OUTPUTS, report_line
from .pipeline import PipelineConfig, run_pipeline
from .report import Report, is_disk_full


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, written once where the option is declared; an option
    without one (None, or an off switch) says in its help what happens then."""

    def _get_help_string(self, action):
        quiet = action.default is None or action.default is False
        return action.help if quiet else super()._get_help_string(action)


def add_settings(p: argparse.ArgumentParser, cls, helps: dict[str, str]) -> None:
    """Options for fields of a settings dataclass, named as the fields, with the dataclass's defaults
    and types (so each default is written once, where the setting is declared)."""
    defaults = cls()
    for name, text in helps.items():
        kind = next(t for t in (int, float, str) if t.__name__ in str(cls.__dataclass_fields__[name].type))
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=getattr(defaults, name), help=text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trt-localize", description="Find the inpainted regions of photographs.",
                                formatter_class=HelpFormatter)
    p.add_argument("paths", nargs="*", help="image files, folders (walked recursively) or globs")
    p.add_argument("--list", action="append", default=[], metavar="FILE",
                   help="a file of input paths, one per line ('-': standard input); may be repeated")
    p.add_argument("-o", "--out", default="localized", help="output folder")
    p.add_argument("--model", help="exported model folder, or a shipped model's name: edge-c (the default), "
                                   "edge-c-int8-cpu (faster on CPUs with int8 dot products), edge-c-int8 and "
                                   "edge-c-fp16 (for TensorRT)")
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="auto: TensorRT where it is installed and a GPU is visible, else ONNX Runtime; "
                        "torch*: the PyTorch checkpoint (needs torch), fp16 and CUDA-graph variants on a GPU")
    p.add_argument("--engines", metavar="DIR", help="TensorRT engine folder (default: MODEL/engines)")
    p.add_argument("--build-missing", action="store_true",
                   help="TensorRT: build engines that are missing or were built for another GPU, TensorRT or ONNX")
    add_settings(p, LocalizeConfig, {
        "steps": "denoising steps (default: the model's, 10)",
        "samples": "ensemble size; above 1, NAME.uncertainty.png shows the per-pixel spread across samples: "
                   "where the model is unsure",
        "seed": "same seed, same output",
        "threshold": "probability for the binary mask (default: the model's calibrated mask threshold, else 0.5)",
        "max_side": "downscale images whose longer side exceeds this first",
        "max_tile": "largest tile side (a multiple of 32) where the model's graphs take any size (ONNX "
                    "Runtime); 0: the model's own tile (256), as TensorRT runs it",
        "flips": "1, 2, 4 or 8: also run each tile turned 180 degrees (2), mirrored top-bottom and transposed (4), "
                 "and its other mirrored and transposed views (8), and average the maps: a steadier map at up to 8x "
                 "the time, for a photo that matters (README, \"Flips\")"})
    add_settings(p, PipelineConfig, {"max_pixels": "refuse larger images",
                                     "spill_above": "PNG and JPEG photos of more pixels are decoded to a file in "
                                                    "TMPDIR and worked a band of rows at a time, in bounded memory, "
                                                    "and the photos in flight hold at most about this many pixels "
                                                    "in all (0: neither)"})
    p.add_argument("--no-copies", action="store_true",
                   help="the model's map alone, without the copy evidence (pixels that exactly repeat "
                        "pixels elsewhere in the photo, what exemplar fills leave)")
    p.add_argument("--no-near-copies", action="store_true",
                   help="the copy evidence's exact copies only, without the near copies that find re-saved "
                        "exemplar fills (faster: on a 2-core CPU they add about 0.1-0.15 s per megapixel)")
    p.add_argument("--no-html", action="store_true", help="no OUT/index.html gallery and no OUT/thumbs/")
    p.add_argument("--outputs", default="all", choices=OUTPUTS,
                   help="all: maps and overlay of every image; report: only the report, and the "
                        "probability maps of images where something was detected")
    p.add_argument("--batch", type=int, help="tiles per inference call, gathered across images "
                   "(default: 2 on the CPU, where smaller calls run faster and in less memory; 8 on a GPU)")
    p.add_argument("--workers", type=int, default=0,
                   help="inference calls in flight (default: one per CPU core, 1 on a GPU)")
    add_settings(p, PipelineConfig, {"decoders": "processes decoding images (a crash fails one file)"})
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for inference (default: all cores); on a GPU, as many copy searches at once")
    p.add_argument("--restart", action="store_true", help="discard OUT's report and start over")
    p.add_argument("--retry-failed", action="store_true", help="when resuming, try the failed inputs again")
    p.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster ('auto', 'local' or host:port); "
                   "needs the ray extra and OUT on a file system every node sees")
    p.add_argument("--fail-on-detect", action="store_true", help="exit 3 if anything was detected")
    p.add_argument("--quiet", action="store_true", help="only the summary (and errors): no progress")
    p.add_argument("--json", action="store_true", help="print each report line as JSON instead of text")
    return p


class Progress:
    """Images/s, ETA, and the tiles of the images in hand (a 12 MP photo takes half a minute on a CPU)
    on stderr: redrawn in place on a terminal, a plain line every `every` seconds elsewhere. The total
    is counted in the background, since inputs are streamed; without it (a list on stdin) only the rate
    is shown."""

    def __init__(self, enabled: bool, count: Callable[[], int] | None, terminal: bool, every: float = 10.0):
        self.enabled, self.terminal, self.every = enabled, terminal, every
        self.total, self.n, self.start = None, 0, time.perf_counter()
        self.planned = self.inferred = 0
        # Off a terminal the first line waits `every` seconds: a short run prints only its summary.
        self._shown, self._lock = (0.0 if terminal else self.start), threading.Lock()
        if enabled and count:
            threading.Thread(target=lambda: setattr(self, "total", count()), daemon=True).start()

    def tick(self) -> None:
        self.n += 1
        self._show()

    def tiles(self, planned: int, inferred: int) -> None:
        with self._lock:
            self.planned += planned
            self.inferred += inferred
        self._show()

    def _show(self) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self._shown < (0.2 if self.terminal else self.every):
            return
        self._shown = now
        rate = self.n / (now - self.start)
        text = f"[{self.n}] {rate:.2f} img/s"
        if self.total is not None:
            left = max(0, self.total - self.n)
            eta = f"{left / rate:.0f}s" if rate > 0 else "-"
            text = f"[{self.n}/{self.total}] {rate:.2f} img/s, ETA {eta}"
        if self.planned > self.inferred:
            text += f"; tiles {self.inferred}/{self.planned} of the images in hand"
        if self.terminal:
            print(f"\r{text} ", end="", file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)

    def clear(self) -> None:
        if self.enabled and self.terminal and self.n:
            print(file=sys.stderr)


# Numeric options and their smallest allowed values: anything less is a usage error (exit 2).
MINIMA = {"steps": 1, "samples": 1, "max_side": 1, "max_tile": 0, "flips": 1, "max_pixels": 1, "spill_above": 0, "batch": 1,
          "workers": 0, "decoders": 1, "threads": 0}


def main(argv: list[str] | None = None, decoders: ProcessPoolExecutor | None = None) -> int:
    """`decoders`: a pool of DECODERS decoder processes started before this module was imported (launch.py)."""
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.threshold is not None and not 0 <= a.threshold <= 1:
        parser.error(f"--threshold must be within [0, 1], got {a.threshold}")
    for name, least in MINIMA.items():
        value = getattr(a, name)
        if value is not None and value < least:
            parser.error(f"--{name.replace('_', '-')} must be at least {least}, got {value}")
    if not a.paths and not a.list:
        parser.error("give image files, folders, globs or --list FILE")
    if a.list.count("-") > 1:
        parser.error("--list - (standard input) can be given once")
    few_arenas()  # before any thread starts
    out = Path(a.out)
    cores = a.threads or os.cpu_count() or 1
    jobs = iter_jobs(a.paths, out, a.list)
    try:
        first = next(jobs, None)  # before anything is created under OUT
    except OSError as e:
        print(f"trt-localize: {e}", file=sys.stderr)
        return 2
    if first is None:
        print("trt-localize: no images found in " + " ".join(a.paths + a.list), file=sys.stderr)
        return 2
    folder = localizer = None
    if decoders and (a.ray or a.decoders != DECODERS):
        decoders.shutdown(cancel_futures=True)
        decoders = None
    # Where launch.py has not started one, a decoder process starts now, so that its start-up overlaps
    # the model's loading (0.2-0.3 s of a one-photo run otherwise spent waiting for it); run_pipeline
    # takes the pool over.
    if not a.ray:
        decoders = decoders or new_pool(max(1, a.decoders), start=True)
    try:
        backend = BackendSpec(a.backend, a.engines, a.build_missing)
        gpu = uses_gpu(a.backend)
        workers = a.workers or (1 if gpu else cores)
        # On a GPU the copy search is the CPU's whole share and needs every core; on a CPU the inference
        # workers already keep them busy, and more searches at once only cost memory (16 cores: no faster).
        threads = max(1, cores // workers)  # each inference call's
        copy_threads = cores if gpu else threads
        cfg = LocalizeConfig(steps=a.steps, samples=a.samples, seed=a.seed, threshold=a.threshold,
                             max_side=a.max_side, max_tile=a.max_tile, flips=a.flips,
                             batch=max(1, a.batch or (8 if gpu else 2)),
                             copies=not a.no_copies,
                             near_copies=not a.no_near_copies, copy_threads=copy_threads)
        localizer = None if a.ray else Localizer(a.model, backend, cfg, threads)
        model = localizer.model if localizer else _model(a.model)
        # Effective settings (a default given explicitly is the same setting), so a resume compares like with like.
        settings = {"model": model.files, "steps": localizer.steps if localizer else a.steps,
                    "samples": a.samples, "seed": a.seed,
                    "mask_threshold": localizer.mask_threshold if localizer else a.threshold,
                    "max_side": a.max_side, "max_tile": a.max_tile, "flips": a.flips,
                    "copies": not a.no_copies,
                    "near_copies": not (a.no_copies or a.no_near_copies), "outputs": a.outputs, "score": model.score}
        folder = OutFolder(out)
        report = Report(out, settings, a.restart, a.retry_failed, on_line=folder.learn)
        folder.load_claims(report.is_done, a.restart)
        if not a.restart and (crash := folder.last_crash()):
            print(f"trt-localize: {crash}", file=sys.stderr)
        gallery = None if a.no_html else Gallery(out, settings)
        thumbs_of = out if gallery and a.outputs == "all" else None
    except (ModelError, ValueError, RuntimeError, OSError) as e:
        if folder:
            folder.close()
        if localizer:
            localizer.close()
        if decoders:
            decoders.shutdown(cancel_futures=True)
        print(f"trt-localize: {e}", file=sys.stderr)
        return 2
    jobs = (folder.claim(j) for j in itertools.chain([first], jobs)
            if not report.is_done(j.path) and not folder.is_output(j.path))
    counted = None if "-" in a.list else (lambda: sum(1 for _ in iter_jobs(a.paths, out, a.list)) - report.resumed)
    progress = Progress(not a.quiet and not a.json, counted, sys.stderr.isatty())
    counts = {"done": 0, "failed": 0, "detected": 0}
    stop = threading.Event()
    disk_full: list[OSError] = []

    def write(line_of: Callable[[], dict]) -> None:
        if disk_full:
            return  # the run is stopping; this image is redone by the next run
        try:
            line = line_of()
            if not report.add(line):
                return
            if gallery:
                gallery.update()
        except OSError as e:
            if not is_disk_full(e):
                raise
            disk_full.append(e)
            stop.set()
            return
        counts["done"] += 1
        counts["failed"] += "error" in line
        counts["detected"] += bool(line.get("inpainted"))
        _print(line, a, progress.enabled and progress.terminal)
        progress.tick()

    signal.signal(signal.SIGTERM, _interrupt)  # a kill stops as cleanly as Ctrl-C
    folder.watch_crashes()
    stopped = 0  # the exit status of a run that did not finish
    try:
        if a.ray:
            from .ray_localize import run_on_ray

            run_on_ray(a.ray, jobs, a.model, backend, cfg, a.outputs, a.max_pixels, lambda line: write(lambda: line),
                       thumbs_of=thumbs_of, spill_above=a.spill_above)
        else:
            pipe = PipelineConfig(batch=cfg.batch, workers=workers, decoders=max(1, a.decoders),
                                  max_pixels=a.max_pixels, spill_above=a.spill_above)
            run_pipeline(localizer, jobs, pipe,
                         lambda done: write(lambda: report_line(done, localizer, a.outputs, thumbs_of)), stop,
                         progress.tiles, folder, decoders)
    except KeyboardInterrupt:
        stopped = 130
    except Exception as e:  # the run as a whole failed (Ray unreachable, say); what was written stays
        if is_disk_full(e) or is_disk_full(e.__cause__):
            disk_full.append(e)
        else:
            print(f"trt-localize: {e}", file=sys.stderr)
            stopped = 1
    finally:
        report.close()
        folder.close()
        progress.clear()
        if localizer:
            localizer.close()  # engines, streams and buffers go before the process does
    try:
        summary = report.write_summary()
        if gallery:
            gallery.update(force=True)
    except OSError as e:
        if not is_disk_full(e):
            raise
        disk_full.append(e)
    if disk_full:
        print(f"trt-localize: no space left on {out}/: stopped after {counts['done']} image(s) this run; "
              "the report holds only finished images. Free some space and run the same command again: it "
              "redoes what the full disk stopped", file=sys.stderr)
        return 4
    if stopped:
        print(f"trt-localize: stopped after {counts['done']} image(s) this run; run the same command again to "
              f"resume ({report.resumed + counts['done']} done in {out}/)", file=sys.stderr)
        return stopped
    secs = time.perf_counter() - progress.start
    total, failed = report.resumed + counts["done"], report.failed_before + counts["failed"]
    detected = report.detected_before + counts["detected"]
    whole = (f"; whole report: {total} image(s), {detected} with inpainted regions, {failed} failed"
             if report.resumed else "")
    print(f"{counts['done']} image(s) in {secs:.1f}s: {counts['detected']} with inpainted regions, "
          f"{counts['failed']} failed{whole}; outputs in {out}/, summary in {summary.name}"
          + (f", gallery in {out / 'index.html'}" if gallery else ""),
          file=sys.stderr if a.json else sys.stdout)
    if failed:
        return 1
    return 3 if a.fail_on_detect and detected else 0


def _model(model: str | None) -> ModelDir:
    return ModelDir.load(model_path(model))


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _print(line: dict, a: argparse.Namespace, progress: bool) -> None:
    if a.json:
        print(json.dumps(line), flush=True)
    elif "error" in line:
        print(f"\rERROR {line['error']}", file=sys.stderr, flush=True)
    elif not a.quiet:
        verdict = f"INPAINTED ({len(line['regions'])} region(s))" if line["inpainted"] else "clean"
        start = "\r" if progress else ""
        print(f"{start}{line['path']}: {verdict}, score {line['score']:.3f}, {line['elapsed_ms']:.0f} ms", flush=True)


if __name__ == "__main__":
    sys.exit(main())
