"""The deployed graphs' contract and the sampling loop, each written once.

Contract: `condition.onnx` takes IMAGE and gives CONDITIONS; `denoise_step.onnx` takes STEP_INPUTS
plus the conditions and gives STEP_OUTPUTS. The export writes these names, every backend and check
feeds them. The loop runs the condition graph once per tile (its outputs repeated for each sample),
then the step graph from noise[0] through every step row, and averages the steps' probability maps.
It works on NumPy arrays (ONNX Runtime) and torch tensors (the torch backend) alike; TensorRT runs
the same loop as one captured call on the GPU. Pure Python: no torch, no onnx.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import steps

GRAPHS = ("condition", "denoise_step")
IMAGE = "image"
CONDITIONS = ("cond0", "cond1", "cond2", "cond3")
STEP_INPUTS = ("x_t", "row", "noise")
STEP_OUTPUTS = ("x_next", "prob", "edge")


def onnx_file(graph: str) -> str:
    return f"{graph}.onnx"


def step_feed(x_t, row: int, noise, conds: dict) -> dict:
    """The step graph's inputs by name (row as the (1,) int64 tensor the graph takes)."""
    import numpy as np

    return {"x_t": x_t, "row": np.array([row], np.int64), "noise": noise, **conds}


def step_rows(mode: str, n_steps: int, max_steps: int) -> list[int]:
    """The step-table rows of an `n_steps`-step sampler, in order."""
    return [steps.row(mode, n_steps, i, max_steps) for i in range(n_steps)]


def sample_loop(condition: Callable[[Any], dict], step: Callable, tiles: Any, samples: int, noise: Any,
                rows: list, repeat: Callable[[Any, int], Any]) -> Any:
    """Mean over the steps of the probability map, (N * samples, 1, T, T).

    condition(tiles) -> {name: tensor}; step(x_t, row, noise, conds) -> (x_next, prob, edge);
    noise: (len(rows) + 1, N * samples, 1, T, T), tile-major; repeat(tensor, samples) repeats each
    tile's conditions for its samples (np.repeat or repeat_interleave along the batch)."""
    conds = {name: repeat(c, samples) for name, c in condition(tiles).items()}
    x, total = noise[0], 0.0
    for i, row in enumerate(rows):
        x, prob, _ = step(x, row, noise[i + 1], conds)
        total = total + prob
    return total / len(rows)
