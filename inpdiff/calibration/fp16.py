"""`inpdiff fp16 MODEL_DIR --images DIR -o OUT`: FP16 versions of both graphs, for strongly typed
TensorRT builds (TensorRT 11 has no FP16 builder flag: the precision must be in the ONNX).

Converter: NVIDIA ModelOpt's AutoCast, the converter TensorRT's own 10.x -> 11.x migration guide
names. It keeps the graph inputs and outputs fp32 (`keep_io_types`), keeps the nodes it is told to
keep, and runs the FP32 graph on reference inputs to keep any node whose values leave FP16's safe
range (`data_max`), for instance the timestep embedding's arguments (t up to 999). onnxconverter-
common's float16 pass was tried first: it made invalid graphs of both of ours (it cast the uint8
image input's Cast and Resize's scales to fp16) and with a block list ran for over ten minutes.

Kept in fp32 besides what AutoCast finds: the normalisation statistics (InstanceNormalization, the
core of the exported GroupNorm), and the graphs' boundaries: every node linked to a graph input or
output through no convolution or matrix product (the uint8 -> [0, 1] preprocessing; the timestep's
table lookup and sinusoid; the final sigmoids and the sampler's update x_next = A*x0 + B*x_t + C*noise).
The reference inputs are the runtime's own, recorded at every step of real sampling on the images
given, as for INT8 calibration.
"""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import atomic_write, sha256
from ..sampling import GRAPHS
from .collect import CalibrationError, Collected, chunks, find_images, recording_localizer
from .derived import fp32_manifest, write_derived_manifest
from .qdq import quiet_ort

COMPUTE_OPS = ("Conv", "Gemm", "MatMul")


@dataclass
class Fp16Config:
    images: int = 8                                   # reference images (value ranges, not statistics)
    tiles_per_image: int = 2
    keep_op_types: tuple[str, ...] = ("InstanceNormalization",)
    exclude: tuple[str, ...] = ()                     # more node names to keep in fp32
    data_max: float = 512.0                           # AutoCast keeps nodes whose values exceed this
    seed: int = 0
    threads: int = 0


def boundary_nodes(model) -> list[str]:
    """Nodes computed from graph inputs alone, or with a path to a graph output, through no
    compute op (COMPUTE_OPS): pre- and post-processing around the network proper."""
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    keep: set[str] = set()
    # Forward: a node whose every computed input is a graph input or a kept node's output.
    sources = {i.name for i in model.graph.input}
    for n in model.graph.node:  # ONNX nodes are in topological order
        computed = [name for name in n.input if name in producer or name in sources]
        if not n.input:  # Constant
            sources.update(n.output)
        elif n.op_type not in COMPUTE_OPS and all(name in sources for name in computed):
            keep.add(n.name)
            sources.update(n.output)
    # Backward: anything that reaches an output without passing a compute op.
    stack = [producer[o.name] for o in model.graph.output if o.name in producer]
    while stack:
        n = stack.pop()
        if n.op_type in COMPUTE_OPS or n.name in keep or not n.input:
            continue
        keep.add(n.name)
        stack += [producer[name] for name in n.input if name in producer]
    return sorted(keep)


def _reference_data(model_dir: Path, images_dir: Path, cfg: Fp16Config, tmp: Path) -> Collected:
    """Record both graphs' real inputs, one .npz a call (AutoCast's multi-batch layout)."""
    paths = find_images(images_dir, cfg.images, cfg.seed)
    localizer = recording_localizer(model_dir, cfg.seed, cfg.threads)
    collected = Collected()
    for g in GRAPHS:
        (tmp / g).mkdir()
    n = 0
    for recorder in chunks(localizer, paths, cfg.tiles_per_image, cfg.images, cfg.seed, collected):
        for g, feeds in (("condition", recorder.condition_feeds), ("denoise_step", recorder.step_feeds)):
            for feed in feeds:
                np.savez(tmp / g / f"{n:05d}.npz", **feed)
                n += 1
    if not collected.images:
        raise CalibrationError(f"{images_dir}: no readable image for the FP16 reference run; "
                               "unreadable: " + "; ".join(collected.skipped[:5]))
    return collected


def convert(model_dir: str | Path, out_dir: str | Path, images_dir: str | Path,
            cfg: Fp16Config = Fp16Config()) -> dict:
    """Write the FP16 model folder `out_dir` from the FP32 export in `model_dir`; returns its manifest."""
    import onnx

    from ..export.checks import fix_tile, tile_shapes, trt_lint

    try:
        from modelopt import __version__ as modelopt_version
        from modelopt.onnx.autocast import convert_to_mixed_precision
    except ImportError as e:
        raise CalibrationError(f"FP16 conversion needs NVIDIA ModelOpt ({e}); "
                               "pip install 'inpdiff[export]' (after torch)") from e
    model_dir, out = Path(model_dir), Path(out_dir)
    if model_dir.resolve() == out.resolve():
        raise CalibrationError(f"{out}: the output folder must not be the FP32 model's own folder")
    manifest = fp32_manifest(model_dir)
    models = {g: onnx.load(str(model_dir / f"{g}.onnx")) for g in GRAPHS}
    missing = set(cfg.exclude) - {n.name for m in models.values() for n in m.graph.node}
    if missing:
        raise CalibrationError(f"--exclude names no node of either graph: {', '.join(sorted(missing))}")
    out.mkdir(parents=True, exist_ok=True)
    files, kept, counts = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="inpdiff-fp16-") as tmp:
        collected = _reference_data(model_dir, Path(images_dir), cfg, Path(tmp))
        for g, fp32 in models.items():
            names = {n.name for n in fp32.graph.node}
            kept[g] = sorted(set(boundary_nodes(fp32)) | (set(cfg.exclude) & names))
            with quiet_ort():  # ModelOpt logs every node it skips
                fp16 = convert_to_mixed_precision(
                    str(model_dir / f"{g}.onnx"), "fp16", nodes_to_exclude=["^" + re.escape(n) + "$" for n in kept[g]],
                    op_types_to_exclude=list(cfg.keep_op_types), data_max=cfg.data_max, keep_io_types=True,
                    calibration_data=str(Path(tmp) / g), providers=["cpu"])
            counts[g] = precision_counts(fp16)
            fix_tile(fp16, manifest["tile"], manifest["conditions"])
            target = out / f"{g}.onnx"
            atomic_write(target, lambda p, m=fp16: onnx.save(m, str(p)))
            trt_lint(target, tile_shapes(manifest["tile"], manifest["conditions"]))
            files[target.name] = sha256(target)
    converted = {**manifest, "files": files, "precision": "fp16",
                 "fp16": {"converter": f"nvidia-modelopt {modelopt_version} autocast", "io": "fp32",
                          "kept_fp32": kept, "kept_op_types": list(cfg.keep_op_types), "data_max": cfg.data_max,
                          "compute_ops": counts, "reference": {"images": len(collected.images),
                                                               "tiles": collected.tiles,
                                                               "steps_covered": collected.steps_covered},
                          "source": {"model_dir": str(model_dir), "files": manifest["files"]}}}
    return write_derived_manifest(out, converted)


def precision_counts(model) -> dict[str, int]:
    """How many convolutions and matrix products compute in fp16 and in fp32 (by their output type)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    counts = {"fp16": 0, "fp32": 0}
    for n in model.graph.node:
        if n.op_type in COMPUTE_OPS:
            counts["fp16" if types.get(n.output[0]) == onnx.TensorProto.FLOAT16 else "fp32"] += 1
    return counts
