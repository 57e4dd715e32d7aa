"""Photos too large to hold (inpdiff.spill, runtime.bands): decoded to a file and worked a band of rows
at a time, with the same maps, regions and score as the whole image gives, in bounded memory."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import cv2
import numpy as np
import pytest
from conftest import ROOT, make_photo
from PIL import Image

from inpdiff.io import ImageError, png_stream, read_image, spill_image, write_jpeg_bands, write_png_bands
from inpdiff.runtime import bands
from inpdiff.runtime.decoding import Spill, decode_or_spill
from inpdiff.runtime.localizer import Localizer, LocalizeConfig, find_regions
from inpdiff.scoring import BandStatistic, image_score, marked_share
from inpdiff.spill import ColumnWriter, RowWriter, spill_array

PHOTO = ROOT / "examples" / "images" / "astronaut_pristine.png"
SHIPPED = ROOT / "models" / "edge-c"


def edited_photo() -> np.ndarray:
    """A real photo, enlarged past a few tile rows, with a patch of itself pasted elsewhere (copies and
    regions to find) and a band of noise (regions that cross band edges)."""
    img = cv2.resize(read_image(PHOTO), (700, 610), interpolation=cv2.INTER_CUBIC)
    img[300:380, 90:170] = img[40:120, 400:480]
    img[120:260, 500:540] = np.random.default_rng(0).integers(0, 256, (140, 40, 3), dtype=np.uint8)
    return img


@pytest.mark.parametrize("cfg", [LocalizeConfig(), LocalizeConfig(samples=2, copies=False, threshold=0.3)],
                         ids=["copies", "two-samples"])
def test_a_spilled_photo_gives_what_the_whole_photo_gives(cfg):
    img = edited_photo()
    with Localizer(SHIPPED, config=cfg) as loc:
        whole = loc.localize(img)
        banded = loc.localize(spill_array(img))
    assert np.array_equal(banded.prob[:], whole.prob)
    assert np.array_equal(banded.mask[:], whole.mask)
    assert np.array_equal(np.asarray(banded.uncertainty[:]), np.asarray(whole.uncertainty))
    assert banded.score == pytest.approx(whole.score, abs=1e-6)
    assert banded.inpainted == whole.inpainted
    assert len(whole.regions) >= 2 and banded.regions == whole.regions


def test_regions_joined_across_band_edges_are_the_whole_masks_components():
    rng = np.random.default_rng(1)
    mask = cv2.dilate((rng.random((90, 70)) > 0.97).astype(np.uint8), np.ones((4, 4), np.uint8)).astype(bool)
    mask[10:80, 30] = True  # one region through every band
    prob = rng.random(mask.shape).astype(np.float32)
    cover = (rng.random(mask.shape) > 0.5).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    whole = []  # the components of the mask held whole, largest first, ties in raster order
    for i in range(1, n):
        at = labels == i
        if stats[i, 4] >= 3:
            whole.append((-int(stats[i, 4]), int(np.flatnonzero(at.ravel())[0]), (tuple(int(v) for v in stats[i, :4]),
                          int(stats[i, 4]), round(float(prob[at].mean(dtype=np.float64)), 4),
                          round(int(cover[at].sum()) / int(stats[i, 4]), 4))))
    expected = [region for *_, region in sorted(whole)]
    finder = bands.RegionFinder(min_area=3)
    for y0 in range(0, 90, 7):  # bands of 7 rows: many edges
        finder.add(mask[y0:y0 + 7], prob[y0:y0 + 7], cover[y0:y0 + 7], y0)
    assert len(expected) > 5 and finder.regions(True) == expected
    assert [(r.bbox, r.area, r.mean_prob, r.copied) for r in find_regions(mask, prob, 3, cover)] == expected


def test_the_score_over_bands_is_the_score_over_the_map():
    rng = np.random.default_rng(2)
    prob = np.round(rng.random((300, 200)), 2).astype(np.float32)  # many ties
    for statistic, whole in (("top1", image_score(prob)), ("marked", marked_share(prob))):
        s = BandStatistic(statistic, prob.size)
        for y0 in range(0, 300, 11):
            s.add(prob[y0:y0 + 11])
        assert s.value() == pytest.approx(whole, abs=1e-6)


def test_reading_a_spilled_array_through_keeps_little_of_it_resident():
    def resident_mb() -> float:
        return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) / 1024

    w = RowWriter(None, (8192,), np.uint8)
    for _ in range(24):  # 192 MB, written a band at a time
        w.write(np.full((1024, 8192), 7, np.uint8))
    big = w.done()
    before, total = resident_mb(), 0
    for _, rows in big.bands(512):
        total += int(rows[0, 0])
    assert total == 7 * 48
    assert resident_mb() - before < 80  # pages read are released every RELEASE_BYTES (32 MB)
    big.close()


def test_columns_written_a_chunk_at_a_time_read_back_whole_and_the_file_goes(tmp_path):
    rng = np.random.default_rng(0)
    w = ColumnWriter(tmp_path, [(3, np.float32), (0, np.int64)])
    rows, index = rng.standard_normal((3, 1000)).astype(np.float32), np.arange(1000)
    for a, b in [(0, 10), (10, 11), (11, 600), (600, 1000)]:
        w.write(rows[:, a:b], index[a:b])  # slices of a wider array, as the copy search's shares are
    got_rows, got_index = w.read()
    np.testing.assert_array_equal(got_rows, rows)
    np.testing.assert_array_equal(got_index, index)
    assert not os.listdir(tmp_path)  # an anonymous file, closed


def test_spill_image_decodes_what_read_image_decodes(tmp_path):
    img = make_photo(120, 160, 3)
    bgr = img[:, :, ::-1]
    cv2.imwrite(str(tmp_path / "rgb.png"), bgr)
    cv2.imwrite(str(tmp_path / "deep.png"), bgr.astype(np.uint16) * 257 + 100)
    cv2.imwrite(str(tmp_path / "grey.png"), bgr[:, :, 0])
    cv2.imwrite(str(tmp_path / "alpha.png"), np.dstack([bgr, bgr[:, :, 0]]))
    cv2.imwrite(str(tmp_path / "photo.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
    exif = Image.Image().getexif()
    exif[0x0112] = 6  # shown rotated a quarter turn
    Image.fromarray(img).save(tmp_path / "rotated.jpg", exif=exif, quality=85)
    for name in ("rgb.png", "deep.png", "grey.png", "alpha.png", "photo.jpg", "rotated.jpg"):
        shape = spill_image(tmp_path / name, tmp_path / "raw")
        spilled = np.fromfile(tmp_path / "raw", np.uint8).reshape(shape)
        assert np.array_equal(spilled, read_image(tmp_path / name)), name
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG at all")
    with pytest.raises(ImageError, match="broken.jpg"):
        spill_image(tmp_path / "broken.jpg", tmp_path / "raw")


def test_the_decoder_spills_only_above_the_size_and_the_opener_removes_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    cv2.imwrite(str(tmp_path / "p.png"), make_photo(100, 120, 4))
    assert isinstance(decode_or_spill(tmp_path / "p.png", 10**8, 100 * 120), np.ndarray)
    spill = decode_or_spill(tmp_path / "p.png", 10**8, 100 * 120 - 1)
    assert isinstance(spill, Spill) and os.listdir(tmp_path / "tmp")
    array = spill.open()
    assert not os.listdir(tmp_path / "tmp")
    assert np.array_equal(array[:], read_image(tmp_path / "p.png"))


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm (a tmpfs) on this machine")
def test_spilling_to_a_tmpfs_is_warned_of(tmp_path):
    cv2.imwrite(str(tmp_path / "p.png"), make_photo(100, 120, 4))
    folder = tempfile.mkdtemp(dir="/dev/shm")
    try:
        spill = decode_or_spill(tmp_path / "p.png", 10**8, 1, folder)
        with pytest.warns(UserWarning, match="is on a tmpfs"):
            spill.open()
    finally:
        shutil.rmtree(folder)


def test_band_encoders_write_what_the_whole_image_encoders_write(tmp_path):
    img = make_photo(130, 90, 5)
    for data in (img, img[:, :, 1]):
        write_png_bands(tmp_path / "b.png", data.shape, (data[y:y + 17] for y in range(0, len(data), 17)))
        got = cv2.imread(str(tmp_path / "b.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(got[:, :, ::-1] if got.ndim == 3 else got, data)
    with pytest.raises(ValueError, match="130 rows"):
        b"".join(png_stream(img.shape, [img[:100]]))
    write_jpeg_bands(tmp_path / "b.jpg", img.shape, (img[y:y + 17] for y in range(0, len(img), 17)), 95)
    assert cv2.PSNR(cv2.imread(str(tmp_path / "b.jpg"))[:, :, ::-1], img) > 35


def test_trt_localize_spills_a_photo_to_the_same_outputs_and_leaves_no_files(tmp_path):
    photo = tmp_path / "in" / "edited.png"
    photo.parent.mkdir()
    cv2.imwrite(str(photo), edited_photo()[:, :, ::-1])
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    lines = {}
    for name, above in (("whole", "0"), ("spilled", "1000")):
        r = subprocess.run([sys.executable, "-m", "inpdiff.runtime.cli", str(photo), "-o", str(tmp_path / name),
                            "--spill-above", above, "--quiet"], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        lines[name] = json.loads((tmp_path / name / "report.jsonl").read_text().splitlines()[-1])
    for kind in ("prob", "mask"):
        whole, spilled = (cv2.imread(str(tmp_path / name / f"edited.{kind}.png"), cv2.IMREAD_UNCHANGED)
                          for name in ("whole", "spilled"))
        assert np.array_equal(whole, spilled), kind
    # The same picture but for the outline, which is drawn another way: compare away from the mask's
    # edges (the untouched photo outside, the tint inside), up to the two JPEG encoders.
    whole, spilled = (cv2.imread(str(tmp_path / name / "edited.overlay.jpg")) for name in ("whole", "spilled"))
    mask = cv2.imread(str(tmp_path / "whole" / "edited.mask.png"), cv2.IMREAD_UNCHANGED)
    edges = cv2.dilate(mask, np.ones((15, 15), np.uint8)) > cv2.erode(mask, np.ones((15, 15), np.uint8))
    assert mask.any() and whole.shape == spilled.shape
    assert cv2.PSNR(whole[~edges], spilled[~edges]) > 30  # 34.5 here; without the tint, 21
    assert (tmp_path / "spilled" / "thumbs" / "edited.view.jpg").is_file()
    assert lines["spilled"]["regions"] == lines["whole"]["regions"] and lines["whole"]["regions"]
    assert lines["spilled"]["score"] == pytest.approx(lines["whole"]["score"], abs=1e-4)
    assert not os.listdir(tmp_path / "tmp")  # the raw photo and every map file are gone
