"""inpdiff: find the inpainted regions of a photograph (InpDiffusion, arXiv 2501.02816)."""

__version__ = "0.1.0"
