import json

import numpy as np
import onnx
import pytest
from onnx import helper, TensorProto

from inpdiff import steps
from inpdiff.export.checks import LintError, tile_shapes, onnx_probability, trt_lint


@pytest.fixture
def exported(tiny_export):
    return tiny_export


def test_export_writes_two_graphs_and_a_manifest(exported):
    root, manifest = exported
    out = root / "onnx"
    assert sorted(p.name for p in out.iterdir()) == ["condition.onnx", "denoise_step.onnx", "manifest.json"]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["tile"] == 64 and manifest["steps"] == 10 and manifest["max_steps"] == 12
    assert manifest["input"] == {"name": "image", "dtype": "uint8", "layout": "NHWC", "colour": "RGB", "range": [0, 255]}
    assert set(manifest["files"]) == {"condition.onnx", "denoise_step.onnx"}
    assert manifest["versions"]["opset"] >= 17
    p = manifest["parity"]
    assert p["real_tiles"] == 1 and p["max_abs_err_x0_per_step"] < 1e-4 and p["max_abs_err_x0_sample"] < 1e-3


def test_graph_interfaces(exported):
    root, _ = exported
    cond = onnx.load(str(root / "onnx" / "condition.onnx"))
    (image,) = cond.graph.input
    assert image.type.tensor_type.elem_type == TensorProto.UINT8
    dims = [d.dim_value or d.dim_param for d in image.type.tensor_type.shape.dim]
    assert dims == ["batch", "height", "width", 3]  # any tile for ONNX Runtime; TensorRT's profiles fix it
    step = onnx.load(str(root / "onnx" / "denoise_step.onnx"))
    assert [i.name for i in step.graph.input] == ["x_t", "row", "noise", "cond0", "cond1", "cond2", "cond3"]
    assert [o.name for o in step.graph.output] == ["x_next", "prob", "edge"]


def test_onnx_runtime_runs_any_batch_and_matches_pytorch(exported):
    from inpdiff.export.checks import reference_probability
    from inpdiff.model import load_model

    root, _ = exported
    model = load_model(root / "ckpt")
    rng = np.random.default_rng(3)
    tiles = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    noise = rng.standard_normal((5, 3, 1, 64, 64)).astype(np.float32)
    # A batch of 3 (exported with 2), 4 steps (exported default 10), stochastic DDPM mode: the reference
    # sampler with eta=1 and the same noise.
    ours = onnx_probability(root / "onnx", tiles, noise, 4, "ddpm", 12)
    assert ours.shape == (3, 1, 64, 64)
    model.cfg.diffusion.eta = 1.0
    assert np.abs(ours - reference_probability(model, tiles, noise, 4)).max() < 5e-4
    # A tile of another size and shape (what the runtime plans for larger photos)
    tiles = rng.integers(0, 256, (2, 96, 160, 3), dtype=np.uint8)
    noise = rng.standard_normal((5, 2, 1, 96, 160)).astype(np.float32)
    ours = onnx_probability(root / "onnx", tiles, noise, 4, "ddpm", 12)
    assert ours.shape == (2, 1, 96, 160)
    assert np.abs(ours - reference_probability(model, tiles, noise, 4)).max() < 5e-4


def test_step_rows_cover_every_length_and_mode():
    seen = {steps.row(m, n, i, 12) for m in steps.MODES for n in range(1, 13) for i in range(n)}
    assert seen == set(range(2 * steps.rows_per_mode(12)))
    with pytest.raises(ValueError, match="between 1 and 12"):
        steps.row("ddim", 13, 0, 12)


def _model_with(node, inputs, outputs, opset=17):
    graph = helper.make_graph([node], "g", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_lint_refuses_unsupported_ops_and_data_dependent_shapes(tmp_path, exported):
    root, manifest = exported
    for name in ("condition.onnx", "denoise_step.onnx"):
        trt_lint(root / "onnx" / name, tile_shapes(manifest["tile"], manifest["conditions"]))  # the export passes
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    nz = helper.make_tensor_value_info("y", TensorProto.INT64, [2, None])
    onnx.save(_model_with(helper.make_node("NonZero", ["x"], ["y"]), [x], [nz]), tmp_path / "nz.onnx")
    with pytest.raises(LintError, match="NonZero.*not supported|data-dependent"):
        trt_lint(tmp_path / "nz.onnx")
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    onnx.save(_model_with(helper.make_node("Relu", ["x"], ["y"]), [x], [y], opset=13), tmp_path / "old.onnx")
    with pytest.raises(LintError, match="opset 13 < 17"):
        trt_lint(tmp_path / "old.onnx")
    u8 = helper.make_tensor_value_info("x", TensorProto.UINT8, ["batch", 4, 4, 3])
    t = helper.make_tensor_value_info("y", TensorProto.UINT8, ["batch", 3, 4, 4])
    onnx.save(_model_with(helper.make_node("Transpose", ["x"], ["y"], perm=[0, 3, 1, 2]), [u8], [t]),
              tmp_path / "u8.onnx")
    with pytest.raises(LintError, match="Transpose .* reads a uint8 input; TensorRT allows only a Cast"):
        trt_lint(tmp_path / "u8.onnx")


def test_export_refuses_a_self_conditioned_model(tiny_cfg, tmp_path):
    from inpdiff.export.onnx_export import export
    from inpdiff.model import InpDiffusion, save_model

    tiny_cfg.diffusion.self_condition = True
    save_model(InpDiffusion(tiny_cfg), tmp_path / "ckpt")
    with pytest.raises(ValueError, match="self-conditioned model has no deployed form"):
        export(tmp_path / "ckpt", tmp_path / "out")
    assert not (tmp_path / "out" / "denoise_step.onnx").exists()
