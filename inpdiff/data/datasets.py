"""Image + mask pairs from the folder layouts people use. numpy + OpenCV only.

Layouts, tried in this order:
  flat          ROOT/images/NAME.ext + ROOT/masks/NAME.png (what `inpdiff synth` writes; its
                samples.jsonl, when present, gives each sample's method)
  Tp/Gt         ROOT/Tp/NAME.ext + ROOT/Gt/NAME{,_gt,_mask}.ext, optional ROOT/Au/ of pristine images
                (CASIA, Columbia, IMD2020-style manipulation datasets)
  per-method    ROOT/METHOD/{images,image,img}/ + ROOT/METHOD/{masks,mask,gt}/ (Inpaint32K-style:
                one folder per inpainting method; pristine images under a folder named
                pristine/real/authentic, with or without masks)
A pristine sample has mask=None (an empty mask).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import ImageError, list_images, read_image, read_mask

IMAGE_DIRS = ("images", "image", "img")
MASK_DIRS = ("masks", "mask", "gt")
PRISTINE = {"pristine", "real", "authentic", "au"}


@dataclass(frozen=True)
class Sample:
    image: Path
    mask: Path | None
    method: str

    @property
    def pristine(self) -> bool:
        return self.mask is None


def _find_mask(mask_dir: Path, stem: str) -> Path | None:
    for suffix in ("", "_gt", "_mask"):
        for ext in (".png", ".bmp", ".tif", ".jpg"):
            p = mask_dir / f"{stem}{suffix}{ext}"
            if p.is_file():
                return p
    return None


def _pairs(image_dir: Path, mask_dir: Path | None, method: str, require_masks: bool) -> list[Sample]:
    samples, missing = [], []
    for img in list_images(image_dir):
        mask = _find_mask(mask_dir, img.stem) if mask_dir else None
        if mask is None and require_masks:
            missing.append(img.name)
        samples.append(Sample(img, mask, method))
    if missing:
        raise FileNotFoundError(f"{image_dir}: {len(missing)} image(s) have no mask in {mask_dir} "
                                f"(looked for NAME.png, NAME_gt.png, NAME_mask.png), e.g. {missing[:3]}")
    return samples


def _sub(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def discover(root: str | Path) -> list[Sample]:
    """All samples under `root`, with clear errors for an unknown layout or unpaired images."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such dataset folder")
    images, masks = _sub(root, IMAGE_DIRS), _sub(root, MASK_DIRS)
    if images and masks:
        samples = _pairs(images, masks, "unknown", require_masks=True)
        return _with_methods(root, samples)
    if (root / "Tp").is_dir() and (root / "Gt").is_dir():
        samples = _pairs(root / "Tp", root / "Gt", "tampered", require_masks=True)
        if (root / "Au").is_dir():
            samples += _pairs(root / "Au", None, "pristine", require_masks=False)
        return samples
    samples = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        images, masks = _sub(sub, IMAGE_DIRS), _sub(sub, MASK_DIRS)
        if images is None:
            continue
        pristine = sub.name.lower() in PRISTINE
        samples += [Sample(s.image, None if pristine else s.mask, "pristine" if pristine else sub.name)
                    for s in _pairs(images, masks, sub.name, require_masks=not pristine)]
    if not samples:
        raise FileNotFoundError(f"{root}: not a dataset layout this tool knows (images/+masks/, Tp/+Gt/[+Au/], "
                                f"or METHOD/images/+METHOD/masks/ folders)")
    return samples


def _with_methods(root: Path, samples: list[Sample]) -> list[Sample]:
    """Methods from samples.jsonl (written by `inpdiff synth`); its "pristine" samples get no mask."""
    index = root / "samples.jsonl"
    if not index.is_file():
        return samples
    methods = {}
    for line in index.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            methods[r["name"]] = r["method"]
    return [Sample(s.image, None if methods.get(s.image.stem) == "pristine" else s.mask,
                   methods.get(s.image.stem, s.method)) for s in samples]


def discover_all(roots: str) -> list[Sample]:
    """The samples of one or more dataset folders (comma-separated)."""
    return [s for root in roots.split(",") if root.strip() for s in discover(root.strip())]


def curriculum_epochs(curriculum: tuple[str, ...] | list[str]) -> dict[str, int]:
    """"family:epoch" entries -> {family: first epoch}; a clear error for a malformed entry."""
    out = {}
    for item in curriculum:
        fam, sep, epoch = item.partition(":")
        if not sep or not epoch.strip().isdigit():
            raise ValueError(f"curriculum entry {item!r} is not of the form family:epoch")
        out[fam.strip()] = int(epoch)
    return out


def load_pair(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 image and {0,1} mask of the same size (an empty mask for a pristine sample)."""
    image = read_image(sample.image)
    if sample.mask is None:
        return image, np.zeros(image.shape[:2], np.uint8)
    mask = read_mask(sample.mask)
    if mask.shape != image.shape[:2]:
        raise ImageError(f"{sample.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                         f"{sample.image.name} is {image.shape[1]}x{image.shape[0]}")
    return image, mask


def without_families(samples: list[Sample], families: tuple[str, ...] | list[str]) -> list[Sample]:
    """The samples whose fill family is not in `families` (pristine samples are always kept)."""
    from .fills import family

    return [s for s in samples if s.pristine or family(s.method) not in families]


def evenly(samples: list[Sample], limit: int) -> list[Sample]:
    """A deterministic subset spread over the list (which is sorted, so over photos and methods)."""
    if limit <= 0 or limit >= len(samples):
        return samples
    return [samples[i] for i in np.linspace(0, len(samples) - 1, limit).round().astype(int)]
