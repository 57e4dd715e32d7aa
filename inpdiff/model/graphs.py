"""The two deployed graphs as modules: what `inpdiff export` writes to ONNX, and what the `torch`
backend runs. The input preprocessing is in the condition graph and the sampler update in the step
graph, so that every backend only moves tensors between the two."""
from __future__ import annotations

import torch
from torch import nn

from .. import steps
from .diffusion import step
from .inpdiffusion import InpDiffusion


class ConditionGraph(nn.Module):
    def __init__(self, model: InpDiffusion):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # Cast first: TensorRT takes a uint8 input only straight into a Cast (its UINT8 type supports
        # no other layer), so the layout change must happen in float.
        pixels = image.float().permute(0, 3, 1, 2)
        return tuple(self.model.dn.project(*self.model.acn(pixels)))


class StepGraph(nn.Module):
    def __init__(self, model: InpDiffusion, max_steps: int):
        super().__init__()
        self.model = model
        times, coefs = [], []
        for mode, eta in zip(steps.MODES, (0.0, 1.0)):
            for n in range(1, max_steps + 1):
                times.append(model.schedule.sampling_times(n).float())
                coefs.append(model.schedule.step_coefficients(n, eta))
        self.register_buffer("times", torch.cat(times))
        self.register_buffer("coef", torch.cat(coefs))

    def forward(self, x_t, row, noise, c0, c1, c2, c3):
        # One timestep for the whole batch: FiLM broadcasts it, and every shape stays static but the batch.
        logit, edge_logit = self.model.denoise(x_t, self.times[row], [c0, c1, c2, c3])
        prob = torch.sigmoid(logit)
        return step(x_t, 2 * prob - 1, row, noise, self.coef), prob, torch.sigmoid(edge_logit)
