"""FP16 conversion (`inpdiff fp16`): structure of the graphs, and that ONNX Runtime runs them close
to FP32."""
import shutil

import cv2
import numpy as np
import onnx
import pytest
from conftest import make_photo

from inpdiff.calibration.collect import CalibrationError
from inpdiff.calibration.score import calibrate_score
from inpdiff.runtime.localizer import Localizer, LocalizeConfig
from inpdiff.runtime.model_dir import ModelError

pytest.importorskip("modelopt.onnx.autocast", reason="NVIDIA ModelOpt (the export extra) is not installed")

from inpdiff.calibration.fp16 import Fp16Config, boundary_nodes, convert  # noqa: E402

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


@pytest.fixture(scope="module")
def fp16(tiny_export, tmp_path_factory):
    images = tmp_path_factory.mktemp("ref")
    for i in range(3):
        cv2.imwrite(str(images / f"r{i}.png"), make_photo(96, 128, 200 + i)[:, :, ::-1])
    out = tmp_path_factory.mktemp("fp16") / "m"
    return out, convert(tiny_export[0] / "onnx", out, images, Fp16Config(images=3))


def _types(model) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    return {v.name: v.type.tensor_type.elem_type for v in values}


def test_fp16_graphs_keep_io_and_sensitive_ops_in_fp32(fp16, tiny_export):
    out, manifest = fp16
    assert manifest["precision"] == "fp16" and manifest["fp16"]["io"] == "fp32"
    for g in ("condition", "denoise_step"):
        fp32_model, model = onnx.load(str(tiny_export[0] / "onnx" / f"{g}.onnx")), onnx.load(str(out / f"{g}.onnx"))
        assert [(v.name, v.type.tensor_type.elem_type) for v in [*model.graph.input, *model.graph.output]] == \
               [(v.name, v.type.tensor_type.elem_type) for v in [*fp32_model.graph.input, *fp32_model.graph.output]]
        types = _types(model)
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        assert convs and all(types[n.output[0]] == FLOAT16 for n in convs), g
        for n in model.graph.node:
            if n.op_type == "InstanceNormalization" or n.name in manifest["fp16"]["kept_fp32"][g]:
                assert all(types.get(o) != FLOAT16 for o in n.output), n.name
    step = onnx.load(str(out / "denoise_step.onnx"))
    types = _types(step)
    by_output = {n.output[0]: n for n in step.graph.node}
    # The final sigmoid and the sampler's update stay fp32; so does the timestep's sinusoid.
    assert by_output["prob"].op_type == "Sigmoid" and types["prob"] == FLOAT
    assert all(types[n.output[0]] == FLOAT for n in step.graph.node if n.op_type in ("Sin", "Cos"))
    assert manifest["fp16"]["compute_ops"]["denoise_step"]["fp16"] > 0
    # TensorRT's form runs TensorRT's tile on every backend (the FP32 graphs take any size)
    image = onnx.load(str(out / "condition.onnx")).graph.input[0]
    assert [d.dim_value or d.dim_param for d in image.type.tensor_type.shape.dim] == ["batch", 64, 64, 3]


def test_boundary_nodes_are_pre_and_post_processing(tiny_export):
    cond = onnx.load(str(tiny_export[0] / "onnx" / "condition.onnx"))
    kept = {n.op_type for n in cond.graph.node if n.name in boundary_nodes(cond)}
    assert "Cast" in kept and "Conv" not in kept
    step = onnx.load(str(tiny_export[0] / "onnx" / "denoise_step.onnx"))
    kept = [n for n in step.graph.node if n.name in boundary_nodes(step)]
    assert {"Sigmoid", "Gather", "Sin", "Cos"} <= {n.op_type for n in kept}
    assert not any(n.op_type in ("Conv", "InstanceNormalization") for n in kept)


def test_fp16_runs_close_to_fp32_once_its_score_is_calibrated(fp16, tiny_export, tiny_dataset, tmp_path):
    image = make_photo(80, 90, 7)
    cfg = LocalizeConfig(steps=4)
    # FP32 at TensorRT's tile, which the FP16 form runs (its graphs take no other)
    a = Localizer(tiny_export[0] / "onnx", "onnxruntime", LocalizeConfig(steps=4, max_tile=0)).localize(image)
    model = shutil.copytree(fp16[0], tmp_path / "fp16")
    with pytest.raises(ModelError, match="a fp16 model without its own calibrated image score"):
        Localizer(model, "onnxruntime", cfg)
    calibrate_score(model, tiny_dataset)
    b = Localizer(model, "onnxruntime", cfg).localize(image)
    assert np.abs(a.prob - b.prob).max() < 0.02


def test_fp16_refuses_what_it_cannot_convert(fp16, tiny_export, tmp_path):
    with pytest.raises(CalibrationError, match="a fp16 model"):
        convert(fp16[0], tmp_path / "x", tmp_path)
    with pytest.raises(CalibrationError, match="names no node"):
        convert(tiny_export[0] / "onnx", tmp_path / "y", tmp_path, Fp16Config(exclude=("/nope",)))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "broken.png").write_bytes(b"not a png")
    with pytest.raises(CalibrationError, match="no readable image"):
        convert(tiny_export[0] / "onnx", tmp_path / "z", empty)
    shutil.rmtree(tmp_path / "z", ignore_errors=True)
