"""What the copy evidence costs: `trt-localize` and `trt-localize-cpp` with and without `--no-copies`,
side by side in one run, from process start to written outputs (best of --repeat), with peak RSS
(GNU time's %M).

The photos are mosaics of the SUN-Hays photos at their own texture (an upscaled photo is smooth and
would hide the cost: the evidence hashes textured blocks only), 2048x2048 (4 MP), 4000x3000 (12 MP)
and 8000x6000 (48 MP). Run from the repository root, after cpp/test.sh for the C++ rows:
python benchmarks/copy_evidence.py [--sizes 4,12,48] [--repeat 2] [--model models/edge-c]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos" / "sun-hays80"
CPP = ROOT / "build" / "cpp" / "trt-localize-cpp"
SIZES = {4: (2048, 2048), 12: (3000, 4000), 48: (6000, 8000)}


def mosaic(h: int, w: int) -> np.ndarray:
    tiles = [cv2.resize(cv2.imread(str(p)), (1000, 1000), interpolation=cv2.INTER_AREA)
             for p in sorted(PHOTOS.glob("*.jpg"))[:48]]
    rows = [np.hstack(tiles[i * 8:(i + 1) * 8]) for i in range(6)]
    return np.vstack(rows)[:h, :w]


def timed(command: list[str], repeat: int) -> tuple[float, float]:
    best, rss = float("inf"), 0.0
    for _ in range(repeat):
        r = subprocess.run(["/usr/bin/time", "-f", "%e %M", *command], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        seconds, kb = r.stderr.strip().splitlines()[-1].split()
        best, rss = min(best, float(seconds)), max(rss, int(kb) / 1024)
    return best, rss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="4,12,48", help="megapixels, of 4, 12, 48")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--model", default=str(ROOT / "models" / "edge-c"))
    p.add_argument("--max-tile", help="passed to both commands (0: 256-pixel tiles, as before larger tiles)")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp())
    commands = {"trt-localize (Python)": [sys.executable, "-m", "inpdiff.runtime.launch", "--no-html"]}
    if CPP.is_file():
        commands["trt-localize-cpp (C++)"] = [str(CPP)]
    print("| photo | command | with copy evidence | `--no-copies` | added |\n|---|---|---|---|---|")
    for mp in (int(s) for s in a.sizes.split(",")):
        photo = work / f"mosaic_{mp}mp.png"
        cv2.imwrite(str(photo), mosaic(*SIZES[mp]))
        for name, command in commands.items():
            row = []
            for extra in ([], ["--no-copies"]):
                tiles = ["--max-tile", a.max_tile] if a.max_tile is not None else []
                row.append(timed([*command, str(photo), "-o", str(work / "out"), "--quiet", "--restart",
                                  "--model", a.model, *tiles, *extra], a.repeat))
            (t1, m1), (t0, m0) = row
            h, w = SIZES[mp]
            print(f"| {w}x{h} | {name} | {t1:.2f} s ({t1 / (h * w / 1e6):.2f} s/MP), {m1:.0f} MB | {t0:.2f} s, {m0:.0f} MB | "
                  f"{t1 - t0:+.2f} s, {m1 - m0:+.0f} MB |")


if __name__ == "__main__":
    main()
