"""Checks the export runs and the tests repeat: TensorRT-compatibility lint, ONNX Runtime parity."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import sampling

# Operators onnx-tensorrt supports (docs/operators.md, TensorRT 8.5 and later: JetPack 6's 10.3 included)
# among those a convolutional exporter can produce. Anything else fails the lint.
TRT_OPS = frozenset("""
Abs Add And ArgMax ArgMin AveragePool BatchNormalization Cast Ceil Clip Concat Constant ConstantOfShape
Conv ConvTranspose Cos CumSum DepthToSpace DequantizeLinear Div Einsum Elu Equal Erf Exp Expand Flatten
Floor Gather GatherElements GatherND Gemm GlobalAveragePool GlobalMaxPool Greater GreaterOrEqual
HardSigmoid HardSwish Identity InstanceNormalization LeakyRelu Less LessOrEqual Log LogSoftmax MatMul Max
MaxPool Mean Min Mul Neg Not Or Pad Pow PRelu QuantizeLinear Range Reciprocal ReduceMax ReduceMean
ReduceMin ReduceProd ReduceSum Relu Reshape Resize Round Shape Sigmoid Sign Sin Size Slice Softmax
Softplus SpaceToDepth Split Sqrt Squeeze Sub Sum Tanh Tile Transpose Unsqueeze Where
""".split())


class LintError(ValueError):
    pass


def tile_shapes(tile: int, conditions: dict[str, list[int]], batch: int = 3) -> dict[str, list[int]]:
    """Both graphs' inputs and outputs at the tile TensorRT builds for (`conditions`: the manifest's,
    without batch)."""
    maps = {name: [batch, 1, tile, tile] for name in (*sampling.STEP_INPUTS, *sampling.STEP_OUTPUTS) if name != "row"}
    return {sampling.IMAGE: [batch, tile, tile, 3], **maps, **{name: [batch, *shape] for name, shape in conditions.items()}}


def fix_tile(model, tile: int, conditions: dict[str, list[int]]) -> None:
    """Give an ONNX graph's inputs and outputs the spatial sizes of `tile`, the batch left dynamic: a
    TensorRT form (FP16, TensorRT's INT8) then runs TensorRT's tile on every backend, so that ONNX Runtime
    reproduces what the engines give and the score calibration is fitted on the maps they make."""
    shapes = tile_shapes(tile, conditions)
    for vi in [*model.graph.input, *model.graph.output]:
        for d, size in list(zip(vi.type.tensor_type.shape.dim, shapes.get(vi.name, [])))[1:]:
            d.dim_value = size


def trt_lint(path: str | Path, shapes: dict[str, list[int]] | None = None, batch: int = 3) -> None:
    """Fail if an op is outside TRT_OPS, if a uint8 input feeds anything but a Cast, or if any tensor's
    shape is data-dependent: with every input's shape fixed (`shapes` by name, tile_shapes; other
    dynamic sizes set to `batch`), shape inference must know every dimension."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path))
    problems = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 17:
        problems.append(f"opset {opset} < 17")
    uint8 = {i.name for i in model.graph.input if i.type.tensor_type.elem_type == onnx.TensorProto.UINT8}
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in TRT_OPS:
            problems.append(f"op {node.domain + '::' if node.domain else ''}{node.op_type} ({node.name}) "
                            f"is not supported by onnx-tensorrt")
        if node.op_type != "Cast" and uint8 & set(node.input):
            problems.append(f"{node.op_type} ({node.name}) reads a uint8 input; TensorRT allows only a Cast there")
    del model.graph.value_info[:]
    for vi in model.graph.input:
        for d, size in zip(vi.type.tensor_type.shape.dim, (shapes or {}).get(vi.name, [])):
            d.dim_value = size
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.dim_value = batch
    for vi in model.graph.output:  # inferred from the inputs
        if any(not d.HasField("dim_value") for d in vi.type.tensor_type.shape.dim):
            vi.type.tensor_type.ClearField("shape")
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    for vi in model.graph.value_info:
        if vi.type.HasField("tensor_type"):
            dims = vi.type.tensor_type.shape.dim
            if not vi.type.tensor_type.HasField("shape") or any(not d.HasField("dim_value") for d in dims):
                problems.append(f"tensor {vi.name} has a data-dependent shape")
    if problems:
        raise LintError(f"{path.name}: not TensorRT-ready: " + "; ".join(problems[:10])
                        + (f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""))


def _sessions(model_dir: Path):
    import onnxruntime as ort

    return [ort.InferenceSession(str(model_dir / f), providers=["CPUExecutionProvider"])
            for f in map(sampling.onnx_file, sampling.GRAPHS)]


def _run_conditions(cond, tiles: np.ndarray) -> dict[str, np.ndarray]:
    return dict(zip([o.name for o in cond.get_outputs()], cond.run(None, {sampling.IMAGE: tiles})))


