import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from inpdiff.export.checks import onnx_probability
from inpdiff.noise import tile_noise
from inpdiff.runtime.localizer import (Localizer, LocalizeConfig, axis_tile, axis_weight, blend_ramp, find_regions,
                                      tile_origins)
from inpdiff.runtime.model_dir import ModelDir, ModelError

from conftest import make_photo

ROOT = Path(__file__).resolve().parents[1]


def trt_localize(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "inpdiff.runtime.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture
def model_dir(tiny_export):
    return tiny_export[0] / "onnx"


def test_tiles_cover_the_image_with_the_overlap():
    for length in (64, 65, 100, 190, 500):
        starts = tile_origins(length, 64, 16)
        assert starts[0] == 0 and starts[-1] + 64 == max(length, 64)
        assert all(b - a <= 64 - 16 for a, b in zip(starts, starts[1:]))
    r = blend_ramp(64, 16)
    assert r.min() > 0 and r[32] == 1.0 and r[0] < r[8]


def test_summed_tile_windows_are_the_outer_product_of_the_axis_weights():
    # What lets the assembly divide by two vectors instead of an image-sized weight map.
    ramp, (h, w) = blend_ramp(64, 16), (150, 233)
    ys, xs = tile_origins(h, 64, 16), tile_origins(w, 64, 16)
    summed = np.zeros((h, w), np.float32)
    for y in ys:
        for x in xs:
            summed[y:y + 64, x:x + 64] += np.outer(ramp, ramp)
    assert np.allclose(summed, np.outer(axis_weight(h, ys, ramp), axis_weight(w, xs, ramp)), rtol=1e-6)


def test_graphs_of_any_size_get_the_tiles_that_compute_the_fewest_pixels():
    def cost(length, t):
        return len(tile_origins(length, t, 32)) * t
    for length in range(1, 3000, 7):
        t = axis_tile(length, 256, 512, 32)
        assert t % 32 == 0 and 256 <= t <= 512
        assert cost(length, t) == min(cost(length, c) for c in range(256, 513, 32))
    assert axis_tile(481, 256, 512, 32) == 512 and axis_tile(321, 256, 512, 32) == 352  # a BSDS photo: one tile
    assert axis_tile(2048, 256, 512, 32) == 448  # 5 tiles, 2,240 pixels computed per row, against 9 x 256 = 2,304
    assert axis_tile(5000, 256, 0, 32) == axis_tile(5000, 256, 256, 32) == 256  # graphs of one size


def test_a_photo_is_planned_in_tiles_of_one_shape_that_the_graphs_take_and_fixed_graphs_keep_theirs(model_dir):
    # The shipped FP32 graphs take any size; the TensorRT INT8 folder's graphs (made before) take 256 only.
    photo = make_photo(321, 481, 3)
    with Localizer(ROOT / "models" / "edge-c", "onnxruntime", LocalizeConfig(copies=False)) as loc:
        plan = loc.plan(photo)
        assert plan.shape == (352, 512) and plan.origins == [(0, 0)] and plan.work.shape[:2] == (352, 512)
        assert loc.batch(plan.shape, 8) == 2  # eight 256-pixel tiles' worth of pixels
        # Up to 16 MP only: above, the bands a large photo is worked in would grow with the tile
        assert loc.plan(np.zeros((4000, 4000, 3), np.uint8)).shape == (480, 480)
        assert loc.plan(np.zeros((4000, 4001, 3), np.uint8)).shape == (256, 256)
    with Localizer(ROOT / "models" / "edge-c", "onnxruntime", LocalizeConfig(copies=False, max_tile=0)) as loc:
        assert loc.plan(photo).shape == (256, 256) and len(loc.plan(photo).origins) == 6
    with Localizer(ROOT / "models" / "edge-c-int8", "onnxruntime", LocalizeConfig(copies=False)) as loc:
        assert loc.plan(photo).shape == (256, 256)
    # The tiny test model (64-pixel tiles): a larger photo is tiled with the overlap, the maps blended, and
    # a photo within one tile is that one tile, mirror-padded to a multiple of 32
    loc = Localizer(model_dir, config=LocalizeConfig(steps=2, max_tile=128, copies=False))
    plan = loc.plan(make_photo(300, 200, 4))
    assert plan.shape == (128, 128) and {y for y, _ in plan.origins} == {0, 86, 172}
    assert loc.localize(make_photo(300, 200, 4)).prob.shape == (300, 200)
    image = make_photo(70, 100, 5)
    result = Localizer(model_dir, config=LocalizeConfig(steps=4, seed=7, max_tile=128)).localize(image)
    padded = cv2.copyMakeBorder(image, 0, 26, 0, 28, cv2.BORDER_REFLECT_101)
    noise = tile_noise(7, 0, 0, steps=4, samples=1, shape=(96, 128))
    ref = onnx_probability(model_dir, padded[None], noise, 4, "ddim", 12)[0, 0, :70, :100]
    assert np.abs(result.prob - ref).max() < 1e-6
    with pytest.raises(ValueError, match="max_tile must be a multiple of 32"):
        Localizer(model_dir, config=LocalizeConfig(max_tile=100))


def test_one_tile_image_equals_the_plain_two_graph_loop(model_dir):
    # The localizer's loop, noise and blending reduce to the plain ONNX loop on a tile-sized image.
    image = make_photo(64, 64, 5)
    result = Localizer(model_dir, config=LocalizeConfig(steps=4, seed=7)).localize(image)
    noise = tile_noise(7, 0, 0, steps=4, samples=1, shape=(64, 64))  # the one noise definition (inpdiff.noise)
    ref = onnx_probability(model_dir, image[None], noise, 4, "ddim", 12)[0, 0]
    assert np.abs(result.prob - ref).max() < 1e-6


# The eight views of an (h, w, ...) array, each with the function that turns its map back, in the runtime's
# order: itself, turned 180 degrees, mirrored top-bottom, transposed, mirrored left-right, then the other
# three views of the transposed array.
MIRRORS = [(lambda a: a, lambda m: m), (lambda a: a[:, ::-1], lambda m: m[:, ::-1]),
           (lambda a: a[::-1], lambda m: m[::-1]), (lambda a: a[::-1, ::-1], lambda m: m[::-1, ::-1])]
MIRRORS += [(lambda a, v=v: v(a.swapaxes(0, 1)), lambda m, b=b: b(m).swapaxes(0, 1)) for v, b in MIRRORS]
VIEWS = [MIRRORS[i] for i in (0, 3, 2, 4, 1, 5, 6, 7)]


def test_flips_average_the_mirrored_and_transposed_views_of_each_tile(model_dir):
    """A tile-sized image: its map with flips is the mean of its views' maps turned back (the diffusion
    model too: each view takes its tile's noise, unmirrored). On a photo of several tiles, the shipped
    single-pass model: each tile's map is the mean of its views' maps (the transposed ones of another
    shape), turned back. Flips must be 1, 2, 4 or 8."""
    image = make_photo(64, 64, 6)
    one = Localizer(model_dir, config=LocalizeConfig(steps=3, seed=2, copies=False))
    viewed = [back(one.localize(np.ascontiguousarray(view(image))).prob) for view, back in VIEWS]
    for flips in (2, 4, 8):
        got = Localizer(model_dir, config=LocalizeConfig(steps=3, seed=2, copies=False, flips=flips)).localize(image)
        assert np.abs(got.prob - sum(viewed[:flips]) / flips).max() < 1e-6
    assert min(np.abs(v - viewed[0]).max() for v in viewed[1:]) > 1e-3  # so the test could fail
    photo = make_photo(300, 520, 8)
    shipped = ROOT / "models" / "edge-c"
    with (Localizer(shipped, "onnxruntime", LocalizeConfig(copies=False, flips=8)) as loc,
          Localizer(shipped, "onnxruntime", LocalizeConfig(copies=False)) as plain):
        plan = loc.plan(photo)
        tiles = np.stack([plan.tile(i) for i in range(len(plan.origins))])  # (N, h, w, 3)
        assert len(plan.origins) > 1 and tiles.shape[1] != tiles.shape[2]
        hwn = tiles.transpose(1, 2, 0, 3)  # (h, w, N, 3): a view turns the first two axes
        maps = [back(plain.infer(np.ascontiguousarray(view(hwn).transpose(2, 0, 1, 3)), plan.origins)[:, 0]
                     .transpose(1, 2, 0)).transpose(2, 0, 1) for view, back in VIEWS]  # (N, h, w) each
        got = loc.infer(tiles, plan.origins)[:, 0]
        assert np.abs(got - sum(maps) / 8).max() < 1e-5
    with pytest.raises(ValueError, match="flips must be 1, 2, 4 or 8, got 3"):
        Localizer(model_dir, config=LocalizeConfig(flips=3))


@pytest.mark.parametrize("shape", [(64, 64), (100, 190), (37, 23), (1, 1), (300, 70)])
def test_maps_have_the_input_size(model_dir, shape):
    image = make_photo(max(shape[0], 64), max(shape[1], 64), 1)[: shape[0], : shape[1]]
    r = Localizer(model_dir, config=LocalizeConfig(steps=2)).localize(image)
    assert r.prob.shape == r.uncertainty.shape == r.mask.shape == shape
    assert r.prob.dtype == np.float32 and 0 <= r.prob.min() and r.prob.max() <= 1 and 0 <= r.score <= 1


def test_max_side_downscales_but_keeps_the_output_size(model_dir):
    r = Localizer(model_dir, config=LocalizeConfig(steps=2, max_side=64)).localize(make_photo(120, 200, 2))
    assert r.prob.shape == (120, 200) and r.timings["tiles"] == 1


def test_same_seed_same_output_and_samples_give_uncertainty(model_dir):
    image = make_photo(90, 100, 3)
    run = lambda **kw: Localizer(model_dir, config=LocalizeConfig(steps=3, **kw)).localize(image)
    a, b, c = run(seed=1), run(seed=1), run(seed=2)
    assert np.array_equal(a.prob, b.prob) and not np.array_equal(a.prob, c.prob)
    assert np.count_nonzero(a.uncertainty) == 0
    many = run(seed=1, samples=3)
    assert many.uncertainty.max() > 0
    # Batching does not change results: noise is keyed to the tile.
    d = Localizer(model_dir, config=LocalizeConfig(steps=3, seed=1, batch=1)).localize(image)
    assert np.abs(d.prob - a.prob).max() < 1e-6


def test_steps_outside_the_exported_tables_are_refused(model_dir):
    with pytest.raises(ValueError, match="between 1 and 12"):
        Localizer(model_dir, config=LocalizeConfig(steps=13))


@pytest.mark.parametrize("damage", ["append", "truncate", "delete", "manifest"])
def test_changed_model_files_are_refused(model_dir, tmp_path, damage):
    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    f = bad / "denoise_step.onnx"
    if damage == "append":
        f.write_bytes(f.read_bytes() + b"\0")
    elif damage == "truncate":
        f.write_bytes(f.read_bytes()[:1000])
    elif damage == "delete":
        f.unlink()
    else:
        (bad / "manifest.json").unlink()
    message = {"append": "does not match the manifest's sha256", "truncate": "does not match the manifest's sha256",
               "delete": "missing", "manifest": "no manifest.json"}[damage]
    with pytest.raises(ModelError, match=message):
        ModelDir.load(bad)
    r = trt_localize(ROOT / "examples" / "images" / "astronaut_pristine.png", "--model", bad, "-o", tmp_path / "o")
    assert r.returncode == 2 and message in r.stderr


def _inputs(folder: Path) -> dict[str, str | None]:
    """Every kind of input: name -> expected error substring (None: must succeed)."""
    photo = make_photo(70, 90, 4)
    (folder / "sub").mkdir(parents=True)
    cv2.imwrite(str(folder / "good.png"), photo[:, :, ::-1])
    cv2.imwrite(str(folder / "sub" / "nested.jpg"), photo[:, :, ::-1])
    cv2.imwrite(str(folder / "grey.png"), photo[:, :, 0])
    cv2.imwrite(str(folder / "deep.png"), photo[:, :, ::-1].astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "alpha.png"), np.dstack([photo[:, :, ::-1], np.full(photo.shape[:2], 128, np.uint8)]))
    Image.fromarray(photo).convert("CMYK").save(folder / "cmyk.jpg")
    cv2.imwrite(str(folder / "small.png"), photo[:13, :7])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image")
    (folder / "cut.png").write_bytes((folder / "good.png").read_bytes()[:300])
    big = bytearray((folder / "good.png").read_bytes())
    big[16:24] = (100000).to_bytes(4, "big") + (100000).to_bytes(4, "big")  # a header claiming 10 Gpx
    (folder / "bomb.png").write_bytes(bytes(big))
    return {"good.png": None, "sub/nested.jpg": None, "grey.png": None, "deep.png": None, "alpha.png": None,
            "cmyk.jpg": None, "small.png": None, "empty.jpg": "empty file", "notes.png": "cannot decode",
            "cut.png": "cannot decode", "bomb.png": "pixel limit"}


