import pytest
import torch

from inpdiff.config import Config, load_config
from inpdiff.model import InpDiffusion
from inpdiff.model.acn import ACN


@pytest.mark.parametrize("name", ["edge-s", "paper"])
def test_shipped_configs_load(name):
    cfg = load_config(name)
    assert cfg.name == name and cfg.diffusion.sampling_steps == 10
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_config_overrides_and_errors(tmp_path):
    cfg = load_config("edge-s").replace(["train.epochs=3", "model.diffusion=false", "model.dilations=[1, 3]"])
    assert cfg.train.epochs == 3 and cfg.model.diffusion is False and cfg.model.dilations == (1, 3)
    with pytest.raises(ValueError, match="unknown setting"):
        cfg.replace(["train.epochz=3"])
    with pytest.raises(FileNotFoundError, match="not one of"):
        load_config("no-such-config")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  widths: [1]\n")
    with pytest.raises(ValueError, match="config.model: unknown settings"):
        load_config(bad)


def test_the_fused_high_pass_is_the_srm_and_constrained_filters_truncated_at_8_levels(tiny_cfg):
    """The ACN runs the SRM filters of each colour channel and the learned constrained filters as one
    convolution of the pixels: it must equal each filter bank applied on its own, clipped at +-8."""
    import torch.nn.functional as F

    from inpdiff.model.acn import srm_kernels

    acn = ACN(tiny_cfg.replace(["model.learned_highpass=true"]).model).eval()
    pixels = torch.randint(0, 256, (1, 3, 64, 64)).float()
    seen = {}
    acn.hf.register_forward_pre_hook(lambda module, args: seen.setdefault("residual", args[0]))
    acn(pixels)
    srm = F.conv2d(pixels, srm_kernels().repeat(3, 1, 1, 1), padding=2, groups=3)  # 3 filters per colour
    learned = F.conv2d(pixels, acn.bayar.kernels(), padding=2)
    expected = torch.cat([srm, learned], 1).clamp(-8, 8) / 8
    assert torch.allclose(seen["residual"], expected, atol=1e-5)
    assert (expected.abs() == 1).any() and (expected.abs() < 1).any()  # both clipped and unclipped taps


def test_the_high_pass_stays_fp32_under_autocast(tiny_cfg):
    """Residuals of a gray level or two drown in reduced-precision arithmetic of 255-scale pixels: on a
    lent H200, fp16 autocast moved them by up to 13 gray levels. bfloat16 autocast on the CPU is the same
    mechanism with fewer bits; the front end must not follow it."""
    acn = ACN(tiny_cfg.replace(["model.learned_highpass=true"]).model).eval()
    pixels = torch.randint(0, 256, (1, 3, 64, 64)).float()
    exact = acn.highpass(pixels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reduced = acn.highpass(pixels)
        rounded = torch.nn.functional.conv2d(pixels, torch.cat([acn.srm, acn.bayar.kernels()]) / 8, padding=2)
    assert reduced.dtype == torch.float32 and torch.equal(reduced, exact)
    assert (rounded.float().clamp(-1, 1) - exact).abs().max() > 1 / 8  # what autocast alone would give


def test_acn_gives_both_conditions_at_four_scales(tiny_cfg):
    acn = ACN(tiny_cfg.model)
    sem, edge = acn(255 * torch.rand(2, 3, 128, 96))  # pixels
    for conds in (sem, edge):
        assert [tuple(c.shape) for c in conds] == [(2, w, 128 // s, 96 // s)
                                                  for w, s in zip(tiny_cfg.model.cond_widths, (4, 8, 16, 32))]
        assert all(c.dtype == torch.float32 for c in conds)


def test_dn_outputs_full_resolution_mask_and_edge(tiny_cfg):
    model = InpDiffusion(tiny_cfg)
    image, x_t = torch.rand(3, 3, 64, 96), torch.randn(3, 1, 64, 96)
    conds = model.conditions(image)
    mask, edge = model.denoise(x_t, torch.tensor([0, 500, 999]), conds)
    assert mask.shape == edge.shape == (3, 1, 64, 96)
    assert mask.dtype == torch.float32
    # The timestep matters: the same input at another timestep gives another prediction.
    other, _ = model.denoise(x_t, torch.tensor([999, 500, 0]), conds)
    assert not torch.allclose(mask[0], other[0])


def test_dmfe_switch_replaces_dilated_streams(tiny_cfg):
    on = InpDiffusion(tiny_cfg)
    tiny_cfg.model.use_dmfe = False
    off = InpDiffusion(tiny_cfg)
    dilations = lambda m: {mod.dilation for mod in m.acn.modules() if isinstance(mod, torch.nn.Conv2d)}
    assert (2, 2) in dilations(on) and (2, 2) not in dilations(off)
    assert sum(p.numel() for p in off.parameters()) < sum(p.numel() for p in on.parameters())


def test_pretrained_backbone_from_local_file(tiny_cfg, tmp_path):
    from safetensors.torch import save_file

    src = ACN(tiny_cfg.model)
    path = tmp_path / "backbone.safetensors"
    save_file({f"backbone.{k}": v for k, v in src.backbone.state_dict().items()}, str(path))
    tiny_cfg.model.pretrained_backbone = str(path)
    loaded = ACN(tiny_cfg.model)
    for k, v in src.backbone.state_dict().items():
        assert torch.equal(v, loaded.backbone.state_dict()[k])
    tiny_cfg.model.pretrained_backbone = str(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        ACN(tiny_cfg.model)
    tiny_cfg.model.backbone_widths = (16, 16, 16, 16)
    tiny_cfg.model.pretrained_backbone = str(path)
    with pytest.raises(ValueError, match="does not fit"):
        ACN(tiny_cfg.model)


def test_checkpoint_roundtrip_is_safetensors_and_json(tiny_cfg, tmp_path):
    from inpdiff.model import load_model, save_model

    model = InpDiffusion(tiny_cfg)
    save_model(model, tmp_path / "ckpt", {"note": "x"})
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_model(tmp_path / "ckpt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    (tmp_path / "ckpt" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        load_model(tmp_path / "ckpt")
