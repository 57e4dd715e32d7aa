#!/bin/bash
# Does diffusion earn its place? edge-s models trained alike from scratch on the same fills, one per
# variant, side by side: 10-step diffusion; the schedule shifted by a mask signal scaled 0.5;
# self-conditioning on the previous x0 estimate; P2 timestep weighting (gamma 1); the single-pass
# network. Each is scored on held-out photos with the PyTorch harness (diffusion also as 4 samples).
#   benchmarks/diffusion_variants.sh ../shared/data/photos/bsds500-test VAL_50_PHOTOS OUT
# On a lent GPU machine (16 cores), the defaults: 25 epochs each; three variants took about 7 minutes on
# an H200, so pick at most three there (VARIANTS="diffusion selfcond single"; LIMIT_S caps each stage).
# On 2 CPU cores, all five: WORKERS=2 THREADS=1 EPOCHS=20 LIMIT_S=7200 (about 90 minutes).
# Prints each model's pixel AUC / F1 at 0.5 / IoU / image AUC; OUT keeps the curves and reports.
TRAIN=$(realpath "${1:?usage: $0 TRAIN_PHOTOS VAL_PHOTOS OUT}"); VAL=$(realpath "${2:?}"); OUT=$(realpath -m "${3:?}")
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=$(mktemp -d)
WORKERS=${WORKERS:-14}; THREADS=${THREADS:-4}; E=${EPOCHS:-25}; LIMIT_S=${LIMIT_S:-320}
declare -A SETTINGS=([diffusion]="" [shifted]="diffusion.signal_scale=0.5" [selfcond]="diffusion.self_condition=true"
                     [p2]="train.p2_gamma=1.0" [single]="model.diffusion=false")
VARIANTS=${VARIANTS:-diffusion shifted selfcond p2 single}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU: $(nproc) CPU cores"
python3 -c "import torch, cv2; print('torch', torch.__version__, 'cv2', cv2.__version__)"
M=telea,ns,learned
t0=$(date +%s)
timeout $LIMIT_S python3 -m inpdiff.cli synth "$TRAIN" $W/train --per-image 4 --methods $M \
  --blends none,poisson,feather --posts none,jpeg --seed 0 --workers $WORKERS --quiet > $OUT/synth.log 2>&1
timeout $LIMIT_S python3 -m inpdiff.cli synth "$VAL" $W/val --per-image 1 --all-methods --methods $M \
  --seed 1 --workers $WORKERS --quiet >> $OUT/synth.log 2>&1
echo "synth done in $(( $(date +%s) - t0 )) s: $(ls $W/train/images | wc -l) train, $(ls $W/val/images | wc -l) val"
for name in $VARIANTS; do
  timeout $LIMIT_S python3 -m inpdiff.cli train --config edge-s -o $W/$name --set data.train_dir=$W/train \
    data.val_dir=$W/val "data.curriculum=[]" data.crop=192 train.epochs=$E train.batch_size=16 train.threads=$THREADS \
    train.val_limit=60 ${SETTINGS[$name]} > $OUT/train-$name.log 2>&1 &
done
wait
echo "training done at $(( $(date +%s) - t0 )) s"
scored=""
for name in $VARIANTS; do
  cp $W/$name/best/config.json $OUT/$name-best.json 2>/dev/null; cp $W/$name/last/train_state.json $OUT/$name-state.json 2>/dev/null
  timeout $LIMIT_S python3 -m inpdiff.cli eval $W/$name/best $W/val --threads $THREADS --quiet -o $OUT/eval-$name > /dev/null 2>&1 &
  scored="$scored $name"
  if [ $name != single ]; then
    timeout $LIMIT_S python3 -m inpdiff.cli eval $W/$name/best $W/val --samples 4 --threads $THREADS --quiet \
      -o $OUT/eval-$name-x4 > /dev/null 2>&1 &
    scored="$scored $name-x4"
  fi
done
wait
echo "all done at $(( $(date +%s) - t0 )) s"
for f in $scored; do echo "$f $(grep "| all" $OUT/eval-$f.md)"; done
