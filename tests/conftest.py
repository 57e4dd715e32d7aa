import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_photo(h: int, w: int, seed: int) -> np.ndarray:
    """A photo-like RGB image: smooth colour fields and edges plus sensor-like noise."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.uniform(0, 255, (4, 6, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(3):
        cv2.circle(base, (int(rng.integers(w)), int(rng.integers(h))), int(rng.integers(5, h // 3)),
                   rng.uniform(0, 255, 3).tolist(), -1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def photos_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("photos")
    for i in range(6):
        cv2.imwrite(str(d / f"photo{i}.png"), make_photo(96, 128, i)[:, :, ::-1])
    return d


@pytest.fixture(scope="session")
def tiny_dataset(photos_dir, tmp_path_factory) -> Path:
    from inpdiff.data.synth import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("synth")
    synthesize(photos_dir, out, SynthConfig(per_image=2, seed=0, workers=1), progress=False)
    return out


@pytest.fixture
def tiny_cfg(tiny_dataset):
    from inpdiff.config import Config, DataConfig, ModelConfig, TrainConfig

    model = ModelConfig(backbone_widths=(8, 8, 16, 16), backbone_depths=(1, 1, 1, 1), hf_widths=(8, 8, 16, 16),
                        dilations=(1, 2), cond_widths=(8, 8, 8, 8), dn_widths=(8, 8, 16, 16), time_dim=16,
                        norm_groups=4)
    data = DataConfig(train_dir=str(tiny_dataset), val_dir=str(tiny_dataset), crop=64)
    train = TrainConfig(epochs=3, batch_size=4, lr=3e-3, warmup_steps=2, val_limit=4, threads=1)
    return Config(name="tiny", tile=64, model=model, data=data, train=train)


TINY_MODEL = dict(backbone_widths=(8, 8, 16, 16), backbone_depths=(1, 1, 1, 1), hf_widths=(8, 8, 16, 16),
                  dilations=(1, 2), cond_widths=(8, 8, 8, 8), dn_widths=(8, 8, 16, 16), time_dim=16, norm_groups=4)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """An untrained tiny model, saved and exported: (root, manifest); root/ckpt and root/onnx."""
    from inpdiff.config import Config, ModelConfig
    from inpdiff.export.onnx_export import ExportConfig, export
    from inpdiff.model import InpDiffusion, save_model

    root = tmp_path_factory.mktemp("export")
    save_model(InpDiffusion(Config(name="tiny", tile=64, model=ModelConfig(**TINY_MODEL))), root / "ckpt")
    manifest = export(root / "ckpt", root / "onnx", ExportConfig(max_steps=12), check_images=[make_photo(80, 90, 1)])
    return root, manifest
