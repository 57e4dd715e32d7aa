"""The calibrated image-level score: monotone, bounded, a threshold that keeps false alarms within
the bound on the data it was chosen on, and the runtime's use of it."""
import json
import shutil

import numpy as np
import pytest

from inpdiff.calibration.score import calibrate_score, photo_of
from inpdiff.runtime.localizer import Localizer, LocalizeConfig
from inpdiff.scoring import ScoreCalibration, fit, marked_share


def test_calibration_is_monotone_and_bounded():
    rng = np.random.default_rng(0)
    inpainted, pristine = rng.uniform(0.02, 0.3, 200), rng.uniform(0, 0.01, 300) ** 2
    cal = fit(inpainted, pristine, "marked")
    raw = np.concatenate([[0.0], np.sort(rng.uniform(0, 1, 1000)), [1.0]])
    scores = cal.calibrate(raw)
    assert np.all(np.diff(scores) >= 0) and np.all((scores > 0) & (scores < 1))
    assert cal.a > 0 and cal.threshold >= 0.5


@pytest.mark.parametrize("max_fa", [0.0, 0.05, 0.2])
def test_threshold_flags_at_most_the_allowed_share_of_pristine_images(max_fa):
    rng = np.random.default_rng(1)
    pristine = np.concatenate([rng.uniform(0, 0.02, 190), rng.uniform(0.05, 0.5, 10)])  # 5% look edited
    inpainted = rng.uniform(0.03, 0.4, 200)
    cal = fit(inpainted, pristine, "marked", max_fa)
    flagged = cal.calibrate(pristine) >= cal.threshold
    assert flagged.mean() <= max_fa
    if max_fa >= 0.05:  # the threshold can sit below the odd pristine image, where most edits are
        assert (cal.calibrate(inpainted) >= cal.threshold).mean() > 0.8


def test_unknown_statistic_and_photo_names():
    with pytest.raises(ValueError, match="unknown score statistic"):
        ScoreCalibration.from_dict({"statistic": "max", "a": 1, "b": 0, "threshold": 0.5})
    assert photo_of("img_001_pristine") == photo_of("img_001_03_patchmatch+poisson") == "img_001"
    assert photo_of("holiday") == "holiday"
    assert marked_share(np.array([[0.2, 0.6], [0.5, 0.1]])) == 0.5


def test_calibrate_score_writes_the_manifest_and_the_runtime_decides_with_it(tiny_export, tiny_dataset, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_export[0] / "onnx", model)
    before = Localizer(model, config=LocalizeConfig(steps=2))
    assert before.calibration is None
    report = calibrate_score(model, tiny_dataset, max_false_alarms=0.05)
    assert report["statistic"] in report["held_out"] and report["images"] > 12
    assert report["all"]["false_alarm_rate"] <= 0.05
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["score"]["statistic"] == report["statistic"]
    loc = Localizer(model, config=LocalizeConfig(steps=2))  # the model files still match their hashes
    result = loc.localize(np.full((70, 80, 3), 128, np.uint8))
    assert result.score == pytest.approx(loc.calibration.score(result.prob))
    assert result.inpainted == (result.score >= loc.calibration.threshold)


def test_mask_threshold_keeps_pristine_marked_area_within_the_bound(tiny_export, tiny_dataset, tmp_path):
    from inpdiff.calibration.score import MASK_LEVELS, marked_area, mask_threshold

    model = tmp_path / "model"
    shutil.copytree(tiny_export[0] / "onnx", model)
    report = calibrate_score(model, tiny_dataset, max_marked_area=0.01)
    px = report["pixels"]
    # An untrained model marks a lot at 0.5; the calibrated level must bring it within the bound
    # (or be the highest level on offer).
    assert px["pristine_marked"] <= 0.01 or px["mask_threshold"] == MASK_LEVELS[-1]
    assert px["mask_threshold"] >= 0.5 and px["pristine_marked"] <= px["pristine_marked_at_0.5"]
    loc = Localizer(model, config=LocalizeConfig(steps=2))
    assert loc.mask_threshold == px["mask_threshold"]
    assert Localizer(model, config=LocalizeConfig(steps=2, threshold=0.7)).mask_threshold == 0.7
    records = [{"kind": "pristine", "tail": list(np.linspace(0.2, 0.0, len(MASK_LEVELS)))}]
    level = mask_threshold(records, 0.01)
    assert marked_area(records, level) <= 0.01 and marked_area(records, level - 0.005) > 0.01


def test_the_held_out_marked_area_is_measured_over_many_splits():
    from inpdiff.calibration.score import MASK_LEVELS, cross_validated_area, marked_area, mask_threshold

    def photo(name: str, scale: float) -> dict:  # marked share falling with the level, scaled per photo
        return {"photo": name, "kind": "pristine", "tail": list(scale * np.linspace(0.1, 0.0, len(MASK_LEVELS)))}

    alike = [photo(f"p{i}", 1.0) for i in range(20)]  # every photo the same: unseen ones are marked alike
    cv = cross_validated_area(alike, 0.01, splits=5)
    assert cv["splits"] == 5 and cv["pristine_marked_range"][0] == cv["pristine_marked_range"][1]
    assert cv["pristine_marked_mean"] == pytest.approx(marked_area(alike, mask_threshold(alike, 0.01)))
    # A few photos with large false areas (as real ones have): halves scatter widely around the bound.
    rng = np.random.default_rng(3)
    mixed = [photo(f"p{i}", float(s)) for i, s in enumerate(rng.lognormal(0.0, 1.5, 40))]
    low, high = cross_validated_area(mixed, 0.01)["pristine_marked_range"]
    assert low < 0.01 < high
