"""The latent-decoder family: what diffusion inpainting (Stable Diffusion, FLUX and their kin) leaves.

Those pipelines generate the hole in an autoencoder's latent space and render it with the decoder, so
the filled region carries the decoder's traces (its upsampling, its colour and texture statistics).
We use a real one: TAEF2, the tiny autoencoder of the FLUX.2 latent space (madebyollin/taesd, MIT),
read from `../shared/models/taef2` (or `INPDIFF_TAEF2`); its weights are never copied into the project.

Methods:
- `taef2`: encode, fill the hole's latents (smooth fill from the border + noise shaped like the
  neighbourhood's latents), decode, and blend the decoded region in with a soft edge;
- `taef2-paste`: the same latents, but the whole image makes the round trip and the original is pasted
  back outside the mask, as many inpainting pipelines do;
- `ae8`, `ae8-paste` (family `latent-own`): the same two with the project's own latent autoencoder
  (`models/inpainters/ae8`, see learned.py) in place of TAEF2: a second decoder of the same kind, so
  that a detector can learn what a decoder leaves while TAEF2's family is held out and stands for the
  decoders of tools it never saw.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .learned import load_inpainter

LATENT_SCALE = 8  # the decoder upsamples 2x three times


def taef2_dir() -> Path:
    """INPDIFF_TAEF2, else ../shared/models/taef2 beside the source checkout, else beside the working
    folder (an installed package lives elsewhere; commands run from the repository root)."""
    env = os.environ.get("INPDIFF_TAEF2")
    if env:
        return Path(env)
    beside = [Path(__file__).resolve().parents[3].parent, Path.cwd().resolve().parent]
    found = [d / "shared" / "models" / "taef2" for d in beside]
    return next((d for d in found if d.is_dir()), found[0])


def _nets():
    """TAESD's layout (conv, Block, stride-2 conv; Clamp, Upsample), built from the key names."""
    import torch
    from torch import nn

    def conv(cin, cout, **kw):
        return nn.Conv2d(cin, cout, 3, padding=1, **kw)

    class Block(nn.Module):
        def __init__(self, c: int, pooled: bool = False):
            super().__init__()
            self.conv = nn.Sequential(conv(c, c), nn.ReLU(), conv(c, c), nn.ReLU(), conv(c, c))
            # The coarsest blocks add a 1x1 -> GroupNorm -> ReLU -> 1x1 branch to their input first.
            self.pool = nn.Sequential(nn.Conv2d(c, 4 * c, 1, bias=False), nn.GroupNorm(4, 4 * c), nn.ReLU(),
                                      nn.Conv2d(4 * c, c, 1, bias=False)) if pooled else None

        def forward(self, x):
            if self.pool is not None:
                x = x + self.pool(x)
            return torch.relu(self.conv(x) + x)

    class Clamp(nn.Module):
        def forward(self, x):
            return torch.tanh(x / 3) * 3

    c = 64
    encoder = nn.Sequential(conv(3, c), Block(c), conv(c, c, stride=2, bias=False), *[Block(c) for _ in range(3)],
                            conv(c, c, stride=2, bias=False), *[Block(c) for _ in range(3)],
                            conv(c, c, stride=2, bias=False), *[Block(c, pooled=True) for _ in range(3)], conv(c, 32))

    def up():
        return nn.Upsample(scale_factor=2), conv(c, c, bias=False)

    decoder = nn.Sequential(Clamp(), conv(32, c), nn.ReLU(), *[Block(c, pooled=True) for _ in range(3)],
                            *up(), *[Block(c) for _ in range(3)], *up(), *[Block(c) for _ in range(3)],
                            *up(), Block(c), conv(c, 3))
    return encoder, decoder


@lru_cache(maxsize=2)
def load_taef2(folder: str | None = None):
    """(encoder, decoder) in eval mode on the CPU; a clear error where the weights are missing."""
    import torch

    folder = Path(folder) if folder else taef2_dir()
    encoder, decoder = _nets()
    for net, name in ((encoder, "taef2_encoder.pth"), (decoder, "taef2_decoder.pth")):
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"latent fills need the TAEF2 autoencoder: {path} is missing "
                                    f"(set INPDIFF_TAEF2 to the folder holding {name})")
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))  # tensors only
        net.eval().requires_grad_(False)
    return encoder, decoder


