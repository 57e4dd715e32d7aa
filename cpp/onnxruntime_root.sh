#!/usr/bin/env bash
# Make an ONNXRUNTIME_ROOT on Debian 12, where no ONNX Runtime C++ package exists: the C++ headers from
# Debian 13's libonnxruntime-dev (downloaded, unpacked, not installed) beside the libonnxruntime.so that
# the `onnxruntime` Python wheel ships. ONNX Runtime's C API is backward compatible, so headers of 1.21
# (API version 21) work with the wheel's newer library. Usage: cpp/onnxruntime_root.sh DIR
set -euo pipefail
root=$(realpath -m "${1:?usage: $0 DIR}")
wheel=$(python -c "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))")
lib=$(ls "$wheel"/libonnxruntime.so.1.* | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$root/lib"
echo "deb http://deb.debian.org/debian trixie main" > "$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
apt-get -qq "${apt_opts[@]}" update
(cd "$work" && apt-get -qq "${apt_opts[@]}" download libonnxruntime-dev)
dpkg -x "$work"/libonnxruntime-dev_*.deb "$work/deb"
rm -rf "$root/include"
cp -r "$work/deb/usr/include/onnxruntime" "$root/include"
ln -sf "$lib" "$root/lib/libonnxruntime.so.1"
ln -sf libonnxruntime.so.1 "$root/lib/libonnxruntime.so"
echo "ONNXRUNTIME_ROOT=$root: headers $(ls "$work"/libonnxruntime-dev_*.deb | xargs basename), library $lib"
