"""What INT8 and FP16 cost: `inpdiff calibrate ... --report DATA` (and `inpdiff fp16 ... --report
DATA`) compares the reduced-precision model with its FP32 source on validation images, both scored by
the one harness (inpdiff.evaluation) through the runtime on ONNX Runtime's CPU provider (same tiles,
noise and steps, F1 at 0.5 for all): pixel AUC, F1, IoU, image-level AUC, per inpainting method, the
max and mean abs difference of the probability maps, and the speed of both, side by side."""
from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..data.datasets import Sample, discover, evenly
from ..evaluation import runtime_predict, score_samples
from ..io import atomic_write
from ..runtime.localizer import LocalizeConfig
from .qdq import CalibrateConfig
from .quantize import calibrate

GOAL = {"pixel_auc": 0.005, "f1": 0.01}  # INT8 or FP16 may lose at most this much against FP32
FAR = 0.1  # probability maps' pixels this far apart are counted: the max alone is one pixel
TENSORRT_TILES = LocalizeConfig(max_tile=0)  # the model's own tiles, as TensorRT's forms run them


def compare(models: dict[str, Path], samples: list[Sample], threads: int = 0,
            config: LocalizeConfig | None = None) -> dict:
    """Run every model on every sample through the one harness; the first model is the reference the
    others are held to, map by map, all with `config` (TENSORRT_TILES for TensorRT's forms, whose graphs
    take TensorRT's tile only, so that the maps differ by precision alone)."""
    ref = next(iter(models))
    reference: list[np.ndarray] = []
    summary = {"reference": ref, "models": {}, "errors": []}
    for name, folder in models.items():
        predict, loc = runtime_predict(folder, threads, require_score=False, config=config)
        diff = {"max": 0.0, "sum": 0.0, "over": 0, "pixels": 0}
        seen = itertools.count()

        def compared(image: np.ndarray):  # called within this iteration, so it sees this model's names
            prob, score = predict(image)
            i = next(seen)  # the samples come in the same order for every model
            if name == ref:
                reference.append(prob.astype(np.float16))
            else:
                err = np.abs(prob - reference[i].astype(np.float32))
                diff["max"], diff["sum"] = max(diff["max"], float(err.max())), diff["sum"] + float(err.sum())
                diff["over"], diff["pixels"] = diff["over"] + int((err > FAR).sum()), diff["pixels"] + err.size
            return prob, score

        result = score_samples(compared, samples)
        loc.close()
        m = result["summary"]
        summary["errors"] = result["errors"]
        if name != ref:
            pixels = max(1, diff["pixels"])
            m["prob_abs_diff"] = {"max": diff["max"], "mean": diff["sum"] / pixels, f"share_over_{FAR}": diff["over"] / pixels}
            drops = {k: summary["models"][ref][k] - m[k] for k in GOAL}
            m["goal"] = {k: {"allowed_drop": GOAL[k], "drop": drops[k], "met": drops[k] <= GOAL[k]} for k in GOAL}
        summary["models"][name] = m
    return summary


def report(model_dir: str | Path, int8_dir: str | Path, cfg: CalibrateConfig, data: str | Path, limit: int = 0
           ) -> dict:
    """FP32 against the INT8 model in `int8_dir` on the dataset `data`, and against the plain
    calibration (nothing kept in float but the heads) when `cfg` keeps more; rebuilt from the cached
    ranges, so no images are needed. Saved as OUT/calibration/report.{json,md}."""
    model_dir, int8_dir = Path(model_dir), Path(int8_dir)
    samples = evenly(discover(data), limit)
    with tempfile.TemporaryDirectory(prefix="inpdiff-plain-") as plain:
        models = {"fp32": model_dir, "int8": int8_dir}
        if cfg.exclude or cfg.exclude_sensitive:
            shutil.copytree(int8_dir / "calibration", Path(plain) / "calibration")
            calibrate(model_dir, plain, None, dataclasses.replace(cfg, exclude=(), exclude_sensitive=0))
            models = {"fp32": model_dir, "int8 plain": Path(plain), "int8": int8_dir}
        summary = compare(models, samples, cfg.threads, TENSORRT_TILES if cfg.target == "tensorrt" else None)
    summary["data"], summary["images"] = str(data), len(samples)
    save(summary, int8_dir / "calibration")
    return summary


def fp16_report(model_dir: str | Path, fp16_dir: str | Path, data: str | Path, limit: int = 0, threads: int = 0
                ) -> dict:
    """FP32 against the FP16 model on the dataset `data`; saved as FP16_DIR/report.{json,md}."""
    samples = evenly(discover(data), limit)
    summary = compare({"fp32": Path(model_dir), "fp16": Path(fp16_dir)}, samples, threads, TENSORRT_TILES)
    summary["data"], summary["images"] = str(data), len(samples)
    save(summary, Path(fp16_dir))
    return summary


def save(summary: dict, folder: Path) -> None:
    atomic_write(folder / "report.json", lambda p: p.write_text(json.dumps(summary, indent=1)))
    atomic_write(folder / "report.md", lambda p: p.write_text(markdown(summary)))


def markdown(summary: dict) -> str:
    models, ref = summary["models"], summary["reference"]
    lines = ["| model | pixel AUC | F1 | IoU | image AUC | prob. max abs diff | mean abs diff | "
             f"pixels > {FAR} apart | s per image (CPU) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, m in models.items():
        d = m.get("prob_abs_diff", {"max": 0.0, "mean": 0.0})
        over = d.get(f"share_over_{FAR}", 0.0)
        lines.append(f"| {name} | {m['pixel_auc']:.4f} | {m['f1']:.4f} | {m['iou']:.4f} | {m['image_auc']:.4f} | "
                     f"{d['max']:.3f} | {d['mean']:.4f} | {100 * over:.4f}% | {m['seconds_per_image']:.3f} |")
    names = list(models)
    lines += ["", "| method | " + " | ".join(f"{n} pixel AUC / F1 / IoU" for n in names) + " |",
              "|---|" + "---|" * len(names)]
    for method in models[ref]["per_method"]:
        cells = [models[n]["per_method"][method] for n in names]
        lines.append(f"| {method} | " + " | ".join(f"{c['pixel_auc']:.4f} / {c['f1']:.4f} / {c['iou']:.4f}"
                                                   for c in cells) + " |")
    lines.append("")
    for name, m in models.items():
        if name == ref:
            continue
        g = m["goal"]
        lines.append(f"- {name}: pixel AUC {100 * -g['pixel_auc']['drop']:+.2f} points, F1 "
                     f"{100 * -g['f1']['drop']:+.2f} points against {ref}; goal (within 0.5 and 1 point) "
                     + ("met" if all(v["met"] for v in g.values()) else "**not met**"))
    return "\n".join(lines) + "\n"
