"""The PyTorch model as a `predict` for the one evaluation harness (inpdiff.evaluation): a whole image
through `sample` (padded, not tiled), its raw score. Training's per-epoch validation and `inpdiff
lomo` use it; `inpdiff eval` on an exported model folder uses the shipped runtime instead."""
from __future__ import annotations

import itertools

import numpy as np
import torch

from ..copies import copy_cover, raise_to_copies
from ..data.datasets import Sample
from ..evaluation import Predict, score_samples
from ..model import InpDiffusion, sample, to_tensor
from ..scoring import image_score


def torch_predict(model: InpDiffusion, steps: int | None = None, n_samples: int | None = None,
                  seed: int = 0, copies: bool = False) -> Predict:
    """Image i of a run gets the generator seed + i, so a run is repeatable. `copies`: raise the map
    to the copy evidence, as the runtime does (off for training's validation: the network's own curves)."""
    model.eval()
    device = next(model.parameters()).device
    counter = itertools.count()

    @torch.no_grad()
    def predict(image: np.ndarray) -> tuple[np.ndarray, float]:
        gen = torch.Generator(device=device).manual_seed(seed + next(counter))
        pred = sample(model, to_tensor(image).to(device), steps=steps, samples=n_samples, generator=gen)
        prob = pred.prob[0, 0].float().cpu().numpy()
        if copies:
            raise_to_copies(prob, copy_cover(image, prob=prob))
        return prob, image_score(prob)

    return predict


def evaluate(model: InpDiffusion, samples: list[Sample], perturbation: str = "clean", steps: int | None = None,
             n_samples: int | None = None, seed: int = 0, threshold: float = 0.5, progress: bool = False,
             copies: bool = False) -> dict:
    """Score every sample; returns {"summary": ..., "images": [...], "errors": [...]}."""
    return score_samples(torch_predict(model, steps, n_samples, seed, copies), samples, perturbation, seed, threshold,
                         progress)
