"""QVHighlights / lighthouse JSON lines and the multi-window moment-retrieval metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zeroground.cli import app
from zeroground.data.annotations import AnnotationError, read_annotations, read_qvhighlights
from zeroground.eval.qvhighlights import QVHighlightsError, evaluate_moment_retrieval, score_qvhighlights

ROOT = Path(__file__).resolve().parents[2]
QVH = ROOT / "data" / "qvhighlights"
SHARED = ROOT / ".." / "shared" / "data"
ANET = SHARED / "activitynet" / "activitynet_val_release.jsonl"
# What Moment-DETR's standalone_eval prints for its sample_val_preds.jsonl (brief metrics, percent),
# reproduced by the plain-loop evaluator below, written independently of zeroground.eval.qvhighlights.
SAMPLE_BRIEF = {"MR-full-R1@0.5": 53.94, "MR-full-R1@0.7": 34.84, "MR-full-mAP": 32.2, "MR-full-mAP@0.5": 54.96,
                "MR-full-mAP@0.75": 31.01, "MR-short-mAP": 3.28, "MR-middle-mAP": 32.3, "MR-long-mAP": 41.11}


def _plain_iou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def _plain_ap(gt, pred, thr):
    pred = sorted(pred[:10], key=lambda p: -p[2])  # the first 10 windows, by score
    used, tp = set(), []
    for p in pred:
        ious = sorted(((_plain_iou(p, g), j) for j, g in enumerate(gt)), reverse=True)
        hit = 0
        for iou, j in ious:
            if iou < thr:
                break
            if j not in used:
                used.add(j)
                hit = 1
                break
        tp.append(hit)
    ap, best_after, n_tp = 0.0, 0.0, 0
    prec, rec = [], []
    for i, t in enumerate(tp):
        n_tp += t
        prec.append(n_tp / (i + 1))
        rec.append(n_tp / len(gt))
    # all-points interpolation: sum over recall steps of the best precision at or beyond it
    prev_r = 0.0
    for i in range(len(tp)):
        if rec[i] != prev_r:
            best_after = max(prec[i:])
            ap += (rec[i] - prev_r) * best_after
            prev_r = rec[i]
    return ap


def _plain_eval(preds, gts):
    # the evaluator's thresholds: numpy.linspace(0.5, 0.95, 10), each rounded to 2 decimals
    thrs = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    out = {}
    for name, (lo, hi) in {"full": (0, 150), "short": (0, 10), "middle": (10, 30), "long": (30, 150)}.items():
        sub = {q: [w for w in ws if name == "full" or lo < w[1] - w[0] <= hi] for q, ws in gts.items()}
        sub = {q: ws for q, ws in sub.items() if ws}
        if not sub:  # no ground-truth window of this length
            continue
        aps = [[_plain_ap(ws, preds[q], t) for t in thrs] for q, ws in sub.items()]
        per_t = [sum(a[i] for a in aps) / len(aps) for i in range(10)]
        out[f"MR-{name}-mAP"] = round(100 * sum(per_t) / 10, 2)
        if name == "full":
            out["MR-full-mAP@0.5"], out["MR-full-mAP@0.75"] = round(100 * per_t[0], 2), round(100 * per_t[5], 2)
            top = []
            for q, ws in sub.items():
                p = preds[q][0]
                best = max(ws, key=lambda g: _plain_iou(p, g))
                top.append(_plain_iou(p, best))
            out["MR-full-R1@0.5"] = round(100 * sum(t >= 0.5 for t in top) / len(top), 2)
            out["MR-full-R1@0.7"] = round(100 * sum(t >= thrs[4] for t in top) / len(top), 2)
    return out


def test_reader_keeps_every_window():
    moments = read_qvhighlights(QVH / "highlight_val_release_mr.jsonl")
    assert len(moments) == 1550
    multi = [m for m in moments if len(m.windows) > 1]
    assert len(multi) == 530
    first = json.loads((QVH / "highlight_val_release_mr.jsonl").read_text().splitlines()[0])
    assert moments[0].qid == first["qid"] and moments[0].windows == first["relevant_windows"]
    assert (moments[0].start, moments[0].end) == tuple(first["relevant_windows"][0])
    assert read_annotations(QVH / "highlight_val_release_mr.jsonl")[5].windows == moments[5].windows  # .jsonl: auto


def test_sample_predictions_reproduce_the_evaluator(tmp_path):
    moments = read_qvhighlights(QVH / "highlight_val_release_mr.jsonl")
    preds_file = tmp_path / "sample_val_preds.jsonl"
    preds_file.write_text((QVH / "sample_val_preds_mr.jsonl").read_text())
    got = score_qvhighlights(preds_file, moments)
    gts = {m.qid: m.windows for m in moments}
    preds = {json.loads(l)["qid"]: json.loads(l)["pred_relevant_windows"] for l in preds_file.read_text().splitlines()}
    assert _plain_eval(preds, gts) == SAMPLE_BRIEF
    assert got == SAMPLE_BRIEF
    assert json.loads((tmp_path / "metrics.json").read_text()) == SAMPLE_BRIEF
    r = CliRunner().invoke(app, ["score", str(preds_file), "--annotations", str(QVH / "highlight_val_release_mr.jsonl"),
                                 "--format", "qvhighlights", "--out", str(tmp_path / "m2.json")])
    assert r.exit_code == 0, r.output
    assert "MR-full-mAP@0.75" in r.output and "31.01" in r.output
    assert json.loads((tmp_path / "m2.json").read_text()) == SAMPLE_BRIEF


@pytest.mark.skipif(not (SHARED / "qvhighlights" / "sample_val_preds.jsonl").exists(),
                    reason="../shared/data/qvhighlights absent (the full files: 3 MB; tests/ uses the copies in data/)")
def test_score_cli_on_the_shared_full_files(tmp_path):
    """`zeroground score` on the files exactly as Moment-DETR ships them (saliency fields
    included) gives what its standalone_eval prints, and what the plain evaluator above gives."""
    preds, gt = SHARED / "qvhighlights" / "sample_val_preds.jsonl", SHARED / "qvhighlights" / "highlight_val_release.jsonl"
    r = CliRunner().invoke(app, ["score", str(preds), "--annotations", str(gt), "--format", "qvhighlights",
                                 "--out", str(tmp_path / "metrics.json")])
    assert r.exit_code == 0, r.output
    got = json.loads((tmp_path / "metrics.json").read_text())
    lines = [json.loads(line) for line in preds.read_text().splitlines() if line.strip()]
    gts = {json.loads(line)["qid"]: json.loads(line)["relevant_windows"] for line in gt.read_text().splitlines()
           if line.strip()}
    assert len(lines) == len(gts) == 1550  # (../shared/data/SOURCES.md says 1,549: the file has no final newline)
    plain = _plain_eval({d["qid"]: d["pred_relevant_windows"] for d in lines}, gts)
    for k in ("MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP@0.5", "MR-full-mAP@0.75", "MR-full-mAP"):
        assert abs(got[k] - SAMPLE_BRIEF[k]) < 0.01 - 1e-9 and abs(got[k] - plain[k]) < 0.01 - 1e-9, k
    assert got == plain == SAMPLE_BRIEF


def test_thresholds_are_the_evaluators_two_decimal_ones():
    # IoU(0-6.57 s, 0-7.3 s) = 6.57 / (6.57 + 7.3 - 6.57) is 0.8999999999999999 in float64: below the
    # evaluator's 0.9 (its thresholds are rounded to 2 decimals), not below linspace's unrounded 9th one
    assert _plain_iou([0.0, 6.57], [0.0, 7.3]) == 0.8999999999999999
    m = evaluate_moment_retrieval({1: [[0.0, 6.57, 1.0]]}, {1: [[0.0, 7.3]]})
    assert m["MR-full-mAP"] == 80.0 == _plain_eval({1: [[0.0, 6.57, 1.0]]}, {1: [[0.0, 7.3]]})["MR-full-mAP"]


def test_small_cases_against_hand_values():
    # one query, two GT windows; top-1 hits the second exactly -> R1 100; the second prediction hits the first
    gts = {1: [[0.0, 10.0], [20.0, 40.0]]}
    preds = {1: [[20.0, 40.0, 0.9], [0.0, 10.0, 0.8], [50.0, 60.0, 0.1]]}
    m = evaluate_moment_retrieval(preds, gts)
    assert m["MR-full-R1@0.5"] == 100.0 and m["MR-full-mAP"] == 100.0
    assert m["MR-short-mAP"] == 50.0  # only [0, 10] is short: found by the 2nd prediction, precision 1/2 at recall 1
    preds = {1: [[50.0, 60.0, 0.9], [20.0, 40.0, 0.8]]}  # a miss first: AP = 1/2 * (1/2) = 0.25 at every threshold
    m = evaluate_moment_retrieval(preds, gts)
    assert m["MR-full-R1@0.5"] == 0.0 and m["MR-full-mAP"] == 25.0
    with pytest.raises(QVHighlightsError, match="no predicted windows for 1"):
        evaluate_moment_retrieval({}, gts)


def test_bad_files_are_clear_errors(tmp_path):
    bad = tmp_path / "gt.jsonl"
    bad.write_text('{"qid": 1, "query": "a", "duration": 10, "vid": "v", "relevant_windows": []}\n')
    with pytest.raises(AnnotationError, match="line 1: relevant_windows must be a non-empty list"):
        read_qvhighlights(bad)
    bad.write_text('{"qid": 1, "query": "a", "duration": 10, "vid": "v", "relevant_windows": [[2, 30]]}\n')
    with pytest.raises(AnnotationError, match="outside the video"):
        read_qvhighlights(bad)
    bad.write_text('{"qid": 1, "query": "   ", "duration": 10, "vid": "v", "relevant_windows": [[2, 3]]}\n')
    with pytest.raises(AnnotationError, match="empty sentence"):
        read_qvhighlights(bad)
    bad.write_text('{"qid": 1, "duration": 10, "vid": "v", "relevant_windows": [[2, 3]]}\n')
    with pytest.raises(AnnotationError, match=r"missing field\(s\) \['query'\]"):
        read_qvhighlights(bad)
    r = CliRunner().invoke(app, ["score", str(bad), "--format", "qvhighlights"])
    assert r.exit_code == 2 and "needs --annotations" in r.output


@pytest.mark.skipif(not ANET.exists(), reason="../shared/data/activitynet absent (17,505-query file not copied: 3 MB)")
def test_real_activitynet_val_loads():
    moments = read_annotations(ANET)
    assert len(moments) == 17505
    assert all(len(m.windows) == 1 and m.sentence for m in moments)
    assert len({m.video for m in moments}) > 4000
