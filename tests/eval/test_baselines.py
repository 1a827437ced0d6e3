"""No-training baselines, their reference figures on Charades-STA, and the baseline/score CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import PSVL_TEST_FILE
from zeroground.cli import app
from zeroground.data.annotations import Moment, read_psvl_json
from zeroground.eval import PREDICTORS, baseline, evaluate_predictions, read_predictions
from zeroground.eval.baselines import prior_spans

MOMENTS = [
    Moment("a", 10.0, 0.0, 3.0, "one"),
    Moment("b", 20.0, 0.0, 6.0, "two"),
    Moment("c", 40.0, 20.0, 40.0, "three"),
    Moment("d", 30.0, 3.0, 9.3, "four"),
]


@pytest.mark.parametrize("name", sorted(PREDICTORS))
def test_every_predictor_writes_valid_records(name):
    records = baseline(name, MOMENTS, top_k=5, seed=1)
    assert [r.video for r in records] == ["a", "b", "c", "d"]
    assert [r.query for r in records] == ["one", "two", "three", "four"]
    for r, m in zip(records, MOMENTS):
        assert r.gt == [m.start, m.end] and r.duration == m.duration
        assert all(0 <= s <= e <= m.duration for s, e in r.pred)
    evaluate_predictions(records)


def test_random_is_seeded_uniform():
    a = baseline("random", MOMENTS, top_k=5, seed=3)
    b = baseline("random", MOMENTS, top_k=5, seed=3)
    c = baseline("random", MOMENTS, top_k=5, seed=4)
    assert [r.pred for r in a] == [r.pred for r in b] != [r.pred for r in c]
    many = PREDICTORS["random"]([MOMENTS[0]] * 4000, top_k=1, seed=0)
    starts = np.array([row[0][0] for row in many])
    ends = np.array([row[0][1] for row in many])
    # min / max of two U[0,1]: means 1/3 and 2/3
    assert starts.mean() == pytest.approx(1 / 3, abs=0.02) and ends.mean() == pytest.approx(2 / 3, abs=0.02)


def test_prior_is_the_mode_of_the_gridded_span_histogram():
    # normalised spans: (0, .3), (0, .3), (.5, 1), (.1, .31) -> on the 0.05 grid (.1, .3)
    assert prior_spans(MOMENTS, grid=0.05, top_k=3) == [(0.0, 0.3), (0.1, 0.3), (0.5, 1.0)]
    records = baseline("prior", MOMENTS)
    assert [r.pred for r in records] == [[[0.0, 3.0]], [[0.0, 6.0]], [[0.0, 12.0]], [[0.0, 9.0]]]
    # from a separate "train" set instead
    train = [Moment("t", 10.0, 5.0, 10.0)]
    assert baseline("prior", MOMENTS, train=train)[0].pred == [[5.0, 10.0]]


def test_whole_and_fixed():
    assert baseline("whole", MOMENTS)[2].pred == [[0.0, 40.0]]
    assert baseline("fixed", MOMENTS, span=(0.25, 0.5))[2].pred == [[10.0, 20.0]]
    with pytest.raises(ValueError, match="unknown baseline 'oracle'"):
        baseline("oracle", MOMENTS)


def test_charades_sta_reference_figures():
    """The constant span [0, 0.3] scores R1@0.5 = 30.65 on Charades-STA (DEVELOPERS.md)."""
    moments = read_psvl_json(PSVL_TEST_FILE)
    fixed = evaluate_predictions(baseline("fixed", moments, span=(0.0, 0.3)))
    assert round(100 * fixed["R1@0.5"], 2) == 30.65
    assert fixed["R1@0.5"] == pytest.approx(1140 / 3720)
    prior = evaluate_predictions(baseline("prior", moments))
    assert prior == fixed  # the test split's most common gridded span is [0, 0.3]
    whole = evaluate_predictions(baseline("whole", moments))
    assert whole["R1@0.7"] == 0.0 and round(100 * whole["mIoU"], 2) == 26.99


def test_cli_baseline_then_score(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run" / "fixed.jsonl"
    res = runner.invoke(app, ["baseline", "fixed", "--span", "0", "0.3", "-a", str(PSVL_TEST_FILE), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "30.65" in res.output
    assert len(read_predictions(out)) == 3720
    (tmp_path / "run" / "metrics.json").unlink()
    res = runner.invoke(app, ["score", str(out)])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert list(metrics) == ["R1@0.1", "R1@0.3", "R1@0.5", "R1@0.7", "mIoU"]
    assert metrics["R1@0.5"] == pytest.approx(1140 / 3720)


def test_cli_random_top5_has_r5(tmp_path):
    out = tmp_path / "random.jsonl"
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps([{"vid": "v", "duration": 10.0, "timestamp": [0.1, 0.5], "sentence": "x"}] * 3))
    res = CliRunner().invoke(app, ["baseline", "random", "--top-k", "5", "-a", str(ann), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "R5@0.5" in json.loads((tmp_path / "metrics.json").read_text())


def test_cli_reports_bad_input_without_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"vid": "v", "duration": 10.0, "timestamp": [0.6, 0.2]}]))
    res = CliRunner().invoke(app, ["baseline", "whole", "-a", str(bad), "-o", str(tmp_path / "p.jsonl")])
    assert res.exit_code == 2
    assert "bad.json: item 0: start 6 > end 2" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(app, ["score", str(tmp_path / "none.jsonl")])
    assert res.exit_code == 2 and "predictions file not found" in res.output
