"""The image-level score, shared by evaluation and the runtime (numpy only).

`image_score` is the raw statistic of a probability map. A model folder may carry a calibration
(`inpdiff calibrate-score`, stored in its manifest under "score"): Platt scaling of the statistic's
logit, sigmoid(a * logit(raw) + b) (raw clipped to [EPS, 1 - EPS]; the logit spreads both a share
near 0 and a top-1% mean near 1), fitted on validation images (inpainted against
pristine, and pristine JPEG copies), so the score reads as a probability; it is monotone in the
statistic and bounded in (0, 1). Its threshold, the default decision, is chosen on the validation
pristine images so that at most a given share of them (5%) is flagged.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

EPS = 1e-4


def image_score(prob: np.ndarray, top: float = 0.01) -> float:
    """The mean of the top 1% of the probability map: less saturated than the max, and a region of
    about 1% of the image is enough to raise it. The top values are selected among candidates above
    a bound taken from a subsample (the whole map is partitioned only if the bound was too high), so a
    large map is not copied whole."""
    flat = np.asarray(prob, dtype=np.float32).ravel()
    k = max(1, int(round(top * flat.size)))
    sample = flat[::97]  # its top 2% bound the map's top 1% from below, almost always
    j = max(0, sample.size - 1 - 2 * k // 97)
    candidates = flat[flat >= np.partition(sample, j)[j]]
    if candidates.size < k:
        candidates = flat
    return float(np.partition(candidates, candidates.size - k)[-k:].mean(dtype=np.float64))


def marked_share(prob: np.ndarray, level: float = 0.5) -> float:
    """The share of the image marked as inpainted (prob >= level)."""
    return float((np.asarray(prob) >= level).mean())


STATISTICS = {"top1": image_score, "marked": marked_share}


class BandStatistic:
    """A statistic of STATISTICS over a map of `size` pixels given a band of rows at a time (a photo too
    large to hold). top1 keeps the values that can still be among the top 1%, at most a few times that
    many; its mean is of the same values as image_score's, summed in another order (in float64: a
    float32 sum differed from image_score's by 2e-6 in the calibrated score on a 700x610 photo)."""

    def __init__(self, statistic: str, size: int, top: float = 0.01, level: float = 0.5):
        if statistic not in STATISTICS:
            raise ValueError(f"unknown score statistic {statistic!r}; known: {', '.join(STATISTICS)}")
        self.statistic, self.size, self.level = statistic, size, level
        self.k = max(1, int(round(top * size)))
        self.kept = np.zeros(0, np.float32)
        self.floor = -np.inf  # the k-th largest value kept so far: nothing below it can be in the top k
        self.marked = 0

    def add(self, rows: np.ndarray) -> None:
        flat = np.asarray(rows, np.float32).ravel()
        if self.statistic == "marked":
            self.marked += int(np.count_nonzero(flat >= self.level))
            return
        self.kept = np.concatenate([self.kept, flat[flat >= self.floor]])
        if self.kept.size > 4 * self.k:
            self.kept = np.partition(self.kept, self.kept.size - self.k)[-self.k:]
            self.floor = self.kept.min()

    def value(self) -> float:
        if self.statistic == "marked":
            return self.marked / self.size
        return float(np.partition(self.kept, self.kept.size - self.k)[-self.k:].mean(dtype=np.float64))


def logit(raw: float | np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(raw, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


@dataclass
class ScoreCalibration:
    statistic: str = "marked"
    a: float = 1.0
    b: float = 0.0
    threshold: float = 0.5

    def raw(self, prob: np.ndarray) -> float:
        return STATISTICS[self.statistic](prob)

    def calibrate(self, raw: float | np.ndarray) -> float | np.ndarray:
        z = np.clip(self.a * logit(raw) + self.b, -500, 500)
        out = 1.0 / (1.0 + np.exp(-z))
        return float(out) if np.ndim(out) == 0 else out

    def score(self, prob: np.ndarray) -> float:
        return self.calibrate(self.raw(prob))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ScoreCalibration:
        cal = cls(**{k: d[k] for k in ("statistic", "a", "b", "threshold")})
        if cal.statistic not in STATISTICS:
            raise ValueError(f"unknown score statistic {cal.statistic!r}; known: {', '.join(STATISTICS)}")
        return cal


def fit(raw_inpainted: np.ndarray, raw_pristine: np.ndarray, statistic: str, max_false_alarms: float = 0.05,
        iterations: int = 50) -> ScoreCalibration:
    """Platt scaling by Newton's method on the statistic's logit (classes weighted equally, Platt's
    smoothed targets), and the
    lowest threshold that flags at most `max_false_alarms` of the pristine images (and at least 0.5)."""
    x = logit(np.concatenate([raw_inpainted, raw_pristine]))
    n_pos, n_neg = len(raw_inpainted), len(raw_pristine)
    # Platt's smoothed targets: separable data would otherwise push the slope to infinity.
    y = np.concatenate([np.full(n_pos, (n_pos + 1) / (n_pos + 2)), np.full(n_neg, 1 / (n_neg + 2))])
    w = np.concatenate([np.full(n_pos, 0.5 / max(1, n_pos)), np.full(n_neg, 0.5 / max(1, n_neg))])
    X = np.stack([x, np.ones_like(x)], 1)
    theta = np.zeros(2)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(X @ theta, -500, 500)))
        grad = X.T @ (w * (p - y))
        hess = (X * (w * p * (1 - p))[:, None]).T @ X + 1e-9 * np.eye(2)
        theta -= np.linalg.solve(hess, grad)
    cal = ScoreCalibration(statistic, float(theta[0]), float(theta[1]), 0.5)
    scores = np.sort(cal.calibrate(np.asarray(raw_pristine, np.float64)))
    allowed = int(math.floor(max_false_alarms * len(scores)))  # pristine images that may be flagged
    if len(scores) > allowed:
        # Flag strictly above the (allowed+1)-th highest pristine score.
        cut = scores[len(scores) - allowed - 1]
        cal.threshold = float(max(0.5, np.nextafter(cut, 1.0)))
    return cal
