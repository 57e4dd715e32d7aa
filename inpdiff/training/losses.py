"""Loss = mask_weight * (boundary-weighted BCE + Dice) + edge_weight * (balanced BCE + Dice) on the edge.

`sample_weight` (B,), optional, scales each sample's share of every term (diffusion's timestep weighting)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _per_sample(w: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.ones(like.shape[0], device=like.device) if w is None else w


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0,
              sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    per = 1 - (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return (per * _per_sample(sample_weight, logits)).mean()


def mask_loss(logits: torch.Tensor, mask: torch.Tensor, boundary: torch.Tensor, gain: float,
              sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """BCE weighted (1 + gain) in the band around the boundary, where localization errors live, + Dice."""
    w = 1 + gain * boundary
    sw = _per_sample(sample_weight, logits).view(-1, 1, 1, 1)
    bce = (F.binary_cross_entropy_with_logits(logits, mask, reduction="none") * w * sw).sum() / w.sum()
    return bce + dice_loss(logits, mask, sample_weight=sample_weight)


def edge_loss(logits: torch.Tensor, edge: torch.Tensor, sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Edges are a few % of pixels: BCE with positives up-weighted to balance them, + Dice."""
    pos = edge.sum().clamp(min=1.0)
    pos_weight = ((edge.numel() - pos) / pos).clamp(max=50.0)
    sw = _per_sample(sample_weight, logits).view(-1, 1, 1, 1)
    bce = (F.binary_cross_entropy_with_logits(logits, edge, pos_weight=pos_weight, reduction="none") * sw).mean()
    return bce + dice_loss(logits, edge, sample_weight=sample_weight)


def total_loss(mask_logits: torch.Tensor, edge_logits: torch.Tensor, mask: torch.Tensor, edge: torch.Tensor,
               boundary: torch.Tensor, mask_weight: float, edge_weight: float, boundary_gain: float,
               sample_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    lm = mask_loss(mask_logits, mask, boundary, boundary_gain, sample_weight)
    le = edge_loss(edge_logits, edge, sample_weight) if edge_weight > 0 else torch.zeros((), device=mask.device)
    loss = mask_weight * lm + edge_weight * le
    return loss, {"loss": loss.item(), "mask": lm.item(), "edge": le.item()}
