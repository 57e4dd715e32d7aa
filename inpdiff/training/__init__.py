"""Training, losses, metrics and evaluation (PyTorch)."""
