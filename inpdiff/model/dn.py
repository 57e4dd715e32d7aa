"""Denoising Network: noisy mask + timestep + conditions -> clean-mask logits and edge logits.

The noisy mask enters pixel-unshuffled by 4, so the whole U-Net runs at strides 4..32 and the
heads pixel-shuffle back: full-resolution output at a fraction of the cost of a stride-1 U-Net,
which matters because this network runs at every sampling step.

Condition fusion is concatenation: each decoder level sees [features, semantic, edge]. A conv over a
concatenation is the sum of convs over its parts, so the conditions' part is computed once per
image (`project`) and added inside the loop. This keeps concatenation's exact spatial alignment
(which attention would blur and FiLM would discard: conditions are maps, not vectors) at no per-step
cost. The timestep modulates each block by FiLM, as in standard diffusion U-Nets.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig

UNSHUFFLE = 4


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class Block(nn.Module):
    """Residual block: conv -> GN -> (+condition) -> FiLM(t) -> SiLU -> conv -> GN -> SiLU."""

    def __init__(self, cin: int, cout: int, time_dim: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm1 = nn.GroupNorm(min(groups, cout), cout)
        self.film = nn.Linear(time_dim, 2 * cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(x)
        if cond is not None:
            h = h + cond
        scale, shift = self.film(temb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm1(h) * (1 + scale) + shift)
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.skip(x)


class Head(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.SiLU(), nn.Conv2d(c, UNSHUFFLE ** 2, 1))
        self.shuffle = nn.PixelShuffle(UNSHUFFLE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(x))


class DN(nn.Module):
    def __init__(self, cfg: ModelConfig, self_condition: bool = False):
        super().__init__()
        w, c, td, g = cfg.dn_widths, cfg.cond_widths, cfg.time_dim, cfg.norm_groups
        self.time_dim = td
        self.self_condition = self_condition
        self.time_mlp = nn.Sequential(nn.Linear(td, td), nn.SiLU(), nn.Linear(td, td))
        self.unshuffle = nn.PixelUnshuffle(UNSHUFFLE)
        self.inp = nn.Conv2d(UNSHUFFLE ** 2 * (2 if self_condition else 1), w[0], 3, padding=1)
        self.down = nn.ModuleList([nn.Identity()] + [nn.Conv2d(w[i - 1], w[i], 3, 2, 1) for i in range(1, len(w))])
        self.enc = nn.ModuleList(Block(wi, wi, td, g) for wi in w)
        # Condition projections: [semantic, edge] at each scale -> that decoder level's width.
        self.cond_proj = nn.ModuleList(nn.Conv2d(2 * ci, wi, 1) for ci, wi in zip(c, w))
        last = len(w) - 1
        self.dec = nn.ModuleList(
            Block(w[i] if i == last else w[i] + w[i + 1], w[i], td, g) for i in range(len(w)))
        self.mask_head = Head(w[0])
        self.edge_head = Head(w[0])

    def project(self, sem: list[torch.Tensor], edge: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-image half of the concatenation fusion; computed once, reused at every step."""
        return [p(torch.cat([s, e], dim=1)) for p, s, e in zip(self.cond_proj, sem, edge)]

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, conds: list[torch.Tensor],
                x0_prev: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x0_prev: the previous x0 estimate in [-1, 1] of a self-conditioned DN (zeros: none yet)."""
        temb = self.time_mlp(timestep_embedding(t, self.time_dim))
        if self.self_condition:
            x_t = torch.cat([x_t, torch.zeros_like(x_t) if x0_prev is None else x0_prev], dim=1)
        h = self.inp(self.unshuffle(x_t))
        skips = []
        for down, enc in zip(self.down, self.enc):
            h = enc(down(h), temb)
            skips.append(h)
        for i in reversed(range(len(self.dec))):
            if i < len(self.dec) - 1:
                h = torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), skips[i]], dim=1)
            h = self.dec[i](h, temb, conds[i])
        return self.mask_head(h), self.edge_head(h)
