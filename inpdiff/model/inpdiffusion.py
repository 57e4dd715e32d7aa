"""InpDiffusion: ACN + DN, the sampler with ensembling, and checkpoint I/O (safetensors + JSON)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from .acn import ACN
from .diffusion import Schedule, step
from .dn import DN

STRIDE = 32  # inputs are padded to a multiple of the coarsest scale


class InpDiffusion(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.acn = ACN(cfg.model)
        self.dn = DN(cfg.model, cfg.model.diffusion and cfg.diffusion.self_condition)
        self.schedule = Schedule(cfg.diffusion.timesteps, cfg.diffusion.schedule, cfg.diffusion.signal_scale)

    def conditions(self, rgb01: torch.Tensor) -> list[torch.Tensor]:
        """Once per image: the DN-ready conditions at strides 4, 8, 16, 32."""
        return self.dn.project(*self.acn(rgb01 * 255.0))

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, conds: list[torch.Tensor],
                x0_prev: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits (x0 = 2 * sigmoid - 1) and edge logits, both (B, 1, H, W)."""
        return self.dn(x_t, t, conds, x0_prev)

    def forward(self, rgb01: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                self_condition: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Training's pass. self_condition: first estimate x0 without gradients and condition on it,
        as the sampler will from its second step on (the other half of training sees zeros, its first)."""
        conds = self.conditions(rgb01)
        x0_prev = None
        if self_condition:
            with torch.no_grad():
                x0_prev = 2 * torch.sigmoid(self.denoise(x_t, t, [c.detach() for c in conds])[0]) - 1
        return self.denoise(x_t, t, conds, x0_prev)

    def baseline_input(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The single-pass baseline's fixed DN input: an empty mask at the last timestep."""
        t = torch.full((like.shape[0],), self.schedule.timesteps - 1, device=like.device, dtype=torch.long)
        return torch.zeros(like.shape[0], 1, *like.shape[2:], device=like.device), t


@dataclass
class Prediction:
    prob: torch.Tensor          # (B, 1, H, W) ensemble mean of the per-step mask probabilities
    uncertainty: torch.Tensor   # (B, 1, H, W) std across samples (zeros for one sample)
    edge: torch.Tensor          # (B, 1, H, W) edge probability, ensemble mean


@torch.no_grad()
def sample(model: InpDiffusion, rgb01: torch.Tensor, steps: int | None = None, samples: int | None = None,
           eta: float | None = None, generator: torch.Generator | None = None,
           noise: torch.Tensor | None = None) -> Prediction:
    """Localize: conditions once, then `steps` denoising steps for `samples` masks in one batch.

    rgb01: (B, 3, H, W) in [0, 1], any size (padded to a multiple of 32 and cropped back).
    noise: optional (steps + 1, B * samples, 1, Hp, Wp) with the padded size: noise[0] is the
    starting x_T, noise[i + 1] the fresh noise of step i (for comparisons with other backends).
    """
    d = model.cfg.diffusion
    steps = d.sampling_steps if steps is None else steps
    samples = d.samples if samples is None else samples
    eta = d.eta if eta is None else eta
    b, _, h, w = rgb01.shape
    padded = pad_to_multiple(rgb01, STRIDE)
    conds = model.conditions(padded)
    if not model.cfg.model.diffusion:  # single-pass baseline: one forward, no sampling
        logit, edge_logit = model.denoise(*model.baseline_input(padded), conds)
        prob = torch.sigmoid(logit)[..., :h, :w]
        return Prediction(prob, torch.zeros_like(prob), torch.sigmoid(edge_logit)[..., :h, :w])

    conds = [c.repeat_interleave(samples, dim=0) for c in conds]
    n = b * samples
    shape = (n, 1, *padded.shape[2:])
    dev = padded.device
    draw = (lambda i: noise[i].to(dev)) if noise is not None else (
        lambda i: torch.randn(shape, generator=generator, device=dev))
    x = draw(0)
    times = model.schedule.sampling_times(steps).to(dev)
    coef = model.schedule.step_coefficients(steps, eta).to(dev)
    prob_sum = torch.zeros(shape, device=dev)
    edge_sum = torch.zeros(shape, device=dev)
    x0 = None
    for i in range(steps):
        logit, edge_logit = model.denoise(x, times[i].expand(n), conds, x0)
        p = torch.sigmoid(logit)
        prob_sum += p
        edge_sum += torch.sigmoid(edge_logit)
        fresh = draw(i + 1) if coef[i, 2] > 0 else torch.zeros(shape, device=dev)
        x0 = 2 * p - 1
        x = step(x, x0, i, fresh, coef)
    per_sample = (prob_sum / steps).view(b, samples, 1, *shape[2:])[..., :h, :w]
    edge = (edge_sum / steps).view(b, samples, 1, *shape[2:])[..., :h, :w].mean(1)
    return Prediction(per_sample.mean(1), per_sample.std(1, correction=0), edge)


def pad_to_multiple(x: torch.Tensor, m: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = -h % m, -w % m
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div_(255.0)


# ---- checkpoints: model.safetensors + config.json, never pickle ----

def save_model(model: InpDiffusion, out_dir: str | Path, extra: dict | None = None) -> None:
    from safetensors.torch import save_file

    from ..io import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(out / "model.safetensors", lambda p: save_file(state, str(p)))
    meta = {"config": model.cfg.to_dict(), **(extra or {})}
    atomic_write(out / "config.json", lambda p: p.write_text(json.dumps(meta, indent=2)))


def load_model(ckpt_dir: str | Path, device: str | torch.device = "cpu") -> InpDiffusion:
    from safetensors.torch import load_file

    ckpt = Path(ckpt_dir)
    if not ckpt.is_dir():
        raise FileNotFoundError(f"checkpoint {ckpt}: no such folder")
    for name in ("model.safetensors", "config.json"):
        if not (ckpt / name).is_file():
            raise FileNotFoundError(f"checkpoint {ckpt}: {name} is missing (expected model.safetensors + config.json)")
    meta = json.loads((ckpt / "config.json").read_text())
    cfg = Config.from_dict(meta["config"])
    cfg.model.pretrained_backbone = None  # the checkpoint already holds the backbone
    model = InpDiffusion(cfg)
    try:
        model.load_state_dict(load_file(str(ckpt / "model.safetensors")))
    except RuntimeError as e:
        raise ValueError(f"checkpoint {ckpt}: weights do not match its config.json ({str(e).splitlines()[0]})") from e
    return model.to(device).eval()
