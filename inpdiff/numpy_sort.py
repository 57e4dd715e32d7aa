"""numpy's AVX-512 sort is slow on AMD Zen 4, and the copy evidence sorts millions of keys a photo.

numpy sorts with x86-simd-sort, whose AVX-512 partition stores with a compress instruction that Zen 4
runs in microcode (numpy/numpy#32690). On this project's Zen 4 machine (AMD EPYC, numpy 2.4), 4.5 M
uint64 keys sort at 60 ns a key with numpy's AVX-512 kernels and at 12 ns with its AVX2 ones; the
copy search of a 4 MP photo takes 0.77 -> 0.56 s, the same cover. numpy picks its kernels once, at
import, from NPY_DISABLE_CPU_FEATURES, so the entry points call `prefer_avx2_sort` before anything
imports numpy. The standard library only, for that reason.
"""
from __future__ import annotations

import os
import sys
from importlib import metadata

VARIABLE = "NPY_DISABLE_CPU_FEATURES"
AVX512 = "X86_V4 AVX512_ICL AVX512_SPR"  # numpy >= 2.4's names for its AVX-512 kernels
ZEN4_FAMILY = "25"  # 0x19: Zen 3 and Zen 4, of which only Zen 4 has AVX-512; Zen 5 (0x1a) stores fast


def is_zen4(cpuinfo: str) -> bool:
    """Whether /proc/cpuinfo's text describes an AMD Zen 4 CPU (its first processor)."""
    fields = {}
    for line in cpuinfo.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return (fields.get("vendor_id") == "AuthenticAMD" and fields.get("cpu family") == ZEN4_FAMILY
            and "avx512f" in fields.get("flags", "").split())


def _numpy_at_least_2_4() -> bool:
    try:
        major, minor = (int(part) for part in metadata.version("numpy").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (2, 4)  # older numpy names its kernels otherwise, and rejects some names


def prefer_avx2_sort(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    """On a Zen 4 CPU, have numpy use its AVX2 kernels, in this process and the ones it starts. Does
    nothing where the user set the variable, where numpy is already imported or older than 2.4, or
    on any other CPU. Returns whether it set the variable."""
    if VARIABLE in os.environ or "numpy" in sys.modules or not _numpy_at_least_2_4():
        return False
    try:
        with open(cpuinfo_path) as f:
            cpuinfo = f.read()
    except OSError:
        return False
    if not is_zen4(cpuinfo):
        return False
    os.environ[VARIABLE] = AVX512
    return True
