#!/usr/bin/env bash
# Build the C++ runtime and run its tests (CTest): the second half of the README's test command.
# Needs cmake, g++, libopencv-dev, nlohmann-json3-dev, libssl-dev (apt) and the Python package installed
# (the parity tests run the Python runtime beside the C++ one). On Debian 13 or Ubuntu with the
# libonnxruntime-dev package, ONNXRUNTIME_ROOT may be left out.
set -euo pipefail
cd "$(dirname "$0")/.."
ort=${ONNXRUNTIME_ROOT:-}
if [ -z "$ort" ]; then
  ort=$PWD/build/onnxruntime
  cpp/onnxruntime_root.sh "$ort"
fi
cmake -S . -B build/cpp -DONNXRUNTIME_ROOT="$ort"
cmake --build build/cpp -j "$(nproc)"
ctest --test-dir build/cpp --output-on-failure
