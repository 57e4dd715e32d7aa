#!/bin/bash
# Every GPU check, on a machine with a CUDA GPU and TensorRT, in one go (about 5-8 minutes):
# install, build the shipped model's engines (fp32, fp16, int8) and compare each with ONNX Runtime on
# recorded real inputs, run the GPU tests, print the GPU parity and benchmark tables, and time the batch
# mode through the GPU backend against ONNX Runtime on the same machine.
#   bash benchmarks/gpu_check.sh [PHOTOS_DIR]     (photos for the comparison; default: the examples)
# Without TensorRT (say, a machine whose PyTorch has CUDA but no `tensorrt`), the engine steps are
# skipped with a message and the torch rows and tests still run.
set -euo pipefail
cd "$(dirname "$0")/.."
PHOTOS=${1:-examples/images}
# A lent GPU machine reaches no package index: install from the tree (and from wheels carried in .whl,
# onnxsim for the tests' export), else run from the tree with the egg-info's entry points.
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/tmp/gpu_check_pip.log 2>&1 \
  || { echo "gpu_check: pip install failed (/tmp/gpu_check_pip.log); running from the tree"
       export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}; }
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/gpu_check_site .whl/*.whl
  export PYTHONPATH=/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if python3 -c "import tensorrt" 2>/dev/null; then
  for m in edge-c edge-c-fp16 edge-c-int8; do
    inpdiff build "models/$m" --compare "$PHOTOS"
  done
else
  echo "gpu_check: TensorRT is not installed here: engine build and comparison skipped"
fi
python3 -m pytest -q -rs tests/test_engines.py
python3 benchmarks/gpu_parity.py --repeat 5
python3 benchmarks/gpu_bench.py --repeat 5
python3 benchmarks/gpu_batch.py "${BATCH_PHOTOS:-$PHOTOS}"   # BATCH_PHOTOS: a folder of a few hundred photos
