"""`trt-localize`: the deployment command.

It runs exported ONNX/TensorRT models, which the export stage (`inpdiff export`) does not produce
yet; until it does, this command says so instead of pretending to work.
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="trt-localize", description="Localize inpainted regions in images.")
    p.add_argument("paths", nargs="*", help="image files, folders or globs")
    p.add_argument("--model", help="exported model folder (condition.onnx, denoise_step.onnx, manifest.json)")
    p.parse_args(argv)
    print("trt-localize: no exported model is available yet: the lean runtime runs the ONNX graphs that "
          "`inpdiff export` will write. Meanwhile `inpdiff eval models/edge-s DATA` localizes with PyTorch.",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
