"""Fills by real third-party tools and by a real latent-diffusion autoencoder, the realism options
of `inpdiff synth` (grain at the photo's noise level, the photo's own JPEG quality), and the errors a
missing tool gives."""
import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import ROOT, make_photo

from inpdiff.data.fills import FAMILIES, FILLS, family
from inpdiff.data.fills import latent as latent_fills
from inpdiff.data.fills import tools
from inpdiff.data.fills.post import edit, noise_sigma
from inpdiff.io import jpeg_quality, read_image
from inpdiff.data.masks import random_mask
from inpdiff.data.synth import SynthConfig, synthesize

PHOTO = ROOT.parent / "shared" / "data" / "photos" / "bsds300" / "val" / "img_001.png"
have_taef2 = (latent_fills.taef2_dir() / "taef2_decoder.pth").is_file()
needs_taef2 = pytest.mark.skipif(not have_taef2, reason=f"TAEF2 weights not found in {latent_fills.taef2_dir()}")
have = dict.fromkeys(("gmic", "gmic-matchpatch", "gmic-pde"), shutil.which("gmic") is not None)
have["gimp-heal"] = have["gimp-clone"] = shutil.which("gimp-console") is not None
for module, name in (("patchmatch.patch_match", "pypatchmatch"), ("exemplar_based_inpainting", "criminisi"),
                     ("resynthesizer.resynthesizer", "resynth")):
    try:
        __import__(module)
        have[name] = True
    except (ImportError, OSError):  # OSError: a native library that does not load on this CPU
        have[name] = False
have["shiftmap"] = have["fsr"] = shutil.which(tools.DEBIAN_PYTHON) is not None and subprocess.run(
    [tools.DEBIAN_PYTHON, "-c", "import cv2; cv2.xphoto"], capture_output=True).returncode == 0


@pytest.mark.parametrize("method", ["gmic", "gmic-matchpatch", "gmic-pde", "pypatchmatch", "criminisi", "shiftmap", "fsr",
                                    "gimp-heal", "gimp-clone", "resynth", "taef2", "taef2-paste"])
def test_mask_is_the_changed_region_and_runs_are_seeded(method):
    if method.startswith("taef2") and not have_taef2:
        pytest.skip("TAEF2 weights not found")
    if not method.startswith("taef2") and not have[method]:
        pytest.fail(f"{method} is not installed: the project's install step (.ci/run, README) must provide it")
    image = make_photo(64, 80, 2)
    hole = random_mask(64, 80, np.random.default_rng(4), 0.05, 0.12)
    out, mask = edit(image, hole, FILLS[method], "none", "none", np.random.default_rng(7))
    changed = (out != image).any(axis=2)
    assert np.array_equal(mask, hole) and not changed[hole == 0].any()
    assert changed[hole == 1].mean() > 0.8  # a few pixels may land on their old value by chance
    again, _ = edit(image, hole, FILLS[method], "none", "none", np.random.default_rng(7))
    assert np.array_equal(out, again)


def test_each_tool_is_its_own_family():
    for name in ("gmic", "gmic-matchpatch", "gmic-pde", "pypatchmatch", "criminisi", "shiftmap", "fsr", "resynth"):
        assert FAMILIES[name] == (name,) and family(name) == name
    assert family("taef2-paste") == "latent" and family("gimp-heal") == family("gimp-clone") == "gimp"


def test_a_missing_tool_names_its_package(monkeypatch):
    monkeypatch.setattr(tools.shutil, "which", lambda exe: None)
    with pytest.raises(tools.ToolMissing, match="apt-get install gmic"):
        tools.gmic(make_photo(32, 32, 1), np.ones((32, 32), np.uint8), np.random.default_rng(0))
    with pytest.raises(tools.ToolMissing, match="'gmic-matchpatch' needs the G'MIC command line: apt-get install gmic"):
        tools.gmic_matchpatch(make_photo(32, 32, 1), np.ones((32, 32), np.uint8), np.random.default_rng(0))
    with pytest.raises(tools.ToolMissing, match="apt-get install gimp"):
        tools.gimp_heal(make_photo(32, 32, 1), np.ones((32, 32), np.uint8), np.random.default_rng(0))
    monkeypatch.setitem(sys.modules, "exemplar_based_inpainting.inpainter", None)
    with pytest.raises(tools.ToolMissing, match="exemplar-based-inpainting"):
        tools.criminisi(make_photo(32, 32, 1), np.ones((32, 32), np.uint8), np.random.default_rng(0))
    monkeypatch.setitem(sys.modules, "resynthesizer.resynthesizer", None)
    with pytest.raises(tools.ToolMissing, match="pip install resynthesizer"):
        tools.resynth(make_photo(32, 32, 1), np.ones((32, 32), np.uint8), np.random.default_rng(0))
    # No Debian Python at all, and a Python whose OpenCV lacks the contrib modules (the pip wheel's).
    for python in ("/nonexistent/python3", sys.executable):
        monkeypatch.setattr(tools, "DEBIAN_PYTHON", python)
        with pytest.raises(tools.ToolMissing, match="apt-get install python3-opencv"):
            tools.shiftmap(make_photo(32, 32, 1), np.ones((32, 32), np.uint8), np.random.default_rng(0))


