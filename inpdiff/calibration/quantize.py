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

import contextlib
import io
import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..data.io import atomic_write, sha256
from ..runtime.localizer import Localizer, LocalizeConfig
from ..runtime.model_dir import load_manifest
from .collect import CalibrationError, Collected, chunks, find_images

GRAPHS = ("condition", "denoise_step")
METHODS = ("entropy", "minmax", "percentile")


@dataclass
class CalibrateConfig:
    images: int = 256              # calibration images, at most
    min_images: int = 16           # fewer readable images is an error
    tiles_per_image: int = 2       # tiles drawn from each image (every step of each is recorded)
    images_per_chunk: int = 8      # images whose recorded inputs are held in memory at once
    method: str = "entropy"        # entropy | minmax | percentile
    percentile: float = 99.999
    op_types: tuple[str, ...] = ("Conv",)
    exclude: tuple[str, ...] = ()  # node names kept in float, besides the heads
    exclude_sensitive: int = 3     # and the layers the sensitivity measurement ranks worst (0: none)
    sensitivity_images: int = 4    # images whose sampling inputs the sensitivity is measured on
    seed: int = 0
    threads: int = 0


@contextlib.contextmanager
def quiet_ort():
    """ONNX Runtime's quantization tools print progress and log advice on every call; hush both."""
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


def fp32_manifest(model_dir: Path) -> dict:
    """The manifest of an FP32 export; anything else (an INT8 or FP16 folder) is refused."""
    manifest = load_manifest(model_dir)
    precision = manifest.get("precision", "fp32")
    if precision != "fp32":
        raise CalibrationError(f"{model_dir}: a {precision} model; calibrate the FP32 export it was made from")
    return manifest


def quantizable(model, op_types: tuple[str, ...]) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type in op_types]


def head_nodes(model, op_types: tuple[str, ...]) -> list[str]:
    """Quantizable nodes with a path to a graph output that passes no other quantizable node."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}

    def reaches_output(tensor: str, seen: set[str]) -> bool:
        if tensor in outputs:
            return True
        for node in consumers.get(tensor, []):
            if node.name in seen or node.op_type in op_types:
                continue
            seen.add(node.name)
            if any(reaches_output(t, seen) for t in node.output):
                return True
        return False

    return [n.name for n in model.graph.node
            if n.op_type in op_types and any(reaches_output(t, set()) for t in n.output)]


def _calibration_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    if name not in METHODS:
        raise CalibrationError(f"unknown calibration method {name!r}; choose from {', '.join(METHODS)}")
    return {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile}[name]


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
    localizer = Localizer(model_dir, "onnxruntime", LocalizeConfig(seed=cfg.seed), cfg.threads)
    collected = Collected()
    extra = {"symmetric": True}
    if cfg.method == "percentile":
        extra["percentile"] = cfg.percentile
    with tempfile.TemporaryDirectory(prefix="inpdiff-calib-") as tmp:
        calibrators = {g: create_calibrator(model_dir / f"{g}.onnx", list(cfg.op_types),
                                            augmented_model_path=str(Path(tmp) / f"{g}.augmented.onnx"),
                                            calibrate_method=_calibration_method(cfg.method), extra_options=extra)
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


def quantize_graph(fp32: Path, target: Path, ranges: Path, cfg: CalibrateConfig, exclude: list[str] = (),
                   only: list[str] | None = None) -> None:
    """Write the Q/DQ version of one graph from cached calibration ranges: TensorRT's settings (see
    the module docstring); `exclude` stays float; `only`, when given, is all that is quantized."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(str(fp32), str(target), None, quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(cfg.op_types), per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    nodes_to_quantize=only, nodes_to_exclude=list(exclude),
                    calibrate_method=_calibration_method(cfg.method), calibration_cache_path=str(ranges),
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})


def calibrate(model_dir: str | Path, out_dir: str | Path, images_dir: str | Path | None = None,
              cfg: CalibrateConfig = CalibrateConfig()) -> dict:
    """Quantize both graphs of the FP32 export in `model_dir` into `out_dir`. Ranges come from the
    cache in OUT/calibration/ when it matches the model and method, else from `images_dir`."""
    import onnx

    model_dir, out = Path(model_dir), Path(out_dir)
    if model_dir.resolve() == out.resolve():
        raise CalibrationError(f"{out}: the output folder must not be the FP32 model's own folder")
    manifest = fp32_manifest(model_dir)
    _calibration_method(cfg.method)  # a bad name fails before any work
    cache_dir = out / "calibration"
    cache = {g: cache_dir / f"{g}.{cfg.method}.json" for g in GRAPHS}
    info_path = cache_dir / f"info.{cfg.method}.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else None
    key = {"model_files": manifest["files"], "method": cfg.method, "op_types": list(cfg.op_types),
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
        from .sensitivity import layer_sensitivity

        sensitive = layer_sensitivity(model_dir, out, images_dir, cfg)[:cfg.exclude_sensitive]
    exclude = set(cfg.exclude) | {layer["node"] for layer in sensitive}
    files, kept_float = {}, {}
    for g, fp32 in models.items():
        kept_float[g] = sorted(set(head_nodes(fp32, cfg.op_types)) | (exclude & set(quantizable(fp32, cfg.op_types))))
        target, source = out / f"{g}.onnx", model_dir / f"{g}.onnx"
        with quiet_ort():
            atomic_write(target, lambda p, g=g, src=source: quantize_graph(src, p, cache[g], cfg, kept_float[g]))
        files[target.name] = sha256(target)
    quantized = {**manifest, "files": files, "precision": "int8",
                 "quantization": {"quantizer": "onnxruntime.quantization.quantize_static (QDQ)",
                                  "method": cfg.method, "activations": "int8 symmetric per-tensor",
                                  "weights": "int8 symmetric per-channel", "bias": "float",
                                  "op_types": list(cfg.op_types), "kept_float": kept_float,
                                  "excluded": list(cfg.exclude), "sensitive": sensitive,
                                  "calibration": {k: v for k, v in info["collected"].items() if k != "images"}
                                  | {"images": len(info["collected"]["images"])},
                                  "source": {"model_dir": str(model_dir), "files": manifest["files"]}}}
    return write_derived_manifest(out, quantized)


def write_derived_manifest(out: Path, manifest: dict) -> dict:
    """Write the manifest of a model derived from an FP32 export (INT8, FP16), without the fields
    that describe the FP32 model alone: its export check and its score calibration."""
    derived = {k: v for k, v in manifest.items() if k not in ("parity", "score")}
    text = json.dumps(derived, indent=2)
    atomic_write(out / "manifest.json", lambda p: p.write_text(text))
    return json.loads(text)
