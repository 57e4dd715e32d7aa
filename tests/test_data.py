import json

import cv2
import numpy as np
import pytest

from inpdiff.config import DataConfig
from inpdiff.data.augment import augment
from inpdiff.data.datasets import discover, load_pair
from inpdiff.data.fills import FAMILIES, FILLS, inpaint
from inpdiff.io import ImageError, read_image, read_mask
from inpdiff.data.masks import edge_target, random_mask
from inpdiff.data.synth import SynthConfig, synthesize

from conftest import make_photo


def test_edge_target_is_the_band_around_the_boundary():
    m = np.zeros((12, 12), np.uint8)
    m[3:9, 3:9] = 1
    e = edge_target(m, 3)  # one pixel each side of the boundary
    expected = np.zeros_like(m)
    expected[2:10, 2:10] = 1
    expected[4:8, 4:8] = 0
    assert np.array_equal(e, expected)
    assert edge_target(m, 5).sum() > e.sum()
    assert edge_target(np.zeros((8, 8), np.uint8)).sum() == 0
    assert edge_target(np.ones((8, 8), np.uint8)).sum() == 0  # the image border is no boundary
    with pytest.raises(ValueError):
        edge_target(m, 1)


def test_random_masks_are_seeded_and_within_the_area_range():
    for seed in range(20):
        a = random_mask(96, 128, np.random.default_rng(seed))
        assert np.array_equal(a, random_mask(96, 128, np.random.default_rng(seed)))
        assert 0.02 <= a.mean() <= 0.30


@pytest.mark.parametrize("method", sorted(FILLS))
def test_fill_changes_exactly_the_masked_region(method):
    image = make_photo(80, 100, 3)
    mask = random_mask(80, 100, np.random.default_rng(1))
    out = inpaint(image, mask, method, np.random.default_rng(0))
    changed = (out != image).any(axis=2)
    assert not changed[mask == 0].any()              # nothing outside the mask moved
    assert changed[mask == 1].mean() > 0.95           # (almost) every filled pixel differs
    assert np.array_equal(out, inpaint(image, mask, method, np.random.default_rng(0)))


def test_synth_writes_pairs_whose_mask_is_the_changed_region(photos_dir, tiny_dataset):
    records = [json.loads(l) for l in (tiny_dataset / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 6 * 3  # per photo: pristine + 2 inpainted
    assert {r["method"] for r in records} == {"pristine", "telea", "ns", "biharmonic"}
    for r in records:
        image = read_image(tiny_dataset / "images" / f"{r['name']}.png")
        mask = read_mask(tiny_dataset / "masks" / f"{r['name']}.png")
        original = read_image(photos_dir / r["source"])
        changed = (image != original).any(axis=2)
        if r["method"] == "pristine":
            assert mask.sum() == 0 and not changed.any()
        else:
            assert not changed[mask == 0].any() and changed[mask == 1].mean() > 0.95


def test_synth_is_seeded_and_cached(photos_dir, tiny_dataset, tmp_path):
    cfg = SynthConfig(per_image=2, seed=0, workers=1)
    synthesize(photos_dir, tmp_path, cfg, progress=False)
    for p in (tiny_dataset / "images").iterdir():
        assert p.read_bytes() == (tmp_path / "images" / p.name).read_bytes()
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "images").iterdir()}
    synthesize(photos_dir, tmp_path, cfg, progress=False)  # a second run is a cache hit
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "images").iterdir()}


def test_synth_all_methods_fills_one_mask_each_way(photos_dir, tmp_path):
    records = synthesize(photos_dir, tmp_path, SynthConfig(per_image=1, all_methods=True, pristine=False,
                                                           workers=1), progress=False)
    classical = FAMILIES["classical"]
    assert len(records) == 6 * len(classical)
    masks = {read_mask(tmp_path / "masks" / f"photo0_00_{m}.png").tobytes() for m in classical}
    assert len(masks) == 1


def test_synth_skips_a_bad_photo_and_keeps_the_others(photos_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "good.png").write_bytes((photos_dir / "photo0.png").read_bytes())
    (src / "broken.png").write_bytes(b"\x89PNG not really")
    records = synthesize(src, tmp_path / "out", SynthConfig(per_image=1, workers=1), progress=False)
    assert {r["source"] for r in records} == {"good.png"}
    assert "broken.png" in json.loads((tmp_path / "out" / "synth.json").read_text())["skipped"][0]


def test_discover_flat_layout_with_methods(tiny_dataset):
    samples = discover(tiny_dataset)
    assert len(samples) == 18
    assert sum(s.pristine for s in samples) == 6
    assert {s.method for s in samples if not s.pristine} == {"telea", "ns", "biharmonic"}


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), array)


