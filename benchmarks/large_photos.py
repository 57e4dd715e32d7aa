"""Memory and time of `trt-localize` on large photos, from process start to written outputs.

For each size, a JPEG mosaic of distinct SUN-Hays photos (a tiled copy of one photo would be all
copies, which the copy evidence then works hardest on), run in a fresh process:
- seconds, and seconds per megapixel;
- the peak of the summed resident memory of the whole process tree (the decoder processes too),
  sampled every 20 ms from /proc, and the main process's own peak (VmHWM), which GNU time reports.

    python benchmarks/large_photos.py                      # 1, 4, 12, 48 and 99 MP, as shipped
    python benchmarks/large_photos.py --spill-above 0 ...  # every photo held whole, as before spilling
    python benchmarks/large_photos.py --command build/cpp/trt-localize-cpp   # the C++ runtime
    python benchmarks/large_photos.py --sizes 99 --png     # PNG mosaics (decoded by libpng or libvips)
    python benchmarks/large_photos.py --sizes 12,48 --count 3  # three photos of each size in one run (a batch)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos" / "sun-hays80"
SIZES = {1: (1155, 866, 1), 4: (2048, 2048, 2), 12: (4000, 3000, 4), 16: (4600, 3450, 4), 48: (8000, 6000, 8), 99: (11500, 8600, 8)}  # w, h, photos per side


def mosaic(w: int, h: int, n: int, first: int = 0) -> np.ndarray:
    """n x n photos from the `first`th on (wrapping), so mosaics of different `first` differ."""
    photos = sorted(PHOTOS.glob("*.jpg"))
    photos = [photos[(first + k) % len(photos)] for k in range(n * n)]
    cw, ch = -(-w // n), -(-h // n)
    out = np.zeros((h, w, 3), np.uint8)
    for k, p in enumerate(photos):
        y, x = (k // n) * ch, (k % n) * cw
        tile = cv2.resize(cv2.imread(str(p)), (cw, ch), interpolation=cv2.INTER_AREA)
        out[y:y + ch, x:x + cw] = tile[:h - y, :w - x]
    return out


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                ppid = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(p))
    return kids


def _status(pid: int, field: str) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def run(cmd: list[str]) -> tuple[float, int, int]:
    """(seconds, peak MB of the process tree's summed RSS, peak MB of the main process)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    tree_peak = main_peak = 0
    while proc.poll() is None:
        kids, todo, pids = _children(), [proc.pid], []
        while todo:
            pids.append(todo.pop())
            todo += kids.get(pids[-1], [])
        tree_peak = max(tree_peak, sum(_status(p, "VmRSS") for p in pids))
        main_peak = max(main_peak, _status(proc.pid, "VmHWM"))
        time.sleep(0.02)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed with {proc.returncode}")
    return time.perf_counter() - t0, tree_peak, main_peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,4,12,48,99", help=f"megapixels, of {sorted(SIZES)}")
    ap.add_argument("--spill-above", help="passed to trt-localize (0: hold every photo whole)")
    ap.add_argument("--no-copies", action="store_true", help="passed to trt-localize")
    ap.add_argument("--max-tile", help="passed to trt-localize (0: 256-pixel tiles, as before larger tiles)")
    ap.add_argument("--command", default="trt-localize", help="the command to run")
    ap.add_argument("--count", type=int, default=1, help="distinct photos of each size, localized in one run")
    ap.add_argument("--png", action="store_true", help="PNG mosaics (zlib level 1) instead of JPEG (quality 92)")
    a = ap.parse_args()
    extra = ((["--spill-above", a.spill_above] if a.spill_above is not None else []) + (["--no-copies"] if a.no_copies else [])
             + (["--max-tile", a.max_tile] if a.max_tile is not None else []))
    print("| photo | photos | megapixels | seconds | s/MP | peak RSS, process tree | peak RSS, main process |\n"
          "|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for mp in (int(s) for s in a.sizes.split(",")):
            w, h, n = SIZES[mp]
            photos = Path(tmp) / f"{mp}mp"
            photos.mkdir()
            ext, params = (".png", [cv2.IMWRITE_PNG_COMPRESSION, 1]) if a.png else (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 92])
            for k in range(a.count):
                cv2.imwrite(str(photos / f"mosaic-{k}{ext}"), mosaic(w, h, n, 7 * k), params)
            inputs = [str(photos / f"mosaic-0{ext}")] if a.count == 1 else [str(photos)]
            secs, tree, main_ = run([a.command, *inputs, "-o", str(Path(tmp) / f"out-{mp}"), "--quiet", *extra])
            mpx = a.count * w * h / 1e6
            print(f"| {w}x{h} | {a.count} | {mpx:.1f} | {secs:.1f} | {secs / mpx:.2f} | {tree} MB | {main_} MB |",
                  flush=True)


if __name__ == "__main__":
    main()
