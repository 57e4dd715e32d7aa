"""Does a tile judged with its whole photo's context get what judging the photo whole gets? (issue 12)

edge-c's ImageContext compares each position with the rest of its *tile*: features standardised by the
tile's per-channel statistics, and at the two coarsest scales an attention over the tile's positions.
Judging a 1 MP photo as one tile gained +0.02-0.03 on the two OpenCV tools no model saw, but one large
tile does not fit the memory goal. This asks, before any export or runtime work, whether the photo's
context given to ordinary tiles recovers that gain. PyTorch, the network alone (no copy evidence), the
shipped FP32 model; per fill family the mean pixel AUC of each variant and its difference from the
default tiles, with a 95% paired bootstrap over edits:

- tiles: the runtime's default plan (tiles of up to 512 pixels);
- whole: the photo as one tile (--max-tile 1024);
- tiles + photo statistics: each tile's ImageContext standardises by the photo's statistics (its
  residual features computed on the whole photo, once);
- tiles + photo statistics + attention: and its attention looks at every position of the photo.

    python benchmarks/image_context.py cache/synth/sun-fsr cache/synth/sun-shiftmap [--model models/edge-c]
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inpdiff.data.datasets import discover_all, load_pair  # noqa: E402
from inpdiff.metrics import roc_auc  # noqa: E402
from inpdiff.model.acn import ImageContext  # noqa: E402
from inpdiff.runtime.localizer import Localizer, LocalizeConfig  # noqa: E402

_PHOTO: dict[ImageContext, tuple] = {}  # module -> the photo's (mean, var[, keys, values]) while set


def _forward(self: ImageContext, x: torch.Tensor) -> torch.Tensor:
    """ImageContext.forward, with the photo's statistics and attention keys where they are set."""
    photo = _PHOTO.get(self)
    if photo is None:
        return _ORIGINAL(self, x)
    mean, var = photo[0], photo[1]
    x = F.relu(x + self.mix(torch.cat([x, (x - mean) / torch.sqrt(var + 1e-5)], dim=1)))
    if not self.attend:
        return x
    b, c, h, w = x.shape
    q = self.q(x).flatten(2).transpose(1, 2)
    k, v = (photo[2], photo[3]) if len(photo) > 2 else (self.k(x).flatten(2), self.v(x).flatten(2).transpose(1, 2))
    a = torch.softmax(q @ k / k.shape[1] ** 0.5, dim=-1)
    return x + self.out((a @ v).transpose(1, 2).reshape(b, c, h, w))


_ORIGINAL = ImageContext.forward


@contextlib.contextmanager
def photo_context(acn, image: np.ndarray, attention: bool):
    """While inside, every ImageContext of `acn` uses the whole photo's statistics (and attention keys)."""
    with torch.no_grad():
        h, w = image.shape[:2]
        pixels = torch.from_numpy(image).float().permute(2, 0, 1)[None]
        pixels = F.pad(pixels, (0, -w % 32, 0, -h % 32), mode="reflect")
        kernels = acn.srm if acn.bayar is None else torch.cat([acn.srm, acn.bayar.kernels()])
        residual = F.conv2d(pixels, kernels / 8, padding=kernels.shape[-1] // 2).clamp(-1, 1)
        for module, f in zip(acn.context, acn.hf(residual)):
            if not isinstance(module, ImageContext):
                continue
            mean, var = f.mean(dim=(2, 3), keepdim=True), f.var(dim=(2, 3), keepdim=True, unbiased=False)
            photo = (mean, var)
            if attention and module.attend:
                x = F.relu(f + module.mix(torch.cat([f, (f - mean) / torch.sqrt(var + 1e-5)], dim=1)))
                photo += (module.k(x).flatten(2), module.v(x).flatten(2).transpose(1, 2))
            _PHOTO[module] = photo
    try:
        yield
    finally:
        _PHOTO.clear()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="+", help="synth folders (inpdiff synth's layout)")
    ap.add_argument("--model", default=str(ROOT / "models" / "edge-c"))
    ap.add_argument("--resamples", type=int, default=2000)
    a = ap.parse_args()
    torch.set_num_threads(2)
    ImageContext.forward = _forward  # this script's own process: the photo's context where photo_context sets it
    samples = [s for s in discover_all(",".join(a.data)) if not s.pristine]
    tiles = Localizer(a.model, "torch", LocalizeConfig(copies=False), threads=2)
    whole = Localizer(a.model, "torch", LocalizeConfig(copies=False, max_tile=1024), threads=2)
    acn = tiles.backend.cond.model.acn
    variants = {"tiles": lambda im: tiles.localize(im).prob, "whole": lambda im: whole.localize(im).prob}
    for name, attention in (("tiles + photo statistics", False), ("tiles + photo statistics + attention", True)):
        def run(im, attention=attention):
            with photo_context(acn, im, attention):
                return tiles.localize(im).prob
        variants[name] = run
    auc: dict[str, list[float]] = {v: [] for v in variants}
    families = []
    for i, sample in enumerate(samples):
        image, mask = load_pair(sample)
        for name, predict in variants.items():
            auc[name].append(roc_auc(predict(image.copy()), mask))
        families.append(sample.method)
        print(f"{i + 1}/{len(samples)} {sample.image.name} {sample.method}: "
              + ", ".join(f"{auc[v][-1]:.3f}" for v in variants), file=sys.stderr)
    rng = np.random.default_rng(0)
    print(f"model {Path(a.model).name}, the network alone; tiles: {tiles.config.max_tile or 256} pixels at most\n")
    print("| family | edits | " + " | ".join(variants) + " |\n|---|---|" + "---|" * len(variants))
    for family in sorted(set(families)):
        at = [i for i, f in enumerate(families) if f == family]
        base = np.array([auc["tiles"][i] for i in at])
        cells = [f"{base.mean():.3f}"]
        for name in list(variants)[1:]:
            d = np.array([auc[name][i] for i in at]) - base
            boot = [rng.choice(d, len(d)).mean() for _ in range(a.resamples)]
            cells.append(f"{base.mean() + d.mean():.3f}, {d.mean():+.3f} ({np.percentile(boot, 2.5):+.3f} to "
                         f"{np.percentile(boot, 97.5):+.3f})")
        print(f"| {family} | {len(at)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
