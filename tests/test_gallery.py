"""OUT/index.html, checked in a real browser: headless Chromium loads the page a run wrote, and the
DOM it leaves after the scripts ran is what a person would see. Screenshots are kept as artefacts in
runs/test-artifacts/ (not in git)."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from conftest import ROOT, make_photo

from inpdiff.runtime.gallery import Gallery

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
ARTIFACTS = ROOT / "runs" / "test-artifacts"


def browse(page, fragment: str = "", screenshot: str | None = None) -> tuple[str, list[str]]:
    """(the DOM after the page's scripts ran, the console messages) of page#fragment."""
    url = page.as_uri() + (f"#{fragment}" if fragment else "")
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=5000", "--window-size=1280,1000"]
    r = subprocess.run(args + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    if screenshot:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        subprocess.run(args + [f"--screenshot={ARTIFACTS / screenshot}", url], capture_output=True, timeout=120)
    return r.stdout, [line for line in r.stderr.splitlines() if ":CONSOLE" in line]


def cards(dom: str) -> list[dict]:
    return [{"verdict": v, "score": float(s) if s else None}
            for v, s in re.findall(r'class="card" data-index="\d+" data-verdict="(\w+)" data-score="([\d.]*)"', dom)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real trt-localize run over an inpainted example, two plain photos and a broken file."""
    d = tmp_path_factory.mktemp("gallery")
    inputs = d / "in"
    inputs.mkdir()
    shutil.copy(ROOT / "examples" / "images" / "astronaut_00_telea.png", inputs / "telea.png")
    for i in range(2):
        cv2.imwrite(str(inputs / f"photo{i}.png"), make_photo(120, 160, 40 + i)[:, :, ::-1])
    (inputs / "broken.jpg").write_bytes(b"not a jpeg")
    out = d / "out"
    r = subprocess.run([sys.executable, "-m", "inpdiff.runtime.cli", str(inputs), "-o", str(out), "--samples", "2",
                        "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 1, r.stderr  # the broken file failed; the others are done
    return out


def test_the_run_writes_a_self_contained_gallery(run):
    lines = [json.loads(x) for x in (run / "report.jsonl").read_text().splitlines()]
    assert len(lines) == 4
    page = (run / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # nothing is fetched from a network
    for line in lines:
        if "error" not in line:
            assert {"thumb", "view", "uncertainty"} <= set(line["outputs"])
            assert all(Path(f).is_file() or (ROOT / f).is_file() for f in line["outputs"].values())


def test_the_gallery_in_a_browser_lists_sorts_and_filters(run):
    dom, console = browse(run / "index.html", screenshot="gallery.png")
    assert not console, console
    shown = cards(dom)
    assert len(shown) == 4  # one card per report line
    scores = [c["score"] for c in shown if c["score"] is not None]
    assert scores == sorted(scores, reverse=True)  # score, highest first by default
    assert "failed" in [c["verdict"] for c in shown] and "broken.jpg" in dom
    dom, console = browse(run / "index.html", "verdict=inpainted")
    assert not console and cards(dom) and all(c["verdict"] == "inpainted" for c in cards(dom))
    dom, _ = browse(run / "index.html", "verdict=clean")
    assert all(c["verdict"] == "clean" for c in cards(dom))
    dom, _ = browse(run / "index.html", "q=photo1")
    assert len(cards(dom)) == 1 and "photo1.png" in dom


def test_the_detail_view_shows_the_maps_regions_and_settings(run):
    lines = [json.loads(x) for x in (run / "report.jsonl").read_text().splitlines()]
    i = next(k for k, line in enumerate(lines) if line.get("inpainted"))
    dom, console = browse(run / "index.html", f"detail={i}", screenshot="detail.png")
    assert not console, console
    assert set(re.findall(r'data-map="(\w+)"', dom)) == {"photo", "probability", "mask", "overlay", "uncertainty"}
    assert 'id="regions"' in dom and 'id="opacity"' in dom and lines[i]["path"] in dom
    assert "condition.onnx" in dom  # the model's files and hashes are among the settings shown


def test_twenty_thousand_lines_open_quickly_one_page_at_a_time(tmp_path):
    lines = [{"path": f"/data/img{i:05d}.jpg", "score": (i * 7919 % 1000) / 1000, "inpainted": i % 3 == 0,
              "regions": [{"bbox": [1, 2, 30, 40], "area": 900, "mean_prob": 0.8}] if i % 3 == 0 else [],
              "elapsed_ms": 100.0, "outputs": {}}
             for i in range(20000)]
    (tmp_path / "report.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    Gallery(tmp_path, {"model": {"condition.onnx": "abc"}}).update(force=True)
    dom, console = browse(tmp_path / "index.html", screenshot="gallery-20000.png")
    assert not console, console
    assert len(cards(dom)) == 48  # one page of cards in the DOM, not 20,000
    render_ms = float(re.search(r'data-render-ms="([\d.]+)"', dom).group(1))
    assert render_ms < 2000, render_ms
    assert "page 1 of 417" in dom


def test_an_index_html_that_is_not_ours_is_never_overwritten(tmp_path):
    (tmp_path / "index.html").write_text("<html>the user's own page</html>")
    with pytest.raises(ValueError, match="not a page this tool wrote"):
        Gallery(tmp_path, {})
    assert (tmp_path / "index.html").read_text() == "<html>the user's own page</html>"
