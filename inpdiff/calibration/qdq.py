"""Q/DQ quantization with ONNX Runtime in TensorRT's form, shared by the INT8 calibration and the
layer-sensitivity measurement: the settings, which nodes are quantizable and which are output heads,
and the quantization of one graph from cached calibration ranges."""
from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

from .collect import CalibrationError

METHODS = ("entropy", "minmax", "percentile")
# tensorrt: int8 activations and weights, symmetric (zero point 0), as TensorRT's strongly typed
# builder needs. cpu: uint8 activations with zero points and int8 per-channel weights, the form ONNX
# Runtime's x86 VNNI and ARM dot-product kernels are fast at (TensorRT refuses it).
TARGETS = ("tensorrt", "cpu")


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
    target: str = "tensorrt"       # tensorrt | cpu (see TARGETS)
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


def calibration_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    if name not in METHODS:
        raise CalibrationError(f"unknown calibration method {name!r}; choose from {', '.join(METHODS)}")
    return {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile}[name]


def quantize_graph(fp32: Path, target: Path, ranges: Path, cfg: CalibrateConfig, exclude: list[str] = (),
                   only: list[str] | None = None) -> None:
    """Write the Q/DQ version of one graph from cached calibration ranges: TensorRT's settings (see
    the module docstring); `exclude` stays float; `only`, when given, is all that is quantized."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    cpu = cfg.target == "cpu"
    quantize_static(str(fp32), str(target), None, quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(cfg.op_types), per_channel=True,
                    activation_type=QuantType.QUInt8 if cpu else QuantType.QInt8, weight_type=QuantType.QInt8,
                    nodes_to_quantize=only, nodes_to_exclude=list(exclude),
                    calibrate_method=calibration_method(cfg.method), calibration_cache_path=str(ranges),
                    extra_options={"ActivationSymmetric": not cpu, "WeightSymmetric": True, "QuantizeBias": False})
