"""The one evaluation harness reproduces the README's figures for the shipped model on the shipped
example set, scoring it as trt-localize runs it (tiled, calibrated score and mask threshold)."""
import re

import pytest
from conftest import ROOT

from inpdiff.data.datasets import discover
from inpdiff.evaluation import run_eval, runtime_predict


def readme_table() -> dict[str, tuple[float, float, float]]:
    text = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| (\w+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$",
                      text.split("| example method | pixel AUC | F1 | IoU |", 1)[1].split("\n\n", 1)[0], re.M)
    return {name: tuple(map(float, values)) for name, *values in rows}


def test_the_harness_reproduces_the_readme_figures_of_the_shipped_example():
    expected = readme_table()
    assert set(expected) == {"telea", "ns", "biharmonic"}
    predict, loc = runtime_predict(ROOT / "models" / "edge-c")
    with loc:
        report = run_eval(lambda: predict, discover(ROOT / "examples"), None, ["clean"], threshold=loc.mask_threshold,
                          progress=False)
    per_method = report["summary"]["clean"]["per_method"]
    for name, (auc, f1, iou) in expected.items():
        got = per_method[name]
        assert (got["pixel_auc"], got["f1"], got["iou"]) == pytest.approx((auc, f1, iou), abs=2e-3), name
    assert report["summary"]["clean"]["image_auc"] == 1.0  # the pristine copy scores below every edit