def test_trt_localize_output_contract_and_bad_inputs(model_dir, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    expected = _inputs(src)
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.rglob("*") if p.is_file()}
    r = trt_localize(src, tmp_path / "missing.png", "--model", model_dir, "-o", out, "--steps", "2")
    assert r.returncode == 1, r.stderr  # some inputs failed, the rest were processed
    assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.rglob("*") if p.is_file()}
    lines = [json.loads(l) for l in (out / "report.jsonl").read_text().splitlines()]
    assert len(lines) == len(expected) + 1
    by_name = {Path(l["path"]).relative_to(src).as_posix() if str(src) in l["path"] else "missing": l for l in lines}
    assert "no such file" in by_name["missing"]["error"]
    for name, error in expected.items():
        line = by_name[name]
        assert {"path", "score", "inpainted", "regions", "mask_threshold", "score_threshold", "steps", "samples", "backend",
                "elapsed_ms"} <= set(line)
        stem = out / Path(name).with_suffix("")
        if error:
            assert error in line["error"] and name.split("/")[-1] in line["error"]
            assert not stem.with_name(stem.name + ".prob.png").exists()
            continue
        assert "error" not in line and 0 <= line["score"] <= 1 and line["steps"] == 2
        size = Image.open(src / name).size
        prob = cv2.imread(str(stem.with_name(stem.name + ".prob.png")), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(stem.with_name(stem.name + ".mask.png")), cv2.IMREAD_UNCHANGED)
        overlay = cv2.imread(str(stem.with_name(stem.name + ".overlay.jpg")))
        assert prob.dtype == np.uint8 and prob.shape == (size[1], size[0])
        assert mask.shape == prob.shape and set(np.unique(mask)) <= {0, 255}
        assert np.array_equal(mask == 255, prob >= 128)  # round(255 p) >= 128 exactly when p >= 0.5
        assert overlay.shape == (size[1], size[0], 3)
    assert not list(out.rglob("*.tmp*")) and not list(out.rglob(".report*"))
    assert "empty.jpg: empty file" in r.stderr and "12 image(s)" in r.stdout and "5 failed" in r.stdout