def test_discover_tp_gt_layout(tmp_path):
    img, mask = np.zeros((20, 30, 3), np.uint8), np.zeros((20, 30), np.uint8)
    mask[5:10, 5:10] = 255
    _write(tmp_path / "Tp" / "a.jpg", img)
    _write(tmp_path / "Gt" / "a_gt.png", mask)
    _write(tmp_path / "Au" / "b.jpg", img)
    samples = discover(tmp_path)
    assert [(s.image.name, s.mask.name if s.mask else None) for s in samples] == [("a.jpg", "a_gt.png"), ("b.jpg", None)]
    image, m = load_pair(samples[0])
    assert m.dtype == np.uint8 and set(np.unique(m)) == {0, 1} and m.sum() == 25


def test_discover_per_method_layout(tmp_path):
    img, mask = np.zeros((20, 30, 3), np.uint8), np.full((20, 30), 255, np.uint8)
    for method in ("lama", "sd"):
        _write(tmp_path / method / "images" / "x.png", img)
        _write(tmp_path / method / "masks" / "x.png", mask)
    _write(tmp_path / "real" / "images" / "y.png", img)
    samples = discover(tmp_path)
    assert sorted((s.method, s.pristine) for s in samples) == [("lama", False), ("pristine", True), ("sd", False)]


def test_discover_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such dataset folder"):
        discover(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="not a dataset layout"):
        discover(tmp_path)
    _write(tmp_path / "images" / "a.png", np.zeros((8, 8, 3), np.uint8))
    _write(tmp_path / "images" / "b.png", np.zeros((8, 8, 3), np.uint8))
    _write(tmp_path / "masks" / "a.png", np.zeros((9, 8), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"1 image\(s\) have no mask.*b.png"):
        discover(tmp_path)
    _write(tmp_path / "masks" / "b.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ImageError, match="a.png: mask is 8x9 but its image a.png is 8x8"):
        load_pair(discover(tmp_path)[0])


def test_read_image_normalises_formats_and_refuses_bad_files(tmp_path):
    rgb = make_photo(20, 30, 0)
    cases = {"grey.png": rgb[:, :, 0], "rgba.png": np.dstack([rgb[:, :, ::-1], np.full((20, 30), 9, np.uint8)]),
             "deep.png": rgb[:, :, ::-1].astype(np.uint16) * 257}
    for name, arr in cases.items():
        cv2.imwrite(str(tmp_path / name), arr)
        out = read_image(tmp_path / name)
        assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgb)
    assert np.array_equal(read_image(tmp_path / "deep.png"), rgb)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    data = (tmp_path / "rgba.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
    for name, problem in [("missing.png", "no such file"), ("empty.png", "empty file"),
                          ("text.png", "cannot decode"), ("cut.png", "cannot decode")]:
        with pytest.raises(ImageError, match=f"{name}: {problem}"):
            read_image(tmp_path / name)
    with pytest.raises(ImageError, match="pixel limit"):
        read_image(tmp_path / "grey.png", max_pixels=100)


def test_augmentations_keep_the_mask_aligned():
    # Encode the mask in the image's red channel; geometric augmentations must move both alike.
    rng = np.random.default_rng(0)
    mask = random_mask(120, 160, rng)
    image = np.zeros((120, 160, 3), np.uint8)
    image[:, :, 0] = mask * 255
    cfg = DataConfig(crop=64, p_resize=0.5, p_flip=0.5, p_jpeg=0, p_noise=0, p_blur=0)
    for seed in range(30):
        im, m = augment(image, mask, cfg, np.random.default_rng(seed))
        assert im.shape == (64, 64, 3) and m.shape == (64, 64)
        agree = ((im[:, :, 0] > 127) == (m > 0)).mean()
        assert agree > 0.97  # linear resize blurs the border by a pixel; nearest mask does not


def test_augmentations_pad_small_images():
    im, m = augment(np.zeros((30, 40, 3), np.uint8), np.ones((30, 40), np.uint8),
                    DataConfig(crop=64, p_resize=0), np.random.default_rng(0))
    assert im.shape == (64, 64, 3) and m.sum() == 30 * 40


def test_synth_workers_run_torch_on_one_thread_even_if_it_was_imported_first():
    """A spawned worker re-imports the main module: if that imported torch, OMP_NUM_THREADS comes too
    late, and every worker's learned fills would take every core."""
    import subprocess
    import sys

    code = ("import torch; torch.set_num_threads(2); from inpdiff.data.synth import _one_thread; _one_thread(); "
            "print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
