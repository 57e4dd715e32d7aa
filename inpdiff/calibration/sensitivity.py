"""Which layers cannot take INT8: quantize one layer at a time and measure what it costs.

For every quantizable node of both graphs, a model with only that node quantized (using the cached
calibration ranges) runs on recorded inputs of real sampling, and the error is the mean abs
difference of the step graph's probability output from FP32. A condition-graph layer is measured
through the FP32 step graph, fed its conditions. This ranks layers by the damage each does alone,
which a per-tensor comparison of a fully quantized model (Polygraphy-style) cannot separate from
the error they inherit. The ranking is cached beside the calibration ranges.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from ..io import atomic_write, sha256
from ..sampling import GRAPHS
from .collect import CalibrationError, Collected, chunks, find_images, recording_localizer
from .qdq import CalibrateConfig, head_nodes, quantizable, quantize_graph, quiet_ort


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def layer_sensitivity(model_dir: str | Path, out_dir: str | Path, images_dir: str | Path | None,
                      cfg: CalibrateConfig = CalibrateConfig()) -> list[dict]:
    """[{"graph", "node", "error"}] for every quantizable node but the heads, worst first. Needs the
    calibration cache of `cfg.method` in OUT/calibration (run `calibrate` first)."""
    import onnx

    model_dir, out = Path(model_dir), Path(out_dir)
    cache = {g: out / "calibration" / f"{g}.{cfg.method}.json" for g in GRAPHS}
    target = out / "calibration" / f"sensitivity.{cfg.method}.json"
    key = {g: sha256(cache[g]) for g in GRAPHS}  # the ranges this ranking was measured with
    saved = json.loads(target.read_text()) if target.is_file() else {}
    if saved.get("ranges") == key:
        return saved["layers"]
    if images_dir is None:
        raise CalibrationError(f"{target}: no layer sensitivity measured with these ranges; give --images DIR "
                               "(or --exclude-sensitive 0)")
    localizer = recording_localizer(model_dir, cfg.seed, cfg.threads)
    n = cfg.sensitivity_images
    recorder = next(chunks(localizer, find_images(images_dir, n, cfg.seed + 1), cfg.tiles_per_image, n, cfg.seed,
                           Collected()))
    per_image = len(recorder.step_feeds) // len(recorder.condition_feeds)
    threads = cfg.threads or 0
    fp32_step = _session(model_dir / "denoise_step.onnx", threads)
    reference = [fp32_step.run(["prob"], f)[0] for f in recorder.step_feeds]

    def step_error(step_session, conds_per_image=None) -> float:
        errs = []
        for k, feed in enumerate(recorder.step_feeds):
            if conds_per_image is not None:
                feed = {**feed, **conds_per_image[k // per_image]}
            errs.append(float(np.abs(step_session.run(["prob"], feed)[0] - reference[k]).mean()))
        return float(np.mean(errs))

    layers = []
    with tempfile.TemporaryDirectory(prefix="inpdiff-sens-") as tmp:
        for g in GRAPHS:
            fp32 = onnx.load(str(model_dir / f"{g}.onnx"))
            heads = set(head_nodes(fp32, cfg.op_types))
            for node in quantizable(fp32, cfg.op_types):
                if node in heads:
                    continue
                path = Path(tmp) / f"{g}.onnx"
                with quiet_ort():
                    quantize_graph(model_dir / f"{g}.onnx", path, cache[g], cfg, only=[node])
                session = _session(path, threads)
                if g == "condition":
                    names = [o.name for o in session.get_outputs()]
                    conds = [dict(zip(names, session.run(None, f))) for f in recorder.condition_feeds]
                    error = step_error(fp32_step, conds)
                else:
                    error = step_error(session)
                layers.append({"graph": g, "node": node, "error": error})
    layers.sort(key=lambda x: -x["error"])
    atomic_write(target, lambda p: p.write_text(json.dumps({"ranges": key, "layers": layers}, indent=1)))
    return layers
