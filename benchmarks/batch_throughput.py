"""Batch throughput of `trt-localize` (prints Markdown tables).

1. Images per second on N photos of 512x512: a plain loop over `Localizer.localize` (read, localize,
   write the three outputs; ONNX Runtime with all cores) against the batch pipeline (decoder
   processes, tiles batched across images, one single-threaded backend call per core, background writer),
   side by side in one run, with the same outputs written, and `trt-localize-cpp` on the same folder
   from process start where it is built (photos side by side, one per core). Their maps are checked equal.
2. Peak RSS of `trt-localize --list` over 1,000 and 10,000 inputs (links to a few small photos),
   to show that memory does not grow with the number of inputs. This part runs 1 step per image
   with --outputs report: memory does not depend on either, and it keeps the run to minutes.

Run from the repository root: python benchmarks/batch_throughput.py [--images 200] [--photos DIR]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inpdiff.io import list_images, read_image  # noqa: E402
from inpdiff.runtime.outputs import write_outputs  # noqa: E402
from inpdiff.runtime.inputs import iter_jobs  # noqa: E402
from inpdiff.runtime.localizer import Localizer  # noqa: E402
from inpdiff.runtime.pipeline import PipelineConfig, run_pipeline  # noqa: E402

from cpu_bench import PEAK_RSS_CHILD  # noqa: E402  (this folder is on sys.path when run as a script)

PHOTOS = ROOT.parent / "shared" / "data" / "photos" / "bsds300"


def make_inputs(photos: Path, n: int, size: int, folder: Path) -> list[Path]:
    sources = list_images(photos / "val") + list_images(photos / "train")
    if not sources:
        sys.exit(f"no photos under {photos}; pass --photos DIR")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = cv2.resize(cv2.imread(str(sources[i % len(sources)])), (size, size), interpolation=cv2.INTER_AREA)
        paths.append(folder / f"{i:05d}.jpg")
        cv2.imwrite(str(paths[-1]), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return paths


def plain_loop(model: Path, paths: list[Path], out: Path) -> float:
    loc = Localizer(model)
    t = time.perf_counter()
    for job in iter_jobs([str(p) for p in paths], out):
        image = read_image(job.path)
        write_outputs(job, image, loc.localize(image))
    return time.perf_counter() - t


def pipeline(model: Path, paths: list[Path], out: Path) -> float:
    cores = os.cpu_count() or 1
    loc = Localizer(model, threads=1)
    t = time.perf_counter()
    run_pipeline(loc, iter_jobs([str(p) for p in paths], out), PipelineConfig(batch=2, workers=cores),
                 lambda d: write_outputs(d.job, d.image, d.result))
    return time.perf_counter() - t


def peak_rss_mb(list_file: Path, out: Path, model: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of trt-localize over a list; the child reports its own VmHWM."""
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", PEAK_RSS_CHILD, "--list", str(list_file), "-o", str(out), "--quiet",
                        "--model", str(model), "--steps", "1", "--outputs", "report", "--restart"],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    return time.perf_counter() - t, int(r.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models" / "edge-c"), help="model folder")
    ap.add_argument("--photos", default=str(PHOTOS), help="folder of photos to localize")
    ap.add_argument("--images", type=int, default=200, help="how many images (the photos repeated)")
    ap.add_argument("--many", default="1000,10000", help="input counts for the memory table")
    ap.add_argument("--cpp", default=str(ROOT / "build" / "cpp" / "trt-localize-cpp"),
                    help="the C++ command, timed on the same images (skipped where it is not built)")
    a = ap.parse_args()
    model, tmp = Path(a.model), Path(tempfile.mkdtemp(prefix="inpdiff-batch-"))
    print(f"machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), model {model.name}, "
          f"10 steps, 1 sample, {a.images} JPEG images of 512x512\n")

    paths = make_inputs(Path(a.photos), a.images, 512, tmp / "in")
    plain_s = plain_loop(model, paths, tmp / "plain")
    pipe_s = pipeline(model, paths, tmp / "pipe")
    runs = ["pipe"]
    cpp = Path(a.cpp)
    if cpp.is_file():  # the whole command, from process start: photos side by side, one per core
        t = time.perf_counter()
        subprocess.run([str(cpp), str(tmp / "in"), "-o", str(tmp / "cpp"), "--quiet", "--model", str(model)], check=True,
                       capture_output=True)
        cpp_s = time.perf_counter() - t
        runs.append("cpp")
    diff = max(np.abs(cv2.imread(str(p), 0).astype(int) - cv2.imread(str(tmp / run / p.name), 0)).max()
               for p in (tmp / "plain").glob("*.prob.png") for run in runs)
    print("| run | seconds | images/s | speed-up |\n|---|---|---|---|")
    print(f"| plain loop over Localizer.localize | {plain_s:.1f} | {a.images / plain_s:.2f} | 1.0x |")
    print(f"| batch pipeline ({os.cpu_count()} workers) | {pipe_s:.1f} | {a.images / pipe_s:.2f} | "
          f"{plain_s / pipe_s:.2f}x |")
    if "cpp" in runs:
        print(f"| `trt-localize-cpp` on the folder, start to end | {cpp_s:.1f} | {a.images / cpp_s:.2f} | "
              f"{plain_s / cpp_s:.2f}x |")
    print(f"\nlargest difference between the plain loop's probability maps and the others': {diff} grey levels "
          "(of 255)\n")

    small = make_inputs(Path(a.photos), 4, 256, tmp / "small")
    print("| inputs (links to 4 photos of 256x256) | seconds | images/s | peak RSS |\n|---|---|---|---|")
    for n in (int(v) for v in a.many.split(",")):
        links = tmp / f"links{n}"
        links.mkdir()
        with open(tmp / f"list{n}.txt", "w") as f:
            for i in range(n):
                (links / f"{i:06d}.jpg").symlink_to(small[i % len(small)])
                f.write(f"{links / f'{i:06d}.jpg'}\n")
        secs, rss = peak_rss_mb(tmp / f"list{n}.txt", tmp / f"out{n}", model)
        print(f"| {n} | {secs:.0f} | {n / secs:.1f} | {rss:.0f} MB |")


if __name__ == "__main__":
    main()