def test_trt_localize_json_fail_on_detect_and_usage(model_dir, tmp_path):
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), make_photo(64, 64, 0))
    r = trt_localize(img, "--model", model_dir, "-o", tmp_path / "o", "--steps", "1", "--json",
                     "--threshold", "0", "--fail-on-detect")
    assert r.returncode == 3, r.stderr
    line = json.loads(r.stdout.splitlines()[0])
    assert line["inpainted"] is True and line["regions"][0]["area"] == 64 * 64
    r = trt_localize(img, "--model", model_dir, "-o", tmp_path / "o2", "--steps", "1", "--quiet")
    assert r.returncode == 0 and r.stdout.count("\n") == 1 and "1 image(s)" in r.stdout
    assert trt_localize(img, "--threshold", "2").returncode == 2
    r = trt_localize(img, "--model", model_dir, "-o", tmp_path / "o3", "--max-tile", "100")
    assert r.returncode == 2 and "max_tile must be a multiple of 32, got 100" in r.stderr
    r = trt_localize(img, "--model", model_dir, "-o", tmp_path / "o3", "--flips", "3")
    assert r.returncode == 2 and "flips must be 1, 2, 4 or 8, got 3" in r.stderr
    assert trt_localize().returncode == 2
    r = trt_localize(tmp_path / "nothing*.png", "--model", model_dir)
    assert r.returncode == 2 and "no images found" in r.stderr