def onnx_probability(model_dir: Path, tiles: np.ndarray, noise: np.ndarray, n_steps: int, mode: str,
                     max_steps: int) -> np.ndarray:
    """The ensembled probability map computed by ONNX Runtime from the two graphs."""
    cond, step = _sessions(model_dir)
    return _chain(step, _run_conditions(cond, tiles), noise, n_steps, mode, max_steps)


def _chain(step, conds: dict[str, np.ndarray], noise: np.ndarray, n_steps: int, mode: str, max_steps: int
           ) -> np.ndarray:
    def run_step(x, row, fresh, c):
        return step.run(None, sampling.step_feed(x, row, fresh, c))

    return sampling.sample_loop(lambda _: conds, run_step, None, 1, noise,
                                sampling.step_rows(mode, n_steps, max_steps), lambda c, n: c)


def parity(model, model_dir: Path, max_steps: int, images: list[np.ndarray] | None, tolerance: float,
           chain_tolerance: float) -> dict:
    """ONNX Runtime vs PyTorch on random and real tiles, in x0 = 2 p - 1:
    - per step: both backends given the same image, x_t and noise (each with its own conditions),
      along PyTorch's trajectory; must be under `tolerance`;
    - the whole sample: each backend runs its own 10-step chain from the same noise; fp32 rounding
      compounds through the chain (PyTorch against itself with BatchNorm folded drifts as far), so it
      is held to the looser `chain_tolerance`.
    """
    import torch

    from ..model.graphs import ConditionGraph, StepGraph

    tile = model.cfg.tile
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 256, (tile, tile, 3), dtype=np.uint8) for _ in range(2)]
    for im in images or []:
        h, w = im.shape[:2]
        if h >= tile and w >= tile:
            tiles.append(im[(h - tile) // 2:(h - tile) // 2 + tile, (w - tile) // 2:(w - tile) // 2 + tile])
    batch = np.ascontiguousarray(np.stack(tiles))
    diffusion = model.cfg.model.diffusion
    n_steps = model.cfg.diffusion.sampling_steps if diffusion else 1
    mode = "ddim" if model.cfg.diffusion.eta == 0 else "ddpm"
    noise = rng.standard_normal((n_steps + 1, len(tiles), 1, tile, tile)).astype(np.float32)
    if not diffusion:
        noise[0] = 0.0  # the baseline's fixed input: an empty mask at the last timestep

    cond_sess, step_sess = _sessions(Path(model_dir))
    onnx_conds = _run_conditions(cond_sess, batch)
    graph = StepGraph(model, max_steps).eval()
    errors = []

    def both(x, row, fresh, conds):
        """PyTorch's step, with ONNX Runtime's on the very same inputs compared: the trajectory is PyTorch's."""
        x = torch.as_tensor(x)
        x_next, prob, edge = graph(x, torch.tensor([row]), torch.from_numpy(fresh), *conds.values())
        _, onnx_prob, _ = step_sess.run(None, sampling.step_feed(x.numpy(), row, fresh, onnx_conds))
        errors.append(float(np.abs(2 * onnx_prob - 2 * prob.numpy()).max()))
        return x_next, prob, edge

    with torch.no_grad():
        sampling.sample_loop(lambda t: dict(zip(sampling.CONDITIONS, ConditionGraph(model).eval()(t))), both,
                             torch.from_numpy(batch), 1, noise, sampling.step_rows(mode, n_steps, max_steps),
                             lambda c, n: c)
    step_err = max(errors)
    ours = _chain(step_sess, onnx_conds, noise, n_steps, mode, max_steps)
    chain_err = float(np.abs(2 * ours - 2 * reference_probability(model, batch, noise, n_steps)).max())
    result = {"tiles": len(tiles), "real_tiles": len(tiles) - 2, "steps": n_steps,
              "max_abs_err_x0_per_step": step_err, "tolerance": tolerance,
              "max_abs_err_x0_sample": chain_err, "sample_tolerance": chain_tolerance}
    if not step_err < tolerance:
        raise AssertionError(f"ONNX Runtime differs from PyTorch within one step: max abs error on x0 "
                             f"{step_err:.2e} >= {tolerance:.0e}")
    if not chain_err < chain_tolerance:
        raise AssertionError(f"ONNX Runtime differs from PyTorch over the whole sample: max abs error on x0 "
                             f"{chain_err:.2e} >= {chain_tolerance:.0e}")
    return result


def reference_probability(model, tiles: np.ndarray, noise: np.ndarray, n_steps: int) -> np.ndarray:
    """PyTorch's ensembled probability map for uint8 NHWC tiles with the given noise (for parity)."""
    import torch

    from ..model import sample

    rgb01 = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        pred = sample(model, rgb01, steps=n_steps, samples=1, noise=torch.from_numpy(noise))
    return pred.prob.numpy()
