"""`inpdiff` with the ACN's high-pass front end in bfloat16, as GPU training under AMP ran it before
the front end was kept in fp32: an A/B of what those rounded residuals cost a trained model.

    python benchmarks/frontend_bf16.py bf16 train --config edge-c -o runs/fe-bf16 --set ...
    python benchmarks/frontend_bf16.py fp32 train --config edge-c -o runs/fe-fp32 --set ...

The README's A/B ("A front end in bfloat16" in "Real-world fills") ran both arms side by side, one core
each (`OMP_NUM_THREADS=1 taskset -c 0|1`), with `--set data.train_dir=cache/synth/train-a2
data.val_dir=cache/synth/val-xphoto train.epochs=1000 train.minutes=35 train.val_every=2
train.val_limit=60`, then `inpdiff export RUN/last -o RUN/onnx`, `inpdiff eval RUN/onnx SET -o RUN/SET
--no-copies` and `python benchmarks/paired_eval.py runs/fe-bf16/SET.json runs/fe-fp32/SET.json`.
"""
import sys

import torch
import torch.nn.functional as F

from inpdiff.cli import main
from inpdiff.model.acn import ACN


def bf16_highpass(self: ACN, pixels: torch.Tensor) -> torch.Tensor:
    kernels = self.srm if self.bayar is None else torch.cat([self.srm, self.bayar.kernels()])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = F.conv2d(pixels, kernels / 8, padding=kernels.shape[-1] // 2)
    return out.float().clamp(-1, 1)


if __name__ == "__main__":  # a spawned worker re-imports this module: only the command line runs main
    if sys.argv.pop(1) == "bf16":
        ACN.highpass = bf16_highpass
    sys.exit(main())
