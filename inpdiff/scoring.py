"""The image-level score, shared by evaluation and the runtime (numpy only)."""
from __future__ import annotations

import numpy as np


def image_score(prob: np.ndarray, top: float = 0.01) -> float:
    """The mean of the top 1% of the probability map: less saturated than the max, and a region of
    about 1% of the image is enough to raise it."""
    flat = np.asarray(prob, dtype=np.float32).ravel()
    k = max(1, int(round(top * flat.size)))
    return float(np.partition(flat, flat.size - k)[-k:].mean())
