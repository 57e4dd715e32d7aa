"""The C++ runtime against the Python one (run by CTest, which names the binaries; see CMakeLists.txt).

Both on ONNX Runtime: probability maps within 1e-4 and the same score and verdict on the shipped
example and on images that exercise the JPEG decoder, padding, odd sizes, downscaling, the copy
evidence and the diffusion model's noise and ensemble; the noise generator bit for bit; the command's
files, report lines, per-file errors, resume, refusals and signals.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from inpdiff.noise import normals
from inpdiff.runtime.localizer import Localizer, LocalizeConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "images"
EDGE_C, EDGE_S = ROOT / "models" / "edge-c", ROOT / "models" / "edge-s"
PROBE, CLI = os.environ.get("INPDIFF_CPP_PROBE"), os.environ.get("INPDIFF_CPP_CLI")
pytestmark = pytest.mark.skipif(not (PROBE and CLI), reason="the C++ runtime is not built: run through CTest "
                                "(cmake -S . -B build/cpp && cmake --build build/cpp && ctest --test-dir build/cpp)")
TOLERANCE = 1e-4


def run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kw)


def cpp_localize(model: Path, image: Path, tmp: Path, samples=1, seed=0, steps=0) -> tuple[np.ndarray, dict]:
    out = tmp / f"{image.stem}.f32"
    extra = [samples, seed, steps] if (samples, seed, steps) != (1, 0, 0) else []
    p = run(PROBE, "localize", model, image, out, *extra)
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    return np.fromfile(out, np.float32).reshape(info["height"], info["width"]), info


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """The example's images, and variants that take other paths through both runtimes."""
    d = tmp_path_factory.mktemp("photos")
    img = cv2.imread(str(EXAMPLES / "astronaut_00_telea.png"))
    cv2.imwrite(str(d / "telea_q85.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 85])  # the JPEG decoder
    cv2.imwrite(str(d / "odd_300x517.png"), img[50:350, :517])                  # uneven tiling
    cv2.imwrite(str(d / "small_120x200.png"), img[100:220, 100:300])            # mirror-padded to a tile
    cv2.imwrite(str(d / "large_700x1100.png"), cv2.resize(img, (1100, 700)))    # 2 x 3 tiles of 384 x 416
    cv2.imwrite(str(d / "grey16.png"), (cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257 + 3))
    copied = img[:301, :509].copy()  # exact copies (the copy evidence), an odd size
    copied[250:290, 400:443] = copied[20:60, 30:73]
    for y in (120, 200):  # a caption: drawn repeats, which the copy evidence must pass over alike
        cv2.putText(copied, "see you soon, see you", (5, y), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
    cv2.imwrite(str(d / "copied_301x509.png"), copied)
    cv2.imwrite(str(d / "copied_q90.jpg"), copied, [cv2.IMWRITE_JPEG_QUALITY, 90])  # near copies only
    return sorted(EXAMPLES.glob("*.png")) + sorted(d.iterdir())


def test_noise_is_the_same_generator():
    for seed, step, y, x, count in [(0, 0, 0, 0, 10), (7, 3, 224, 480, 1001), (2**40 + 5, 10, 0, 32, 4099)]:
        out = Path(os.environ.get("TMPDIR", "/tmp")) / f"noise-{os.getpid()}.f32"
        p = run(PROBE, "noise", seed, step, y, x, count, out)
        assert p.returncode == 0, p.stderr
        ours = np.fromfile(out, np.float32)
        out.unlink()
        want = normals(seed, step, y, x, count)
        # cos, sin and log in double from two libms, then rounded to float32: equal but for a rare last bit
        assert ours.shape == want.shape and np.abs(ours - want).max() <= 1e-6
        assert (ours == want).mean() > 0.999


def test_maps_scores_and_verdicts_match_python(photos, tmp_path):
    with Localizer(EDGE_C, "onnxruntime") as py:
        for image in photos:
            ref = py.localize(image)
            prob, info = cpp_localize(EDGE_C, image, tmp_path)
            assert prob.shape == ref.prob.shape, image.name
            assert np.abs(prob - ref.prob).max() <= TOLERANCE, image.name
            assert abs(info["score"] - ref.score) <= 1e-5 and info["inpainted"] == ref.inpainted, image.name
            assert [r["bbox"] for r in info["regions"]] == [list(r.bbox) for r in ref.regions], image.name
            assert [r["copied"] for r in info["regions"]] == [r.copied for r in ref.regions], image.name
            if image.name == "copied_301x509.png":  # the copy evidence is in the map both runtimes compared
                assert ref.prob[255:285, 405:438].min() >= 0.81 and max(r.copied for r in ref.regions) > 0.5
            if image.name == "copied_q90.jpg":  # and the near copies, which only a re-saved copy needs
                assert ref.prob[255:285, 405:438].mean() > 0.4 and max(r.copied for r in ref.regions) > 0.15  # 0.01 without


def test_diffusion_noise_and_ensembles_match_python(tmp_path):
    """edge-s: ten steps, Philox noise per tile and step, two samples with their spread."""
    image = tmp_path / "crop.png"
    cv2.imwrite(str(image), cv2.imread(str(EXAMPLES / "astronaut_00_ns.png"))[:300, :280])
    cfg = LocalizeConfig(samples=2, seed=11, steps=4)
    with Localizer(EDGE_S, "onnxruntime", cfg) as py:
        ref = py.localize(image)
    prob, info = cpp_localize(EDGE_S, image, tmp_path, samples=2, seed=11, steps=4)
    assert np.abs(prob - ref.prob).max() <= TOLERANCE
    assert abs(info["score"] - ref.score) <= 1e-5 and info["inpainted"] == ref.inpainted


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]


def test_command_writes_what_python_writes(tmp_path):
    """Same files, same report fields and values; corrupt, empty, oversized and missing inputs get the
    Python runtime's messages, one line each, and cost the others nothing (exit 1)."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("astronaut_00_telea.png", "astronaut_pristine.png"):
        (src / name).write_bytes((EXAMPLES / name).read_bytes())
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(3000))
    (src / "empty.png").write_bytes(b"")
    cv2.imwrite(str(src / "huge.png"), np.zeros((500, 600, 3), np.uint8))
    args = [src, tmp_path / "missing.png", "--max-pixels", "270000"]  # the examples are 512x512
    cpp = run(CLI, *args, "-o", tmp_path / "cpp")
    py = run(sys.executable, "-m", "inpdiff.runtime.cli", *args, "-o", tmp_path / "py", "--no-html")
    assert (cpp.returncode, py.returncode) == (1, 1), cpp.stderr + py.stderr
    ours = _lines(tmp_path / "cpp")
    theirs = {line["path"]: line for line in _lines(tmp_path / "py")}  # Python's pipeline finishes out of order
    assert sorted(line["path"] for line in ours) == sorted(theirs)
    for a in ours:
        b = theirs[a["path"]]
        assert set(a) == set(b) and a.get("error") == b.get("error"), a["path"]
        for key in ("score", "inpainted", "regions", "mask_threshold", "score_threshold", "steps", "samples"):
            assert a[key] == b[key], (a["path"], key)
        for kind, path in a.get("outputs", {}).items():
            other = cv2.imread(b["outputs"][kind])
            assert np.array_equal(cv2.imread(path), other), path
    assert sum("error" in line for line in ours) == 4  # corrupt, empty, huge, missing
    assert "huge.png: 600x500 is over the 270000 pixel limit" in json.dumps(ours)


def test_a_list_of_inputs_gives_what_python_gives(tmp_path):
    """--list FILE (and - for standard input), read a line at a time: blank lines and # comments
    skipped, outputs mirroring each listed path below OUT (`..` as `__`, never outside it), a missing
    file reported; the same files and report values as the Python runtime's --list."""
    (tmp_path / "work" / "d" / "sub").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    for name, source in (("d/a.png", "astronaut_00_ns.png"), ("d/sub/b.png", "astronaut_pristine.png"),
                         ("other/c.png", "astronaut_00_telea.png")):
        (tmp_path / "work" / name if not name.startswith("other") else tmp_path / name).write_bytes(
            (EXAMPLES / source).read_bytes())
    work = tmp_path / "work"
    lines = ["# inputs", "d/a.png", "", "   ", str(work / "d" / "sub" / "b.png"), "../other/c.png", "missing.png"]
    (work / "list.txt").write_text("\n".join(lines) + "\n")
    cpp = subprocess.run([str(Path(CLI).resolve()), "--list", "list.txt", "-o", "cpp", "--quiet"], cwd=work,
                         capture_output=True, text=True, timeout=600)
    py = subprocess.run([sys.executable, "-m", "inpdiff.runtime.cli", "--list", "-", "-o", "py", "--quiet", "--no-html"],
                        cwd=work, input=(work / "list.txt").read_text(), capture_output=True, text=True, timeout=600,
                        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (cpp.returncode, py.returncode) == (1, 1), cpp.stderr + py.stderr
    files = {name: sorted(str(f.relative_to(work / name)) for f in (work / name).rglob("*.*")
                          if f.suffix in (".png", ".jpg")) for name in ("cpp", "py")}
    assert files["cpp"] == files["py"] and "__/other/c.prob.png" in files["cpp"] and len(files["cpp"]) == 9
    ours = {line["path"]: line for line in _lines(work / "cpp")}
    theirs = {line["path"]: line for line in _lines(work / "py")}
    assert ours.keys() == theirs.keys() and len(ours) == 4
    for path, line in ours.items():
        assert (line.get("error"), line["score"], line["regions"]) == (theirs[path].get("error"), theirs[path]["score"],
                                                                     theirs[path]["regions"]), path
    # A list on standard input, which a SIGTERM ends while the command waits for its next line.
    proc = subprocess.Popen([str(Path(CLI).resolve()), "--list", "-", "-o", "stdin", "--quiet"], cwd=work,
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(b"d/a.png\n")
    proc.stdin.flush()
    report, deadline = work / "stdin" / "report.jsonl", time.time() + 120
    while time.time() < deadline and not (report.is_file() and report.stat().st_size):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # standard input is still open
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and b"stopped after 1 image(s)" in err
    assert (work / "stdin" / "d" / "a.prob.png").is_file()


def test_exact_copies_alone_match_python(tmp_path):
    """--no-near-copies: the copy evidence without its near copies, in both runtimes alike."""
    image = tmp_path / "copied_q90.jpg"
    img = cv2.imread(str(EXAMPLES / "astronaut_00_telea.png"))[:301, :509].copy()
    img[250:290, 400:443] = img[20:60, 30:73]
    cv2.imwrite(str(image), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    maps = {}
    for name, command in (("cpp", [CLI]), ("py", [sys.executable, "-m", "inpdiff.runtime.cli", "--no-html"])):
        for flag in ("--no-near-copies", None):
            out = tmp_path / f"{name}{flag or ''}"
            p = run(*command, image, "-o", out, "--quiet", *([flag] if flag else []))
            assert p.returncode == 0, p.stderr
            maps[name, flag] = cv2.imread(str(out / "copied_q90.prob.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(maps["cpp", "--no-near-copies"], maps["py", "--no-near-copies"])
    region = (slice(255, 285), slice(405, 438))
    assert maps["py", None][region].mean() > maps["py", "--no-near-copies"][region].mean() + 100  # of 255


def shares_photo(path: Path) -> np.ndarray:
    """A 2100 x 2100 JPEG above both runtimes' one-pass sizes (three shares of near copies, two parts of
    exact ones), with one region pasted off the JPEG grid (near copies only) and one on it (exact copies
    inside); the photo as written."""
    img = cv2.imread(str(EXAMPLES / "astronaut_pristine.png"))
    tiles = []  # 16 different views of the photo, so that nothing but the pasted area repeats
    for k in range(16):
        t = cv2.resize(img, None, fx=1.03 + 0.02 * k, fy=1.03 + 0.02 * k, interpolation=cv2.INTER_AREA)
        t = np.rot90(t, k % 4)
        tiles.append(np.ascontiguousarray((t[:, ::-1] if k // 4 % 2 else t)[:525, :525]))
    photo = np.vstack([np.hstack(tiles[r * 4:r * 4 + 4]) for r in range(4)])
    photo[1500:1700, 1400:1650] = photo[200:400, 300:550]  # off the JPEG grid (16-pixel MCUs)
    photo[1008:1200, 208:400] = photo[16:208, 1600:1792]  # on it
    cv2.imwrite(str(path), photo, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return photo


def test_copy_cover_of_a_photo_compared_in_shares_matches_python(tmp_path):
    """Above 4M blocks both runtimes compare near copies a share of key parts at a time, from features
    written to files once (three shares here), and exact copies a part of their hashes at a time (two):
    the covers must still be equal, and find both copies."""
    from inpdiff.copies import PASS_BLOCKS, copy_cover
    from inpdiff.io import read_image

    path = tmp_path / "pasted_q90.jpg"
    shares_photo(path)
    assert (2100 - 7) ** 2 > PASS_BLOCKS == 1 << 22  # blocks: above both runtimes' one-pass sizes
    # TMPDIR names a missing folder: the share files go to the next temporary folder, as Python's do.
    p = run(PROBE, "copies", path, tmp_path / "cover.u8", env={**os.environ, "TMPDIR": str(tmp_path / "missing")})
    assert p.returncode == 0, p.stderr
    py = copy_cover(read_image(path))
    assert np.array_equal(np.fromfile(tmp_path / "cover.u8", np.uint8).reshape(py.shape), py)
    assert py[1500:1700, 1400:1650].mean() > 0.1 and py[1024:1184, 224:384].mean() > 0.9 and py.mean() < 0.03


def test_copy_growth_matches_python(tmp_path):
    """Copy growth (inpdiff/copy_growth.py) in both runtimes alike: a paste re-saved at JPEG 70 and the
    same photo resized, where growth adds to what the searches found."""
    from inpdiff.copies import CopySettings, copy_cover
    from inpdiff.io import read_image

    img = cv2.imread(str(EXAMPLES / "astronaut_pristine.png"))
    img[300:400, 260:360] = img[40:140, 40:140].copy()
    for name, photo in (("q70.jpg", img), ("resized.png", cv2.resize(img, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA))):
        path = tmp_path / name
        cv2.imwrite(str(path), photo, [cv2.IMWRITE_JPEG_QUALITY, 70])
        p = run(PROBE, "copies", path, tmp_path / "cover.u8")
        assert p.returncode == 0, p.stderr
        py = copy_cover(read_image(path))
        assert np.array_equal(np.fromfile(tmp_path / "cover.u8", np.uint8).reshape(py.shape), py), name
        assert (py != copy_cover(read_image(path), CopySettings(grow=None))).any(), name  # growth did something


def test_the_end_the_network_map_picks_matches_python(tmp_path):
    """A copy whose seam says nothing (a smooth change of brightness over it, re-saved at JPEG 70): both
    runtimes keep the end where the given map is higher, alike."""
    from inpdiff.copies import copy_cover
    from inpdiff.io import read_image

    img = cv2.imread(str(EXAMPLES / "astronaut_pristine.png"))
    ramp = np.linspace(-12, 12, 100, dtype=np.float32)[None, :, None]
    img[300:400, 260:360] = np.clip(img[40:140, 40:140].astype(np.float32) + ramp, 0, 255).astype(np.uint8)
    path = tmp_path / "healed_q70.jpg"
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 70])
    rgb = read_image(path)
    prob = np.full(rgb.shape[:2], 0.1, np.float32)
    prob[300:400, 260:360] = 0.6
    prob.tofile(tmp_path / "prob.f32")
    p = run(PROBE, "copies", path, tmp_path / "cover.u8", "0", tmp_path / "prob.f32")
    assert p.returncode == 0, p.stderr
    py = copy_cover(rgb, prob=prob)
    assert np.array_equal(np.fromfile(tmp_path / "cover.u8", np.uint8).reshape(py.shape), py)
    assert py[40:140, 40:140].max() == 0 < copy_cover(rgb)[40:140, 40:140].max()  # the source, dropped
    assert py[300:400, 260:360].any()


def test_the_copy_search_asks_to_go_on_between_its_passes_too_and_stops_where_told(tmp_path):
    """A stopping run ends the search where it next asks. It asked only as it read a band of rows, so the
    comparisons of the shares and parts, 3-4 s of a 48 MP photo, ran on after a stop; it now asks before
    each share of each near search and each part of the exact copies too."""
    path = tmp_path / "pasted_q90.jpg"
    shares_photo(path)
    whole = json.loads(run(PROBE, "copies", path, tmp_path / "cover.u8").stdout)
    assert not whole["stopped"] and whole["between"] == 2 * 3 + 2, whole
    for k in sorted({*np.linspace(1, whole["asked"], 6).astype(int).tolist()}):
        told = json.loads(run(PROBE, "copies", path, tmp_path / "cover.u8", k).stdout)
        assert told["stopped"] and told["asked"] == k, (k, told)


def test_a_mask_of_more_than_65535_regions_matches_python(tmp_path):
    """OpenCV 4.6's 16-bit labels corrupted the heap on such a mask (the C++ command crashed on a 99 MP
    photo); both runtimes label in 32 bits (C++ a band of rows at a time, joined across band edges)."""
    from inpdiff.runtime.localizer import find_regions

    mask = np.zeros((1030, 1100), np.uint8)
    mask[5:1029:2, 9:1099:2] = 1  # 512 x 545 single pixels
    mask[600:700, 300:420] = 1  # and one block across a band edge (128 rows), the largest region
    mask[130:300, 700:704] = mask[130:300, 800:804] = mask[296:300, 700:804] = 1  # a U, joined below its arms' band
    prob = np.random.default_rng(3).integers(0, 256, mask.shape, dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "mask.png"), mask * 255)
    cv2.imwrite(str(tmp_path / "prob.png"), prob)
    p = run(PROBE, "regions", tmp_path / "mask.png", tmp_path / "prob.png")
    assert p.returncode == 0, p.stderr
    cpp = json.loads(p.stdout)
    py = find_regions(mask, prob.astype(np.float32) / np.float32(255), 1)
    assert len(cpp) == len(py) > 65535
    assert [(r["bbox"], r["area"], r["mean_prob"]) for r in cpp] == [(list(r.bbox), r.area, r.mean_prob) for r in py]
    assert [r["area"] > 1 for r in cpp[:3]] == [True, True, False]  # the block and the U, each one region
    assert cpp[2]["bbox"] == [9, 5, 1, 1]


def test_a_photo_is_decoded_straight_into_a_file_as_it_is_read_whole(tmp_path):
    """A large JPEG or PNG is decoded into a file a band of rows at a time (libjpeg, libpng): the pixels
    read_image gives (OpenCV's), for 4:2:0, 4:4:4, grey, progressive and odd-sized JPEGs and for 8- and
    16-bit, grey, alpha and palette PNGs. EXIF that may turn the photo, CMYK, and other formats are
    not streamed (read whole, then spilled); a broken file gets read_image's message."""
    from PIL import Image
    from inpdiff.io import read_image

    img = cv2.imread(str(EXAMPLES / "astronaut_00_telea.png"))[:301, :437]
    rgb = Image.fromarray(img[:, :, ::-1].copy())
    exif = Image.Image().getexif()
    exif[0x0112] = 6  # shown rotated a quarter turn
    streamed = {"q90.jpg": lambda p: cv2.imwrite(p, img, [cv2.IMWRITE_JPEG_QUALITY, 90]),
                "444.jpg": lambda p: cv2.imwrite(p, img, [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]),
                "progressive.jpg": lambda p: cv2.imwrite(p, img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
                "grey.jpg": lambda p: cv2.imwrite(p, img[:, :, 0]),
                "photo.png": lambda p: cv2.imwrite(p, img),
                "deep.png": lambda p: cv2.imwrite(p, img.astype(np.uint16) * 257 + 100),
                "grey.png": lambda p: cv2.imwrite(p, img[:, :, 1]),
                "alpha.png": lambda p: cv2.imwrite(p, np.dstack([img, img[:, :, 0]])),
                "palette.png": lambda p: rgb.convert("P").save(p),
                "bits.png": lambda p: rgb.convert("1").save(p)}
    whole = {"rotated.jpg": lambda p: rgb.save(p, exif=exif, quality=85),
             "cmyk.jpg": lambda p: rgb.convert("CMYK").save(p, quality=85),
             "exif.png": lambda p: rgb.save(p, exif=exif),
             "photo.bmp": lambda p: cv2.imwrite(p, img)}
    for name, make in {**streamed, **whole}.items():
        make(str(tmp_path / name))
        p = run(PROBE, "decode", tmp_path / name, tmp_path / "raw.u8")
        assert p.returncode == 0, p.stderr
        info = json.loads(p.stdout)
        assert info["streamed"] == (name in streamed), name
        if info["streamed"]:
            got = np.fromfile(tmp_path / "raw.u8", np.uint8).reshape(info["height"], info["width"], 3)
            assert np.array_equal(got, read_image(tmp_path / name)), name
    for name, data in (("broken.jpg", b"\xff\xd8\xff\xe0 not a JPEG at all"),
                       ("cut.png", (tmp_path / "photo.png").read_bytes()[:5000])):
        (tmp_path / name).write_bytes(data)
        p = run(PROBE, "decode", tmp_path / name, tmp_path / "raw.u8")
        assert p.returncode == 1 and f"{name}: cannot decode the image (corrupt, truncated or not an image)" in p.stderr


def test_a_photo_worked_from_a_file_gives_what_it_gives_held_whole_and_what_python_gives(tmp_path):
    """--spill-above: a photo of more pixels is worked from files a band of rows at a time (a JPEG
    decoded straight into one, a PNG decoded whole first). The maps, regions and score equal those of
    the photo held whole, and the Python runtime's band path's; the overlay is the same picture; the
    run leaves no file in TMPDIR. Two samples (edge-s) give the same spread too."""
    src, tmp = tmp_path / "in", tmp_path / "tmp"
    src.mkdir(), tmp.mkdir()
    img = cv2.imread(str(EXAMPLES / "astronaut_00_telea.png"))[:301, :509].copy()
    img[250:290, 400:443] = img[20:60, 30:73]  # an exact copy: the copy evidence and its lift, by band
    cv2.imwrite(str(src / "copied_q90.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    cv2.imwrite(str(src / "copied.png"), img)
    cv2.imwrite(str(src / "narrow.png"), img[:200])  # narrower than a tile: padded, so held whole
    env = {**os.environ, "TMPDIR": str(tmp)}
    runs = {"whole": [CLI, "--spill-above", "0"], "spilled": [CLI, "--spill-above", "1000"],
            "python": [sys.executable, "-m", "inpdiff.runtime.cli", "--no-html", "--spill-above", "1000"]}
    lines = {}
    for name, command in runs.items():
        p = run(*command, src, "-o", tmp_path / name, "--quiet", env=env)
        assert p.returncode == 0, p.stderr
        lines[name] = {Path(line["path"]).name: line for line in _lines(tmp_path / name)}
    assert not os.listdir(tmp)
    for image in ("copied_q90.jpg", "copied.png", "narrow.png"):
        whole, spilled, python = (lines[name][image] for name in runs)
        assert spilled["regions"] == whole["regions"] == python["regions"], image
        assert spilled["score"] == whole["score"] and abs(spilled["score"] - python["score"]) <= 1e-4, image
        for kind in ("prob", "mask"):
            ours = cv2.imread(spilled["outputs"][kind], cv2.IMREAD_UNCHANGED)
            assert np.array_equal(ours, cv2.imread(whole["outputs"][kind], cv2.IMREAD_UNCHANGED)), (image, kind)
            assert np.array_equal(ours, cv2.imread(python["outputs"][kind], cv2.IMREAD_UNCHANGED)), (image, kind)
        # One picture through two JPEG encoders (libjpeg at 4:2:0, libvips at 4:4:4): tinted where marked.
        overlays = [cv2.imread(line["outputs"]["overlay"]).astype(int) for line in (spilled, python)]
        assert np.abs(overlays[0] - overlays[1]).mean() < 2.5, image
        marked = cv2.imread(spilled["outputs"]["mask"], cv2.IMREAD_GRAYSCALE) > 0
        photo = cv2.imread(str(src / image)).astype(int)
        assert (overlays[0][marked][:, 2] - photo[marked][:, 2]).mean() > 40, image
    assert max(r["copied"] for r in lines["spilled"]["copied.png"]["regions"]) > 0.5
    maps = {}
    for name, above in (("two-whole", "0"), ("two-spilled", "1000")):
        p = run(CLI, src / "copied.png", "-o", tmp_path / name, "--quiet", "--model", EDGE_S, "--samples", "2",
                "--steps", "2", "--spill-above", above, env=env)
        assert p.returncode == 0, p.stderr
        maps[name] = [cv2.imread(str(tmp_path / name / f"copied.{k}.png"), cv2.IMREAD_UNCHANGED) for k in ("prob", "uncertainty")]
    assert all(np.array_equal(a, b) for a, b in zip(maps["two-whole"], maps["two-spilled"]))
    assert maps["two-whole"][1].max() > 0


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm (a tmpfs) on this machine")
def test_working_photos_from_files_on_a_tmpfs_is_warned_of(tmp_path):
    image = EXAMPLES / "astronaut_00_ns.png"
    for name, tmpdir, above, warned in (("shm", "/dev/shm", "1000", True), ("disk", str(tmp_path), "1000", False),
                                        ("whole", "/dev/shm", "0", False)):
        p = run(CLI, image, "-o", tmp_path / name, "--quiet", "--spill-above", above, env={**os.environ, "TMPDIR": tmpdir})
        assert p.returncode == 0, p.stderr
        assert ("/dev/shm is on a tmpfs" in p.stderr) == warned, name


def test_outputs_do_not_depend_on_workers_batch_or_photos_side_by_side(tmp_path):
    # Tiles are blended in plan order whichever thread finished them first; photos worked side by side
    # (one per core, their tiles sharing the threads) give what they give one at a time (--threads 1).
    runs = (("one", ["--workers", "1", "--batch", "4", "--threads", "1"]), ("two", ["--workers", "2", "--batch", "1"]),
            ("cores", ["--threads", "2"]))
    for name, extra in runs:
        p = run(CLI, EXAMPLES, "-o", tmp_path / name, "--quiet", *extra)
        assert p.returncode == 0, p.stderr
    lines = {name: {line["path"]: line for line in _lines(tmp_path / name)} for name, _ in runs}
    assert len(lines["one"]) == 4 and lines["one"].keys() == lines["two"].keys() == lines["cores"].keys()
    for path, line in lines["one"].items():
        for name in ("two", "cores"):
            other = lines[name][path]
            assert (line["regions"], line["score"]) == (other["regions"], other["score"]), (name, path)
            assert Path(line["outputs"]["prob"]).read_bytes() == Path(other["outputs"]["prob"]).read_bytes(), (name, path)


def test_flips_give_what_python_gives_and_a_run_resumes_only_with_its_own(photos, tmp_path):
    """--flips 8 (each tile's mirrored and transposed views averaged) on photos of one tile, of 2 x 3 tiles and
    mirror-padded:
    the Python command's files and report values; a folder made with them refuses other flips, in both
    commands, and one made before flips were recorded resumes with none."""
    src = tmp_path / "in"
    src.mkdir()
    for image in photos:
        if image.name in ("astronaut_00_telea.png", "large_700x1100.png", "small_120x200.png"):
            (src / image.name).write_bytes(image.read_bytes())
    cpp = run(CLI, src, "-o", tmp_path / "cpp", "--flips", "8", "--quiet")
    py = run(sys.executable, "-m", "inpdiff.runtime.cli", src, "-o", tmp_path / "py", "--flips", "8", "--no-html", "--quiet")
    assert (cpp.returncode, py.returncode) == (0, 0), cpp.stderr + py.stderr
    theirs = {line["path"]: line for line in _lines(tmp_path / "py")}
    plain = run(CLI, src, "-o", tmp_path / "plain", "--quiet")
    assert plain.returncode == 0, plain.stderr
    unflipped = {line["path"]: line for line in _lines(tmp_path / "plain")}
    for a in _lines(tmp_path / "cpp"):
        b = theirs[a["path"]]
        assert (a["score"], a["regions"]) == (b["score"], b["regions"]), a["path"]
        assert np.array_equal(cv2.imread(a["outputs"]["prob"]), cv2.imread(b["outputs"]["prob"])), a["path"]
        assert not np.array_equal(cv2.imread(a["outputs"]["prob"]), cv2.imread(unflipped[a["path"]]["outputs"]["prob"]))
    for command in ([CLI], [sys.executable, "-m", "inpdiff.runtime.cli"]):
        p = run(*command, src, "-o", tmp_path / "cpp", "--flips", "2")
        assert p.returncode == 2 and "other settings (flips" in p.stderr, p.stderr
    settings = tmp_path / "plain" / ".trt-localize.json"
    saved = json.loads(settings.read_text())
    assert saved.pop("flips") == 1
    settings.write_text(json.dumps(saved))
    p = run(CLI, src, "-o", tmp_path / "plain")
    assert p.returncode == 0 and p.stdout.startswith("0 image(s)") and len(_lines(tmp_path / "plain")) == 3, p.stdout + p.stderr


def test_never_overwrites_resumes_and_refuses(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    users = out / "astronaut_pristine.prob.png"
    users.write_bytes(b"an analyst's file")
    image = EXAMPLES / "astronaut_pristine.png"
    first = run(CLI, image, "-o", out)
    assert first.returncode == 0, first.stderr
    assert users.read_bytes() == b"an analyst's file"  # the outputs took the stem NAME.png instead
    assert (out / "astronaut_pristine.png.prob.png").is_file()
    again = run(CLI, image, "-o", out)  # resumed: nothing to do, nothing rewritten
    assert again.returncode == 0 and "0 image(s)" in again.stdout and len(_lines(out)) == 1
    python_resume = run(sys.executable, "-m", "inpdiff.runtime.cli", image, "-o", out, "--no-html")
    assert python_resume.returncode == 0 and "0 image(s)" in python_resume.stdout  # one format for both
    other = run(CLI, image, "-o", out, "--threshold", "0.3")
    assert other.returncode == 2 and "other settings" in other.stderr
    other = run(CLI, image, "-o", out, "--no-near-copies")  # exact copies alone make other maps
    assert other.returncode == 2 and "near_copies" in other.stderr


def test_a_torn_claims_line_is_cut_off_before_new_claims_follow_it(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".trt-localize.claims").write_text('{"path": "/photos/gone.png", "stem": "go')
    p = run(CLI, EXAMPLES / "astronaut_pristine.png", "-o", out, "--quiet")
    assert p.returncode == 0, p.stderr
    claims = [json.loads(line) for line in (out / ".trt-localize.claims").read_text().splitlines()]
    assert [Path(c["path"]).name for c in claims] == ["astronaut_pristine.png"]


def test_bad_model_and_busy_folder_exit_2(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    for f in EDGE_C.iterdir():
        if f.is_file():
            (model / f.name).write_bytes(f.read_bytes())
    with open(model / "condition.onnx", "ab") as f:
        f.write(b"\0")
    p = run(CLI, EXAMPLES / "astronaut_pristine.png", "-o", tmp_path / "o1", "--model", model)
    assert p.returncode == 2 and "condition.onnx: does not match the manifest's sha256" in p.stderr
    p = run(CLI, EXAMPLES / "astronaut_pristine.png", "-o", tmp_path / "o1", "--max-tile", "100")
    assert p.returncode == 2 and "max tile must be a multiple of 32, got 100" in p.stderr
    p = run(CLI, EXAMPLES / "astronaut_pristine.png", "-o", tmp_path / "o1", "--flips", "3")
    assert p.returncode == 2 and "flips must be 1, 2, 4 or 8, got 3" in p.stderr

    import fcntl

    (tmp_path / "o2").mkdir()
    with open(tmp_path / "o2" / ".trt-localize.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running Python trt-localize holds it
        p = run(CLI, EXAMPLES / "astronaut_pristine.png", "-o", tmp_path / "o2")
    assert p.returncode == 2 and "another trt-localize" in p.stderr


def test_a_cpu_int8_model_runs_as_itself_only_on_a_cpu_with_int8_dot_products(tmp_path):
    """As trt-localize: on a CPU without int8 dot products (told so here: this CPU's flags cannot be
    changed), a CPU INT8 model gives way to the FP32 model it was made from, saying why; a copy whose FP32
    model is nowhere is refused, naming it."""
    import shutil

    from inpdiff.runtime.backends import cpu_int8_dot_product

    int8 = EDGE_C.parent / "edge-c-int8-cpu"
    here = json.loads(run(PROBE, "runnable", int8, cwd=ROOT).stdout)
    assert here["dot_product"] == cpu_int8_dot_product()[0]  # read from /proc/cpuinfo alike
    told = json.loads(run(PROBE, "runnable", int8, "no-dot-product", cwd=ROOT).stdout)
    assert Path(told["path"]).resolve() == EDGE_C.resolve() and "running the FP32 model" in told["why"]
    fp32 = json.loads(run(PROBE, "runnable", EDGE_C, "no-dot-product", cwd=ROOT).stdout)
    assert fp32 == {"dot_product": False, "path": str(EDGE_C), "why": ""}
    shutil.copytree(int8, tmp_path / "lone-int8")
    p = run(PROBE, "runnable", tmp_path / "lone-int8", "no-dot-product", cwd=tmp_path)
    assert p.returncode == 1 and "its FP32 model (models/edge-c) is not there" in p.stderr, p.stderr


def test_installed_tree_runs_where_it_is_copied(tmp_path):
    """`cmake --install`: the command, the library, headers and the shipped model; the tree still runs
    (its model and ONNX Runtime found beside it) after being moved."""
    build = os.environ.get("INPDIFF_CPP_BUILD")
    if not build:
        pytest.skip("INPDIFF_CPP_BUILD not set (CTest sets it)")
    p = run("cmake", "--install", build, "--prefix", tmp_path / "prefix")
    assert p.returncode == 0, p.stderr
    (tmp_path / "prefix").rename(tmp_path / "moved")
    root = tmp_path / "moved"
    assert (root / "include" / "inpdiff" / "localizer.hpp").is_file()
    assert (root / "share" / "inpdiff" / "models" / "edge-c" / "manifest.json").is_file()
    assert not (root / "share" / "inpdiff" / "models" / "edge-c" / "model.safetensors").exists()
    p = run(root / "bin" / "trt-localize-cpp", EXAMPLES / "astronaut_00_telea.png", "-o", tmp_path / "out", cwd="/")
    assert p.returncode == 0, p.stderr
    line = _lines(tmp_path / "out")[0]
    with Localizer(EDGE_C, "onnxruntime") as py:
        assert line["score"] == round(py.localize(EXAMPLES / "astronaut_00_telea.png").score, 4)
    # A shipped model by its name, as trt-localize takes it; an unknown name lists the shipped ones.
    p = run(root / "bin" / "trt-localize-cpp", EXAMPLES / "astronaut_00_telea.png", "-o", tmp_path / "int8",
            "--model", "edge-c-int8-cpu", cwd="/")
    assert p.returncode == 0, p.stderr
    with Localizer(EDGE_C.parent / "edge-c-int8-cpu", "onnxruntime") as py:
        assert _lines(tmp_path / "int8")[0]["score"] == round(py.localize(EXAMPLES / "astronaut_00_telea.png").score, 4)
    p = run(root / "bin" / "trt-localize-cpp", EXAMPLES / "astronaut_00_telea.png", "-o", tmp_path / "x",
            "--model", "edge-x", cwd="/")
    assert p.returncode == 2 and "edge-x: no such model folder" in p.stderr and "edge-c-int8-cpu" in p.stderr


def test_sigterm_stops_cleanly_and_the_next_run_finishes(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    img = cv2.imread(str(EXAMPLES / "astronaut_00_ns.png"))
    n = 24  # enough that the signal lands mid-run
    for i in range(n):
        cv2.imwrite(str(src / f"p{i:02d}.png"), np.roll(img, 7 * i, axis=1))
    out = tmp_path / "out"
    proc = subprocess.Popen([CLI, str(src), "-o", str(out), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "report.jsonl").exists() and (out / "report.jsonl").stat().st_size):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and b"run the same command again" in err
    stopped_at = len(_lines(out))
    assert 1 <= stopped_at < n
    assert not list(out.glob(".*.tmp*")) and not list(out.glob(".*png.*"))  # no half-written file left
    p = run(CLI, src, "-o", out, "--quiet")
    assert p.returncode == 0
    lines = _lines(out)
    assert len(lines) == n and len({line["path"] for line in lines}) == n
    assert all((out / f"p{i:02d}.prob.png").is_file() for i in range(n))


def test_a_photo_the_command_crashed_on_is_reported_not_retried_forever(tmp_path):
    """A crash (a fatal signal: a hostile file can crash a codec outright) notes the photos in flight in
    the claims journal. After a crash with two photos in flight, the next run works them one at a time;
    after a crash with one alone, the next run gives that photo an error line and finishes the others
    (a resumed run used to meet the same file, and crash, every time). --restart tries it again."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    cv2.imwrite(str(src / "a_large.png"), np.random.default_rng(1).integers(0, 256, (2500, 2500, 3), np.uint8))
    for name in "bcdefg":  # enough small ones that one is in flight beside the large one a second in
        (src / f"{name}.png").write_bytes((EXAMPLES / "astronaut_00_ns.png").read_bytes())
    claims = out / ".trt-localize.claims"

    def crash(*extra: str) -> list[dict]:
        import resource

        proc = subprocess.Popen([str(Path(CLI).resolve()), str(src), "-o", str(out), "--quiet", *extra],
                                stderr=subprocess.PIPE, cwd=tmp_path,  # and no core file
                                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))
        deadline, lock = time.time() + 120, out / ".trt-localize.lock"
        while time.time() < deadline and not (lock.exists() and lock.read_text() == str(proc.pid)):
            time.sleep(0.02)  # the folder is this run's: its model loads next (0.1 s), then the photos
        time.sleep(1.0)  # the large photo takes seconds
        proc.send_signal(signal.SIGSEGV)  # as the photo's own crash would arrive
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGSEGV
        return [json.loads(line) for line in claims.read_text().splitlines() if "crashed_on" in line]

    # Two photos side by side, the large one and a small one (--spill-above 0: no pixel limit on that).
    notes = crash("--threads", "2", "--spill-above", "0")
    assert len(notes) == 2 and "a_large.png" in {Path(n["crashed_on"]).name for n in notes}
    assert all(not n["alone"] and n["signal"] == signal.SIGSEGV for n in notes)
    notes = crash("--threads", "2", "--spill-above", "0")  # resumed: one photo at a time, the large one first
    assert [(Path(n["crashed_on"]).name, n["alone"]) for n in notes[2:]] == [("a_large.png", True)]
    p = run(CLI, src, "-o", out, "--quiet", "--spill-above", "0")
    assert p.returncode == 1, p.stderr
    lines = {Path(line["path"]).name: line for line in _lines(out)}
    assert "crashed (signal 11) while working on this file alone" in lines["a_large.png"]["error"]
    assert len(lines) == 7 and all("error" not in lines[f"{name}.png"] for name in "bcdefg")
    p = run(CLI, src, "-o", out, "--quiet", "--spill-above", "0", "--restart")
    assert p.returncode == 0, p.stderr
    assert all("error" not in line for line in _lines(out))


def test_what_a_crash_of_the_python_command_left_is_noted_as_its_own(tmp_path):
    """trt-localize keeps its photos in flight in the lock file and faulthandler appends its report of a
    fatal signal there; the C++ command, resuming that folder, notes them as it notes its own crashes."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    for name in ("a.png", "b.png"):
        (src / name).write_bytes((EXAMPLES / "astronaut_00_ns.png").read_bytes())
    (out / ".trt-localize.lock").write_text(f"99999\n{json.dumps([str(src / 'a.png')])}\n"
                                            "Fatal Python error: Bus error\n\nThread 0x7f (most recent call first):\n")
    p = run(CLI, src, "-o", out, "--quiet")
    assert p.returncode == 1, p.stderr
    lines = {Path(line["path"]).name: line for line in _lines(out)}
    assert "crashed (signal 7) while working on this file alone" in lines["a.png"]["error"]
    assert "error" not in lines["b.png"]
    notes = [json.loads(line) for line in (out / ".trt-localize.claims").read_text().splitlines() if "crashed_on" in line]
    assert notes == [{"crashed_on": str(src / "a.png"), "alone": True, "signal": 7}]


def test_sigterm_gives_up_a_photo_in_flight_and_the_next_run_redoes_it(tmp_path):
    """A large photo need not be finished before the command stops: its tiles and copy search give up
    (LocalizeConfig::stop), it gets no report line and no outputs, and the next run redoes it. The stop
    lands at several moments, in the tiles, the copy search or both: one that unwound the tiles while
    the search ran once left the search reading freed settings, and the command hung."""
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "large.png"), np.random.default_rng(2).integers(0, 256, (2500, 2500, 3), np.uint8))
    stopped = None
    for delay in (0.5, 1.5, 2.5, 3.5):  # the photo takes about 5 s here
        out = tmp_path / f"out-{delay}"
        proc = subprocess.Popen([CLI, str(src), "-o", str(out), "--quiet", "--spill-above", "0"], stderr=subprocess.PIPE)
        deadline, lock = time.time() + 120, out / ".trt-localize.lock"
        while time.time() < deadline and not (lock.exists() and lock.read_text() == str(proc.pid)):
            time.sleep(0.02)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        if proc.returncode == 0:  # a fast machine finished first: nothing to give up
            continue
        assert proc.returncode == 130 and b"stopped after 0 image(s)" in err, (delay, proc.returncode, err)
        assert not _lines(out) and not list(out.glob("large.*")) and not list(out.glob(".large*"))
        stopped = out
    assert stopped, "every run finished before its stop"
    p = run(CLI, src, "-o", stopped, "--quiet", "--spill-above", "0")
    assert p.returncode == 0, p.stderr
    assert len(_lines(stopped)) == 1 and (stopped / "large.prob.png").is_file()


def test_writes_nothing_outside_its_output_folder(tmp_path):
    """ONNX Runtime 1.32 leaves a device id and an SQLite telemetry file under ~/.cache unless told
    not to before its environment starts (DisableTelemetryEvents() alone does not stop it)."""
    home = tmp_path / "home"
    home.mkdir()
    # Without the variables: this test process may have set them itself, by running the Python runtime.
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    p = run(CLI, EXAMPLES / "astronaut_pristine.png", "-o", tmp_path / "out", "--quiet", "--model", EDGE_C, env=env)
    assert p.returncode == 0, p.stderr
    assert [q.relative_to(home) for q in home.rglob("*")] == []


def test_a_full_disk_leaves_whole_lines_and_a_plain_resume_finishes(tmp_path):
    """A real 2 MB tmpfs fills mid-run: exit 4, and report.jsonl holds whole lines only before any
    repair by the next run (a line the disk could not take is cut back off at once)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if run("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", disk).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root): the full-disk test runs in CI as root")
    try:
        src = tmp_path / "in"
        src.mkdir()
        img = cv2.imread(str(EXAMPLES / "astronaut_00_ns.png"))
        n = 30
        for i in range(n):
            cv2.imwrite(str(src / f"p{i:02d}.png"), np.roll(img, 11 * i, axis=0)[:300, :400])
        out = disk / "out"
        p = run(CLI, src, "-o", out, "--quiet")
        assert p.returncode == 4 and "no space left on" in p.stderr, p.stderr
        text = (out / "report.jsonl").read_text()
        assert text.endswith("\n") and 0 < len(_lines(out)) < n
        assert run("mount", "-o", "remount,size=64m", disk).returncode == 0
        p = run(CLI, src, "-o", out, "--quiet")
        assert p.returncode == 0, p.stderr
        lines = _lines(out)
        assert len(lines) == n and len({line["path"] for line in lines}) == n and "error" not in str(lines)
    finally:
        run("umount", "-l", disk)


def test_a_crash_the_python_command_left_is_read(tmp_path):
    """The lock file as trt-localize leaves it after a fatal signal (its PID line and the photos in flight,
    padded to a fixed length, then faulthandler's report): trt-localize-cpp notes the crash, and a photo
    that was alone in flight gets an error line instead of a third try."""
    from inpdiff.runtime.out_folder import LOCK_FILE, OutFolder

    out, photo = tmp_path / "out", EXAMPLES / "astronaut_pristine.png"
    left = OutFolder(out)
    left.in_flight([str(photo)])
    with open(out / LOCK_FILE, "a") as log:
        log.write("Fatal Python error: Segmentation fault\n\nCurrent thread 0x1 (most recent call first):\n")
    os.close(left._lock)  # the process died: its lock goes, nothing else is done
    p = run(CLI, photo, "-o", out)
    assert p.returncode == 1 and "crashed (signal 11) while working on this file alone" in p.stderr, p.stderr
    notes = [json.loads(line) for line in (out / ".trt-localize.claims").read_text().splitlines()]
    assert {"crashed_on": str(photo), "alone": True, "signal": int(signal.SIGSEGV)} in notes
