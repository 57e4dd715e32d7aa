"""Random inpainting masks (object-like blobs, brush strokes) and targets derived from a mask."""
from __future__ import annotations

import cv2
import numpy as np


def blob_mask(h: int, w: int, rng: np.random.Generator, frac: float) -> np.ndarray:
    """1 to 3 smooth, irregular object-like shapes covering about `frac` of the image."""
    m = np.zeros((h, w), np.uint8)
    n = int(rng.integers(1, 4))
    shares = rng.dirichlet(np.ones(n)) * frac * h * w
    for area in shares:
        r = np.sqrt(area / np.pi)
        cy, cx = rng.uniform(r * 0.5, h - r * 0.5), rng.uniform(r * 0.5, w - r * 0.5)
        k = int(rng.integers(6, 14))
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        radii = r * rng.uniform(0.6, 1.4, k) * rng.uniform(0.6, 1.4)
        aspect = rng.uniform(0.6, 1.6)
        pts = np.stack([cx + radii * np.cos(angles) * aspect, cy + radii * np.sin(angles) / aspect], 1)
        cv2.fillPoly(m, [pts.round().astype(np.int32)], 1)
    # Smooth the polygon corners into an object-like outline.
    sigma = max(1.0, 0.02 * min(h, w))
    return (cv2.GaussianBlur(m.astype(np.float32), (0, 0), sigma) > 0.5).astype(np.uint8)


def stroke_mask(h: int, w: int, rng: np.random.Generator, frac: float) -> np.ndarray:
    """Free-form brush strokes (random walks of thick lines), as in DeepFill v2's masks."""
    m = np.zeros((h, w), np.uint8)
    target = frac * h * w
    for _ in range(40):
        if m.sum() >= target:
            break
        width = int(rng.integers(max(3, min(h, w) // 40), max(6, min(h, w) // 10)))
        y, x = rng.uniform(0, h), rng.uniform(0, w)
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(3, 9))):
            angle += rng.uniform(-1.2, 1.2)
            length = rng.uniform(0.05, 0.25) * min(h, w)
            ny = float(np.clip(y + length * np.sin(angle), 0, h - 1))
            nx = float(np.clip(x + length * np.cos(angle), 0, w - 1))
            cv2.line(m, (int(x), int(y)), (int(nx), int(ny)), 1, width)
            cv2.circle(m, (int(nx), int(ny)), width // 2, 1, -1)
            y, x = ny, nx
    return m


def random_mask(h: int, w: int, rng: np.random.Generator, min_frac: float = 0.02, max_frac: float = 0.30) -> np.ndarray:
    """A blob or stroke mask whose area is within [min_frac, max_frac] of the image."""
    for _ in range(20):
        frac = rng.uniform(min_frac, max_frac)
        maker = blob_mask if rng.random() < 0.5 else stroke_mask
        m = maker(h, w, rng, frac)
        if min_frac <= m.mean() <= max_frac:
            return m
    # Fall back to an ellipse of exactly the requested size range.
    m = np.zeros((h, w), np.uint8)
    r = np.sqrt((min_frac + max_frac) / 2 * h * w / np.pi)
    cv2.ellipse(m, (w // 2, h // 2), (int(r), int(r)), 0, 0, 360, 1, -1)
    return m


def edge_target(mask: np.ndarray, width: int = 3) -> np.ndarray:
    """Edge ground truth: the morphological gradient dilate(mask) - erode(mask), width x width square.

    For an odd width 2r+1 that is a band of r pixels on each side of the boundary. The image border
    is not a boundary: a mask touching it has no edge there, and an empty or full mask has none.
    """
    if width < 2:
        raise ValueError(f"edge width must be at least 2, got {width}")
    k = np.ones((width, width), np.uint8)
    m = mask.astype(np.uint8)
    return cv2.dilate(m, k) - cv2.erode(m, k)


def with_shadow(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The mask of a removed object together with its cast shadow: the object's shape flattened,
    sheared sideways and attached at its base (removal tools are asked to erase both)."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return mask
    h, w = mask.shape
    base = float(ys.max())
    squash, shear = rng.uniform(0.25, 0.6), rng.uniform(-1.2, 1.2)
    # y' = base + squash * (base - y): the shape mirrored below its base, flattened; x' sheared with depth.
    m = np.float32([[1, -shear * squash, shear * squash * base], [0, -squash, base * (1 + squash)]])
    shadow = cv2.warpAffine(mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST)
    return (mask.astype(bool) | (shadow > 0)).astype(np.uint8)