def _to_tensor(image: np.ndarray):
    import torch
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0


def _to_image(x) -> np.ndarray:
    return (x[0].clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).numpy()


def _pad(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.copyMakeBorder(image, 0, -h % LATENT_SCALE, 0, -w % LATENT_SCALE, cv2.BORDER_REFLECT_101)


def roundtrip(image: np.ndarray, folder: str | None = None, edit=None, nets=None) -> np.ndarray:
    """Encode and decode an RGB uint8 image (any size); `edit` may change the (C, h, w) latents between.
    `nets`: (encoder, decoder) of another autoencoder than TAEF2."""
    import torch

    encoder, decoder = nets or load_taef2(folder)
    h, w = image.shape[:2]
    with torch.no_grad():
        z = encoder(_to_tensor(_pad(image)))
        if edit is not None:
            z = torch.from_numpy(edit(z[0].numpy()))[None]
        return _to_image(decoder(z))[:h, :w]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def fill_latents(z: np.ndarray, hole: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """z: (C, h, w) latents, hole: (h, w) bool. Border values diffused in (normalised convolution at
    growing scales), plus Gaussian noise with the per-channel spread of the latents around the hole."""
    known = (~hole).astype(np.float32)
    filled = z.copy()
    ring = cv2.dilate(hole.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~hole
    spread = z[:, ring].std(axis=1) if ring.any() else z.reshape(len(z), -1).std(axis=1)
    for c in range(len(z)):
        num, den = z[c] * known, known
        smooth = np.zeros_like(z[c])
        for sigma in (1, 2, 4, 8, 16):  # finest scale that reaches a pixel wins
            n, d = cv2.GaussianBlur(num, (0, 0), sigma), cv2.GaussianBlur(den, (0, 0), sigma)
            todo = (smooth == 0) & (d > 1e-3)
            smooth[todo] = n[todo] / d[todo]
        noise = cv2.GaussianBlur(rng.standard_normal(z[c].shape).astype(np.float32), (0, 0), 0.7)
        noise *= spread[c] * rng.uniform(0.5, 1.0) / max(noise.std(), 1e-6)
        filled[c][hole] = smooth[hole] + noise[hole]
    return filled


def _latent_fill(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, nets=None) -> np.ndarray:
    """The whole image decoded from latents whose hole was filled."""
    def fill(z: np.ndarray) -> np.ndarray:
        hole = cv2.resize(_pad(mask.astype(np.uint8)), (z.shape[2], z.shape[1]), interpolation=cv2.INTER_AREA) > 0
        return fill_latents(z, hole, rng)

    return roundtrip(image, edit=fill, nets=nets)


def taef2(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, nets=None) -> np.ndarray:
    """Decoded fill blended in: alpha 1 on the hole falling to 0 over a few pixels inside its edge.
    (The mask is the edited region: nothing outside it changes.)"""
    decoded = _latent_fill(image, mask, rng, nets).astype(np.float32)
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    alpha = np.clip(dist / rng.uniform(2, 6), 0, 1)[:, :, None] * (mask[:, :, None] > 0)
    return np.clip(alpha * decoded + (1 - alpha) * image + 0.5, 0, 255).astype(np.uint8)


def taef2_paste(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, nets=None) -> np.ndarray:
    """The whole image decoded; the registry pastes the original back outside the mask."""
    return _latent_fill(image, mask, rng, nets)


class OwnLatentFill:
    """`taef2` (blended) or `taef2-paste` with the project's own autoencoder (a learned.py `ae8` folder)."""

    def __init__(self, checkpoint: Path, paste: bool):
        self.checkpoint, self.paste = Path(checkpoint), paste
        self._nets = None

    def __call__(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self._nets is None:
            body = load_inpainter(self.checkpoint).body
            self._nets = body.encoder, body.decoder
        return (taef2_paste if self.paste else taef2)(image, mask, rng, self._nets)
