"""The ``make demo`` job, end to end on a tiny world (a few videos, one epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from zeroground.demo.pipeline import (
    BASELINES,
    METRIC_KEYS,
    TRAINED,
    TRAINING_FREE,
    DemoError,
    DemoSetup,
    load_demo_config,
    run_demo,
    shipped_tiny_clip,
)

REPO = Path(__file__).resolve().parents[2]

TINY = {
    "train_videos": 4,
    "test_videos": 2,
    "corpus_videos": 20,
    "feature_fps": 1.0,
    "plot_queries": 2,
    "world.min_events": 2,
    "world.max_events": 3,
    "world.min_duration": 12.0,
    "world.max_duration": 20.0,
    "world.min_event_s": 3.0,
    "world.max_event_s": 5.0,
    "world.min_idle_s": 0.5,
    "world.max_idle_s": 1.0,
    "recipe_changes": {
        "psvl": {"train.epochs": 2, "train.average_last_epochs": 1, "train.batch_size": 8, "train.ensemble": 2,
                 "model.num_segments": 16},
        "lfvmr": {"train.epochs": 2, "train.batch_size": 8, "model.num_segments": 16},
        "lfvmr_psvlnet": {"train.epochs": 1, "train.batch_size": 8, "train.ensemble": 2, "model.num_segments": 16},
        "supervised": {"train.epochs": 1, "train.batch_size": 8, "model.num_segments": 16},
    },
}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    # shipped in the package: missing is a failure, not a skip
    assert (shipped_tiny_clip() / "config.json").exists(), "shipped tiny CLIP missing (run `make tiny-clip`)"
    out = tmp_path_factory.mktemp("demo_out")
    cfg = load_demo_config(None, TINY)
    messages: list[str] = []
    result = run_demo(out, cfg, progress=False, echo=messages.append, engine="local")
    return out, result, messages


def test_results_json_has_every_method_with_fractions(demo_run):
    out, result, _ = demo_run
    data = json.loads((out / "results.json").read_text())
    # the diagnostic row reads the same models the other way: every demo recipe reads the attention,
    # so the `_regression` row is the regression head (for the seed LFVMR, the span its code outputs)
    expected = []
    for m in BASELINES + TRAINED:
        expected += [m] + ([f"{m}_regression"] if m in TRAINED else [])
    assert [r["method"] for r in data["rows"]] == expected
    for row in data["rows"]:
        assert set(row) == {"method", *METRIC_KEYS}
        for k in METRIC_KEYS:
            assert 0.0 <= row[k] <= 1.0
        # recall at a stricter IoU can never be higher
        assert row["R1@0.3"] >= row["R1@0.5"] >= row["R1@0.7"]
    assert data["rows"] == result.rows
    assert data["engine"] == "sequential"
    assert set(TRAINING_FREE) <= {r["method"] for r in data["rows"]}
    assert data["queries"] == sum(1 for _ in json.loads((out / "annotations" / "test.json").read_text()))


def test_scores_match_the_written_predictions(demo_run):
    from zeroground.eval.metrics import evaluate_predictions
    from zeroground.eval.predictions import read_predictions

    out, result, _ = demo_run
    for row in result.rows:
        metrics = evaluate_predictions(read_predictions(out / "predictions" / f"{row['method']}.jsonl"))
        assert row["mIoU"] == pytest.approx(metrics["mIoU"], abs=1e-4)


def test_outputs_are_on_disk_and_models_load(demo_run):
    from zeroground.model import load_model_dir

    out, result, messages = demo_run
    assert result.figure is not None and result.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "videos").glob("*.mp4")) == [
        "test_0000.mp4", "test_0001.mp4", "train_0000.mp4", "train_0001.mp4", "train_0002.mp4", "train_0003.mp4"]
    runs = out / "runs"
    for method in TRAINED:
        model, cfg, vocab = load_model_dir(runs / method / "model")
        assert cfg.query_encoder == ("tokens" if method == "psvl" else "clip")
        assert model.readout.span == "attention"  # the recipes' read-out
        assert cfg.architecture == ("lfvmr" if method == "lfvmr" else "psvl")
        assert (vocab is not None) == (method == "psvl")
        # the pseudo-supervised models are seed ensembles (train.ensemble), the upper bound one model
        members = list(getattr(model, "members", []))
        assert len(members) == (2 if method in ("psvl", "lfvmr_psvlnet") else 0)
        if members:
            assert sorted(p.name for p in (runs / method / "train").glob("member_*")) == ["member_0", "member_1"]
        # PSVL's ensemble cuts its averaged attention higher (demo_psvl: readout.attention_ratio 0.5)
        assert model.readout.attention_ratio == pytest.approx(0.5 if method == "psvl" else 1 / 3)
        assert (runs / method / "recipe.yaml").is_file()
    # bagging (demo_psvl: train.bagging): each PSVL member trained on its own pseudo-label draw
    draws = [runs / "psvl" / "pseudo" / "psvl.json", runs / "psvl" / "pseudo" / "psvl.draw1.json"]
    assert all(d.is_file() for d in draws) and not (runs / "lfvmr_psvlnet" / "pseudo" / "lfvmr_psvlnet.draw1.json").exists()
    assert draws[0].read_text() != draws[1].read_text()
    for k, draw in enumerate(draws):
        run_cfg = yaml.safe_load((runs / "psvl" / "train" / f"member_{k}" / "config.yaml").read_text())
        assert Path(run_cfg["data"]["train_annotations"]) == draw
    for k in range(2):
        run_cfg = yaml.safe_load((runs / "lfvmr_psvlnet" / "train" / f"member_{k}" / "config.yaml").read_text())
        assert Path(run_cfg["data"]["train_annotations"]) == runs / "lfvmr_psvlnet" / "pseudo" / "lfvmr_psvlnet.json"
    # pseudo-labels come from the unlabelled train videos only
    pseudo = json.loads((runs / "lfvmr_psvlnet" / "pseudo" / "lfvmr_psvlnet.json").read_text())
    assert {p["vid"] for p in pseudo} <= {f"train_{i:04d}" for i in range(4)}
    assert load_demo_config(out / "demo_config.yaml") == load_demo_config(None, TINY)
    assert any("pseudo-labels" in m for m in messages)


def test_default_yaml_is_the_built_in_config():
    assert load_demo_config(REPO / "configs" / "demo_default.yaml") == DemoSetup()


def test_unknown_method_and_missing_clip_are_clear_errors(tmp_path):
    with pytest.raises(DemoError, match="unknown demo method"):
        run_demo(tmp_path, load_demo_config(None, {"methods": ["psvl", "magic"]}), progress=False, echo=lambda m: None)
    with pytest.raises(DemoError, match="unknown engine 'threads'"):
        run_demo(tmp_path, load_demo_config(None, {}), progress=False, echo=lambda m: None, engine="threads")
    with pytest.raises(DemoError, match="tiny CLIP not found"):
        run_demo(tmp_path, load_demo_config(None, {"clip": str(tmp_path / "nowhere")}), progress=False,
                 echo=lambda m: None)


def test_cli_reports_bad_overrides_without_traceback(tmp_path):
    from typer.testing import CliRunner

    from zeroground.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["demo", "--out", str(tmp_path), "--set", "recipe_changes.psvl.train.epochz=3",
                              "--set", "train_videos=2", "--set", "test_videos=1"])
    assert res.exit_code == 2
    assert "epochz" in res.output and "Traceback" not in res.output


def test_attention_span_is_the_run_around_the_peak():
    import numpy as np

    from zeroground.demo.evaluation import attention_spans

    w = np.array([[0.05, 0.1, 0.4, 0.3, 0.1, 0.05, 0.0, 0.0],   # peak 2; >= 0.4/3 at 2..3 only
                  [0.2, 0.0, 0.1, 0.1, 0.1, 0.5, 0.0, 0.0]])    # peak 5 alone (neighbours < 1/3 peak)
    mask = np.array([[1] * 6 + [0, 0], [1] * 6 + [0, 0]], dtype=bool)
    spans = attention_spans(w, mask, ratio=1 / 3)
    np.testing.assert_allclose(spans, [[2 / 6, 4 / 6], [5 / 6, 6 / 6]])
    # a lower ratio widens the run, never past the valid segments
    np.testing.assert_allclose(attention_spans(w, mask, ratio=0.2)[0], [1 / 6, 5 / 6])
    np.testing.assert_allclose(attention_spans(w, mask, ratio=0.01)[0], [0, 1])


@pytest.mark.parametrize("name", sorted(__import__("zeroground.demo.pipeline", fromlist=["x"]).BASELINE_ROWS))
def test_every_baseline_row_predicts_one_span_inside_each_video(demo_run, name):
    from zeroground.data.annotations import read_psvl_json
    from zeroground.demo.pipeline import BASELINE_ROWS
    from zeroground.features.clip import load_clip
    from zeroground.features.store import FeatureStore

    out, _, _ = demo_run
    moments = read_psvl_json(out / "annotations" / "test.json")
    records = BASELINE_ROWS[name](moments, store=FeatureStore.open(out / "features.h5"),
                                  clip=load_clip(str(shipped_tiny_clip())), seed=0)
    assert [r.video for r in records] == [m.video for m in moments]
    for r, m in zip(records, moments):
        s, e = r.pred[0]
        assert 0.0 <= s <= e <= m.duration + 1e-6


def test_tag_row_equals_the_clip_baseline_cli(demo_run, tmp_path):
    """The demo's ``tag`` row is ``zeroground clip-baseline --method tag`` on the demo's own
    features and test annotations (the same queries and CLIP features as clip_training_free)."""
    from typer.testing import CliRunner

    from zeroground.cli import app
    from zeroground.eval.predictions import read_predictions

    out, result, _ = demo_run
    res = CliRunner().invoke(app, [
        "clip-baseline", "--method", "tag", "--setting", "charades", "--features", str(out / "features.h5"),
        "--annotations", str(out / "annotations" / "test.json"), "--format", "psvl",
        "--encoder", str(shipped_tiny_clip()), "--out", str(tmp_path / "tag"), "--quiet"])
    assert res.exit_code == 0, res.output
    cli = read_predictions(tmp_path / "tag" / "predictions.jsonl")
    demo = read_predictions(out / "predictions" / "tag.jsonl")
    assert [(r.video, r.query, r.pred) for r in cli] == [(r.video, r.query, r.pred) for r in demo]
    metrics = json.loads((tmp_path / "tag" / "metrics.json").read_text())
    row = next(r for r in result.rows if r["method"] == "tag")
    assert {k: row[k] for k in METRIC_KEYS} == {k: round(float(metrics[k]), 4) for k in METRIC_KEYS}
    # and the tfvtg row is its rule on the same queries: top-1 of the API on the same store
    from zeroground.data.annotations import read_psvl_json
    from zeroground.features.store import FeatureStore
    from zeroground.ground.training_free import predict_training_free

    moments = read_psvl_json(out / "annotations" / "test.json")
    with FeatureStore.open(out / "features.h5") as store:
        api = predict_training_free(store, moments, "tfvtg", "charades", encoder=str(shipped_tiny_clip()))
    assert [r.pred[0] for r in api] == [r.pred[0] for r in read_predictions(out / "predictions" / "tfvtg.jsonl")]


def test_ray_engine_gives_the_same_table(demo_run, tmp_path):
    """`make demo`'s path: trained rows' members as Ray tasks (one process each) give the
    rows of the sequential run (same seeds, same per-member work). The world and features are
    reused from the sequential run (same fingerprint), so only the fits run again."""
    pytest.importorskip("ray")
    import shutil

    import ray

    out, result, _ = demo_run
    par = tmp_path / "demo_ray"
    par.mkdir()
    for name in ("videos", "annotations"):
        shutil.copytree(out / name, par / name)
    for name in ("features.h5", "world_fingerprint.json"):
        shutil.copy(out / name, par / name)
    messages: list[str] = []
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        # two trained rows (the seed LFVMR's one member, lfvmr_psvlnet's two) keep this test short
        ray_result = run_demo(par, load_demo_config(None, {**TINY, "plot_queries": 0,
                                                           "methods": ["lfvmr", "lfvmr_psvlnet"]}),
                              progress=False, echo=messages.append, engine="ray")
    finally:
        ray.shutdown()
    assert any("reusing the videos and features" in m for m in messages)
    assert any("3 member trainings of 2 run(s) as ray tasks" in m for m in messages)
    assert json.loads((par / "results.json").read_text())["engine"] == "ray"
    assert [r["method"] for r in ray_result.rows] == ["lfvmr", "lfvmr_regression", "lfvmr_psvlnet",
                                                      "lfvmr_psvlnet_regression"]
    assert ray_result.rows == [r for r in result.rows if r["method"].startswith("lfvmr")]
