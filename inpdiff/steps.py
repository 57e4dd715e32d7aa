"""Layout of the exported step tables, shared by the export (writes them) and the runtime (indexes them).

The denoising-step graph holds, as constants, the timestep and the (A, B, C) update coefficients for
every sampling length 1..max_steps in both modes (DDIM, DDPM), one row per (mode, steps, i). A runtime
passes only the row index. Pure Python: no torch.
"""
from __future__ import annotations

MODES = ("ddim", "ddpm")  # eta = 0 and eta = 1


def rows_per_mode(max_steps: int) -> int:
    return max_steps * (max_steps + 1) // 2


def row(mode: str, steps: int, i: int, max_steps: int) -> int:
    """Row of step i (0-based) of a `steps`-step sampler in `mode`."""
    if mode not in MODES:
        raise ValueError(f"unknown sampling mode {mode!r}; choose from {MODES}")
    if not 1 <= steps <= max_steps:
        raise ValueError(f"steps must be between 1 and {max_steps} for this model, got {steps}")
    if not 0 <= i < steps:
        raise ValueError(f"step {i} is outside 0..{steps - 1}")
    return MODES.index(mode) * rows_per_mode(max_steps) + steps * (steps - 1) // 2 + i
