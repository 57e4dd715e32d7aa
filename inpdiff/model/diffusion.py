"""Diffusion over masks: x0-prediction, discrete time, cosine schedule, DDIM/DDPM sampling.

Schedule. Discrete time with T=1000 and the cosine schedule of Nichol & Dhariwal (2021). The mask
signal is binary in {-1, +1}: under a linear schedule most of its steps are so noisy or so clean that
a 10-step sampler never visits the informative middle, whereas the cosine schedule spreads the
signal-to-noise ratio evenly in log space. Discrete time keeps the step coefficients a small table
(one row per sampling step) that the export folds into the denoising-step graph as constants.

Sampling. `steps` timesteps evenly spaced from T-1 down to 0. Each update is
    x_next = A[i] * x0 + B[i] * x_t + C[i] * noise
with (A, B, C) the DDIM coefficients; eta=0 gives deterministic DDIM, eta=1 the DDPM posterior
q(x_s | x_t, x0) of the strided chain. `step` is a pure function of tensors for the export.
"""
from __future__ import annotations

import math

import torch


def cosine_alphas_cumprod(timesteps: int, s: float = 0.008) -> torch.Tensor:
    t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, dim=0)


def linear_alphas_cumprod(timesteps: int) -> torch.Tensor:
    betas = torch.linspace(1e-4 * 1000 / timesteps, 0.02 * 1000 / timesteps, timesteps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


class Schedule:
    def __init__(self, timesteps: int = 1000, kind: str = "cosine", signal_scale: float = 1.0):
        makers = {"cosine": cosine_alphas_cumprod, "linear": linear_alphas_cumprod}
        if kind not in makers:
            raise ValueError(f"unknown noise schedule {kind!r}; choose one of {sorted(makers)}")
        if not signal_scale > 0:
            raise ValueError(f"signal_scale must be positive, got {signal_scale}")
        self.timesteps = timesteps
        ab = makers[kind](timesteps)
        # A mask signal scaled by s has every step's SNR times s^2 (Chen 2023, "On the importance of
        # noise scheduling"): with x_t renormalised to unit variance that is this variance-preserving
        # schedule on the unscaled signal, so training, the sampler's tables and the export stay as they are.
        self.alphas_cumprod = ab * signal_scale ** 2 / (ab * signal_scale ** 2 + 1 - ab)  # float64, index = timestep

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Noise a clean signal to timestep t (one per batch item)."""
        ab = self.alphas_cumprod.to(x0.device)[t].float().view(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def p2_weights(self, gamma: float) -> torch.Tensor:
        """(T,) float32 loss weights (1 + SNR_t)^-gamma (P2, Choi 2022, k = 1), mean 1 over t."""
        ab = self.alphas_cumprod
        w = (1 + ab / (1 - ab).clamp(min=1e-12)) ** -gamma
        return (w / w.mean()).float()

    def sampling_times(self, steps: int) -> torch.Tensor:
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        return torch.linspace(self.timesteps - 1, 0, steps).round().long()

    def step_coefficients(self, steps: int, eta: float = 0.0) -> torch.Tensor:
        """(steps, 3) table of (A, B, C); the last row maps to x0 itself."""
        times = self.sampling_times(steps)
        ab = self.alphas_cumprod
        rows = []
        for i in range(steps):
            if i == steps - 1:
                rows.append((1.0, 0.0, 0.0))
                continue
            ab_t, ab_s = ab[times[i]], ab[times[i + 1]]
            sigma = eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)).sqrt()
            dir_coef = (1 - ab_s - sigma ** 2).clamp(min=0).sqrt()
            b = dir_coef / (1 - ab_t).sqrt()
            a = ab_s.sqrt() - b * ab_t.sqrt()
            rows.append((float(a), float(b), float(sigma)))
        return torch.tensor(rows, dtype=torch.float32)


def step(x_t: torch.Tensor, x0: torch.Tensor, i: torch.Tensor | int, noise: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """One sampler update; `coef` is `Schedule.step_coefficients(...)`, `i` the step index."""
    a, b, c = coef[i].unbind(-1)
    return a * x0 + b * x_t + c * noise
