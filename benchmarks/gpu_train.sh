#!/usr/bin/env bash
# Train edge-c on a lent GPU from fills made on that machine: what a GPU's compute buys the detector
# on the real tools it never sees (issue 12). The GPU image has torch, OpenCV and scikit-image but no
# G'MIC, PyPatchMatch or Criminisi, and nothing installs there: the fills are the project's own
# (classical, own PatchMatch, the L1 U-Nets, TAEF2), as for edge-c v1, so every real tool stays held out.
#
# usage: bash benchmarks/gpu_train.sh DATA OUT [MINUTES] [METHODS]
#   DATA: photos in DATA/train (8 fills each), DATA/large (2 fills each), DATA/val, and DATA/taef2
#   OUT:  synthesised data and the run (OUT/run/best is the checkpoint to export)
#   METHODS: the fill methods (default: v1's own families; leave one out to hold it out)
# DATA as made for the lent H200 (the call carries at most 64 MiB, so BSDS300 train's PNGs stay home):
#   echo /.gpu/ >> .git/info/exclude   # shared data never enters the repository
#   mkdir -p .gpu/train .gpu/val && cp -r ../shared/models/taef2 .gpu/ && cp -r ../shared/data/photos/sun-hays80 .gpu/large
#   ls ../shared/data/photos/bsds500-test/*.jpg | head -20 | xargs cp -t .gpu/val
#   ls ../shared/data/photos/bsds500-test/*.jpg | tail -n +21 | xargs cp -t .gpu/train
set -euo pipefail
data=$1 out=$2 minutes=${3:-5} methods=${4:-classical,patch,unet-w16,unet-w24,latent}
export INPDIFF_TAEF2=$data/taef2 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
inpdiff() { python3 -m inpdiff.cli "$@"; }
cores=$(nproc)
fills="--methods $methods --blends none,poisson,feather
       --posts none,jpeg,resize,resize2 --grain 0.5 --shadows 0.3 --quiet"

start=$SECONDS
# Three synth runs side by side, their workers adding up to the cores (large photos cost ~6x a BSDS one).
inpdiff synth "$data/val" "$out/val" --per-image 1 --all-methods $fills --seed 11 --workers 2 &
inpdiff synth "$data/large" "$out/large" --per-image 2 $fills --seed 12 --workers $(((cores - 2) * 2 / 5)) &
inpdiff synth "$data/train" "$out/train" --per-image 8 $fills --seed 10 --workers $(((cores - 2) * 3 / 5))
wait
echo "synth: $((SECONDS - start)) s, $(cat "$out"/{train,large}/samples.jsonl | wc -l) training samples"

# Batch 32 and a clock-driven schedule: the run ends after MINUTES whatever the GPU's speed.
inpdiff train --config edge-c -o "$out/run" --quiet --set "data.train_dir=$out/train,$out/large" \
    "data.val_dir=$out/val" train.batch_size=32 train.lr=0.003 train.epochs=100000 "train.minutes=$minutes" \
    train.val_every=5 train.val_limit=60 "train.loader_workers=$((cores > 9 ? 8 : cores - 1))"
echo "all: $((SECONDS - start)) s"
