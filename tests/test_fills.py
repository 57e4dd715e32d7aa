"""The fill families beyond the classical ones (patch-based, learned), blending and post-processing,
and how `inpdiff synth` records them."""
import json

import cv2
import numpy as np
import pytest
from conftest import ROOT, make_photo

from inpdiff.data.fills import FAMILIES, FILLS, expand, family, inpaint
from inpdiff.data.fills.post import edit
from inpdiff.io import read_image, read_mask
from inpdiff.data.masks import random_mask
from inpdiff.data.synth import SynthConfig, synthesize


def noise_level(image: np.ndarray, where: np.ndarray) -> float:
    """Median absolute high-pass residual (grey levels) inside `where`: sensor-noise strength."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    residual = grey - cv2.blur(grey, (3, 3))
    return float(np.median(np.abs(residual[cv2.erode(where.astype(np.uint8), np.ones((5, 5))) > 0])))


def test_patchmatch_copies_texture_that_diffusion_fills_smooth_away():
    image = make_photo(120, 160, 11)  # sensor-like noise everywhere
    hole = random_mask(120, 160, np.random.default_rng(3), 0.15, 0.25)
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    telea = noise_level(edit(image, hole, FILLS["telea"], "none", "none", rng())[0], hole)
    patch = noise_level(edit(image, hole, FILLS["patchmatch"], "none", "none", rng())[0], hole)
    real = noise_level(image, hole)
    assert patch > 0.6 * real and telea < 0.5 * real


@pytest.mark.parametrize("blend", ["none", "poisson", "feather"])
@pytest.mark.parametrize("method", ["patchmatch", "unet-w16", "ns"])
def test_mask_is_the_edited_region_and_runs_are_seeded(method, blend):
    image = make_photo(90, 110, 4)
    hole = random_mask(90, 110, np.random.default_rng(5))
    out, mask = edit(image, hole, FILLS[method], blend, "none", np.random.default_rng(1))
    changed = (out != image).any(axis=2)
    assert not changed[mask == 0].any()
    # Almost every hole pixel differs (a Poisson blend restores the photo's smooth shading, so a few
    # land on their original value by chance).
    assert changed[hole == 1].mean() > 0.9
    assert (mask[hole == 1] == 1).all() and (blend == "feather") == (mask.sum() > hole.sum())
    again = edit(image, hole, FILLS[method], blend, "none", np.random.default_rng(1))
    assert np.array_equal(out, again[0]) and np.array_equal(mask, again[1])


def test_global_post_processing_keeps_the_mask_on_the_edited_region():
    image = make_photo(90, 110, 4)
    hole = random_mask(90, 110, np.random.default_rng(5))
    out, mask = edit(image, hole, FILLS["telea"], "none", "jpeg", np.random.default_rng(2))
    assert np.array_equal(mask, hole) and (out != image).any(axis=2)[hole == 0].mean() > 0.3
    out, mask = edit(image, hole, FILLS["telea"], "none", "resize", np.random.default_rng(2))
    assert out.shape[:2] == mask.shape and out.shape[0] < 90
    assert abs(mask.mean() - hole.mean()) < 0.02


def test_registry_families_and_errors():
    assert expand(["patch", "telea", "classical"]) == ("patchmatch", "telea", "ns", "biharmonic")
    assert {family(m) for m in FILLS} == set(FAMILIES)
    with pytest.raises(ValueError, match="unknown fill method 'lama'"):
        expand(["lama"])
    with pytest.raises(ValueError, match="choose from none, poisson, feather"):
        synthesize("x", "y", SynthConfig(blends=("smudge",)))


def test_synth_records_family_blend_and_post(photos_dir, tmp_path):
    cfg = SynthConfig(per_image=3, methods=("patch", "learned"), blends=("none", "poisson", "feather"),
                      posts=("none", "jpeg"), pristine=False, workers=1)
    records = synthesize(photos_dir, tmp_path, cfg, progress=False)
    assert {r["family"] for r in records} == {"patch", "learned"}
    assert len({(r["blend"], r["post"]) for r in records}) > 2
    for r in records:
        assert r["family"] == family(r["method"]) and r["method"] in r["name"]
        if r["post"] == "none":
            image, original = read_image(tmp_path / "images" / f"{r['name']}.png"), read_image(photos_dir / r["source"])
            changed = (image != original).any(axis=2)
            assert not changed[read_mask(tmp_path / "masks" / f"{r['name']}.png") == 0].any()
    again = synthesize(photos_dir, tmp_path / "again", cfg, progress=False)
    assert [json.dumps(r, sort_keys=True) for r in again] == [json.dumps(r, sort_keys=True) for r in records]


@pytest.mark.parametrize("arch, adversarial", [("gated-unet", False), ("ffc", True)])
def test_an_inpainter_trains_saves_safetensors_and_fills(photos_dir, tmp_path, arch, adversarial):
    from inpdiff.data.fills.learned import InpainterConfig, LearnedFill, train_inpainter

    cfg = InpainterConfig(arch=arch, width=4, blocks=2, adversarial=adversarial, crop=64, batch=2, steps=3)
    meta = train_inpainter(photos_dir, tmp_path / "inp", cfg, log=lambda s: None)
    assert sorted(p.name for p in (tmp_path / "inp").iterdir()) == ["config.json", "model.safetensors"]
    saved = json.loads((tmp_path / "inp" / "config.json").read_text())
    assert saved["config"]["arch"] == arch and saved["steps_run"] == 3 and meta["final_loss"] > 0
    image = make_photo(70, 90, 2)
    hole = random_mask(70, 90, np.random.default_rng(0))
    fill = LearnedFill(tmp_path / "inp")
    out, mask = edit(image, hole, fill, "none", "none", np.random.default_rng(0))
    assert out.shape == image.shape and not (out != image).any(axis=2)[mask == 0].any()
    assert (out != image).any(axis=2)[mask == 1].mean() > 0.5
    again, _ = edit(image, hole, fill, "none", "none", np.random.default_rng(0))
    assert np.array_equal(out, again)


def test_an_own_latent_autoencoder_trains_and_its_fill_changes_only_the_hole(photos_dir, tmp_path):
    """`ae8`: an autoencoder (not an inpainter) saved like one; its fills decode filled latents."""
    from inpdiff.data.fills.latent import OwnLatentFill
    from inpdiff.data.fills.learned import InpainterConfig, train_inpainter

    cfg = InpainterConfig(arch="ae8", width=4, latent=4, adversarial=True, crop=64, batch=2, steps=3)
    train_inpainter(photos_dir, tmp_path / "ae", cfg, log=lambda s: None)
    image = make_photo(70, 90, 2)
    hole = random_mask(70, 90, np.random.default_rng(0))
    for paste in (False, True):
        fill = OwnLatentFill(tmp_path / "ae", paste)
        out, mask = edit(image, hole, fill, "none", "none", np.random.default_rng(0))
        changed = (out != image).any(axis=2)
        assert not changed[mask == 0].any() and changed[mask == 1].mean() > 0.9
        assert np.array_equal(out, edit(image, hole, fill, "none", "none", np.random.default_rng(0))[0])
    assert family("ae8-paste") == "latent-own" and family("taef2") == "latent"


def test_shipped_own_autoencoder_reconstructs_a_photo():
    """The shipped `ae8` is a working autoencoder, not noise: its round trip keeps a real photo's content
    (20.0 dB on this crop, a little blurrier than a 4-pixel Gaussian blur; a flat image of its mean
    colour, what a collapsed one gives, is 11.7)."""
    from inpdiff.data.fills import inpainters_dir
    from inpdiff.data.fills.latent import psnr, roundtrip
    from inpdiff.data.fills.learned import load_inpainter

    body = load_inpainter(inpainters_dir() / "ae8").body
    image = read_image(ROOT / "examples" / "images" / "astronaut_pristine.png")[:192, :256]
    assert psnr(image, roundtrip(image, nets=(body.encoder, body.decoder))) > 17


def test_shipped_inpainters_load_and_differ():
    """The four shipped checkpoints (two L1 U-Nets from before the wrapper, two adversarial ones) load
    and give four different fills of the same hole."""
    image = make_photo(96, 128, 3)
    hole = random_mask(96, 128, np.random.default_rng(1), 0.1, 0.2)
    fills = [inpaint(image, hole, name, np.random.default_rng(0)) for name in FAMILIES["learned"]]
    assert len(fills) == 4
    for i in range(4):
        for j in range(i):
            assert np.abs(fills[i].astype(int) - fills[j]).mean() > 1
