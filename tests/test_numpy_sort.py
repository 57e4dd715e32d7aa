"""prefer_avx2_sort: numpy's AVX2 kernels on Zen 4, set before numpy is imported, and nowhere else."""
import os
import subprocess
import sys

import numpy as np
import pytest

from inpdiff.numpy_sort import VARIABLE, is_zen4

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
flags\t\t: fpu sse sse2 avx avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni

processor\t: 1
vendor_id\t: AuthenticAMD
"""
ZEN3 = ZEN4.replace(" avx512f avx512dq avx512bw avx512vl avx512_vnni", "")
ZEN5 = ZEN4.replace("cpu family\t: 25", "cpu family\t: 26")
INTEL = ZEN4.replace("AuthenticAMD", "GenuineIntel").replace("cpu family\t: 25", "cpu family\t: 6")


def test_only_zen4_is_recognised():
    assert is_zen4(ZEN4)
    assert not is_zen4(ZEN3) and not is_zen4(ZEN5) and not is_zen4(INTEL) and not is_zen4("")


def _child(cpuinfo_path, env_value=None, import_numpy_first=False):
    code = ("import sys\n"
            + ("import numpy\n" if import_numpy_first else "")
            + "from inpdiff.numpy_sort import prefer_avx2_sort\n"
            f"print(prefer_avx2_sort({str(cpuinfo_path)!r}))\n"
            "from numpy._core._multiarray_umath import __cpu_features__ as f\n"
            "import os; print(os.environ.get('NPY_DISABLE_CPU_FEATURES')); print(f['X86_V4'], f['AVX512_ICL'])\n")
    env = {k: v for k, v in os.environ.items() if k != VARIABLE}
    if env_value is not None:
        env[VARIABLE] = env_value
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split("\n")[:3]


@pytest.mark.skipif(tuple(int(p) for p in np.__version__.split(".")[:2]) < (2, 4), reason="numpy < 2.4 names its kernels otherwise")
def test_a_zen4_process_gets_numpys_avx2_kernels(tmp_path):
    (tmp_path / "zen4").write_text(ZEN4)
    (tmp_path / "intel").write_text(INTEL)
    set_, value, avx512 = _child(tmp_path / "zen4")
    assert set_ == "True" and value == "X86_V4 AVX512_ICL AVX512_SPR" and avx512 == "False False"  # numpy read it
    assert _child(tmp_path / "intel")[:2] == ["False", "None"]
    assert _child(tmp_path / "zen4", env_value="")[:2] == ["False", ""]  # the user's choice stands
    assert _child(tmp_path / "zen4", import_numpy_first=True)[:2] == ["False", "None"]  # too late to matter
    assert _child(tmp_path / "missing")[:2] == ["False", "None"]
