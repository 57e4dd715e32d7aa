"""The one evaluation harness: run a `predict` callable on every sample of a dataset and score it.

`predict(image) -> (probability map, image score)`. The shipped runtime's is `runtime_predict`
(tiled, calibrated score and pixel threshold, the precision of the model folder named); training's
validation passes the PyTorch model's whole-image sample. `inpdiff eval`, the per-epoch validation
and the INT8/FP16 reports all score through `score_samples`, so their figures mean the same thing.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .data.augment import blur, gaussian_noise, jpeg, resize
from .data.datasets import Sample, load_pair
from .data.fills import family
from .io import ImageError, atomic_write
from .metrics import pixel_metrics, summarize
from .scoring import marked_share

Predict = Callable[[np.ndarray], tuple[np.ndarray, float]]
Perturb = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]

PERTURBATIONS: dict[str, Perturb] = {
    "clean": lambda im, m, r: (im, m),
    "jpeg90": lambda im, m, r: (jpeg(im, 90), m),
    "jpeg75": lambda im, m, r: (jpeg(im, 75), m),
    "jpeg50": lambda im, m, r: (jpeg(im, 50), m),
    "noise5": lambda im, m, r: (gaussian_noise(im, 5.0, r), m),
    "blur1": lambda im, m, r: (blur(im, 1.0), m),
    "resize0.75": lambda im, m, r: resize(im, m, 0.75),
    "resize0.5": lambda im, m, r: resize(im, m, 0.5),
}


def score_samples(predict: Predict, samples: list[Sample], perturbation: str = "clean", seed: int = 0,
                  threshold: float = 0.5, progress: bool = False) -> dict:
    """{"summary", "images" (one record each), "errors" (unreadable samples)}; F1 and IoU at `threshold`."""
    if perturbation not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {perturbation!r}; choose from {list(PERTURBATIONS)}")
    perturb = PERTURBATIONS[perturbation]
    records, errors, seconds = [], [], 0.0
    items = samples
    if progress:
        from tqdm import tqdm
        items = tqdm(samples, desc=f"eval {perturbation}", unit="img")
    for i, s in enumerate(items):
        try:
            image, mask = load_pair(s)
        except ImageError as e:
            errors.append(str(e))
            continue
        image, mask = perturb(image, mask, np.random.default_rng([seed, i]))
        t = time.perf_counter()
        prob, score = predict(image)
        seconds += time.perf_counter() - t
        rec = {"image": str(s.image), "method": s.method, "family": family(s.method), "pristine": s.pristine,
               "score": float(score)}
        if s.pristine:
            rec["marked"] = marked_share(prob, threshold)
        else:
            rec.update(pixel_metrics(prob, mask, threshold))
        records.append(rec)
    summary = summarize(records) if records else {}
    summary["seconds_per_image"] = seconds / max(1, len(records))
    summary["threshold"] = threshold
    return {"summary": summary, "images": records, "errors": errors}


def runtime_predict(model_dir: str | Path, threads: int = 0, require_score: bool = True, config=None):
    """(predict, localizer): the shipped runtime on ONNX Runtime, as `trt-localize` runs it
    (`config`: its LocalizeConfig, steps, samples and seed; default the model's own)."""
    from .runtime.localizer import Localizer, LocalizeConfig

    loc = Localizer(model_dir, "onnxruntime", config or LocalizeConfig(), threads, require_score=require_score)

    def predict(image: np.ndarray) -> tuple[np.ndarray, float]:
        result = loc.localize(image)
        return result.prob, result.score

    return predict, loc


def run_eval(make_predict: Callable[[], Predict], samples: list[Sample], out: str | Path | None,
             perturbations: list[str], seed: int = 0, threshold: float = 0.5, progress: bool = True) -> dict:
    """score_samples for each perturbation (a fresh predict each); OUT.json and OUT.md when `out` is given."""
    unknown = [p for p in perturbations if p not in PERTURBATIONS]
    if unknown:
        raise ValueError(f"unknown perturbations {unknown}; choose from {list(PERTURBATIONS)}")
    results = {p: score_samples(make_predict(), samples, p, seed, threshold, progress) for p in perturbations}
    report = {"summary": {p: r["summary"] for p, r in results.items()},
              "images": results[perturbations[0]]["images"],
              "errors": sorted({e for r in results.values() for e in r["errors"]})}
    if out:
        out = Path(out)
        atomic_write(out.with_suffix(".json"), lambda p: p.write_text(json.dumps(report, indent=2)))
        atomic_write(out.with_suffix(".md"), lambda p: p.write_text(markdown(report["summary"])))
    return report


def _fmt(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def markdown(summary: dict[str, dict]) -> str:
    """Tables: per method on clean inputs, then robustness (one row per perturbation)."""
    cols = ("pixel_auc", "f1", "iou", "image_auc")
    head = "| {} | " + " | ".join(cols) + " | images |\n|---|" + "---|" * (len(cols) + 1) + "\n"
    first = next(iter(summary))
    s = summary[first]
    lines = [f"### Per method ({first})\n\n", head.format("method")]
    for name, m in {**s["per_method"], "all": s}.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(m.get(c)) for c in cols) + f" | {m['images']} |\n")
    if len(summary) > 1:
        lines += ["\n### Robustness\n\n", head.format("perturbation")]
        for name, m in summary.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(m.get(c)) for c in cols) + f" | {m['images']} |\n")
    return "".join(lines)
