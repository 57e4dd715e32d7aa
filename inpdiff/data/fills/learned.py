"""Learned fills: CNN inpainters the project trains itself, then uses as fill methods. No pretrained
inpainting network can be downloaded here, and deep inpainting leaves traces that diffusion-style
classical fills do not (learned upsampling, decoder textures, a network's colour statistics).

Three designs, each a fingerprint of its own:
- `gated-unet`: a U-Net of gated convolutions (DeepFill v2's free-form-mask convolution: features
  times a learned sigmoid gate), downsampled twice by strided convolutions and upsampled by transposed
  convolutions (their checkerboard fingerprint is part of what a detector must learn to see);
- `ffc`: LaMa's design: downsample twice, residual fast-Fourier-convolution blocks whose global half
  mixes the whole image in the frequency domain (an image-wide receptive field from the first block),
  transposed-convolution upsampling;
- `ae8`: not an inpainter but a latent autoencoder of the latent-diffusion kind (8x smaller latents, a
  decoder that upsamples by nearest-neighbour 2x and a convolution, three times, as Stable Diffusion's
  and FLUX's do): a second latent decoder beside TAEF2 (latent.py fills its latents), so that a model
  can learn what a decoder leaves while TAEF2's family stays held out. It sees the whole image; the
  loss still weights the "hole" 6x and, with `adversarial`, the discriminator judges the patches there.

Losses: L1, weighted 6x inside the hole; with `adversarial`, also a PatchGAN discriminator's hinge
loss on the patches the hole touches and L1 feature matching on its layers (LaMa, pix2pixHD), which
turns the smooth colour fields an L1-only inpainter leaves into sharp texture. `inpdiff
train-inpainter PHOTOS -o models/inpainters/NAME` saves model.safetensors + config.json; it trains on
a CUDA GPU where one is present (`--seconds` bounds the run by wall time, with a cosine schedule over
it, so GPU runs are not bit-for-bit repeatable). Filling runs on the CPU at the image's resolution
(padded to a multiple of 4).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...io import atomic_write, list_images, read_image
from ..masks import random_mask
from .tools import ToolMissing

HOLE_WEIGHT = 6.0
ARCHS = ("gated-unet", "ffc", "ae8")  # the designs above, as `_network` builds them


@dataclass
class InpainterConfig:
    arch: str = "gated-unet"  # one of ARCHS
    width: int = 16        # channels of the first level (x2, x4 below)
    blocks: int = 6        # ffc: residual blocks at 1/4 resolution
    latent: int = 16       # ae8: latent channels
    adversarial: bool = False
    adv_weight: float = 0.1
    adv_start: float = 0.0  # share of the run trained on L1 alone first (ae8 collapses to a flat image without it)
    fm_weight: float = 1.0
    crop: int = 80         # training crops
    batch: int = 12
    steps: int = 1500
    seconds: float = 0.0   # > 0: stop after this much wall time, the schedule spread over it
    max_frac: float = 0.4  # largest hole, as a share of the crop
    lr: float = 2e-3
    seed: int = 0
    threads: int = 1


def _network(cfg: InpainterConfig):
    import torch
    from torch import nn

    w = cfg.width

    class Gated(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
            super().__init__()
            self.conv = nn.Conv2d(cin, 2 * cout, 3, stride, dilation, dilation)

        def forward(self, x):
            feat, gate = self.conv(x).chunk(2, dim=1)
            return nn.functional.elu(feat) * torch.sigmoid(gate)

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.e1 = nn.Sequential(Gated(4, w), Gated(w, w))
            self.e2 = nn.Sequential(Gated(w, 2 * w, 2), Gated(2 * w, 2 * w))
            self.e3 = nn.Sequential(Gated(2 * w, 4 * w, 2), Gated(4 * w, 4 * w, dilation=2),
                                    Gated(4 * w, 4 * w, dilation=4), Gated(4 * w, 4 * w))
            self.u2 = nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1)
            self.d2 = Gated(4 * w, 2 * w)
            self.u1 = nn.ConvTranspose2d(2 * w, w, 4, 2, 1)
            self.d1 = Gated(2 * w, w)
            self.out = nn.Conv2d(w, 3, 3, 1, 1)

        def forward(self, x):
            a = self.e1(x)
            b = self.e2(a)
            c = self.e3(b)
            d = self.d2(torch.cat([self.u2(c), b], 1))
            e = self.d1(torch.cat([self.u1(d), a], 1))
            return self.out(e)

    def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    class FourierUnit(nn.Module):
        """A 1x1 convolution on the real and imaginary parts of the image's 2-D spectrum."""

        def __init__(self, c: int):
            super().__init__()
            self.conv = conv_bn(2 * c, 2 * c, 1)

        def forward(self, x):
            h, wd = x.shape[-2:]
            f = torch.fft.rfft2(x.float(), norm="ortho")
            f = self.conv(torch.cat([f.real, f.imag], 1).to(x.dtype)).float()
            re, im = f.chunk(2, dim=1)
            return torch.fft.irfft2(torch.complex(re, im), s=(h, wd), norm="ortho").to(x.dtype)

    class FFCBlock(nn.Module):
        """LaMa's fast Fourier convolution, residual: a local half (3x3 convolutions) and a global
        half (the spectral transform), each fed by both halves."""

        def __init__(self, c: int):
            super().__init__()
            half = c // 2
            self.ll, self.gl, self.lg = (nn.Conv2d(half, half, 3, 1, 1, bias=False) for _ in range(3))
            self.g_in = conv_bn(half, half // 2, 1)
            self.fu = FourierUnit(half // 2)
            self.g_out = nn.Conv2d(half // 2, half, 1, bias=False)
            self.norm_l, self.norm_g = nn.BatchNorm2d(half), nn.BatchNorm2d(half)

        def forward(self, x):
            xl, xg = x.chunk(2, dim=1)
            g = self.g_in(xg)
            yl = self.ll(xl) + self.gl(xg)
            yg = self.lg(xl) + self.g_out(g + self.fu(g))
            return x + torch.cat([torch.relu(self.norm_l(yl)), torch.relu(self.norm_g(yg))], 1)

    class FFCNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(4, w, 7), nn.BatchNorm2d(w), nn.ReLU(),
                                      conv_bn(w, 2 * w, 3, 2), conv_bn(2 * w, 4 * w, 3, 2))
            self.body = nn.Sequential(*(FFCBlock(4 * w) for _ in range(cfg.blocks)))
            self.up = nn.Sequential(
                nn.ConvTranspose2d(4 * w, 2 * w, 3, 2, 1, output_padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
                nn.ConvTranspose2d(2 * w, w, 3, 2, 1, output_padding=1), nn.BatchNorm2d(w), nn.ReLU(),
                nn.ReflectionPad2d(3), nn.Conv2d(w, 3, 7))

        def forward(self, x):
            return self.up(self.body(self.down(x)))

    class AE8(nn.Module):
        def __init__(self):
            super().__init__()

            def down():
                return nn.Conv2d(w, w, 3, 2, 1), nn.SiLU(), nn.Conv2d(w, w, 3, 1, 1), nn.SiLU()

            def up():
                return nn.Upsample(scale_factor=2), nn.Conv2d(w, w, 3, 1, 1), nn.SiLU(), nn.Conv2d(w, w, 3, 1, 1), nn.SiLU()

            self.encoder = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1), nn.SiLU(), *down(), *down(), *down(),
                                         nn.Conv2d(w, cfg.latent, 3, 1, 1))
            self.decoder = nn.Sequential(nn.Conv2d(cfg.latent, w, 3, 1, 1), nn.SiLU(), nn.Conv2d(w, w, 3, 1, 1),
                                         nn.SiLU(), *up(), *up(), *up(), nn.Conv2d(w, 3, 3, 1, 1), nn.Sigmoid())

        def forward(self, x):
            return self.decoder(self.encoder(x))

    if cfg.arch not in ARCHS:
        raise ValueError(f"unknown inpainter arch {cfg.arch!r}; choose from {sorted(ARCHS)}")
    body = dict(zip(ARCHS, (UNet, FFCNet, AE8)))[cfg.arch]()

    class Inpainter(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = body

        def forward(self, rgb01, mask):
            if cfg.arch == "ae8":  # an autoencoder sees the whole image (its decoder ends in a sigmoid)
                return self.body(rgb01)
            return torch.sigmoid(self.body(torch.cat([rgb01 * (1 - mask), mask], 1)))

    return Inpainter()


def _discriminator(width: int = 64):
    """PatchGAN (pix2pix): its logits judge overlapping ~70-pixel patches; forward returns every
    layer's features too, for feature matching."""
    from torch import nn
    from torch.nn.utils import spectral_norm

    chans = [3, width, 2 * width, 4 * width, 8 * width]
    layers = [nn.Sequential(spectral_norm(nn.Conv2d(a, b, 4, 2 if i < 3 else 1, 1)), nn.LeakyReLU(0.2))
              for i, (a, b) in enumerate(zip(chans, chans[1:]))]

    class PatchGAN(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(layers)
            self.head = spectral_norm(nn.Conv2d(chans[-1], 1, 4, 1, 1))

        def forward(self, x):
            feats = []
            for layer in self.layers:
                x = layer(x)
                feats.append(x)
            return self.head(x), feats

    return PatchGAN()


def _mask_bank(n: int, size: int, cfg: InpainterConfig, rng: np.random.Generator) -> np.ndarray:
    return np.stack([random_mask(size, size, rng, 0.05, cfg.max_frac) for _ in range(n)])


def train_inpainter(photos_dir: str | Path, out_dir: str | Path, cfg: InpainterConfig | None = None,
                    log=print) -> dict:
    """Train on random crops of the photos with random masks; save model.safetensors + config.json.
    Runs on a CUDA GPU where one is present."""
    import torch
    from safetensors.torch import save_file
    from torch.nn import functional as F

    cfg = cfg or InpainterConfig()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rng = np.random.default_rng(cfg.seed)
    c = cfg.crop
    photos = [read_image(p) for folder in str(photos_dir).split(",") for p in list_images(folder)]
    photos = [torch.from_numpy(p).permute(2, 0, 1).to(dev) for p in photos if min(p.shape[:2]) >= c]
    if not photos:
        raise FileNotFoundError(f"{photos_dir}: no photos of at least {c}x{c}")
    # Masks come from a bank drawn once, flipped and rotated per use: drawing them costs more than a GPU step.
    bank = torch.from_numpy(_mask_bank(min(4 * cfg.steps, 2048), c, cfg, rng)).to(dev)
    net = _network(cfg).to(dev)
    opt = torch.optim.Adam(net.parameters(), cfg.lr, betas=(0.5, 0.999) if cfg.adversarial else (0.9, 0.999))
    disc = _discriminator().to(dev) if cfg.adversarial else None
    opt_d = torch.optim.Adam(disc.parameters(), cfg.lr, betas=(0.5, 0.999)) if disc else None

    def lr_at(progress: float) -> float:  # warm-up, then cosine to 1% over the steps or the seconds
        return cfg.lr * min(1.0, progress / 0.03) * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * min(progress, 1.0))))

    t0 = time.perf_counter()
    step, loss = 0, torch.zeros(())
    while True:
        progress = (time.perf_counter() - t0) / cfg.seconds if cfg.seconds > 0 else step / cfg.steps
        if progress >= 1:
            break
        for o in (opt, opt_d):
            for g in (o.param_groups if o else ()):
                g["lr"] = lr_at(max(progress, 1e-3))
        crops = []
        for _ in range(cfg.batch):
            p = photos[rng.integers(len(photos))]
            y, x = rng.integers(p.shape[1] - c + 1), rng.integers(p.shape[2] - c + 1)
            crop = p[:, y:y + c, x:x + c]
            crops.append(crop.flip(2) if rng.random() < 0.5 else crop)
        img = torch.stack(crops).float() / 255
        m = bank[torch.from_numpy(rng.integers(len(bank), size=cfg.batch)).to(dev)].float()[:, None]
        m = torch.rot90(m, int(rng.integers(4)), (2, 3))
        out = net(img, m)
        loss = ((out - img).abs() * (1 + (HOLE_WEIGHT - 1) * m)).mean()
        if disc is not None and progress >= cfg.adv_start:
            fake = img * (1 - m) + out * m
            # The discriminator judges the patches the hole touches; the rest of a fake is real pixels.
            d_real, f_real = disc(img)
            d_fake, _ = disc(fake.detach())
            hole = F.adaptive_max_pool2d(m, d_real.shape[-2:])
            loss_d = F.relu(1 - d_real).mean() + (F.relu(1 + d_fake) * hole).sum() / hole.sum().clamp(min=1)
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            d_gen, f_gen = disc(fake)
            adv = -(d_gen * hole).sum() / hole.sum().clamp(min=1)
            fm = sum((a - b.detach()).abs().mean() for a, b in zip(f_gen, f_real)) / len(f_gen)
            loss = loss + cfg.adv_weight * adv + cfg.fm_weight * fm
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0:
            log(f"step {step}: loss {loss.item():.4f} ({time.perf_counter() - t0:.0f}s)")
        step += 1
    out_path = Path(out_dir)
    out_path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write(out_path / "model.safetensors", lambda p: save_file(state, str(p)))
    meta = {"kind": f"{cfg.arch}-inpainter", "config": asdict(cfg), "steps_run": step,
            "final_loss": float(loss.item()), "photos": str(photos_dir), "device": str(dev),
            "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write(out_path / "config.json", lambda p: p.write_text(json.dumps(meta, indent=2)))
    log(f"{step} steps in {meta['seconds']:.0f}s on {dev}")
    return meta


def load_inpainter(checkpoint: Path):
    """A trained network from its folder (model.safetensors + config.json), in eval mode on the CPU."""
    from safetensors.torch import load_file

    if not (checkpoint / "config.json").is_file():
        # `pip install .` ships the runtime's graphs only; the inpainters' weights live in the checkout.
        raise ToolMissing(f"fill method {checkpoint.name!r} needs the project's trained network, "
                          f"not found at {checkpoint}: run from a source checkout "
                          "(pip install -e '.[train]') or train it (inpdiff train-inpainter)")
    meta = json.loads((checkpoint / "config.json").read_text())
    known = InpainterConfig.__dataclass_fields__
    net = _network(InpainterConfig(**{k: v for k, v in meta["config"].items() if k in known}))
    state = load_file(str(checkpoint / "model.safetensors"))
    # Checkpoints from before the Inpainter wrapper hold the U-Net's keys at the top level.
    if not any(k.startswith("body.") for k in state):
        state = {f"body.{k}": v for k, v in state.items()}
    net.load_state_dict(state)
    return net.eval().requires_grad_(False)


class LearnedFill:
    """A trained inpainter as a fill method: fill(image, mask, rng) -> RGB uint8 (deterministic)."""

    def __init__(self, checkpoint: str | Path):
        self.checkpoint = Path(checkpoint)
        self._net = None

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import torch

        if self._net is None:
            self._net = load_inpainter(self.checkpoint)
        h, w = image.shape[:2]
        ph, pw = -h % 4, -w % 4
        img = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect")
        m = np.pad(mask.astype(np.float32), ((0, ph), (0, pw)))
        with torch.inference_mode():
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
            out = self._net(x, torch.from_numpy(m)[None, None])[0].permute(1, 2, 0).numpy()
        return np.clip(out[:h, :w] * 255 + 0.5, 0, 255).astype(np.uint8)