@pytest.mark.skipif(not have["gimp-heal"], reason="GIMP is not installed (apt-get install gimp)")
def test_gimp_runs_with_a_profile_of_its_own(tmp_path, monkeypatch):
    # A user's GIMP settings (in their home folder) are not the synth run's to create or change.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("GIMP2_DIRECTORY", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    tools.gimp_clone(make_photo(48, 48, 1), random_mask(48, 48, np.random.default_rng(1), 0.05, 0.1),
                     np.random.default_rng(0))
    assert list(tmp_path.iterdir()) == []


def test_a_missing_inpainter_checkpoint_says_where_it_comes_from(tmp_path):
    # What `pip install .` (graphs only) leaves the learned fills.
    from inpdiff.data.fills.learned import LearnedFill

    with pytest.raises(tools.ToolMissing, match="unet-gan.*source checkout"):
        LearnedFill(tmp_path / "unet-gan")(make_photo(32, 32, 1), np.ones((32, 32), np.uint8),
                                           np.random.default_rng(0))


def test_missing_autoencoder_weights_are_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="taef2_encoder.pth is missing"):
        latent_fills.load_taef2(str(tmp_path))


@needs_taef2
@pytest.mark.skipif(not PHOTO.is_file(), reason=f"{PHOTO} not found")
def test_autoencoder_reading_is_checked_by_its_round_trip_on_a_real_photo():
    photo = read_image(PHOTO)[:160, :240]
    psnr = latent_fills.psnr(photo, latent_fills.roundtrip(photo))
    # A misread layer (a dropped branch, a missing clamp) falls to 16-24 dB on this crop.
    assert psnr > 25.0, psnr


def test_grain_brings_a_smooth_fill_to_the_photos_noise_level():
    image = make_photo(96, 128, 3)
    hole = random_mask(96, 128, np.random.default_rng(2), 0.15, 0.25)
    inner = cv2.erode(hole, np.ones((5, 5), np.uint8)) > 0
    plain, _ = edit(image, hole, FILLS["telea"], "none", "none", np.random.default_rng(1))
    grainy, _ = edit(image, hole, FILLS["telea"], "none", "none", np.random.default_rng(1), grain=True)
    real = noise_sigma(image)
    assert noise_sigma(plain, inner) < 0.5 * real < noise_sigma(grainy, inner) < 1.5 * real


def test_jpeg_quality_is_read_from_the_file(tmp_path):
    for q in (60, 85, 95):
        ok, buf = cv2.imencode(".jpg", make_photo(40, 40, 1), [cv2.IMWRITE_JPEG_QUALITY, q])
        (tmp_path / f"{q}.jpg").write_bytes(buf.tobytes())
        assert abs(jpeg_quality(tmp_path / f"{q}.jpg") - q) <= 2
    cv2.imwrite(str(tmp_path / "a.png"), make_photo(20, 20, 1))
    assert jpeg_quality(tmp_path / "a.png") is None


def test_autoencoder_folder_is_found_beside_the_working_folder_too(tmp_path, monkeypatch):
    (tmp_path / "shared" / "models" / "taef2").mkdir(parents=True)
    (tmp_path / "repo").mkdir()
    monkeypatch.delenv("INPDIFF_TAEF2", raising=False)
    monkeypatch.chdir(tmp_path / "repo")
    monkeypatch.setattr(latent_fills, "__file__", str(tmp_path / "site" / "inpdiff" / "data" / "fills" / "latent.py"))
    assert latent_fills.taef2_dir() == (tmp_path / "shared" / "models" / "taef2").resolve()
    monkeypatch.setenv("INPDIFF_TAEF2", str(tmp_path / "x"))
    assert latent_fills.taef2_dir() == tmp_path / "x"


def test_a_hole_a_tool_leaves_black_is_skipped_and_named(tmp_path):
    # G'MIC 2.9.4's inpaint_matchpatch exits 0 with this sample's hole left black (seed 1, the first
    # photo's first mask); synth must not keep it as a fill, and says which sample it dropped.
    if not have["gmic-matchpatch"]:
        pytest.fail("G'MIC is not installed: the project's install step (.ci/run, README) must provide it")
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(PHOTO, photos)
    records = synthesize(photos, tmp_path / "out", SynthConfig(per_image=1, methods=("gmic-matchpatch",), seed=1),
                         progress=False)
    assert [r["method"] for r in records] == ["pristine"]
    assert not (tmp_path / "out" / "images" / "img_001_00_gmic-matchpatch.png").exists()
    skipped = json.loads((tmp_path / "out" / "synth.json").read_text())["skipped"]
    assert skipped == [f"{photos / 'img_001.png'}: img_001_00_gmic-matchpatch: gmic-matchpatch left the hole black"]
