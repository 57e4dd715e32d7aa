"""INT8 calibration: Q/DQ structure, step coverage, closeness to FP32, the cache, the error cases."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from inpdiff.calibration.collect import CalibrationError
from inpdiff.calibration.qdq import CalibrateConfig, head_nodes
from inpdiff.calibration.quantize import calibrate
from inpdiff.calibration.report import compare
from inpdiff.calibration.score import calibrate_score
from inpdiff.data.datasets import discover
from inpdiff.io import sha256
from inpdiff.export.checks import tile_shapes, trt_lint
from inpdiff.runtime.localizer import Localizer, LocalizeConfig
from inpdiff.runtime.model_dir import ModelError

from conftest import make_photo

ROOT = Path(__file__).resolve().parents[1]
CFG = CalibrateConfig(images=20, min_images=8, method="minmax", exclude_sensitive=2, sensitivity_images=2)


@pytest.fixture(scope="module")
def calib_images(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("calib")
    for i in range(12):
        cv2.imwrite(str(d / f"c{i:02d}.png"), make_photo(96, 128, 100 + i)[:, :, ::-1])
    (d / "broken.png").write_bytes(b"\x89PNG not really")
    return d


@pytest.fixture(scope="module")
def int8(tiny_export, calib_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "m"
    return out, calibrate(tiny_export[0] / "onnx", out, calib_images, CFG)


def _io(model) -> list:
    return [(v.name, v.type.tensor_type.elem_type) for v in list(model.graph.input) + list(model.graph.output)]


def test_qdq_structure_is_tensorrt_ready(int8, tiny_export):
    out, manifest = int8
    assert manifest["precision"] == "int8" and set(manifest["files"]) == {"condition.onnx", "denoise_step.onnx"}
    for name in manifest["files"]:
        fp32 = onnx.load(str(tiny_export[0] / "onnx" / name))
        model = onnx.load(str(out / name))
        trt_lint(out / name, tile_shapes(manifest["tile"], manifest["conditions"]))
        assert _io(model) == _io(fp32)  # inputs and outputs keep their types (fp32; the image uint8)
        # and take TensorRT's tile only, on every backend (the FP32 graphs take any size)
        shapes = {v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
                  for v in [*model.graph.input, *model.graph.output]}
        assert all(dims[1:] == tile_shapes(64, manifest["conditions"])[name][1:] and dims[0] == "batch"
                   for name, dims in shapes.items() if name != "row"), shapes
        inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        produced_by = {o: n for n in model.graph.node for o in n.output}
        dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
        assert dq and any(n.op_type == "QuantizeLinear" for n in model.graph.node)
        for n in dq + [n for n in model.graph.node if n.op_type == "QuantizeLinear"]:
            zero = inits[n.input[2]] if len(n.input) > 2 else np.zeros(1, np.int8)
            assert zero.dtype == np.int8 and not zero.any(), n.name  # symmetric: zero point 0
            if n.op_type == "DequantizeLinear" and n.input[0] in inits:  # a weight: int8, one scale a channel
                assert inits[n.input[0]].dtype == np.int8
                assert inits[n.input[1]].size == inits[n.input[0]].shape[0] > 1, n.name
        convs = {n.name: n for n in model.graph.node if n.op_type == "Conv"}
        quantized = {k for k, n in convs.items() if n.input[0] in produced_by
                     and produced_by[n.input[0]].op_type == "DequantizeLinear"}
        heads = set(head_nodes(fp32, ("Conv",)))
        assert heads and not heads & quantized  # the output heads stay float
        assert set(manifest["quantization"]["kept_float"][name[:-5]]) >= heads
        # From each output back to the head convolutions (final sigmoid, scheduler arithmetic): no Q/DQ.
        todo, tail = [o.name for o in model.graph.output], set()
        while todo:
            node = produced_by.get(todo.pop())
            if node is not None and node.op_type != "Conv" and node.name not in tail:
                tail.add(node.name)
                todo += list(node.input)
        tail_ops = {n.op_type for n in model.graph.node if n.name in tail}
        assert not tail_ops & {"QuantizeLinear", "DequantizeLinear"}
        assert "Sigmoid" in tail_ops or name == "condition.onnx"  # the conditions end in their head convs
        for n in model.graph.node:  # the timestep MLP stays float
            if n.op_type in ("Gemm", "MatMul"):
                assert all(produced_by.get(i) is None or produced_by[i].op_type != "DequantizeLinear"
                           for i in n.input), n.name
    sensitive = manifest["quantization"]["sensitive"]
    assert len(sensitive) == 2 and sensitive[0]["error"] >= sensitive[1]["error"]
    kept = sum(manifest["quantization"]["kept_float"].values(), [])
    assert all(s["node"] in kept for s in sensitive)


def test_calibration_covers_every_step_and_lists_skipped_images(int8, tiny_export):
    c = int8[1]["quantization"]["calibration"]
    assert c["steps_covered"] == list(range(tiny_export[1]["steps"]))
    assert c["images"] == 12 and c["tiles"] == 12 * CFG.tiles_per_image
    assert len(c["skipped"]) == 1 and "broken.png" in c["skipped"][0]


def test_int8_output_is_close_to_fp32_on_real_images(int8, tiny_export, tiny_dataset, tmp_path):
    cfg = LocalizeConfig(steps=10, seed=3)
    # FP32 at TensorRT's tile, which TensorRT's INT8 form runs (its graphs take no other)
    fp32 = Localizer(tiny_export[0] / "onnx", config=LocalizeConfig(steps=10, seed=3, max_tile=0))
    model = shutil.copytree(int8[0], tmp_path / "int8")
    with pytest.raises(ModelError, match=f"without its own calibrated image score; run `inpdiff calibrate-score {model}"):
        Localizer(model, config=cfg)
    calibrate_score(model, tiny_dataset)
    q = Localizer(model, config=cfg)
    for seed in (7, 8):
        image = make_photo(120, 150, seed)
        diff = np.abs(q.localize(image).prob - fp32.localize(image).prob)
        assert diff.mean() < 0.02 and diff.max() < 0.25, (diff.mean(), diff.max())


def test_rebuild_from_the_cache_needs_no_images(int8, tiny_export, tmp_path):
    out, manifest = int8
    again = calibrate(tiny_export[0] / "onnx", out, None, CFG)  # ranges and sensitivity from the cache
    assert again["files"] == manifest["files"]
    plain = calibrate(tiny_export[0] / "onnx", out, None, CalibrateConfig(**{**CFG.__dict__, "exclude_sensitive": 0}))
    assert plain["files"] != manifest["files"] and plain["quantization"]["sensitive"] == []
    with pytest.raises(CalibrationError, match="no calibration cache.*--images"):
        calibrate(tiny_export[0] / "onnx", out, None, CalibrateConfig(**{**CFG.__dict__, "method": "entropy"}))
    assert calibrate(tiny_export[0] / "onnx", out, None, CFG)["files"] == manifest["files"]  # as the others found it


def test_error_cases(int8, tiny_export, calib_images, tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for i in range(3):
        cv2.imwrite(str(few / f"{i}.png"), make_photo(70, 70, i))
    with pytest.raises(CalibrationError, match="needs at least 8"):
        calibrate(tiny_export[0] / "onnx", tmp_path / "a", few, CFG)
    with pytest.raises(CalibrationError, match="int8 model; calibrate the FP32 export"):
        calibrate(int8[0], tmp_path / "b", calib_images, CFG)
    with pytest.raises(ModelError, match="no manifest.json"):
        calibrate(few, tmp_path / "c", calib_images, CFG)
    with pytest.raises(CalibrationError, match="names no node.*/no/such/Conv"):
        calibrate(tiny_export[0] / "onnx", int8[0], None, CalibrateConfig(**{**CFG.__dict__,
                                                                            "exclude": ("/no/such/Conv",)}))


def test_report_and_the_command(int8, tiny_export, tiny_dataset, tmp_path):
    summary = compare({"fp32": tiny_export[0] / "onnx", "int8": int8[0]}, discover(tiny_dataset)[:4])
    m = summary["models"]["int8"]
    assert {"pixel_auc", "f1", "iou", "image_auc", "per_method", "prob_abs_diff", "goal"} <= set(m)
    r = subprocess.run([sys.executable, "-m", "inpdiff.cli", "calibrate", str(tiny_export[0] / "onnx"), "-o",
                        str(int8[0]), "--method", "minmax", "--exclude-sensitive", "2", "--report", str(tiny_dataset),
                        "--limit", "3"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert "int8 plain" in r.stdout and "| fp32 |" in r.stdout
    report = json.loads((int8[0] / "calibration" / "report.json").read_text())
    assert list(report["models"]) == ["fp32", "int8 plain", "int8"] and report["images"] == 3
    assert sha256(int8[0] / "condition.onnx") == int8[1]["files"]["condition.onnx"]  # the report rebuilt nothing


def test_the_front_door_makes_each_step_once_and_skips_what_is_up_to_date(tiny_export, calib_images, tiny_dataset,
                                                                          tmp_path):
    from inpdiff.make_model import MakeConfig, make_model

    source = tmp_path / "tiny"
    shutil.copytree(tiny_export[0] / "ckpt", source)  # a checkpoint alone: no export yet
    with pytest.raises(ValueError, match="give --data"):
        make_model(source, MakeConfig("fp32"), log=lambda s: None)
    said: list[str] = []
    cfg = MakeConfig("int8", images=str(calib_images), data=str(tiny_dataset), min_images=8)
    target = make_model(source, cfg, log=said.append)
    assert target == tmp_path / "tiny-int8" and (source / "manifest.json").is_file()
    assert [s.split(":")[0] for s in said] == ["export", "int8", "score", "engines"]
    assert "up to date" in said[0]  # the failed fp32 call above had exported already
    Localizer(target, "onnxruntime")  # a derived model that decides with its own calibrated score
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    said.clear()
    make_model(source, cfg, log=said.append)
    assert all("up to date" in s for s in said[:3]), said
    assert stamps == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}


def test_the_cpu_form_has_uint8_activations_and_falls_back_to_fp32_without_int8_dot_products(
        tiny_export, calib_images, tiny_dataset, tmp_path, monkeypatch):
    import dataclasses
    import warnings

    from inpdiff.runtime import localizer as loc_module
    from inpdiff.runtime.engines import EngineError
    from inpdiff.runtime.trt_build import build

    fp32 = tmp_path / "tiny"
    shutil.copytree(tiny_export[0] / "onnx", fp32)
    out = tmp_path / "tiny-int8-cpu"
    manifest = calibrate(fp32, out, calib_images, dataclasses.replace(CFG, target="cpu"))
    assert manifest["quantization"]["target"] == "cpu"
    step = onnx.load(str(out / "denoise_step.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in step.graph.initializer}
    activations = [n for n in step.graph.node if n.op_type == "QuantizeLinear"]
    assert activations and all(inits[n.input[2]].dtype == np.uint8 for n in activations)  # with zero points
    with pytest.raises(EngineError, match="TensorRT cannot build"):
        build(out)
    calibrate_score(out, tiny_dataset)
    image = make_photo(96, 128, 9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        here = Localizer(out, "onnxruntime").model_dir
    assert (here == out) == loc_module.cpu_int8_dot_product()[0]  # the model itself where the CPU can run it
    monkeypatch.setattr(loc_module, "cpu_int8_dot_product", lambda: (False, "a CPU without VNNI"))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        fallback = Localizer(out, "onnxruntime")
    assert fallback.model_dir == fp32 and "running the FP32 model" in str(said[0].message)
    reference = Localizer(fp32, "onnxruntime").localize(image)
    assert np.array_equal(fallback.localize(image).prob, reference.prob)


def test_the_cpu_forms_float_convolutions_are_padded_to_16_channels_without_changing_an_output():
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from inpdiff.calibration.layout import pad_conv_outputs

    rng = np.random.default_rng(0)

    def tensor(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [helper.make_node("Constant", [], ["w1"], value=tensor("w1", 15, 3, 5, 5)),
             helper.make_node("Conv", ["x", "w1", "b1"], ["hp"], name="hp", pads=[2, 2, 2, 2]),
             helper.make_node("Clip", ["hp", "lo", "hi"], ["clipped"]),
             helper.make_node("Conv", ["clipped", "w2", "b2"], ["y"], name="next", pads=[1, 1, 1, 1]),
             # read by an Add: left alone, and its bias, shared with "hp" (as the exporter shares equal
             # constants), stays as it was
             helper.make_node("Conv", ["x", "w3", "b1"], ["side"], name="side"),
             helper.make_node("Add", ["side", "side"], ["y2"])]
    inits = [tensor("b1", 15), tensor("w2", 12, 15, 3, 3), tensor("b2", 12), tensor("w3", 15, 3, 3, 3),
             numpy_helper.from_array(np.float32(-1), "lo"), numpy_helper.from_array(np.float32(1), "hi")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 12, 32, 32]),
                               helper.make_tensor_value_info("y2", TensorProto.FLOAT, [1, 15, 30, 30])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.uniform(0, 1, (1, 3, 32, 32)).astype(np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})

    before = run(model)
    assert pad_conv_outputs(model) == ["hp"]
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    reads = {n.name: [shapes.get(i) for i in n.input[1:]] for n in model.graph.node if n.op_type == "Conv"}
    assert reads == {"hp": [[16, 3, 5, 5], [16]], "next": [[12, 16, 3, 3], [12]], "side": [[15, 3, 3, 3], [15]]}
    onnx.checker.check_model(model)
    for a, b in zip(before, run(model)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # float32 sums in another order
