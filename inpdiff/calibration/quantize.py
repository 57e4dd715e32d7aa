"""`inpdiff calibrate MODEL_DIR --images DIR -o OUT`: INT8 Q/DQ versions of both graphs.

Quantizer: ONNX Runtime's static quantization in QDQ format (`quantize_static`). It is maintained,
installs and runs here (NVIDIA ModelOpt's ONNX PTQ needs its CUDA stack), writes standard ONNX
QuantizeLinear/DequantizeLinear pairs that TensorRT's strongly typed builder reads as explicit
precision, and keeps its calibration ranges in a JSON cache. The settings are TensorRT's:
- int8 activations and weights, symmetric (zero point 0), weights per output channel;
- biases stay float: TensorRT refuses a DequantizeLinear of int32 (only activation types may be
  dequantized), which is what ONNX Runtime makes of a quantized bias;
- only convolutions are quantized (`op_types`): they are the model's compute; the timestep MLP,
  normalisations and element-wise ops stay float, where int8 would buy nothing;
- the output heads stay float: the convolutions that reach a graph output through no other
  convolution (the mask and edge logits; the conditions' last projections), and with them the final
  sigmoid and the scheduler arithmetic, which are not convolutions. More nodes, for instance those
  the sensitivity measurement ranks worst, are kept float with `exclude`.

The calibration ranges are cached in OUT/calibration/ with the FP32 model's hashes, so rebuilding
(another exclusion list, say) needs no images. The result is a model folder with its own manifest
(precision "int8"), which the runtime loads like any other; a strongly typed TensorRT build
(`inpdiff build`) takes its precision from these Q/DQ nodes and needs nothing more.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

from ..export.checks import fix_tile
from ..io import atomic_write, sha256
from ..sampling import GRAPHS
from .collect import CalibrationError, Collected, chunks, find_images, recording_localizer
from .derived import fp32_manifest, write_derived_manifest
from .layout import pad_conv_file
from .qdq import TARGETS, CalibrateConfig, calibration_method, head_nodes, quantizable, quantize_graph, quiet_ort
from .sensitivity import layer_sensitivity

class _Feeds:
    """ONNX Runtime's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, feeds: list[dict]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def collect_ranges(model_dir: Path, images_dir: Path, cache: dict[str, Path], cfg: CalibrateConfig) -> Collected:
    """Run the calibrators over the recorded inputs of real sampling; save each graph's ranges."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    paths = find_images(images_dir, cfg.images, cfg.seed)
    if len(paths) < cfg.min_images:
        raise CalibrationError(f"{images_dir}: {len(paths)} image(s); calibration needs at least {cfg.min_images}")
    localizer = recording_localizer(model_dir, cfg.seed, cfg.threads)
    collected = Collected()
    extra = {"symmetric": cfg.target == "tensorrt"}  # the CPU form's uint8 activations take min..max ranges
    if cfg.method == "percentile":
        extra["percentile"] = cfg.percentile
    with tempfile.TemporaryDirectory(prefix="inpdiff-calib-") as tmp:
        calibrators = {g: create_calibrator(model_dir / f"{g}.onnx", list(cfg.op_types),
                                            augmented_model_path=str(Path(tmp) / f"{g}.augmented.onnx"),
                                            calibrate_method=calibration_method(cfg.method), extra_options=extra)
                       for g in GRAPHS}
        for recorder in chunks(localizer, paths, cfg.tiles_per_image, cfg.images_per_chunk, cfg.seed, collected):
            with quiet_ort():
                calibrators["condition"].collect_data(_Feeds(recorder.condition_feeds))
                calibrators["denoise_step"].collect_data(_Feeds(recorder.step_feeds))
        if len(collected.images) < cfg.min_images:
            raise CalibrationError(f"{images_dir}: only {len(collected.images)} readable image(s), calibration needs "
                                   f"at least {cfg.min_images}; unreadable: " + "; ".join(collected.skipped[:5]))
        for g, calibrator in calibrators.items():
            with quiet_ort():
                ranges = calibrator.compute_data()
            save_tensors_data(ranges, cache[g])
    return collected


def calibrate(model_dir: str | Path, out_dir: str | Path, images_dir: str | Path | None = None,
              cfg: CalibrateConfig = CalibrateConfig()) -> dict:
    """Quantize both graphs of the FP32 export in `model_dir` into `out_dir`. Ranges come from the
    cache in OUT/calibration/ when it matches the model and method, else from `images_dir`."""
    import onnx

    model_dir, out = Path(model_dir), Path(out_dir)
    if model_dir.resolve() == out.resolve():
        raise CalibrationError(f"{out}: the output folder must not be the FP32 model's own folder")
    manifest = fp32_manifest(model_dir)
    calibration_method(cfg.method)  # a bad name fails before any work
    cache_dir = out / "calibration"
    cache = {g: cache_dir / f"{g}.{cfg.method}.json" for g in GRAPHS}
    info_path = cache_dir / f"info.{cfg.method}.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else None
    if cfg.target not in TARGETS:
        raise CalibrationError(f"unknown target {cfg.target!r}; choose from {', '.join(TARGETS)}")
    key = {"model_files": manifest["files"], "method": cfg.method, "target": cfg.target, "op_types": list(cfg.op_types),
           "percentile": cfg.percentile if cfg.method == "percentile" else None}
    if not (info and info.get("key") == key and all(p.is_file() for p in cache.values())):
        if images_dir is None:
            raise CalibrationError(f"{cache_dir}: no calibration cache for this model and method {cfg.method!r}; "
                                   "give calibration images with --images DIR")
        cache_dir.mkdir(parents=True, exist_ok=True)
        collected = collect_ranges(model_dir, Path(images_dir), cache, cfg)
        info = {"key": key, "collected": asdict(collected),
                "settings": {k: v for k, v in asdict(cfg).items() if k not in ("exclude", "threads")}}
        atomic_write(info_path, lambda p: p.write_text(json.dumps(info, indent=1)))

    models = {g: onnx.load(str(model_dir / f"{g}.onnx")) for g in GRAPHS}
    missing = set(cfg.exclude) - {n.name for m in models.values() for n in m.graph.node}
    if missing:
        raise CalibrationError(f"--exclude names no node of either graph: {', '.join(sorted(missing))}")
    sensitive = []
    if cfg.exclude_sensitive:
        sensitive = layer_sensitivity(model_dir, out, images_dir, cfg)[:cfg.exclude_sensitive]
    exclude = set(cfg.exclude) | {layer["node"] for layer in sensitive}
    files, kept_float = {}, {}
    for g, fp32 in models.items():
        kept_float[g] = sorted(set(head_nodes(fp32, cfg.op_types)) | (exclude & set(quantizable(fp32, cfg.op_types))))
        target, source = out / f"{g}.onnx", model_dir / f"{g}.onnx"

        def write(p: Path, g: str = g, src: Path = source) -> None:
            quantize_graph(src, p, cache[g], cfg, kept_float[g])
            if cfg.target == "cpu":  # the CPU form's layout: ONNX Runtime's 16-channel blocks
                pad_conv_file(p)
            else:  # TensorRT's form runs TensorRT's tile everywhere
                graph = onnx.load(str(p))
                fix_tile(graph, manifest["tile"], manifest["conditions"])
                onnx.save(graph, str(p))

        with quiet_ort():
            atomic_write(target, write)
        files[target.name] = sha256(target)
    quantized = {**manifest, "files": files, "precision": "int8",
                 "quantization": {"quantizer": "onnxruntime.quantization.quantize_static (QDQ)",
                                  "method": cfg.method, "target": cfg.target,
                                  "activations": ("uint8 asymmetric per-tensor" if cfg.target == "cpu"
                                                  else "int8 symmetric per-tensor"),
                                  "weights": "int8 symmetric per-channel", "bias": "float",
                                  "op_types": list(cfg.op_types), "kept_float": kept_float,
                                  "excluded": list(cfg.exclude), "sensitive": sensitive,
                                  "calibration": {k: v for k, v in info["collected"].items() if k != "images"}
                                  | {"images": len(info["collected"]["images"])},
                                  "source": {"model_dir": str(model_dir), "files": manifest["files"]}}}
    return write_derived_manifest(out, quantized)
