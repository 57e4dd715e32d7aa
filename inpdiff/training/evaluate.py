"""`inpdiff eval CHECKPOINT DATA`: per-image metrics, per-method breakdown, robustness table."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.augment import blur, gaussian_noise, jpeg, resize
from ..data.datasets import Sample, load_pair
from ..data.io import ImageError, atomic_write
from ..model import InpDiffusion, sample, to_tensor
from ..scoring import image_score, marked_share
from .metrics import pixel_metrics, summarize

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


@torch.no_grad()
def evaluate(model: InpDiffusion, samples: list[Sample], perturbation: str = "clean", steps: int | None = None,
             n_samples: int | None = None, seed: int = 0, threshold: float = 0.5, progress: bool = False) -> dict:
    """Score every sample; returns {"summary": ..., "images": [...], "errors": [...]}."""
    model.eval()
    device = next(model.parameters()).device
    perturb = PERTURBATIONS[perturbation]
    records, errors = [], []
    items = samples
    if progress:
        from tqdm import tqdm
        items = tqdm(samples, desc=f"eval {perturbation}", unit="img")
    start = time.perf_counter()
    for i, s in enumerate(items):
        try:
            image, mask = load_pair(s)
        except ImageError as e:
            errors.append(str(e))
            continue
        image, mask = perturb(image, mask, np.random.default_rng([seed, i]))
        gen = torch.Generator(device=device).manual_seed(seed + i)
        pred = sample(model, to_tensor(image).to(device), steps=steps, samples=n_samples, generator=gen)
        prob = pred.prob[0, 0].float().cpu().numpy()
        rec = {"image": str(s.image), "method": s.method, "pristine": s.pristine, "score": image_score(prob)}
        if s.pristine:
            rec["marked"] = marked_share(prob, threshold)
        else:
            rec.update(pixel_metrics(prob, mask, threshold))
        records.append(rec)
    summary = summarize(records)
    summary["seconds_per_image"] = (time.perf_counter() - start) / max(1, len(records))
    return {"summary": summary, "images": records, "errors": errors}


def run_eval(model: InpDiffusion, samples: list[Sample], out: str | Path | None, perturbations: list[str],
             steps: int | None, n_samples: int | None, seed: int, progress: bool = True) -> dict:
    unknown = [p for p in perturbations if p not in PERTURBATIONS]
    if unknown:
        raise ValueError(f"unknown perturbations {unknown}; choose from {list(PERTURBATIONS)}")
    results = {p: evaluate(model, samples, p, steps, n_samples, seed, progress=progress) for p in perturbations}
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
