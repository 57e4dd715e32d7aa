#!/bin/bash
# Does diffusion earn its place? Three edge-s models trained alike from
# scratch on the same fills (made here on 14 cores): 10-step diffusion, diffusion with the schedule
# shifted by a mask signal scaled 0.5, and the single-pass network; each scored on 50 held-out photos.
# Run on a GPU machine (25 epochs each, about 7 minutes on an H200 with 16 cores; days on 2 CPU cores):
#   benchmarks/diffusion_variants.sh ../shared/data/photos/bsds500-test VAL_50_PHOTOS OUT
# Prints each model's pixel AUC / F1 at 0.5 / IoU / image AUC; OUT keeps the curves and reports.
TRAIN=$(realpath "${1:?usage: $0 TRAIN_PHOTOS VAL_PHOTOS OUT}"); VAL=$(realpath "${2:?}"); OUT=$(realpath -m "${3:?}")
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=$(mktemp -d)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, cv2; print('torch', torch.__version__, 'cv2', cv2.__version__)"
M=telea,ns,learned
t0=$(date +%s)
timeout 120 python3 -m inpdiff.cli synth "$TRAIN" $W/train --per-image 4 --methods $M \
  --blends none,poisson,feather --posts none,jpeg --seed 0 --workers 14 --quiet > $OUT/synth.log 2>&1
timeout 60 python3 -m inpdiff.cli synth "$VAL" $W/val --per-image 1 --all-methods --methods $M \
  --seed 1 --workers 14 --quiet >> $OUT/synth.log 2>&1
echo "synth done in $(( $(date +%s) - t0 )) s: $(ls $W/train/images | wc -l) train, $(ls $W/val/images | wc -l) val"
E=${EPOCHS:-25}
for spec in "diffusion" "shifted diffusion.signal_scale=0.5" "single model.diffusion=false"; do
  set -- $spec; name=$1; shift
  timeout ${TRAIN_S:-320} python3 -m inpdiff.cli train --config edge-s -o $W/$name --set data.train_dir=$W/train \
    data.val_dir=$W/val "data.curriculum=[]" data.crop=192 train.epochs=$E train.batch_size=16 train.threads=4 \
    train.val_limit=60 "$@" > $OUT/train-$name.log 2>&1 &
done
wait
echo "training done at $(( $(date +%s) - t0 )) s"
for name in diffusion shifted single; do
  cp $W/$name/best/config.json $OUT/$name-best.json 2>/dev/null; cp $W/$name/last/train_state.json $OUT/$name-state.json 2>/dev/null
  timeout 60 python3 -m inpdiff.cli eval $W/$name/best $W/val --quiet -o $OUT/eval-$name > /dev/null 2>&1 &
done
wait
timeout 60 python3 -m inpdiff.cli eval $W/diffusion/best $W/val --samples 4 --quiet -o $OUT/eval-diffusion-x4 > /dev/null 2>&1 &
timeout 60 python3 -m inpdiff.cli eval $W/shifted/best $W/val --samples 4 --quiet -o $OUT/eval-shifted-x4 > /dev/null 2>&1 &
wait
echo "all done at $(( $(date +%s) - t0 )) s"
for f in diffusion diffusion-x4 shifted shifted-x4 single; do echo "$f $(grep "| all" $OUT/eval-$f.md)"; done
