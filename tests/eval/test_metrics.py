"""Metrics against hand computations (SPEC §5), properties, and the PSVL oracle."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeroground.eval import (
    PredictionRecord,
    evaluate_predictions,
    mean_iou,
    recall_at_iou,
    temporal_nms,
    tiou,
)


@pytest.mark.parametrize(
    ("pred", "gt", "expected", "why"),
    [
        ([2.0, 5.0], [2.0, 5.0], 1.0, "identical"),
        ([0.0, 1.0], [2.0, 3.0], 0.0, "disjoint"),
        ([0.0, 2.0], [2.0, 4.0], 0.0, "touching: intersection 0"),
        ([1.0, 9.0], [3.0, 5.0], 2.0 / 8.0, "gt nested in pred: 2 / 8"),
        ([3.0, 5.0], [1.0, 9.0], 2.0 / 8.0, "pred nested in gt: 2 / 8"),
        ([0.0, 4.0], [2.0, 6.0], 2.0 / 6.0, "partial overlap: 2 / 6"),
        ([0.0, 0.3], [0.1, 0.2], (0.2 - 0.1) / 0.3, "normalised, nested"),
        # start > end is used as given, never reordered:
        # inter = min(2, 10) - max(5, 0) = -3 -> 0; union = 10 - 0 = 10 -> 0 / 10 = 0
        ([5.0, 2.0], [0.0, 10.0], 0.0, "reversed pred over gt"),
        # reordered it would be [2, 5] vs [1, 6] -> 3 / 5; as given: inter = 2 - 5 < 0 -> 0
        ([5.0, 2.0], [1.0, 6.0], 0.0, "reversed pred, overlap only after reordering"),
        # union = max(2, 4) - min(5, 3) = 1 > 0, inter = min(2, 4) - max(5, 3) = -3 -> 0
        ([5.0, 2.0], [3.0, 4.0], 0.0, "reversed pred, small gt"),
        # union = max(2, 3) - min(5, 4) = -1 < 0 and inter = -3 <= 0 -> 0 (not -0 / -1 garbage)
        ([5.0, 2.0], [4.0, 3.0], 0.0, "both reversed, negative denominator"),
        # zero denominator, zero intersection -> 0
        ([3.0, 3.0], [3.0, 3.0], 0.0, "identical zero-length spans"),
        ([2.0, 2.0], [0.0, 4.0], 0.0, "zero-length pred inside gt"),
    ],
)
def test_tiou_hand_computed(pred, gt, expected, why):
    assert tiou(pred, gt) == pytest.approx(expected, abs=1e-12), why


def test_tiou_broadcasts_over_leading_axes():
    preds = np.array([[[0.0, 4.0], [2.0, 6.0]], [[5.0, 2.0], [0.0, 1.0]]])  # [2, 2, 2]
    gts = np.array([[2.0, 6.0], [0.0, 1.0]])[:, None, :]  # [2, 1, 2]
    np.testing.assert_allclose(tiou(preds, gts), [[2 / 6, 1.0], [0.0, 1.0]])


def test_tiou_rejects_wrong_shape():
    with pytest.raises(ValueError, match="last axis of size 2"):
        tiou([1.0, 2.0, 3.0], [1.0, 2.0])


_coord = st.floats(min_value=-100.0, max_value=100.0, allow_nan=False)
_span = st.tuples(_coord, _coord)


@given(_span, _span)
def test_tiou_symmetric_and_bounded(p, g):
    a, b = float(tiou(p, g)), float(tiou(g, p))
    assert a == b
    assert 0.0 <= a <= 1.0


@given(_coord, st.floats(min_value=1e-3, max_value=100.0))
def test_tiou_identical_ordered_span_is_one(start, length):
    span = (start, start + length)
    assert float(tiou(span, span)) == pytest.approx(1.0)


_int_span = st.tuples(st.integers(-100, 100), st.integers(-100, 100))  # no float-underflow collapses


@given(_int_span, _int_span, st.floats(min_value=0.1, max_value=10.0), st.floats(min_value=-50, max_value=50))
def test_tiou_invariant_to_scale_and_shift(p, g, scale, shift):
    p2 = np.array(p) * scale + shift
    g2 = np.array(g) * scale + shift
    assert float(tiou(p2, g2)) == pytest.approx(float(tiou(p, g)), abs=1e-9)


def test_recall_and_miou_hand_computed():
    gts = np.array([[0.0, 4.0], [0.0, 4.0], [0.0, 4.0], [0.0, 4.0]])
    # top-1 tIoUs: 1.0, 2/6 = 0.333, 0.0 (disjoint), 0.0 (reversed); second preds: -, 1.0, 0.5, -
    preds = np.array(
        [
            [[0.0, 4.0], [9.0, 10.0]],
            [[2.0, 6.0], [0.0, 4.0]],
            [[5.0, 6.0], [0.0, 2.0]],
            [[4.0, 0.0], [8.0, 9.0]],
        ]
    )
    assert recall_at_iou(preds, gts, 0.3, k=1) == pytest.approx(2 / 4)
    assert recall_at_iou(preds, gts, 0.5, k=1) == pytest.approx(1 / 4)
    assert recall_at_iou(preds, gts, 0.5, k=2) == pytest.approx(3 / 4)
    assert recall_at_iou(preds, gts, 0.7, k=2) == pytest.approx(2 / 4)
    assert recall_at_iou(preds[:, 0], gts, 0.3) == pytest.approx(2 / 4)  # [N, 2] input
    assert mean_iou(preds, gts) == pytest.approx((1.0 + 1 / 3 + 0 + 0) / 4)
    with pytest.raises(ValueError, match="at least 5 predictions"):
        recall_at_iou(preds, gts, 0.5, k=5)


def _record(gt, preds, duration=10.0):
    return PredictionRecord("v", "q", duration, list(gt), [list(p) for p in preds])


def test_evaluate_predictions_keys_and_values():
    # durations differ: spans are normalised per record, tIoU is unchanged by that
    recs = [
        _record([0, 4], [[0, 4]] + [[9, 10]] * 4, duration=10.0),  # tIoU 1
        _record([0, 40], [[20, 60]] + [[0, 40]] * 4, duration=100.0),  # top-1 1/3, top-5 1
    ]
    m = evaluate_predictions(recs)
    assert list(m) == ["R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "R5@0.1", "R5@0.3", "R5@0.5", "R5@0.7", "mIoU"]
    assert m["R1@0.3"] == pytest.approx(1.0)
    assert m["R1@0.5"] == pytest.approx(0.5)
    assert m["R5@0.7"] == pytest.approx(1.0)
    assert m["mIoU"] == pytest.approx((1 + 1 / 3) / 2)


def test_evaluate_predictions_no_r5_when_a_query_has_fewer_than_5():
    recs = [_record([0, 4], [[0, 4]] * 5), _record([0, 4], [[0, 2]] * 4)]
    m = evaluate_predictions(recs)
    assert list(m) == ["R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU"]
    assert m["mIoU"] == pytest.approx((1 + 0.5) / 2)


def test_temporal_nms_hand_computed():
    spans = [[0, 10], [1, 10], [20, 30], [0, 9], [21, 29]]
    scores = [0.9, 0.8, 0.7, 0.95, 0.1]
    # by score: 3 [0,9] kept; 0 [0,10] tIoU .9 -> dropped; 1 [1,10] vs [0,9]: 8/10 -> dropped;
    # 2 [20,30] kept; 4 [21,29] vs [20,30]: 0.8 -> dropped
    assert temporal_nms(spans, scores, threshold=0.5).tolist() == [3, 2]
    # at 0.85 the 0.8-overlaps survive, [0,10] (0.9 with [0,9]) still goes
    assert temporal_nms(spans, scores, threshold=0.85).tolist() == [3, 1, 2, 4]
    assert temporal_nms(spans, scores, threshold=0.95, top_k=2).tolist() == [3, 0]


def test_metrics_match_psvl_reference_oracle(oracle_dir):
    refs = json.loads((oracle_dir / "reference_predictions.json").read_text())
    expected = json.loads((oracle_dir / "reference_metrics.json").read_text())["per_query_mean"]
    pred = np.array([r["pred_normalized"] for r in refs])
    gt = np.array([r["gt_normalized"] for r in refs])
    np.testing.assert_allclose(tiou(pred, gt), [r["tiou"] for r in refs], atol=1e-6)
    for m in (0.1, 0.3, 0.5, 0.7):
        assert recall_at_iou(pred, gt, m) == pytest.approx(expected[f"Recall@{m}"])
    assert mean_iou(pred, gt) == pytest.approx(expected["mIoU"], abs=1e-6)
