"""`inpdiff calibrate-score MODEL_DIR --data VAL`: an image-level score people can trust.

The model runs (the runtime's Localizer, ONNX Runtime) on validation images: the inpainted ones and
the pristine ones, plus JPEG-recompressed copies of the pristine ones (a photo saved again is not an
edit). For each candidate statistic (scoring.STATISTICS), a Platt calibration and its threshold are
fitted on half of the photos and tested on the other half (split by source photo, so no photo is on
both sides): held-out image-level AUC and false-alarm rate. The statistic with the best held-out AUC
is then fitted on all of them and written into the model's manifest under "score", where the runtime
reads it. The report says what each statistic did.
"""
from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np

from ..data.augment import jpeg
from ..data.datasets import discover, evenly, load_pair
from ..io import ImageError, atomic_write
from ..metrics import roc_auc
from ..runtime.localizer import Localizer, LocalizeConfig
from ..runtime.model_dir import ModelDir
from ..scoring import STATISTICS, fit, marked_share

JPEG_QUALITIES = (90, 75)
# Candidate mask thresholds: the pixel threshold is the lowest that keeps the mean marked area of
# pristine photos (and their JPEG copies) within the bound.
MASK_LEVELS = np.round(np.arange(0.5, 1.0, 0.005), 3)


def photo_of(name: str) -> str:
    """The source photo of a synth sample name (PHOTO_pristine, PHOTO_KK_METHOD...)."""
    m = re.match(r"^(.*)_(pristine|\d\d_.+)$", name)
    return m.group(1) if m else name


def collect(model_dir: Path, data: str | Path, limit: int = 0, qualities=JPEG_QUALITIES, threads: int = 0
            ) -> list[dict]:
    """One record per image: photo, kind (inpainted / pristine / pristine-jpegQ), each raw statistic."""
    loc = Localizer(model_dir, "onnxruntime", LocalizeConfig(), threads, require_score=False)
    records = []
    for s in evenly(discover(data), limit):
        try:
            image, _ = load_pair(s)
        except ImageError:
            continue
        variants = [("pristine" if s.pristine else "inpainted", image)]
        if s.pristine:
            variants += [(f"pristine-jpeg{q}", jpeg(image, q)) for q in qualities]
        for kind, img in variants:
            prob = loc.localize(img).prob
            records.append({"photo": photo_of(s.image.stem), "kind": kind, "method": s.method,
                            **{name: f(prob) for name, f in STATISTICS.items()},
                            "tail": [marked_share(prob, t) for t in MASK_LEVELS]})
    return records


def _split(records: list[dict]) -> tuple[list[dict], list[dict]]:
    side = [zlib.crc32(r["photo"].encode()) % 2 for r in records]
    return [r for r, k in zip(records, side) if k == 0], [r for r, k in zip(records, side) if k == 1]


def _evaluate(cal, records: list[dict]) -> dict:
    scores = np.array([cal.calibrate(r[cal.statistic]) for r in records])
    pristine = np.array([r["kind"] != "inpainted" for r in records])
    flagged = scores >= cal.threshold
    per_kind = {k: float(flagged[[r["kind"] == k for r in records]].mean())
                for k in sorted({r["kind"] for r in records})}
    return {"image_auc": roc_auc(scores, ~pristine), "false_alarm_rate": float(flagged[pristine].mean()),
            "detection_rate": float(flagged[~pristine].mean()), "flagged_by_kind": per_kind}


def mask_threshold(records: list[dict], max_area: float) -> float:
    """The lowest candidate level at which pristine images have at most `max_area` marked on average."""
    tails = np.array([r["tail"] for r in records if r["kind"] != "inpainted"])
    ok = np.nonzero(tails.mean(axis=0) <= max_area)[0]
    return float(MASK_LEVELS[ok[0]] if len(ok) else MASK_LEVELS[-1])


def marked_area(records: list[dict], level: float) -> float:
    """Mean share of pristine pixels marked at `level` (one of MASK_LEVELS)."""
    i = int(np.argmin(np.abs(MASK_LEVELS - level)))
    return float(np.mean([r["tail"][i] for r in records if r["kind"] != "inpainted"]))


