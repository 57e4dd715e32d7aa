"""Settings: one dataclass per concern, read from and written to YAML/JSON.

Pure Python (no torch) so that every stage, the lean runtime included, can read a model's config.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class ModelConfig:
    # ACN backbone: widths of the 4 stages (strides 4, 8, 16, 32) and residual blocks per stage.
    backbone_widths: tuple[int, ...] = (24, 48, 96, 160)
    backbone_depths: tuple[int, ...] = (1, 1, 2, 1)
    # High-frequency (edge-stream) pyramid over the fixed SRM residuals.
    hf_widths: tuple[int, ...] = (24, 32, 48, 64)
    # DMFE: dilation rates of each stream's branches, and condition channels per scale.
    dilations: tuple[int, ...] = (1, 2, 4)
    cond_widths: tuple[int, ...] = (16, 32, 48, 64)
    # DN: U-Net widths at strides 4, 8, 16, 32 over the pixel-unshuffled noisy mask.
    dn_widths: tuple[int, ...] = (24, 32, 48, 64)
    time_dim: int = 64
    norm_groups: int = 8
    # Ablation switches (see README: "Ablations").
    use_dmfe: bool = True          # False: each stream is a single 1x1 projection
    edge_supervision: bool = True  # False: the edge head is not trained (edge loss weight 0)
    diffusion: bool = True         # False: single-pass discriminative baseline, same network
    context: bool = False          # compare each region with its image (README: "Image context")
    learned_highpass: bool = False  # constrained (Bayar) high-pass filters beside SRM
    pretrained_backbone: str | None = None  # local safetensors file; nothing is downloaded


@dataclass
class DiffusionConfig:
    # Discrete time, T steps, cosine schedule (README: "Noise schedule").
    timesteps: int = 1000
    schedule: str = "cosine"
    sampling_steps: int = 10
    eta: float = 0.0   # 0 = DDIM (deterministic), 1 = DDPM posterior (stochastic)
    samples: int = 1   # ensemble size; uncertainty = std across samples
    signal_scale: float = 1.0  # < 1 shifts the schedule towards noise (the mask signal scaled, SNR x scale^2)
    # Self-conditioning (Chen 2022, "Analog Bits"): each step also sees the previous step's x0 estimate.
    # Measured in PyTorch only: the deployed step graph has no input for it, so the export refuses it.
    self_condition: bool = False


@dataclass
class DataConfig:
    train_dir: str = "cache/synth/train"   # one folder, or several separated by commas
    val_dir: str = "cache/synth/val"
    exclude_families: tuple[str, ...] = ()  # fill families left out of training and checkpoint choice
    # Curriculum: "family:epoch" entries; a family's samples join training at that epoch (0-based).
    curriculum: tuple[str, ...] = ()
    crop: int = 160
    edge_width: int = 3          # edge ground truth: width of the band around the mask boundary
    boundary_width: int = 7      # mask loss is weighted up in this band
    # Augmentation probabilities.
    p_flip: float = 0.5
    p_resize: float = 0.2
    p_jpeg: float = 0.2
    p_noise: float = 0.15
    p_blur: float = 0.1


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    mask_weight: float = 0.7
    edge_weight: float = 0.3
    boundary_gain: float = 2.0   # extra BCE weight on the mask's boundary band
    # Diffusion's timestep weighting: P2 (Choi 2022), each sample's loss times (1 + SNR_t)^-gamma,
    # normalised to mean 1 over t; it moves the weight to the noisy steps, where the image alone decides.
    p2_gamma: float = 0.0
    seed: int = 0
    val_limit: int = 60          # images scored by the per-epoch validation (0 = all)
    threads: int = 0             # torch CPU threads (0 = torch's default)
    loader_workers: int = 0      # DataLoader processes (> 0: every sample is decoded once, up front, then forked)
    minutes: float = 0.0         # wall-clock budget (0 = none): the cosine decay follows the clock; epochs is a cap
    val_every: int = 1           # validate (and maybe keep as best) every N epochs and after the last
    init_from: str = ""          # a checkpoint folder of the same architecture to start from (fine-tuning)


@dataclass
class Config:
    name: str = "edge-s"
    tile: int = 256              # inference tile size (the exported graphs' spatial size)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        return _build(cls, d, "config")

    def replace(self, overrides: list[str]) -> "Config":
        """Apply `section.key=value` overrides (values parsed as YAML)."""
        import yaml

        d = self.to_dict()
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"override {item!r} is not of the form section.key=value")
            *path, leaf = key.split(".")
            node = d
            for p in path:
                if not isinstance(node.get(p), dict):
                    raise ValueError(f"override {item!r}: no section {p!r}")
                node = node[p]
            if leaf not in node:
                raise ValueError(f"override {item!r}: unknown setting {leaf!r}")
            node[leaf] = yaml.safe_load(value)
        return Config.from_dict(d)


def _build(cls, d: dict[str, Any], where: str):
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"{where}: unknown settings {sorted(unknown)}")
    kwargs = {}
    for name, value in d.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple):
            kwargs[name] = tuple(value)
        elif isinstance(default, float) and isinstance(value, (int, str)) and not isinstance(value, bool):
            try:  # YAML reads 1e-6 (no dot) as a string
                kwargs[name] = float(value)
            except ValueError:
                raise ValueError(f"{where}.{name}: {value!r} is not a number") from None
        else:
            kwargs[name] = value
    return cls(**kwargs)


def load_config(name_or_path: str | Path) -> Config:
    """A shipped config by name (`edge-s`, `paper`), or a YAML/JSON file."""
    import yaml

    path = Path(name_or_path)
    if not path.exists():
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        shipped = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"config {name_or_path!r}: no such file, and not one of {shipped}")
    with open(path) as f:
        d = json.load(f) if path.suffix == ".json" else yaml.safe_load(f)
    return Config.from_dict(d or {})
