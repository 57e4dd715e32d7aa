"""OUT/index.html: a static, self-contained gallery of a run, for people who would rather look than read.

No server, no network: the page (gallery.html, copied once) loads OUT/index-data.js with a plain
<script> tag (browsers refuse to fetch a JSON file from a local page; a script they load). The data
file is rebuilt from the whole report.jsonl -- this run and the runs it resumed, so a resumed run keeps
one page -- at most every few seconds while the run goes, and atomically, so a browser never reads a
half-written one. The page shows one page of cards at a time, with lazily loaded thumbnails, so a run
of 100,000 images opens at once.

Thumbnails are small JPEGs in OUT/thumbs/, made as each image's outputs are written: NAME.jpg (the
overlay, 240 px) for the card and NAME.view.jpg (the photo, 1280 px) for the detail view, so the page
still shows the photo when OUT is carried to another machine without the inputs.
"""
from __future__ import annotations

import json
import os
import time
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from ..io import atomic_write, write_jpeg
from .inputs import THUMBS_MARK  # in OUT/thumbs: the folder is ours, and input walks skip it

THUMB_SIDE, VIEW_SIDE = 240, 1280
DATA_FILE = "index-data.js"
PAGE_MARK = '<meta name="generator" content="inpdiff">'  # in OUT/index.html: the page is ours
COLUMNS = ("path", "stem", "score", "inpainted", "regions", "error", "ms", "uncertainty")


def _shrunk(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    s = min(1.0, side / max(h, w))
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


class Shrinker:
    """_shrunk of an image given a band of rows at a time (a photo too large to hold): whole f x f
    blocks are averaged as the rows come (f the scale's whole part), then INTER_AREA does the rest. The
    last rows and columns short of a block are left out: a pixel or two of a thumbnail."""

    def __init__(self, shape: tuple[int, ...], side: int):
        h, w = shape[:2]
        s = min(1.0, side / max(h, w))
        self.size = (max(1, round(w * s)), max(1, round(h * s)))
        self.f = max(1, int(1 / s))
        self.w = w // self.f * self.f
        self.parts: list[np.ndarray] = []
        self.carry = None

    def add(self, rows: np.ndarray) -> None:
        if self.carry is not None:
            rows = np.concatenate([self.carry, rows])
        n = len(rows) // self.f * self.f
        if n:
            self.parts.append(cv2.resize(rows[:n, :self.w], (self.w // self.f, n // self.f), interpolation=cv2.INTER_AREA))
        self.carry = rows[n:]

    def result(self) -> np.ndarray:
        return cv2.resize(np.concatenate(self.parts), self.size, interpolation=cv2.INTER_AREA)


def _thumb(out: Path, stem: Path, suffix: str) -> Path:
    rel = os.path.relpath(os.path.abspath(stem), os.path.abspath(out))
    path = out / "thumbs" / f"{rel}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_view(out: Path, stem: Path, photo: np.ndarray) -> str:
    """thumbs/STEM.view.jpg: the RGB photo, for the detail view."""
    path = _thumb(out, stem, ".view.jpg")
    write_jpeg(path, _shrunk(photo, VIEW_SIDE), 85)
    return str(path)


def write_card(out: Path, stem: Path, overlay_bgr: np.ndarray) -> str:
    """thumbs/STEM.jpg: the overlay (BGR), for the card."""
    path = _thumb(out, stem, ".jpg")
    write_jpeg(path, _shrunk(overlay_bgr, THUMB_SIDE), 80, bgr=True)
    return str(path)


def _row(line: dict, out: Path) -> list:
    outputs = line.get("outputs") or {}
    stem = None
    if "prob" in outputs:
        rel = os.path.relpath(os.path.abspath(outputs["prob"]), os.path.abspath(out))
        stem = None if rel.startswith("..") else Path(rel).as_posix()[: -len(".prob.png")]
    regions = [[*g["bbox"], g["area"], round(g["mean_prob"], 3), g.get("copied")] for g in line.get("regions") or []]
    return [line["path"], stem, line.get("score"), line.get("inpainted"), regions, line.get("error"),
            line.get("elapsed_ms"), "uncertainty" in outputs]


class GalleryError(ValueError):
    """OUT holds an index.html or a thumbs/ folder that this tool did not write."""


class Gallery:
    """Keeps OUT/index.html and OUT/index-data.js in step with OUT/report.jsonl."""

    def __init__(self, out: Path, settings: dict, interval: float = 3.0):
        self.out, self.settings, self.interval = out, settings, interval
        self._last, self._cost = 0.0, 0.0
        page = resources.files(__package__).joinpath("gallery.html").read_text(encoding="utf-8")
        target, thumbs = out / "index.html", out / "thumbs"
        # Never overwrite what a person put there: only a page or a thumbs/ folder that we made.
        if target.exists() and PAGE_MARK not in target.read_text(encoding="utf-8", errors="replace"):
            raise GalleryError(f"{target}: not a page this tool wrote; move it, or run with --no-html")
        if thumbs.exists() and not (thumbs / THUMBS_MARK).exists():
            raise GalleryError(f"{thumbs}: not a folder this tool made; move it, or run with --no-html")
        thumbs.mkdir(parents=True, exist_ok=True)
        (thumbs / THUMBS_MARK).touch()
        if not target.is_file() or target.read_text(encoding="utf-8") != page:
            atomic_write(target, lambda p: p.write_text(page, encoding="utf-8"))

    def update(self, force: bool = False) -> None:
        """Rebuild the data file if `interval` has passed (and ten times the last rebuild's cost, so a
        huge report costs the run little), or now when `force`."""
        now = time.monotonic()
        if not force and now - self._last < max(self.interval, 10 * self._cost):
            return
        report = self.out / "report.jsonl"

        def write(p: Path) -> None:
            with open(p, "w", encoding="utf-8") as f:
                f.write("window.INPDIFF_REPORT = {\"settings\": " + json.dumps(self.settings)
                        + ", \"columns\": " + json.dumps(COLUMNS) + ", \"written\": " + json.dumps(time.time())
                        + ", \"rows\": [\n")
                first = True
                if report.is_file():
                    with open(report, encoding="utf-8") as src:
                        for raw in src:
                            try:
                                row = _row(json.loads(raw), self.out)
                            except (ValueError, KeyError, TypeError):
                                continue  # a torn last line of a killed run: the report drops it too
                            f.write(("" if first else ",\n") + json.dumps(row))
                            first = False
                f.write("\n]};\n")

        atomic_write(self.out / DATA_FILE, write)
        self._cost, self._last = time.monotonic() - now, time.monotonic()
