"""Annotation readers/writers: the real PSVL files, round trips, and every bad input named."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PSVL_PSEUDO_FILE, PSVL_TEST_FILE
from zeroground.data.annotations import (
    AnnotationError,
    Moment,
    detect_format,
    read_activitynet,
    read_annotations,
    read_charades_sta,
    read_psvl_json,
    write_activitynet,
    write_charades_sta,
    write_psvl_json,
)
from zeroground.features.store import FeatureError, write_features_h5

# --------------------------------------------------------------------------- real PSVL files


def test_psvl_test_file_loads_3720_queries_over_1334_videos(caplog):
    with caplog.at_level(logging.WARNING):
        moments = read_annotations(PSVL_TEST_FILE)
    assert len(moments) == 3720
    assert len({m.video for m in moments}) == 1334
    first = moments[0]
    assert first.video == "3MSZA" and first.duration == 30.96
    assert first.sentence == "person turn a light on."
    assert first.tokens == ["turn", "person", "light"] and first.pos == ["NOUN", "VERB", "NOUN"]
    assert first.start == pytest.approx(0.7848837209302325 * 30.96)
    assert first.span_normalized == pytest.approx((0.7848837209302325, 0.9819121447028423))
    # Charades-STA's ends run up to 1.5 s past the video: kept as published, and counted aloud
    assert "562 span(s) leave [0, duration]" in caplog.text and "item 19" in caplog.text
    assert moments[19].span_normalized[1] == pytest.approx(1.0710441334768568)


def test_psvl_test_file_strict_and_clamped_readings(caplog):
    with pytest.raises(AnnotationError, match=r"charades_sta_test_pos_original_simple_sent\.json: item 19: .*outside"):
        read_psvl_json(PSVL_TEST_FILE, end_slack=0)
    with caplog.at_level(logging.WARNING):
        clamped = read_psvl_json(PSVL_TEST_FILE, out_of_range="clamp")
    assert "562 span(s)" in caplog.text and "clamped" in caplog.text
    assert len(clamped) == 3720
    assert all(0 <= m.start <= m.end <= m.duration for m in clamped)
    assert clamped[19].end == clamped[19].duration


def test_psvl_pseudo_label_file_loads_without_sentences():
    moments = read_annotations(PSVL_PSEUDO_FILE)
    assert len(moments) == 12523 and len({m.video for m in moments}) == 3170
    assert all(m.sentence is None and m.pos is None for m in moments)
    assert sum(len(m.tokens) == 8 for m in moments) == 12521  # two items carry 7 tokens


def test_psvl_round_trip_of_the_real_test_file(tmp_path):
    original = json.loads(PSVL_TEST_FILE.read_text())
    out = tmp_path / "copy.json"
    write_psvl_json(read_psvl_json(PSVL_TEST_FILE), out)
    again = json.loads(out.read_text())
    assert len(again) == len(original)
    for a, b in zip(original, again):
        assert set(a) == set(b)
        assert (a["vid"], a["duration"], a["sentence"], a["tokens"], a["pos"]) == (
            b["vid"], b["duration"], b["sentence"], b["tokens"], b["pos"]
        )
        np.testing.assert_allclose(a["timestamp"], b["timestamp"], rtol=1e-12)
    assert read_psvl_json(out) == read_psvl_json(PSVL_TEST_FILE)  # the same moments, field for field


# --------------------------------------------------------------------------- Charades-STA

STA_LINES = "AO8RW 0.0 6.9##a person is putting a book on a shelf.\n3MSZA 24.3 30.4##person turn a light on.\n"
CSV = "id,subject,scene,length\nAO8RW,s1,Kitchen,33.67\n3MSZA,s2,Bedroom,30.96\n"


@pytest.fixture
def sta_files(tmp_path):
    sta = tmp_path / "charades_sta_test.txt"
    sta.write_text(STA_LINES)
    csv = tmp_path / "Charades_v1_test.csv"
    csv.write_text(CSV)
    return sta, csv


def test_charades_sta_with_csv_durations_and_round_trip(sta_files, tmp_path):
    sta, csv = sta_files
    moments = read_annotations(sta, durations=csv)
    assert moments == [
        Moment("AO8RW", 33.67, 0.0, 6.9, "a person is putting a book on a shelf."),
        Moment("3MSZA", 30.96, 24.3, 30.4, "person turn a light on."),
    ]
    out = tmp_path / "again.txt"
    write_charades_sta(moments, out)
    assert out.read_text() == "AO8RW 0.00 6.90##a person is putting a book on a shelf.\n3MSZA 24.30 30.40##person turn a light on.\n"
    assert read_charades_sta(out, durations=csv) == moments


def test_charades_sta_durations_from_features(sta_files, tmp_path):
    sta, _ = sta_files
    feats = {"AO8RW": np.zeros((20, 4), np.float32), "3MSZA": np.zeros((40, 4), np.float32)}
    h5 = tmp_path / "f.h5"
    write_features_h5(h5, feats, attrs={"fps": 1.0})
    moments = read_charades_sta(sta, durations=h5)
    assert [m.duration for m in moments] == [20.0, 40.0]
    # a folder of .npy with attrs.json
    folder = tmp_path / "npy"
    folder.mkdir()
    for vid, arr in feats.items():
        np.save(folder / f"{vid}.npy", arr)
    (folder / "attrs.json").write_text('{"fps": 0.5}')
    assert [m.duration for m in read_annotations(sta, durations=folder)] == [40.0, 80.0]
    assert [m.duration for m in read_annotations(sta, durations={"AO8RW": 7.0, "3MSZA": 31.0})] == [7.0, 31.0]


def test_charades_sta_without_durations_is_a_clear_error(sta_files, tmp_path):
    sta, _ = sta_files
    with pytest.raises(AnnotationError, match=r"charades_sta_test\.txt: .*carry no video durations"):
        read_annotations(sta)
    with pytest.raises(AnnotationError, match=r"charades_sta_test\.txt: no duration for 1 video\(s\): 3MSZA"):
        read_charades_sta(sta, durations={"AO8RW": 40.0})
    h5 = tmp_path / "nofps.h5"
    write_features_h5(h5, {"AO8RW": np.zeros((3, 2), np.float32)})
    with pytest.raises(FeatureError, match=r"nofps\.h5: cannot compute durations.*fps"):
        read_charades_sta(sta, durations=h5)


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("AO8RW 5.0 2.0##a person sits.", r"line 2: start 5 > end 2"),
        ("AO8RW 2.0 50.0##a person sits.", r"line 2: span \[2, 50\] s lies outside the video \[0, 33.67\]"),
        ("AO8RW -1.0 5.0##a person sits.", r"line 2: span \[-1, 5\] s lies outside"),
        ("AO8RW 1.0 2.0##   ", r"line 2: empty sentence"),
        ("AO8RW 1.0 2.0 a person sits.", r"line 2: expected 'VID start end##sentence'"),
        ("AO8RW one 2.0##a person sits.", r"line 2: start/end are not numbers"),
    ],
)
def test_charades_sta_bad_lines(tmp_path, line, match):
    sta = tmp_path / "bad.txt"
    sta.write_text("AO8RW 0.0 6.9##fine.\n" + line + "\n")
    with pytest.raises(AnnotationError, match=r"bad\.txt: " + match):
        read_charades_sta(sta, durations={"AO8RW": 33.67})


def test_clamp_counts_and_fixes(tmp_path, caplog):
    sta = tmp_path / "c.txt"
    sta.write_text("AO8RW -1.0 5.0##a.\nAO8RW 2.0 50.0##b.\nAO8RW 2.0 3.0##c.\n")
    with caplog.at_level(logging.WARNING):
        moments = read_charades_sta(sta, durations={"AO8RW": 10.0}, out_of_range="clamp")
    assert [(m.start, m.end) for m in moments] == [(0.0, 5.0), (2.0, 10.0), (2.0, 3.0)]
    assert "2 span(s) leave [0, duration]" in caplog.text and "clamped" in caplog.text
    kept = read_charades_sta(sta, durations={"AO8RW": 10.0}, out_of_range="keep")
    assert (kept[1].start, kept[1].end) == (2.0, 50.0)


# --------------------------------------------------------------------------- ActivityNet

ANET = {
    "v_abc": {"duration": 82.73, "timestamps": [[0.28, 55.15], [13.79, 54.32]], "sentences": ["A man plays.", " He stops. "]},
    "v_def": {"duration": 10.0, "timestamps": [[1, 2]], "sentences": ["Someone waves."]},
}


def test_activitynet_read_and_round_trip(tmp_path):
    path = tmp_path / "val_1.json"
    path.write_text(json.dumps(ANET))
    moments = read_annotations(path)
    assert moments == [
        Moment("v_abc", 82.73, 0.28, 55.15, "A man plays."),
        Moment("v_abc", 82.73, 13.79, 54.32, "He stops."),
        Moment("v_def", 10.0, 1.0, 2.0, "Someone waves."),
    ]
    out = tmp_path / "again.json"
    write_activitynet(moments, out)
    assert read_activitynet(out) == moments
    assert detect_format(out) == "activitynet"


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"duration": 10.0, "timestamps": [[5, 2]], "sentences": ["x"]}, r"video 'v_bad' item 0: start 5 > end 2"),
        ({"duration": 10.0, "timestamps": [[1, 20]], "sentences": ["x"]}, r"video 'v_bad' item 0: span .* outside"),
        ({"duration": 10.0, "timestamps": [[1, 2]], "sentences": [""]}, r"video 'v_bad' item 0: empty sentence"),
        ({"duration": 10.0, "timestamps": [[1, 2]], "sentences": ["x"], "annotation": 1}, r"video 'v_bad': unknown field\(s\) \['annotation'\]"),
        ({"duration": 10.0, "timestamps": [[1, 2]], "sentences": ["x", "y"]}, r"video 'v_bad': 'timestamps' and 'sentences'"),
        ({"duration": "ten", "timestamps": [[1, 2]], "sentences": ["x"]}, r"video 'v_bad': duration must be a number"),
        ({"duration": 0.0, "timestamps": [[0, 0]], "sentences": ["x"]}, r"video 'v_bad' item 0: duration must be > 0"),
    ],
)
def test_activitynet_bad_entries(tmp_path, entry, match):
    path = tmp_path / "anet.json"
    path.write_text(json.dumps({"v_ok": ANET["v_def"], "v_bad": entry}))
    with pytest.raises(AnnotationError, match=r"anet\.json: " + match):
        read_activitynet(path)


# --------------------------------------------------------------------------- PSVL bad items


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ({"vid": "a", "duration": 10.0, "timestamp": [0.5, 0.2]}, r"item 1: start 5 > end 2"),
        ({"vid": "a", "duration": 10.0, "timestamp": [0.5, 1.5]}, r"item 1: span \[5, 15\] s lies outside"),
        ({"vid": "a", "duration": 10.0, "timestamp": [0.1, 0.2], "sentence": " "}, r"item 1: empty sentence"),
        ({"vid": "a", "duration": 10.0, "timestamp": [0.1, 0.2], "sentense": "x"}, r"item 1: unknown field\(s\) \['sentense'\]"),
        ({"vid": "a", "duration": 10.0}, r"item 1: missing field 'timestamp'"),
        ({"vid": "a", "duration": 10.0, "timestamp": [0.1]}, r"item 1: timestamp must be \[start, end\]"),
        ({"vid": "a", "duration": 10.0, "timestamp": [0.1, None]}, r"item 1: timestamp end must be a number"),
        ({"vid": "a", "duration": -1.0, "timestamp": [0.1, 0.2]}, r"item 1: duration must be > 0"),
        ({"vid": "a", "duration": 10.0, "timestamp": [0.1, 0.2], "tokens": "walk"}, r"item 1: tokens must be a list of strings"),
    ],
)
def test_psvl_bad_items(tmp_path, item, match):
    path = tmp_path / "pseudo.json"
    path.write_text(json.dumps([{"vid": "ok", "duration": 10.0, "timestamp": [0.0, 0.5]}, item]))
    with pytest.raises(AnnotationError, match=r"pseudo\.json: " + match):
        read_psvl_json(path)


def test_format_detection_and_override(tmp_path):
    psvl = tmp_path / "a.json"
    write_psvl_json([Moment("v", 10.0, 1.0, 2.0, tokens=["walk"])], psvl)
    assert detect_format(psvl) == "psvl"
    assert read_annotations(psvl, format="psvl") == read_annotations(psvl)
    with pytest.raises(AnnotationError, match=r"a\.json: ActivityNet Captions JSON must be an object"):
        read_annotations(psvl, format="activitynet")
    with pytest.raises(AnnotationError, match=r"a\.json: unknown annotation format 'xml'"):
        read_annotations(psvl, format="xml")
    odd = tmp_path / "a.csv"
    odd.write_text("x")
    with pytest.raises(AnnotationError, match=r"a\.csv: cannot tell the annotation format"):
        read_annotations(odd)
    broken = tmp_path / "b.json"
    broken.write_text("[{")
    with pytest.raises(AnnotationError, match=r"b\.json: not valid JSON"):
        read_annotations(broken)
    with pytest.raises(AnnotationError, match=r"missing\.json: annotation file not found"):
        read_annotations(tmp_path / "missing.json")


def test_cli_convert_and_inspect(tmp_path, sta_files):
    from typer.testing import CliRunner

    from zeroground.cli import app

    sta, csv = sta_files
    out = tmp_path / "sta.json"
    runner = CliRunner()
    res = runner.invoke(app, ["convert", str(sta), str(out), "--durations", str(csv), "--to", "psvl"])
    assert res.exit_code == 0, res.output
    assert read_annotations(out) == read_annotations(sta, durations=csv)
    res = runner.invoke(app, ["inspect", str(out)])
    assert res.exit_code == 0 and "2 queries over 2 videos" in res.output
    res = runner.invoke(app, ["convert", str(sta), str(out)])
    assert res.exit_code == 2 and "carry no video durations" in res.output
    feats = tmp_path / "f.h5"
    write_features_h5(feats, {"AO8RW": np.zeros((3, 4), np.float32)}, attrs={"fps": 1.0})
    res = runner.invoke(app, ["inspect", str(feats), "--annotations", str(out)])
    assert res.exit_code == 2 and "features missing for 1 video(s): 3MSZA" in res.output
