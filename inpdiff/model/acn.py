"""Adaptive Conditional Network: image -> semantic and edge conditions at strides 4, 8, 16, 32.

Run once per image; the denoising loop only reads its outputs.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig

# ImageNet statistics, so that a pretrained backbone file sees what it was trained on.
RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1, act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, dilation * (k // 2), dilation=dilation, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), conv_bn(c, c, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class Pyramid(nn.Module):
    """A small hierarchical CNN: a stride-4 stem, then one stage per scale (strides 4, 8, 16, 32)."""

    def __init__(self, cin: int, widths: tuple[int, ...], depths: tuple[int, ...]):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(cin, widths[0] // 2, stride=2), conv_bn(widths[0] // 2, widths[0], stride=2))
        self.stages = nn.ModuleList()
        for i, (w, d) in enumerate(zip(widths, depths)):
            down = nn.Identity() if i == 0 else conv_bn(widths[i - 1], w, stride=2)
            self.stages.append(nn.Sequential(down, *[ResBlock(w) for _ in range(d)]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


def srm_kernels() -> torch.Tensor:
    """The three classic SRM high-pass residual filters (Fridrich & Kodovsky), as (3, 1, 5, 5)."""
    k1 = torch.tensor([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2],
                       [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]], dtype=torch.float32) / 12
    k2 = torch.zeros(5, 5)
    k2[1:4, 1:4] = torch.tensor([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]], dtype=torch.float32) / 4
    k3 = torch.zeros(5, 5)
    k3[2, 1:4] = torch.tensor([1, -2, 1], dtype=torch.float32) / 2
    return torch.stack([k1, k2, k3]).unsqueeze(1)


def srm_weight() -> torch.Tensor:
    """The SRM filters of each colour channel, as one dense (9, 3, 5, 5) kernel: output 3c + i is filter i
    of channel c. Classical (diffusion- or PDE-based) fills leave regions with almost no sensor noise;
    camera noise and JPEG texture live in exactly these residuals, so this is where the fill shows."""
    w = torch.zeros(9, 3, 5, 5)
    for c in range(3):
        w[3 * c:3 * c + 3, c] = srm_kernels()[:, 0]
    return w


class ConstrainedHighPass(nn.Module):
    """Learned high-pass filters (Bayar & Stamm's constrained convolution): each 5x5 kernel's centre is
    -1 and its other taps sum to 1, so it predicts a pixel from its neighbours and keeps the error,
    a residual the training can shape beside the fixed SRM ones."""

    def __init__(self, cout: int = 6, k: int = 5):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, 3, k, k) * 0.1)
        centre = torch.zeros(1, 1, k, k)
        centre[..., k // 2, k // 2] = 1
        self.register_buffer("centre", centre, persistent=False)

    def kernels(self) -> torch.Tensor:
        w = self.weight * (1 - self.centre)
        return w / w.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3) - self.centre


class ImageContext(nn.Module):
    """Compares every position with the rest of its image: features standardised by the image's own
    per-channel statistics (does this region's noise agree with the image's?), and, where `attend`,
    one light self-attention over the positions (is there a region elsewhere that looks like this?)."""

    def __init__(self, c: int, attend: bool):
        super().__init__()
        self.mix = nn.Sequential(nn.Conv2d(2 * c, c, 1, bias=False), nn.BatchNorm2d(c))
        self.attend = attend
        if attend:
            d = max(16, c // 4)
            self.q, self.k, self.v = nn.Conv2d(c, d, 1), nn.Conv2d(c, d, 1), nn.Conv2d(c, c, 1)
            self.out = nn.Conv2d(c, c, 1)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x + self.mix(torch.cat([x, F.instance_norm(x)], dim=1)))
        if not self.attend:
            return x
        b, c, h, w = x.shape
        q = self.q(x).flatten(2).transpose(1, 2)           # (B, HW, d)
        k = self.k(x).flatten(2)                           # (B, d, HW)
        v = self.v(x).flatten(2).transpose(1, 2)           # (B, HW, C)
        a = torch.softmax(q @ k / k.shape[1] ** 0.5, dim=-1)
        return x + self.out((a @ v).transpose(1, 2).reshape(b, c, h, w))


class DilatedStream(nn.Module):
    """One DMFE stream at one scale: parallel dilated 3x3 convs (several receptive fields), fused by 1x1.

    With `enabled=False` (the "DMFE off" ablation) it is a single 1x1 projection.
    """

    def __init__(self, cin: int, cout: int, dilations: tuple[int, ...], enabled: bool = True):
        super().__init__()
        self.enabled = enabled
        if enabled:
            self.branches = nn.ModuleList(conv_bn(cin, cout, dilation=d) for d in dilations)
            self.fuse = conv_bn(cout * len(dilations), cout, k=1)
        else:
            self.proj = conv_bn(cin, cout, k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return self.proj(x)
        return self.fuse(torch.cat([b(x) for b in self.branches], dim=1))


class ACN(nn.Module):
    """Backbone + high-frequency pyramid, each followed by its DMFE stream at every scale."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        # The backbone's input, (rgb01 - mean) / std, as one affine map of the pixels (0..255).
        std, mean = torch.tensor(RGB_STD).view(1, 3, 1, 1), torch.tensor(RGB_MEAN).view(1, 3, 1, 1)
        self.register_buffer("scale", 1 / (255 * std), persistent=False)
        self.register_buffer("shift", -mean / std, persistent=False)
        self.backbone = Pyramid(3, cfg.backbone_widths, cfg.backbone_depths)
        self.register_buffer("srm", srm_weight(), persistent=False)
        self.bayar = ConstrainedHighPass() if cfg.learned_highpass else None
        self.hf = Pyramid(9 + (6 if cfg.learned_highpass else 0), cfg.hf_widths, (1,) * len(cfg.hf_widths))
        # Image context on the residual stream at strides 8, 16, 32; attention at the coarsest two.
        n = len(cfg.hf_widths)
        self.context = nn.ModuleList(ImageContext(w, attend=i >= n - 2) if cfg.context and i > 0 else nn.Identity()
                                     for i, w in enumerate(cfg.hf_widths))
        self.semantic = nn.ModuleList(
            DilatedStream(w, c, cfg.dilations, cfg.use_dmfe) for w, c in zip(cfg.backbone_widths, cfg.cond_widths))
        self.edge = nn.ModuleList(
            DilatedStream(w, c, cfg.dilations, cfg.use_dmfe) for w, c in zip(cfg.hf_widths, cfg.cond_widths))
        if cfg.pretrained_backbone:
            self.load_backbone(cfg.pretrained_backbone)

    def forward(self, pixels: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """pixels: (B, 3, H, W) float in [0, 255] (what the deployed graph casts its uint8 input to), H and
        W multiples of 32."""
        sem_feats = self.backbone(pixels * self.scale + self.shift)
        residual = self.highpass(pixels)
        hf_feats = [c(f) for c, f in zip(self.context, self.hf(residual))]
        sem = [s(f) for s, f in zip(self.semantic, sem_feats)]
        edge = [e(f) for e, f in zip(self.edge, hf_feats)]
        return sem, edge

    def highpass(self, pixels: torch.Tensor) -> torch.Tensor:
        """The SRM and learned high-pass residuals in one convolution, truncated at 8 gray levels and
        scaled to [-1, 1]: the full-resolution work, a large part of a CPU's condition graph, done once.
        Always in full fp32: the residuals are a gray level or two out of 255, and TF32 or fp16
        arithmetic on a GPU moves them by about as much (a lent H200 measured it in the maps)."""
        kernels = self.srm if self.bayar is None else torch.cat([self.srm, self.bayar.kernels()])
        with torch.autocast(pixels.device.type, enabled=False), torch.backends.cudnn.flags(
                enabled=torch.backends.cudnn.enabled, benchmark=torch.backends.cudnn.benchmark,
                deterministic=torch.backends.cudnn.deterministic, allow_tf32=False):
            return F.conv2d(pixels.float(), kernels.float() / 8, padding=kernels.shape[-1] // 2).clamp(-1, 1)

    def load_backbone(self, path: str | Path) -> None:
        """Load backbone weights from a local safetensors file (keys with or without a `backbone.` prefix)."""
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained backbone {path}: no such file (nothing is downloaded)")
        state = {k.removeprefix("acn.").removeprefix("backbone."): v for k, v in load_file(str(path)).items()}
        own = self.backbone.state_dict()
        bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
        missing = [k for k in own if k not in state]
        if bad or missing:
            raise ValueError(f"pretrained backbone {path}: does not fit this config "
                             f"({len(missing)} missing tensors, {len(bad)} of another shape, e.g. {(bad + missing)[:3]})")
        self.backbone.load_state_dict({k: state[k] for k in own})
