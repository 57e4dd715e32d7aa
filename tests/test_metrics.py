import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score, roc_auc_score

from inpdiff.scoring import image_score
from inpdiff.metrics import f1_iou, pixel_metrics, roc_auc, summarize


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_agrees_with_sklearn_including_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(2000) < 0.2
    scores = np.round(rng.random(2000) * 0.5 + labels * 0.3, 2)  # rounded: many ties
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_is_nan_for_one_class():
    assert np.isnan(roc_auc(np.ones(5), np.zeros(5)))


@pytest.mark.parametrize("seed", range(5))
def test_f1_and_iou_agree_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    gt, pred = rng.random((40, 40)) < 0.3, rng.random((40, 40)) < 0.4
    f1, iou = f1_iou(pred, gt)
    assert f1 == pytest.approx(f1_score(gt.ravel(), pred.ravel()))
    assert iou == pytest.approx(jaccard_score(gt.ravel(), pred.ravel()))
    assert f1_iou(np.zeros((4, 4)), np.zeros((4, 4))) == (1.0, 1.0)


def test_image_score_is_the_top_percent_mean():
    prob = np.zeros(1000, np.float32)
    prob[:10] = 0.9
    assert image_score(prob) == pytest.approx(0.9)
    prob[0] = 1.0
    assert image_score(prob) == pytest.approx(0.91)


def test_summary_breaks_down_by_method():
    gt = np.zeros((10, 10), np.uint8)
    gt[:5] = 1
    good, bad = gt.astype(np.float32), 1 - gt.astype(np.float32)
    records = [{"method": "a", "pristine": False, "score": 0.9, **pixel_metrics(good, gt)},
               {"method": "b", "pristine": False, "score": 0.2, **pixel_metrics(bad, gt)},
               {"method": "pristine", "pristine": True, "score": 0.5}]
    s = summarize(records)
    assert s["images"] == 2 and s["pristine_images"] == 1
    assert s["per_method"]["a"]["pixel_auc"] == 1.0 and s["per_method"]["b"]["pixel_auc"] == 0.0
    assert s["per_method"]["a"]["image_auc"] == 1.0 and s["per_method"]["b"]["image_auc"] == 0.0
    assert s["image_auc"] == 0.5 and s["f1"] == 0.5


def test_summary_by_family_and_a_map_that_marks_nothing_is_collapsed():
    from inpdiff.metrics import collapsed

    gt = np.zeros((10, 10), np.uint8)
    gt[:5] = 1
    empty = np.zeros((10, 10), np.float32)
    records = [{"method": "telea", "family": "classical", "pristine": False, "score": 0.1,
                **pixel_metrics(empty + 0.1, gt)},
               {"method": "ns", "family": "classical", "pristine": False, "score": 0.1,
                **pixel_metrics(gt.astype(np.float32), gt)},
               {"method": "pristine", "pristine": True, "score": 0.1, "marked": 0.0}]
    s = summarize(records)
    assert set(s["per_family"]) == {"classical"} and s["per_family"]["classical"]["images"] == 2
    assert s["marked"] == pytest.approx(0.25) and s["true_share"] == pytest.approx(0.5)
    assert not collapsed(s)
    assert collapsed(summarize(records[:1] + records[2:]))  # marks nothing: no low false-alarm merit
