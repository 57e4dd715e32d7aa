"""`inpdiff export CHECKPOINT -o models/NAME/`: two ONNX graphs and a manifest.

condition.onnx     image (B, H, W, 3) uint8 RGB -> cond0..cond3 (the DN-ready conditions)
denoise_step.onnx  x_t (B, 1, H, W), row (1,) int64, noise (B, 1, H, W), cond0..cond3
                   -> x_next, prob (= (x0 + 1) / 2), edge
B and the spatial sizes are dynamic (H, W multiples of 32): ONNX Runtime runs tiles of any size, and
TensorRT's profiles fix them at the manifest's tile. The input preprocessing (uint8 -> [0, 1], NHWC ->
NCHW) is in the condition graph and the sampler update in the step graph (tables indexed by `row`, see
inpdiff.steps), so a runtime only moves tensors between the two.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__, sampling, steps
from ..io import sha256
from ..model import load_model
from ..model.graphs import ConditionGraph, StepGraph
from ..runtime.model_dir import ModelDir
from .checks import parity, tile_shapes, trt_lint

OPSET = 17


@dataclass
class ExportConfig:
    max_steps: int = 32        # step tables cover samplers of 1..max_steps steps
    tile: int | None = None    # the graphs' spatial size (a multiple of 32); None: the config's tile
    opset: int = OPSET
    simplify: bool = True
    check: bool = True         # ONNX Runtime parity with PyTorch + TensorRT lint
    # Max abs error on x0 of one step, both backends given the same inputs. Not tighter: on a uniform-noise
    # tile PyTorch drifts 8e-5 from itself between its oneDNN and reference CPU kernels (real tiles: 1e-5).
    tolerance: float = 2e-4
    sample_tolerance: float = 1e-3  # the same over a whole sample, each backend on its own chain


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], opset: int) -> None:
    # The exporter restores the module's training flag afterwards, recursively: a wrapper left in
    # training mode would switch the model's BatchNorms to batch statistics for everything after.
    module.eval()
    # Each tensor's spatial axes get names of their own: the exporter would otherwise have to prove
    # that the conditions' sizes at strides 4..32 are the image's divided.
    dynamic = {name: {0: "batch", **({1: "height", 2: "width"} if name == sampling.IMAGE else
                                     {2: f"{name}_height", 3: f"{name}_width"})}
               for name in inputs + outputs if name != "row"}
    torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, opset_version=opset,
                      dynamic_axes=dynamic, do_constant_folding=True, dynamo=False)


def _simplify(path: Path) -> None:
    import onnx
    import onnxsim

    model, ok = onnxsim.simplify(onnx.load(str(path)))
    if not ok:
        raise RuntimeError(f"{path}: onnx-simplifier could not validate the simplified graph")
    onnx.save(model, str(path))


def export(checkpoint: str | Path, out_dir: str | Path, cfg: ExportConfig = ExportConfig(),
           check_images: list[np.ndarray] | None = None) -> dict:
    """Write condition.onnx, denoise_step.onnx and manifest.json; returns the manifest."""
    import onnx
    import onnxruntime

    model = load_model(checkpoint).float().eval()
    mcfg = model.cfg
    if model.dn.self_condition:
        raise ValueError(f"checkpoint {checkpoint}: a self-conditioned model has no deployed form (the step graph "
                         "takes no previous x0 estimate); score it with the PyTorch harness instead")
    if cfg.tile is not None:
        if cfg.tile <= 0 or cfg.tile % 32:
            raise ValueError(f"tile must be a positive multiple of 32, got {cfg.tile}")
        mcfg.tile = cfg.tile  # the network is fully convolutional: any multiple of 32 works
    tile = mcfg.tile
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cond_names = list(sampling.CONDITIONS)
    with torch.no_grad():
        image = torch.randint(0, 256, (2, tile, tile, 3), dtype=torch.uint8)
        conds = ConditionGraph(model)(image)
        x = torch.randn(2, 1, tile, tile)
        row = torch.tensor([steps.row("ddim", mcfg.diffusion.sampling_steps, 0, cfg.max_steps)])
    tmp = {name: out / f".{name}.tmp.onnx" for name in sampling.GRAPHS}
    files = {}
    try:
        _export(ConditionGraph(model), (image,), tmp["condition"], [sampling.IMAGE], cond_names, cfg.opset)
        _export(StepGraph(model, cfg.max_steps), (x, row, torch.randn_like(x), *conds), tmp["denoise_step"],
                [*sampling.STEP_INPUTS, *cond_names], list(sampling.STEP_OUTPUTS), cfg.opset)
        for name, path in tmp.items():
            if cfg.simplify:
                _simplify(path)
            final = out / sampling.onnx_file(name)
            path.replace(final)
            files[final.name] = sha256(final)
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)

    manifest = {
        "format": 1,
        "name": mcfg.name,
        "config": mcfg.to_dict(),
        "tile": tile,
        "steps": mcfg.diffusion.sampling_steps,
        "samples": mcfg.diffusion.samples,
        "mode": "ddim" if mcfg.diffusion.eta == 0 else "ddpm",
        "max_steps": cfg.max_steps,
        "diffusion": mcfg.model.diffusion,
        "schedule": {"kind": mcfg.diffusion.schedule, "timesteps": mcfg.diffusion.timesteps,
                     "signal_scale": mcfg.diffusion.signal_scale, "rows": "inpdiff.steps.row(mode, steps, i, max_steps)"},
        "input": {"name": sampling.IMAGE, "dtype": "uint8", "layout": "NHWC", "colour": "RGB", "range": [0, 255]},
        "conditions": {n: list(c.shape[1:]) for n, c in zip(cond_names, conds)},
        "files": files,
        # What it was exported from, so that `inpdiff build` knows when an export is stale.
        "checkpoint_sha256": sha256(Path(checkpoint) / "model.safetensors"),
        "versions": {"inpdiff": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__, "opset": cfg.opset},
    }
    if cfg.check:
        for name in files:
            trt_lint(out / name, tile_shapes(tile, manifest["conditions"]))
        manifest["parity"] = parity(model, out, cfg.max_steps, check_images, cfg.tolerance,
                                    cfg.sample_tolerance)
    return ModelDir.write(out, manifest).manifest
