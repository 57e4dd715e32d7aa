"""The InpDiffusion model: ACN (conditions, once per image) and DN (one denoising step)."""
from .inpdiffusion import InpDiffusion, Prediction, load_model, sample, save_model, to_tensor

__all__ = ["InpDiffusion", "Prediction", "load_model", "sample", "save_model", "to_tensor"]