def cross_validated_area(records: list[dict], max_area: float, splits: int = 20) -> dict:
    """What the fitted level marks on photos it has not seen, over random halves of the photos: fitted
    on one half, measured on the other. One split is not enough: a few pristine photos with large
    false areas dominate the mean, so single halves scatter widely around the bound."""
    photos = sorted({r["photo"] for r in records})
    rng = np.random.default_rng(0)
    areas = []
    for _ in range(splits):
        fit_on = set(rng.permutation(photos)[: len(photos) // 2])
        level = mask_threshold([r for r in records if r["photo"] in fit_on], max_area)
        areas.append(marked_area([r for r in records if r["photo"] not in fit_on], level))
    return {"splits": splits, "pristine_marked_mean": float(np.mean(areas)),
            "pristine_marked_range": [float(min(areas)), float(max(areas))]}


def calibrate_score(model_dir: str | Path, data: str | Path, limit: int = 0, max_false_alarms: float = 0.05,
                    threads: int = 0, records: list[dict] | None = None, max_marked_area: float = 0.01) -> dict:
    """Fit, test on held-out photos, refit on all, write manifest["score"]; returns the report."""
    model_dir = Path(model_dir)
    records = records if records is not None else collect(model_dir, data, limit, threads=threads)
    kinds = {r["kind"] for r in records}
    if "inpainted" not in kinds or "pristine" not in kinds:
        raise ValueError(f"{data}: score calibration needs both inpainted and pristine images")

    def fitted(rs: list[dict], statistic: str):
        raw = lambda pick: np.array([r[statistic] for r in rs if pick(r)])  # noqa: E731
        return fit(raw(lambda r: r["kind"] == "inpainted"), raw(lambda r: r["kind"] != "inpainted"), statistic,
                   max_false_alarms)

    fit_half, test_half = _split(records)
    held_out = {name: _evaluate(fitted(fit_half, name), test_half) for name in STATISTICS}
    best = max(held_out, key=lambda n: held_out[n]["image_auc"])
    cal = fitted(records, best)
    level = mask_threshold(records, max_marked_area)
    held_level = mask_threshold(fit_half, max_marked_area)
    pixels = {"mask_threshold": level, "max_marked_area": max_marked_area,
              "pristine_marked_at_0.5": marked_area(records, 0.5), "pristine_marked": marked_area(records, level),
              "held_out": {"mask_threshold": held_level, "pristine_marked": marked_area(test_half, held_level),
                           **cross_validated_area(records, max_marked_area)}}
    report = {"statistic": best, "calibration": cal.to_dict(), "pixels": pixels, "max_false_alarms": max_false_alarms,
              "held_out": held_out, "all": _evaluate(cal, records), "images": len(records),
              "photos": len({r["photo"] for r in records}), "data": str(data), "jpeg_qualities": list(JPEG_QUALITIES)}
    manifest = dict(ModelDir.load(model_dir).manifest)
    manifest["score"] = {**cal.to_dict(), "mask_threshold": level, "fitted_on": str(data), "held_out": held_out[best],
                         "model_files": manifest["files"]}  # the graphs it was fitted for
    ModelDir.write(model_dir, manifest)
    atomic_write(model_dir / "score_report.json", lambda p: p.write_text(json.dumps(report, indent=1)))
    return report


def markdown(report: dict) -> str:
    lines = ["| statistic | held-out image AUC | false alarms (pristine + JPEG copies) | detections |",
             "|---|---|---|---|"]
    for name, r in report["held_out"].items():
        mark = " (chosen)" if name == report["statistic"] else ""
        lines.append(f"| {name}{mark} | {r['image_auc']:.4f} | {100 * r['false_alarm_rate']:.1f}% | "
                     f"{100 * r['detection_rate']:.1f}% |")
    c = report["calibration"]
    lines += ["", f"Shipped: score = sigmoid({c['a']:.3f} * logit({c['statistic']}) + {c['b']:.3f}), "
                  f"threshold {c['threshold']:.3f}; on all {report['images']} images: false alarms "
                  f"{100 * report['all']['false_alarm_rate']:.1f}%, detections {100 * report['all']['detection_rate']:.1f}%; "
                  "flagged by kind: " + ", ".join(f"{k} {100 * v:.1f}%"
                                                  for k, v in report["all"]["flagged_by_kind"].items()),
              "", f"Mask threshold {report['pixels']['mask_threshold']:.3f}: pristine area marked "
                  f"{100 * report['pixels']['pristine_marked']:.2f}% (at 0.5: "
                  f"{100 * report['pixels']['pristine_marked_at_0.5']:.2f}%); held out: threshold "
                  f"{report['pixels']['held_out']['mask_threshold']:.3f} marks "
                  f"{100 * report['pixels']['held_out']['pristine_marked']:.2f}%; over "
                  f"{report['pixels']['held_out']['splits']} random halves of the photos "
                  f"{100 * report['pixels']['held_out']['pristine_marked_mean']:.2f}% on average ("
                  + "-".join(f"{100 * v:.2f}" for v in report['pixels']['held_out']['pristine_marked_range']) + "%)"]
    return "\n".join(lines) + "\n"
