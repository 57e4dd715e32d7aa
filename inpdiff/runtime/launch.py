"""`trt-localize`'s entry point. It starts a decoder process before importing the runtime, whose
imports (numpy, OpenCV, ONNX Runtime: about 0.15 s) and model loading the process's own start-up then
overlaps: a one-photo run otherwise waits 0.2-0.3 s for it before the photo's first pixel. This
module and decoder_pool import the standard library only, so that the decoder process, which imports
the entry point's module again (spawn), starts as fast."""
from __future__ import annotations

import sys

from ..numpy_sort import prefer_avx2_sort
from .decoder_pool import DECODERS, new_pool


def main(argv: list[str] | None = None) -> int:
    prefer_avx2_sort()
    args = sys.argv[1:] if argv is None else argv
    # --help needs no decoder, and would wait for one to start before it could exit.
    decoders = None if {"-h", "--help"} & set(args) else new_pool(DECODERS, start=True)
    try:
        from .cli import main as run

        return run(args, decoders)
    finally:
        if decoders:  # where the run did not take it over (bad usage, say); idempotent
            decoders.shutdown(cancel_futures=True)


if __name__ == "__main__":
    sys.exit(main())
