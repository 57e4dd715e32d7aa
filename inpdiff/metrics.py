"""Localization and detection metrics in numpy (checked against scikit-learn in the tests)."""
from __future__ import annotations

import numpy as np

from .scoring import marked_share


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve, ties counted half (Mann-Whitney U). NaN if one class is absent."""
    scores, labels = np.asarray(scores).ravel(), np.asarray(labels).ravel().astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    values, inverse = np.unique(scores, return_inverse=True)
    pos = np.bincount(inverse, weights=labels, minlength=len(values))
    neg = np.bincount(inverse, weights=~labels, minlength=len(values))
    neg_below = np.cumsum(neg) - neg
    return float((pos * (neg_below + 0.5 * neg)).sum() / (n_pos * n_neg))


def f1_iou(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """F1 and IoU of binary maps; both 1.0 when both maps are empty."""
    pred, gt = pred.astype(bool), gt.astype(bool)
    tp = np.logical_and(pred, gt).sum()
    fp = np.logical_and(pred, ~gt).sum()
    fn = np.logical_and(~pred, gt).sum()
    if tp + fp + fn == 0:
        return 1.0, 1.0
    return float(2 * tp / (2 * tp + fp + fn)), float(tp / (tp + fp + fn))


def pixel_metrics(prob: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    f1, iou = f1_iou(prob >= threshold, gt)
    return {"pixel_auc": roc_auc(prob, gt), "f1": f1, "iou": iou, "marked": marked_share(prob, threshold),
            "true_share": float(gt.mean())}


def summarize(records: list[dict]) -> dict:
    """Means over tampered images of pixel AUC/F1/IoU, image-level AUC, and per-method and per-family
    breakdowns (a record without a "family" is its method's own family)."""
    def means(rs: list[dict]) -> dict:
        out = {"images": len(rs)}
        for k in ("pixel_auc", "f1", "iou", "marked", "true_share"):
            vals = [r[k] for r in rs if not np.isnan(r.get(k, np.nan))]
            out[k] = float(np.mean(vals)) if vals else float("nan")
        return out

    tampered = [r for r in records if not r["pristine"]]
    pristine = [r for r in records if r["pristine"]]
    summary = means(tampered)
    summary["pristine_images"] = len(pristine)
    # Share of a pristine photo's pixels marked: what an analyst reads as a false detection.
    marked = [r["marked"] for r in pristine if "marked" in r]
    summary["pristine_marked"] = float(np.mean(marked)) if marked else float("nan")
    scores = [r["score"] for r in records]
    summary["image_auc"] = roc_auc(np.array(scores), np.array([not r["pristine"] for r in records]))
    for key, name_of in (("per_method", lambda r: r["method"]), ("per_family", lambda r: r.get("family", r["method"]))):
        summary[key] = {}
        for name in sorted({name_of(r) for r in tampered}):
            rs = [r for r in tampered if name_of(r) == name]
            m = means(rs)
            m["image_auc"] = roc_auc(np.array([r["score"] for r in rs + pristine]),
                                     np.array([True] * len(rs) + [False] * len(pristine)))
            summary[key][name] = m
    return summary


def collapsed(summary: dict, floor: float = 0.25) -> bool:
    """A map that marks (almost) nothing: less than `floor` of the true area on the edited images.
    Such a model has learned nothing; its low false-alarm rate is no merit."""
    marked, true = summary.get("marked", float("nan")), summary.get("true_share", float("nan"))
    return not (marked >= floor * true)
