"""How long a stopped run takes to exit: Ctrl-C (SIGINT) a few seconds into a large photo, timed from the
signal to the exit, with the exit status. A photo in flight is given up at its next batch of tiles or
band of the copy search, so this should stay well under a second whatever the photo's size.

    python benchmarks/stop_latency.py                               # 48 MP mosaic, SIGINT 4, 10 and 16 s in
    python benchmarks/stop_latency.py --sizes 12 --after 2,4
    python benchmarks/stop_latency.py --command build/cpp/trt-localize-cpp   # the C++ runtime
    python benchmarks/stop_latency.py --extra=--no-copies           # options for the command
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import cv2

from large_photos import SIZES, mosaic


def stop_after(command: list[str], photo: Path, out: Path, delay: float) -> tuple[str, float]:
    """(exit status, seconds from SIGINT to exit) of `command photo -o out` interrupted `delay` s in."""
    proc = subprocess.Popen([*command, str(photo), "-o", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(delay)
    if proc.poll() is not None:
        return f"finished first ({proc.returncode})", 0.0
    t = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    try:
        status = str(proc.wait(300))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        status = "hung (killed after 300 s)"
    return status, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="48", help="megapixels, comma-separated (of: %s)" % ",".join(map(str, SIZES)))
    ap.add_argument("--after", default="4,10,16", help="seconds into the run to send SIGINT, comma-separated")
    ap.add_argument("--command", default="trt-localize")
    ap.add_argument("--extra", default="", help="more options for the command, as one string")
    a = ap.parse_args()
    command = [a.command, *shlex.split(a.extra)]
    print("| photo | SIGINT after | exit status | seconds to exit |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for mp in map(int, a.sizes.split(",")):
            w, h, n = SIZES[mp]
            photo = Path(tmp) / f"mosaic{mp}.jpg"
            cv2.imwrite(str(photo), mosaic(w, h, n), [cv2.IMWRITE_JPEG_QUALITY, 92])
            for i, delay in enumerate(float(d) for d in a.after.split(",")):
                status, took = stop_after(command, photo, Path(tmp) / f"out{mp}-{i}", delay)
                print(f"| {mp} MP | {delay:g} s | {status} | {took:.2f} |", flush=True)


if __name__ == "__main__":
    main()
