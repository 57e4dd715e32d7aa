"""What `trt-localize` writes for one input: the maps, the overlay and its report line."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..io import write_jpeg, write_jpeg_bands, write_png, write_png_bands
from ..spill import SpilledArray
from .gallery import THUMB_SIDE, VIEW_SIDE, Shrinker, write_card, write_view
from .inputs import Job
from .localizer import Localizer, Result
from .pipeline import Done
from .report import is_disk_full, reraise

OUTPUTS = ("all", "report")


# Whole-image float temporaries of a 48 MP photo run to hundreds of MB: the per-pixel arithmetic
# below goes a band of rows at a time.
BAND = 256


def to_uint8(prob: np.ndarray) -> np.ndarray:
    """round(255 p) as uint8."""
    out = np.empty(prob.shape, np.uint8)
    for i in range(0, prob.shape[0], BAND):
        out[i:i + BAND] = np.round(prob[i:i + BAND] * 255)
    return out


def _png(path: Path, array: np.ndarray | SpilledArray, convert) -> str:
    """PNG of convert(array), a band at a time where the array is spilled."""
    if isinstance(array, SpilledArray):
        write_png_bands(path, array.shape, (convert(rows) for _, rows in array.bands(BAND)))
    else:
        write_png(path, convert(array))
    return str(path)


def _mask_png(mask: np.ndarray) -> np.ndarray:
    return mask.view(np.uint8) * 255


def _uncertainty_png(uncertainty: np.ndarray) -> np.ndarray:
    # The standard deviation across samples, stretched: 0.5 (the most two maps in [0, 1] can disagree
    # by, as a spread) is white.
    return to_uint8(np.clip(uncertainty * 2, 0, 1))


def _tinted(pixels: np.ndarray, red: np.ndarray) -> np.ndarray:
    """Masked pixels (N, 3) tinted red (`red` in their channel order): floats for those pixels only."""
    return (pixels * 0.55 + red * np.float32(0.45)).astype(np.uint8)


def _outline_width(shape: tuple[int, ...]) -> int:
    return max(1, round(max(shape[:2]) / 400))


def overlay_bands(image: SpilledArray, mask: SpilledArray):
    """draw_overlay's picture (in RGB) of a spilled photo, a band of rows at a time. The tint is the
    same; the outline, of the same width, follows every edge of the mask (holes' too), found band by
    band, where draw_overlay traces outer contours over the whole mask."""
    H, W = mask.shape
    t = _outline_width(mask.shape)
    pen = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (t, t))
    red = np.array([255, 0, 0], np.float32)
    for y0 in range(0, H, BAND):
        y1 = min(y0 + BAND, H)
        a, b = max(0, y0 - t - 1), min(H, y1 + t + 1)  # a halo wider than the pen
        m = mask[a:b].view(np.uint8)
        line = cv2.dilate(m - cv2.erode(m, np.ones((3, 3), np.uint8)), pen)[y0 - a:y1 - a].view(bool)
        rows, mb = image[y0:y1], m[y0 - a:y1 - a].view(bool)
        rows[mb] = _tinted(rows[mb], red)
        rows[line] = (255, 255, 0)
        yield rows


def _write_overlay_spilled(job: Job, image: SpilledArray, result: Result, thumbs_of: Path | None) -> dict[str, str]:
    written = {}
    card = Shrinker(image.shape, THUMB_SIDE) if thumbs_of is not None else None
    if thumbs_of is not None:
        view = Shrinker(image.shape, VIEW_SIDE)
        for _, rows in image.bands(BAND):
            view.add(rows)
        written["view"] = write_view(thumbs_of, job.out_stem, view.result())

    def shown():
        for rows in overlay_bands(image, result.mask):
            if card:
                card.add(rows)
            yield rows
    write_jpeg_bands(job.output(".overlay.jpg"), image.shape, shown(), 90)
    written["overlay"] = str(job.output(".overlay.jpg"))
    if card:
        written["thumb"] = write_card(thumbs_of, job.out_stem, np.ascontiguousarray(card.result()[:, :, ::-1]))
    return written


def draw_overlay(image: np.ndarray, result: Result) -> np.ndarray:
    """The RGB image turned, in place, into the overlay a person looks at: detected regions tinted red
    and outlined, in BGR order, the JPEG encoder's. In place because the decoded photo is not needed
    afterwards, and a copy of a 100 MP one is 300 MB (two, with the reordering)."""
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR, dst=image)
    m = result.mask
    red = np.array([0, 0, 255], np.float32)
    for i in range(0, m.shape[0], BAND):
        band, mb = out[i:i + BAND], m[i:i + BAND]
        band[mb] = _tinted(band[mb], red)
    contours, _ = cv2.findContours(m.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (0, 255, 255), _outline_width(m.shape))
    return out


def write_outputs(job: Job, image: np.ndarray, result: Result, outputs: str = "all", uncertainty: bool = False,
                  thumbs_of: Path | None = None) -> dict[str, str]:
    """The maps and overlay of one image (each file atomically) -> {kind: path} of what was written.
    The overlay is drawn on `image` itself: pass the decoded copy, which is not needed afterwards.
    outputs="report": only the probability map, and only for an image where something was detected.
    uncertainty: also NAME.uncertainty.png (the spread across samples); thumbs_of: the OUT whose
    gallery gets this image's thumbnails."""
    written: dict[str, str] = {}
    if outputs == "report" and not result.inpainted:
        return written
    written["prob"] = _png(job.output(".prob.png"), result.prob, to_uint8)
    if outputs == "report":
        return written
    written["mask"] = _png(job.output(".mask.png"), result.mask, _mask_png)
    if uncertainty:
        written["uncertainty"] = _png(job.output(".uncertainty.png"), result.uncertainty, _uncertainty_png)
    if isinstance(image, SpilledArray):
        written.update(_write_overlay_spilled(job, image, result, thumbs_of))
        return written
    # The photo's thumbnail first: the overlay is drawn on the photo.
    view = write_view(thumbs_of, job.out_stem, image) if thumbs_of is not None else None
    shown = draw_overlay(image, result)
    write_jpeg(job.output(".overlay.jpg"), shown, 90, bgr=True)
    written["overlay"] = str(job.output(".overlay.jpg"))
    if view is not None:
        written.update(thumb=write_card(thumbs_of, job.out_stem, shown), view=view)
    return written


def report_line(done: Done, localizer: Localizer, outputs: str, thumbs_of: Path | None = None) -> dict:
    """Write one finished input's outputs -> its report line (with `error` where anything failed)."""
    cfg = localizer.config
    cal = localizer.calibration
    line = {"path": str(done.job.path), "mask_threshold": localizer.mask_threshold,
            "score_threshold": cal.threshold if cal else None, "steps": localizer.steps,
            "samples": cfg.samples, "backend": localizer.backend.name}
    error = done.error
    if done.result is not None:
        try:
            line["outputs"] = write_outputs(done.job, done.image, done.result, outputs, cfg.samples > 1, thumbs_of)
            line.update(done.result.summary())
        except (OSError, cv2.error) as e:
            if is_disk_full(e):  # not this image's fault: the run stops, and the next one redoes it
                reraise(e, done.job.out_stem.parent)
            error = f"{done.job.path}: writing the outputs failed: {e}"
    if error:
        line.update({"score": None, "inpainted": None, "regions": [], "error": error})
    line["elapsed_ms"] = done.elapsed_ms
    return line
