"""Loss = mask_weight * (boundary-weighted BCE + Dice) + edge_weight * (balanced BCE + Dice) on the edge."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)).mean()


def mask_loss(logits: torch.Tensor, mask: torch.Tensor, boundary: torch.Tensor, gain: float) -> torch.Tensor:
    """BCE weighted (1 + gain) in the band around the boundary, where localization errors live, + Dice."""
    w = 1 + gain * boundary
    bce = (F.binary_cross_entropy_with_logits(logits, mask, reduction="none") * w).sum() / w.sum()
    return bce + dice_loss(logits, mask)


def edge_loss(logits: torch.Tensor, edge: torch.Tensor) -> torch.Tensor:
    """Edges are a few % of pixels: BCE with positives up-weighted to balance them, + Dice."""
    pos = edge.sum().clamp(min=1.0)
    pos_weight = ((edge.numel() - pos) / pos).clamp(max=50.0)
    bce = F.binary_cross_entropy_with_logits(logits, edge, pos_weight=pos_weight)
    return bce + dice_loss(logits, edge)


def total_loss(mask_logits: torch.Tensor, edge_logits: torch.Tensor, mask: torch.Tensor, edge: torch.Tensor,
               boundary: torch.Tensor, mask_weight: float, edge_weight: float, boundary_gain: float
               ) -> tuple[torch.Tensor, dict[str, float]]:
    lm = mask_loss(mask_logits, mask, boundary, boundary_gain)
    le = edge_loss(edge_logits, edge) if edge_weight > 0 else torch.zeros((), device=mask.device)
    loss = mask_weight * lm + edge_weight * le
    return loss, {"loss": loss.item(), "mask": lm.item(), "edge": le.item()}