def test_runtime_runs_end_to_end_without_torch(model_dir):
    code = ("import sys; sys.modules['torch'] = None\n"
            "from inpdiff.runtime.localizer import Localizer, LocalizeConfig\n"
            "import numpy as np\n"
            f"r = Localizer({str(model_dir)!r}, config=LocalizeConfig(steps=2)).localize("
            "np.full((70, 80, 3), 128, np.uint8))\n"
            "assert 'torch' not in [m for m, v in sys.modules.items() if v is not None]\n"
            "print(r.prob.shape)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(70, 80)"


def test_every_shipped_model_folder_loads_and_decides_with_a_calibrated_score():
    folders = sorted(p.parent for p in (ROOT / "models").glob("*/manifest.json"))
    assert len(folders) >= 4
    for folder in folders:
        loc = Localizer(folder, "onnxruntime")
        assert loc.calibration is not None, f"{folder}: no calibrated image score"
        assert "mask_threshold" in loc.manifest["score"], f"{folder}: no calibrated pixel threshold"


def test_a_localizer_closes_its_backend(tmp_path):
    with Localizer(ROOT / "models" / "edge-c", "onnxruntime", LocalizeConfig()) as loc:
        result = loc.localize(make_photo(64, 80, 1))
    assert result.prob.shape == (64, 80)
    assert loc.backend._cond is None and loc.backend._step is None  # the sessions are released


def test_the_runtime_writes_nothing_outside_its_output_folder(tmp_path):
    """ONNX Runtime 1.32 leaves a device id and an SQLite telemetry file under ~/.cache unless told
    not to before it starts; a forensic tool must not."""
    home = tmp_path / "home"
    home.mkdir()
    # Without the variables: this test process may have set them itself, by running the Python runtime.
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONPATH=str(ROOT))
    photo = ROOT / "examples" / "images" / "astronaut_pristine.png"
    r = subprocess.run([sys.executable, "-m", "inpdiff.runtime.cli", str(photo), "-o", str(tmp_path / "out"), "--quiet",
                        "--no-html"], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert [p.relative_to(home) for p in home.rglob("*")] == []


def test_regions_are_found_whatever_their_number():
    # More than 16-bit labels hold (OpenCV 4.6 corrupted its heap there), found a band of rows at a
    # time and reported in the image's coordinates.
    rng = np.random.default_rng(0)
    prob = rng.random((600, 700), dtype=np.float32)
    many = np.zeros(prob.shape, bool)
    many[5::2, 9::2] = True  # 103,000 single-pixel regions
    regions = find_regions(many, prob, 1)
    assert len(regions) == many.sum() > 65535 and regions[0].bbox == (9, 5, 1, 1)
    assert regions[0].mean_prob == round(float(prob[5, 9]), 4)
    few = prob > 0.9
    _, _, stats, _ = cv2.connectedComponentsWithStats(few.astype(np.uint8), connectivity=8)
    expected = sorted((tuple(int(v) for v in s[:4]), int(s[4])) for s in stats[1:] if s[4] >= 3)
    assert sorted((r.bbox, r.area) for r in find_regions(few, prob, 3)) == expected
