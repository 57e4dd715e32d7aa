"""`trt-localize PATH... [-o OUT] [--model DIR]`: the deployment command (no torch).

For each input NAME.ext, under OUT (sub-folders mirrored for a directory input): NAME.prob.png
(round(255 p), the input's size), NAME.mask.png (0/255), NAME.overlay.jpg, and one line in
OUT/report.jsonl. Exit status: 0 all processed, 1 some inputs failed, 2 bad usage, 3 with
--fail-on-detect when anything was detected.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..data.io import IMAGE_EXTS, MAX_PIXELS, ImageError, atomic_write, read_image, write_png
from .backends import BACKENDS
from .localizer import Localizer, LocalizeConfig, Result
from .model_dir import ModelError


@dataclass(frozen=True)
class Job:
    path: Path
    out_stem: Path  # OUT/sub/NAME: outputs are out_stem + ".prob.png" etc.


def expand_inputs(args: list[str], out: Path) -> list[Job]:
    """Files, directories (walked, sub-folders mirrored) and globs -> jobs with unique output stems.
    A path that does not exist stays a job, so that it is reported as missing."""
    jobs: list[Job] = []
    for arg in args:
        p = Path(arg)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_EXTS:
                    jobs.append(Job(f, out / f.relative_to(p).parent / f.stem))
        elif not p.exists() and any(c in arg for c in "*?["):
            jobs += [Job(Path(f), out / Path(f).stem) for f in sorted(glob.glob(arg, recursive=True))
                     if Path(f).is_file()]
        else:
            jobs.append(Job(p, out / p.stem))
    seen: dict[Path, int] = {}
    unique = []
    for job in jobs:  # photo.jpg and photo.png in one folder: keep both, apart
        n = seen.get(job.out_stem, 0)
        seen[job.out_stem] = n + 1
        unique.append(job if n == 0 else Job(job.path, job.out_stem.with_name(f"{job.out_stem.name}_{n}")))
    return unique


def overlay(image: np.ndarray, result: Result) -> np.ndarray:
    """The image with detected regions tinted red and outlined, for a person to look at."""
    out = image.astype(np.float32)
    m = result.mask
    out[m] = out[m] * 0.55 + np.array([255, 0, 0], np.float32) * 0.45
    out = out.astype(np.uint8)
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (255, 255, 0), max(1, round(max(m.shape) / 400)))
    return out


def write_outputs(job: Job, image: np.ndarray, result: Result) -> None:
    stem = job.out_stem
    write_png(stem.with_name(stem.name + ".prob.png"), np.round(result.prob * 255).astype(np.uint8))
    write_png(stem.with_name(stem.name + ".mask.png"), result.mask.astype(np.uint8) * 255)
    ok, buf = cv2.imencode(".jpg", overlay(image, result)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    atomic_write(stem.with_name(stem.name + ".overlay.jpg"), lambda p: p.write_bytes(buf.tobytes()))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trt-localize", description="Find the inpainted regions of photographs.")
    p.add_argument("paths", nargs="+", help="image files, folders (walked recursively) or globs")
    p.add_argument("-o", "--out", default="localized", help="output folder (default: ./localized)")
    p.add_argument("--model", help="exported model folder (default: the shipped edge-s)")
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument("--steps", type=int, help="denoising steps (default: the model's, 10)")
    p.add_argument("--samples", type=int, default=1, help="ensemble size; uncertainty = std across samples")
    p.add_argument("--seed", type=int, default=0, help="same seed, same output")
    p.add_argument("--threshold", type=float, default=0.5, help="probability for the binary mask")
    p.add_argument("--max-side", type=int, help="downscale images whose longer side exceeds this first")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="refuse larger images")
    p.add_argument("--batch", type=int, default=8, help="tiles per inference call")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: all cores)")
    p.add_argument("--fail-on-detect", action="store_true", help="exit 3 if anything was detected")
    p.add_argument("--quiet", action="store_true", help="only the summary (and errors)")
    p.add_argument("--json", action="store_true", help="print each report line as JSON instead of text")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not 0 <= a.threshold <= 1:
        parser.error(f"--threshold must be within [0, 1], got {a.threshold}")
    out = Path(a.out)
    cfg = LocalizeConfig(steps=a.steps, samples=a.samples, seed=a.seed, threshold=a.threshold,
                         max_side=a.max_side, batch=max(1, a.batch))
    try:
        localizer = Localizer(a.model, a.backend, cfg, a.threads)
    except (ModelError, ValueError, RuntimeError) as e:
        print(f"trt-localize: {e}", file=sys.stderr)
        return 2
    jobs = expand_inputs(a.paths, out)
    if not jobs:
        print("trt-localize: no images found in " + " ".join(a.paths), file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    partial = out / ".report.jsonl.partial"
    progress = len(jobs) > 1 and not a.quiet and not a.json and sys.stderr.isatty()
    failed = detected = 0
    start = time.perf_counter()
    with open(partial, "w") as report:
        for n, job in enumerate(jobs, 1):
            t = time.perf_counter()
            line = {"path": str(job.path), "threshold": a.threshold, "steps": localizer.steps,
                    "samples": a.samples, "backend": localizer.backend.name}
            try:
                image = read_image(job.path, a.max_pixels)
                result = localizer.localize(image)
                write_outputs(job, image, result)
                line.update(result.summary())
                detected += result.inpainted
            except (ImageError, OSError, ValueError, cv2.error) as e:
                failed += 1
                line.update({"score": None, "inpainted": None, "regions": [], "error": str(e)})
            line["elapsed_ms"] = round((time.perf_counter() - t) * 1000, 1)
            report.write(json.dumps(line) + "\n")
            report.flush()
            _print(line, a, progress)
            if progress:
                rate = n / (time.perf_counter() - start)
                print(f"\r[{n}/{len(jobs)}] {rate:.2f} img/s, ETA {(len(jobs) - n) / rate:.0f}s ",
                      end="", file=sys.stderr, flush=True)
    os.chmod(partial, 0o644)
    os.replace(partial, out / "report.jsonl")
    if progress:
        print(file=sys.stderr)
    secs = time.perf_counter() - start
    print(f"{len(jobs)} image(s) in {secs:.1f}s: {detected} with inpainted regions, {failed} failed; "
          f"outputs in {out}/", file=sys.stderr if a.json else sys.stdout)
    if failed:
        return 1
    return 3 if a.fail_on_detect and detected else 0


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
