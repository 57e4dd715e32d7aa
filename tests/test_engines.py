"""TensorRT engines and the GPU backends: what runs without a GPU (profiles, engine metadata and its
refusals, lazy imports, the torch backend on the CPU), and the GPU checks, which skip with the reason
where there is no CUDA GPU or no TensorRT."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, make_photo

from inpdiff.io import sha256
from inpdiff.runtime.cuda import device_count
from inpdiff.runtime.localizer import Localizer, LocalizeConfig
from inpdiff.runtime.model_dir import ModelDir
from inpdiff.runtime.engines import (ENGINES, EngineError, Target, check_engines, engine_files, engine_problems,
                                 expected_metadata, profiles)

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
HAS_GPU = device_count() > 0
HERE = Target("10.3.0", "Orin (nvgpu)", "8.7")


@pytest.fixture
def model_dir(tiny_export):
    return tiny_export[0] / "onnx"


def fake_engines(model_dir, engines_dir, target: Target) -> None:
    """Engine files as `inpdiff build` lays them out (the plans' bytes are stand-ins)."""
    manifest = ModelDir.load(model_dir)
    engines_dir.mkdir(parents=True, exist_ok=True)
    for name in ENGINES:
        plan, meta = engine_files(engines_dir, name)
        plan.write_bytes(f"plan of {name}".encode())
        meta.write_text(json.dumps({**expected_metadata(manifest, name, target), "plan_sha256": sha256(plan),
                                    "profiles": profiles(manifest, 16, 8)[name], "build": {"max_batch": 16}}))


def test_profiles_cover_batch_one_to_max(model_dir):
    manifest = ModelDir.load(model_dir)
    p = profiles(manifest, 16, 8)
    T = manifest.tile
    assert p["condition"] == {"image": [[1, T, T, 3], [8, T, T, 3], [16, T, T, 3]]}
    assert set(p["denoise_step"]) == {"x_t", "noise", *manifest.conditions}  # row is static: (1,)
    for name, shape in manifest.conditions.items():
        assert p["denoise_step"][name] == [[b, *shape] for b in (1, 8, 16)]
    assert p["accumulate"]["total"][2] == [16, 1, T, T]
    assert profiles(manifest, 4, 8)["condition"]["image"][1][0] == 4  # opt never above max
    assert profiles(manifest, 1, 8)["denoise_step"]["x_t"] == [[1, 1, T, T]] * 3
    with pytest.raises(ValueError, match="at least 1"):
        profiles(manifest, 0, 8)


def test_engines_are_refused_on_another_gpu_tensorrt_or_onnx(model_dir, tmp_path):
    engines = tmp_path / "engines"
    fake_engines(model_dir, engines, HERE)
    assert engine_problems(model_dir, engines, HERE) == []
    assert set(check_engines(model_dir, engines, HERE)) == set(ENGINES)

    other = Target("10.7.0", "NVIDIA H100 80GB HBM3", "9.0")
    problems = " ".join(engine_problems(model_dir, engines, other))
    assert "TensorRT 10.3.0, this is 10.7.0" in problems and "GPU Orin (nvgpu)" in problems
    assert "compute capability 8.7, this is 9.0" in problems
    with pytest.raises(EngineError, match=f"inpdiff build {model_dir} --engines {engines}.*--build-missing"):
        check_engines(model_dir, engines, other)

    # A re-exported ONNX (another sha256 in the manifest) makes the engines stale.
    changed = tmp_path / "changed"
    shutil.copytree(model_dir, changed)
    manifest = json.loads((changed / "manifest.json").read_text())
    manifest["files"]["denoise_step.onnx"] = "0" * 64
    (changed / "manifest.json").write_text(json.dumps(manifest))
    assert engine_problems(changed, engines, HERE) == [f"denoise_step.plan: built for ONNX sha256 "
                                                       f"{ModelDir.load(model_dir).files['denoise_step.onnx']}, "
                                                       f"this is {'0' * 64}"]

    # A truncated plan, a missing engine, unreadable metadata.
    plan, meta = engine_files(engines, "condition")
    plan.write_bytes(b"plan")
    (engines / "accumulate.plan").unlink()
    engine_files(engines, "denoise_step")[1].write_text("{not json")
    problems = engine_problems(model_dir, engines, HERE)
    assert any("condition.plan: does not match its metadata's sha256" in p for p in problems)
    assert "accumulate.plan: not built" in problems
    assert any(p.startswith("denoise_step.json: unreadable") for p in problems)


def run(*args):
    return subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


def test_tensorrt_is_imported_only_when_used():
    r = run("import sys\nimport inpdiff.runtime.trt, inpdiff.runtime.backends, inpdiff.runtime.cli, inpdiff.cli\n"
            "assert 'tensorrt' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)")
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here: the missing-TensorRT message cannot show")
def test_commands_say_plainly_that_tensorrt_is_missing(model_dir, tmp_path):
    image = tmp_path / "a.png"
    import cv2

    cv2.imwrite(str(image), make_photo(64, 64, 3))
    r = run("from inpdiff.runtime.cli import main; raise SystemExit(main())", str(image), "-o", str(tmp_path / "o"),
            "--model", str(model_dir), "--backend", "tensorrt")
    assert r.returncode == 2 and "TensorRT is not installed" in r.stderr and "--backend onnxruntime" in r.stderr
    assert not (tmp_path / "o" / "report.jsonl").exists() or "a.png" not in (tmp_path / "o" / "report.jsonl").read_text()
    r = run("from inpdiff.cli import main; raise SystemExit(main())", "build", str(model_dir))
    assert r.returncode == 2 and "inpdiff build: TensorRT is not installed" in r.stderr
    # Without TensorRT, auto is ONNX Runtime and works.
    loc = Localizer(model_dir, "auto", LocalizeConfig(steps=2))
    assert loc.backend.name.startswith("onnxruntime")


@pytest.fixture
def with_checkpoint(tiny_export, tmp_path):
    """The export with its checkpoint beside it, as the shipped model folder has."""
    d = tmp_path / "model"
    shutil.copytree(tiny_export[0] / "onnx", d)
    for f in ("model.safetensors", "config.json"):
        shutil.copy(tiny_export[0] / "ckpt" / f, d / f)
    return d


def test_torch_backend_matches_onnxruntime(with_checkpoint):
    image = make_photo(100, 90, 5)
    for cfg in (LocalizeConfig(steps=3), LocalizeConfig(steps=2, samples=2, seed=4)):
        ref = Localizer(with_checkpoint, "onnxruntime", cfg).localize(image)
        loc = Localizer(with_checkpoint, "torch", cfg)
        assert loc.backend.name == ("torch-cuda-fp32" if HAS_GPU else "torch-cpu-fp32")
        out = loc.localize(image)
        assert np.abs(out.prob - ref.prob).max() < 1e-3
        assert np.abs(out.uncertainty - ref.uncertainty).max() < 1e-3


def test_torch_backend_needs_a_checkpoint_and_a_gpu_for_its_variants(model_dir, with_checkpoint):
    with pytest.raises(ValueError, match="no PyTorch checkpoint"):
        Localizer(model_dir, "torch")
    if not HAS_GPU:
        with pytest.raises(ValueError, match="need a CUDA GPU"):
            Localizer(with_checkpoint, "torch-fp16-graph")


def _cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here: the CUDA-graph and fp16 checks run only on one")
    return torch


def test_torch_cuda_graph_equals_eager_and_fp16_is_close(with_checkpoint):
    _cuda()
    image = make_photo(150, 140, 6)
    cfg = LocalizeConfig(steps=10, batch=4)
    eager = Localizer(with_checkpoint, "torch", cfg).localize(image)
    graph = Localizer(with_checkpoint, "torch-graph", cfg)
    first, again = graph.localize(image), graph.localize(image)  # capture, then replay
    assert np.abs(first.prob - eager.prob).max() < 1e-4 and np.array_equal(first.prob, again.prob)
    fp16 = Localizer(with_checkpoint, "torch-fp16-graph", cfg).localize(image)
    assert np.abs(fp16.prob - eager.prob).mean() < 5e-3


@pytest.mark.skipif(not (HAS_TRT and HAS_GPU), reason="needs TensorRT and a CUDA GPU")
def test_tensorrt_engines_build_run_and_match_onnxruntime(model_dir, tmp_path):
    from inpdiff.runtime.trt_build import BuildConfig, build

    engines = tmp_path / "engines"
    build(model_dir, engines, BuildConfig(max_batch=4, opt_batch=2))
    assert (engines / "timing.cache").is_file()
    image = make_photo(150, 140, 6)
    cfg = LocalizeConfig(steps=10, batch=3)
    ref = Localizer(model_dir, "onnxruntime", cfg).localize(image)
    from inpdiff.runtime.backends import BackendSpec

    loc = Localizer(model_dir, BackendSpec("tensorrt", str(engines)), cfg)
    first, again = loc.localize(image), loc.localize(image)
    assert np.abs(first.prob - ref.prob).max() < 1e-2 and np.array_equal(first.prob, again.prob)
    loc.close()
    assert not loc.backend.engines and loc.backend._buffers is None


@pytest.mark.skipif(not (HAS_TRT and HAS_GPU), reason="needs TensorRT and a CUDA GPU")
def test_polygraphy_finds_onnxruntime_and_tensorrt_agree_on_recorded_inputs(model_dir, tmp_path):
    from inpdiff.calibration.engine_check import compare_engines
    from inpdiff.runtime.trt_build import BuildConfig, build

    engines = tmp_path / "engines"
    build(model_dir, engines, BuildConfig(max_batch=4, opt_batch=2))
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        import cv2

        cv2.imwrite(str(photos / f"p{i}.png"), make_photo(96, 128, 30 + i)[:, :, ::-1])
    assert compare_engines(model_dir, engines, photos, images=2) == {"condition": True, "denoise_step": True}
