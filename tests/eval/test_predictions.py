"""The predictions JSON Lines file: round trip and bad lines."""

from __future__ import annotations

import json

import pytest

from zeroground.eval import PredictionRecord, PredictionsError, read_predictions, score, write_predictions


def test_round_trip_and_score(tmp_path):
    records = [
        PredictionRecord("v1", "a person sits.", 30.0, [3.0, 9.0], [[3.0, 9.0], [0.0, 1.0]], [0.9, 0.1]),
        PredictionRecord("v2", None, 10.0, [0.0, 4.0], [[6.0, 2.0]]),  # unordered output kept as is
    ]
    path = tmp_path / "preds.jsonl"
    write_predictions(path, records)
    assert read_predictions(path) == records
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {"video": "v1", "query": "a person sits.", "duration": 30.0, "gt": [3.0, 9.0],
                     "pred": [[3.0, 9.0], [0.0, 1.0]], "scores": [0.9, 0.1]}
    metrics = score(path)
    assert metrics["R1@0.5"] == 0.5 and metrics["mIoU"] == 0.5  # tIoU 1 and 0 (reversed span)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("{not json", r"line 2: not valid JSON"),
        ('{"video": "v", "duration": 10, "gt": [0, 1]}', r"line 2: missing field 'pred'"),
        ('{"video": "v", "duration": 10, "gt": [0, 1], "pred": []}', r"line 2: pred must be a non-empty list"),
        ('{"video": "v", "duration": 10, "gt": [0, 1], "pred": [[0, "x"]]}', r"line 2: pred\[0\] must be \[start, end\]"),
        ('{"video": "v", "duration": 0, "gt": [0, 1], "pred": [[0, 1]]}', r"line 2: duration must be a positive"),
        ('{"video": "v", "duration": 10, "gt": [0, 1], "pred": [[0, 1]], "scores": [1, 2]}', r"line 2: scores must be a list with one number"),
        ('{"video": "v", "duration": 10, "gt": [0, 1], "pred": [[0, 1]], "preds": 1}', r"line 2: unknown field\(s\) \['preds'\]"),
    ],
)
def test_bad_lines_are_named(tmp_path, line, match):
    path = tmp_path / "p.jsonl"
    path.write_text('{"video": "v", "duration": 10, "gt": [0, 1], "pred": [[0, 1]]}\n' + line + "\n")
    with pytest.raises(PredictionsError, match=r"p\.jsonl: " + match):
        read_predictions(path)


def test_empty_file(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text("\n")
    with pytest.raises(PredictionsError, match=r"e\.jsonl: no prediction records"):
        read_predictions(path)
