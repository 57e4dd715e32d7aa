"""A learned fill: a small CNN inpainter trained by the project on the training photos, then used as
a fill method. No pretrained inpainting network can be downloaded here, and deep inpainting leaves
traces that diffusion-style classical fills do not (learned upsampling, decoder textures, a
network's colour statistics); a detector trained on classical fills alone scores near chance on them.

Network: a U-Net of gated convolutions (DeepFill v2's free-form-mask convolution: features times a
learned sigmoid gate), input the holed image and the mask, downsampled twice by strided convolutions
and upsampled by transposed convolutions (their checkerboard fingerprint is part of what a detector
must learn to see). Loss: L1, weighted 6x inside the hole. `inpdiff train-inpainter PHOTOS -o
models/inpainters/NAME --width W` saves model.safetensors + config.json; each width (and seed) gives
another fingerprint. Filling runs at the image's resolution (padded to a multiple of 4).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..io import atomic_write, list_images, read_image
from ..masks import random_mask

HOLE_WEIGHT = 6.0


@dataclass
class InpainterConfig:
    width: int = 16        # channels of the first level (x2, x4 below)
    crop: int = 80         # training crops
    batch: int = 12
    steps: int = 1500
    lr: float = 2e-3
    seed: int = 0
    threads: int = 1


def _network(width: int):
    import torch
    from torch import nn

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
            w = width
            self.e1 = nn.Sequential(Gated(4, w), Gated(w, w))
            self.e2 = nn.Sequential(Gated(w, 2 * w, 2), Gated(2 * w, 2 * w))
            self.e3 = nn.Sequential(Gated(2 * w, 4 * w, 2), Gated(4 * w, 4 * w, dilation=2),
                                    Gated(4 * w, 4 * w, dilation=4), Gated(4 * w, 4 * w))
            self.u2 = nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1)
            self.d2 = Gated(4 * w, 2 * w)
            self.u1 = nn.ConvTranspose2d(2 * w, w, 4, 2, 1)
            self.d1 = Gated(2 * w, w)
            self.out = nn.Conv2d(w, 3, 3, 1, 1)

        def forward(self, rgb01, mask):
            x = torch.cat([rgb01 * (1 - mask), mask], 1)
            a = self.e1(x)
            b = self.e2(a)
            c = self.e3(b)
            d = self.d2(torch.cat([self.u2(c), b], 1))
            e = self.d1(torch.cat([self.u1(d), a], 1))
            return torch.sigmoid(self.out(e))

    return UNet()


def train_inpainter(photos_dir: str | Path, out_dir: str | Path, cfg: InpainterConfig | None = None,
                    log=print) -> dict:
    """Train on random crops of the photos with random masks; save model.safetensors + config.json."""
    import torch
    from safetensors.torch import save_file

    cfg = cfg or InpainterConfig()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    photos = [read_image(p) for p in list_images(photos_dir)]
    photos = [p for p in photos if min(p.shape[:2]) >= cfg.crop]
    if not photos:
        raise FileNotFoundError(f"{photos_dir}: no photos of at least {cfg.crop}x{cfg.crop}")
    net = _network(cfg.width)
    opt = torch.optim.Adam(net.parameters(), cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps)
    t0, c = time.perf_counter(), cfg.crop
    for step in range(cfg.steps):
        images, masks = [], []
        for _ in range(cfg.batch):
            p = photos[rng.integers(len(photos))]
            y, x = rng.integers(p.shape[0] - c + 1), rng.integers(p.shape[1] - c + 1)
            crop = p[y:y + c, x:x + c]
            images.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
            masks.append(random_mask(c, c, rng, 0.05, 0.4))
        img = torch.from_numpy(np.ascontiguousarray(np.stack(images))).permute(0, 3, 1, 2).float() / 255
        m = torch.from_numpy(np.stack(masks)).float()[:, None]
        out = net(img, m)
        loss = ((out - img).abs() * (1 + (HOLE_WEIGHT - 1) * m)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == cfg.steps - 1:
            log(f"step {step}: loss {loss.item():.4f} ({time.perf_counter() - t0:.0f}s)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    atomic_write(out / "model.safetensors", lambda p: save_file(state, str(p)))
    meta = {"kind": "gated-unet-inpainter", "config": asdict(cfg), "final_loss": float(loss.item()),
            "photos": str(photos_dir), "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write(out / "config.json", lambda p: p.write_text(json.dumps(meta, indent=2)))
    return meta


class LearnedFill:
    """A trained inpainter as a fill method: fill(image, mask, rng) -> RGB uint8 (deterministic)."""

    def __init__(self, checkpoint: str | Path):
        self.checkpoint = Path(checkpoint)
        self._net = None

    def _load(self):
        from safetensors.torch import load_file

        meta = json.loads((self.checkpoint / "config.json").read_text())
        net = _network(int(meta["config"]["width"]))
        net.load_state_dict(load_file(str(self.checkpoint / "model.safetensors")))
        self._net = net.eval()

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import torch

        if self._net is None:
            self._load()
        h, w = image.shape[:2]
        ph, pw = -h % 4, -w % 4
        img = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect")
        m = np.pad(mask.astype(np.float32), ((0, ph), (0, pw)))
        with torch.inference_mode():
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
            out = self._net(x, torch.from_numpy(m)[None, None])[0].permute(1, 2, 0).numpy()
        return np.clip(out[:h, :w] * 255 + 0.5, 0, 255).astype(np.uint8)
