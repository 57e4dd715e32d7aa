"""Leave-one-family-out: does the detector find fills of a kind it never saw in training?

For each fill family F (classical, patch, learned, latent, and each third-party tool: gmic,
pypatchmatch, criminisi, shiftmap, fsr, gimp, resynth): train with F left out of the training and
validation data (`data.exclude_families`), then test on F alone (and the pristine photos, for the
image-level AUC). Holding out `latent` (TAEF2) leaves `latent-own`, the project's own decoder, in
training: the question is whether the decoders a model saw find one it never saw, as Stable
Diffusion's would be.
One more run trains on every family, the in-distribution reference, tested on each. Runs are folders
OUT/without-F/ (OUT/all/ for the reference); a finished run is not trained again, so an interrupted
protocol resumes. Seeds are fixed by the config (train.seed) and the evaluation seed. Tests score what
users get: the network's map raised to the copy evidence (inpdiff.copies), unless `copies` is off.

    inpdiff lomo --config edge-c --data cache/synth/val-all,cache/synth/val-criminisi -o runs/lomo
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from ..config import Config
from ..data.datasets import Sample, discover_all, evenly
from ..data.fills import family
from ..io import atomic_write

COLUMNS = ("pixel_auc", "f1", "iou", "image_auc")


def _test_set(samples: list[Sample], held: str) -> list[Sample]:
    return [s for s in samples if s.pristine or family(s.method) == held]


def leave_one_out(cfg: Config, families: list[str], out_dir: str | Path, data: str | Path, limit: int = 0,
                  seed: int = 0, progress: bool = True, copies: bool = True) -> dict:
    """Train the len(families) + 1 models and test each; returns and saves OUT/lomo.{json,md}."""
    from ..model import load_model
    from .evaluate import evaluate
    from .train import train

    out = Path(out_dir)
    samples = discover_all(str(data))
    present = {family(s.method) for s in samples if not s.pristine}
    missing = [f for f in families if f not in present]
    if missing:
        raise ValueError(f"{data}: no samples of the famil{'y' if len(missing) == 1 else 'ies'} "
                         f"{', '.join(missing)} to test on (found: {', '.join(sorted(present))})")
    table: dict[str, dict] = {}
    for held in [*families, None]:
        run = out / (f"without-{held}" if held else "all")
        c = copy.deepcopy(cfg)
        c.data.exclude_families = (held,) if held else ()
        if not (run / "best" / "model.safetensors").is_file():
            train(c, run, progress=progress)
        model = load_model(run / "best")
        if held:
            result = evaluate(model, evenly(_test_set(samples, held), limit), seed=seed, progress=progress,
                              copies=copies)
            table[held] = {k: result["summary"][k] for k in COLUMNS}
        else:
            table["all"] = {f: {k: evaluate(model, evenly(_test_set(samples, f), limit), seed=seed,
                                            progress=progress, copies=copies)["summary"][k] for k in COLUMNS}
                            for f in families}
    report = {"families": families, "held_out": {f: table[f] for f in families}, "in_distribution": table["all"],
              "data": str(data), "limit": limit, "seed": seed, "copies": copies, "config": cfg.to_dict()}
    atomic_write(out / "lomo.json", lambda p: p.write_text(json.dumps(report, indent=1)))
    atomic_write(out / "lomo.md", lambda p: p.write_text(markdown(report)))
    return report


def markdown(report: dict) -> str:
    lines = ["| test family | held out of training: pixel AUC / F1 / IoU / image AUC | "
             "trained on all families: pixel AUC / F1 / IoU / image AUC |", "|---|---|---|"]
    for f in report["families"]:
        a, b = report["held_out"][f], report["in_distribution"][f]
        lines.append(f"| {f} | " + " / ".join(f"{a[k]:.3f}" for k in COLUMNS) + " | "
                     + " / ".join(f"{b[k]:.3f}" for k in COLUMNS) + " |")
    return "\n".join(lines) + "\n"
