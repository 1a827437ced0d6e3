"""``zeroground evaluate``: reproduces the PSVL oracle's predictions and metrics; clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from zeroground.cli import app
from zeroground.eval.metrics import tiou
from zeroground.model import GroundingModel, ModelConfig, Readout, load_model_dir, predict_spans, save_model_dir

torch.set_num_threads(1)

ORACLE = Path(__file__).resolve().parents[3] / "shared" / "psvl" / "oracle"
PSEUDO_FILE = Path(__file__).resolve().parents[2] / "data" / "psvl" / "charades_train_pseudo_supervision_TEP_PS.json"
runner = CliRunner()


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory) -> dict[str, Path]:
    if not (ORACLE / "psvl_reference_checkpoint.pth").is_file():
        pytest.skip(f"PSVL oracle {ORACLE} is absent")
    root = tmp_path_factory.mktemp("oracle")
    subprocess.run([sys.executable, str(ORACLE / "make_features.py"), str(ORACLE / "train_subset.json"),
                    str(ORACLE / "test_subset.json"), "--out", str(root / "feats")], check=True, capture_output=True)
    res = runner.invoke(app, ["import-psvl", str(ORACLE / "psvl_reference_checkpoint.pth"),
                              "--train-annotations", str(PSEUDO_FILE), "--out", str(root / "model")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["evaluate", "--model", str(root / "model"), "--features", str(root / "feats"),
                              "--annotations", str(ORACLE / "test_subset.json"), "--format", "psvl",
                              "--out", str(root / "eval")])
    assert res.exit_code == 0, res.output
    assert "R1@0.5" in res.output
    return {"root": root, "feats": root / "feats", "model": root / "model", "eval": root / "eval"}


def test_predictions_reproduce_the_reference(oracle_run) -> None:
    reference = json.loads((ORACLE / "reference_predictions.json").read_text())
    lines = (oracle_run["eval"] / "predictions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len(reference) == 200
    for ref, rec in zip(reference, records):
        assert rec["video"] == ref["vid"] and rec["query"] == ref["sentence"]
        assert rec["duration"] == pytest.approx(ref["duration"])
        np.testing.assert_allclose(rec["pred"][0], ref["pred_seconds"], rtol=0, atol=1e-3)
        pred_norm = np.array(rec["pred"][0]) / rec["duration"]
        gt_norm = np.array(rec["gt"]) / rec["duration"]
        assert float(tiou(pred_norm, gt_norm)) == pytest.approx(ref["tiou"], abs=1e-5)


def test_metrics_reproduce_the_reference_per_query_means(oracle_run) -> None:
    expected = json.loads((ORACLE / "reference_metrics.json").read_text())["per_query_mean"]
    metrics = json.loads((oracle_run["eval"] / "metrics.json").read_text())
    for m in ("0.1", "0.3", "0.5", "0.7"):
        assert metrics[f"R1@{m}"] == expected[f"Recall@{m}"]
    assert metrics["mIoU"] == pytest.approx(expected["mIoU"], abs=1e-6)


def test_wrong_feature_dimension_is_a_clear_error_before_any_work(oracle_run, tmp_path: Path) -> None:
    feats = tmp_path / "feats64"
    feats.mkdir()
    np.save(feats / "3MSZA.npy", np.zeros((20, 64), np.float32))
    res = runner.invoke(app, ["evaluate", "--model", str(oracle_run["model"]), "--features", str(feats),
                              "--annotations", str(ORACLE / "test_subset.json"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "features are 64-d but the model" in res.output and "expects 1024-d" in res.output
    assert not (tmp_path / "out").exists()


def test_one_video_many_queries_equals_per_query_batches(oracle_run) -> None:
    model, cfg, vocab = load_model_dir(oracle_run["model"])
    feats = np.load(oracle_run["feats"] / "3MSZA.npy")
    queries = [["turn", "person", "light"], ["flip", "person", "switch", "door"], ["door"]]
    shared = predict_spans(model, cfg, vocab, feats, queries)
    paired = predict_spans(model, cfg, vocab, [feats] * 3, queries, batch_size=2)
    np.testing.assert_allclose(shared.spans, paired.spans, atol=1e-6)
    np.testing.assert_allclose(shared.attention, paired.attention, atol=1e-6)
    assert np.asarray(shared).shape == (3, 2)  # usable as the span array directly
    reference = json.loads((ORACLE / "reference_predictions.json").read_text())
    np.testing.assert_allclose(shared.spans[:2], [r["pred_normalized"] for r in reference[:2]], atol=1e-5)


def test_sentences_without_tokens_are_simplified(tmp_path: Path, monkeypatch) -> None:
    """Token models on files without ``tokens`` use zeroground.pseudo.text.simplify."""
    import zeroground.pseudo.text as text

    calls: list[list[str]] = []

    def fake_simplify(sentences, **_kw):
        calls.append(list(sentences))
        return [s.lower().strip(".").split()[1:] for s in sentences]

    monkeypatch.setattr(text, "simplify", fake_simplify)
    cfg = ModelConfig(video_dim=8, num_segments=16, vocab_size=7, embed_dim=8, query_gru_hidden=8,
                      video_gru_hidden=8, hidden=16, fusion_layers=1, nonlocal_layers=1)
    torch.manual_seed(0)
    vocab = {"<PAD>": 0, "<UNK>": 1, "<S>": 2, "<E>": 3, "opens": 4, "door": 5, "the": 6}
    save_model_dir(tmp_path / "model", GroundingModel(cfg), cfg, vocab)
    feats = tmp_path / "feats"
    feats.mkdir()
    np.save(feats / "vidA.npy", np.random.default_rng(0).standard_normal((30, 8)).astype(np.float32))
    ann = tmp_path / "test.json"
    ann.write_text(json.dumps([{"vid": "vidA", "duration": 10.0, "timestamp": [0.1, 0.5],
                                "sentence": "Person opens the door."}]))
    res = runner.invoke(app, ["evaluate", "-m", str(tmp_path / "model"), "-f", str(feats), "-a", str(ann),
                              "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert calls == [["Person opens the door."]]
    rec = json.loads((tmp_path / "out" / "predictions.jsonl").read_text())
    assert rec["gt"] == pytest.approx([1.0, 5.0]) and len(rec["pred"]) == 1


def test_attention_readout_is_the_run_around_the_peak_on_a_hand_made_vector() -> None:
    from zeroground.model import attention_spans

    w = torch.tensor([[0.05, 0.1, 0.4, 0.3, 0.1, 0.05, 0.0, 0.0],    # peak 2; >= 0.4/3 at 2..3 only
                      [0.2, 0.0, 0.1, 0.1, 0.1, 0.5, 0.0, 0.0],      # peak 5 alone
                      [0.0, 0.0, 0.0, 0.05, 0.2, 0.3, 0.2, 0.2]])    # run reaches the last segment
    mask = torch.tensor([[1] * 6 + [0, 0], [1] * 6 + [0, 0], [1] * 8], dtype=torch.bool)
    spans = attention_spans(w, mask, ratio=1 / 3)
    np.testing.assert_allclose(spans.numpy(), [[2 / 6, 4 / 6], [5 / 6, 6 / 6], [4 / 8, 8 / 8]], atol=1e-7)
    # a lower ratio widens the run, never past the valid segments
    np.testing.assert_allclose(attention_spans(w, mask, ratio=0.2)[0].numpy(), [1 / 6, 5 / 6], atol=1e-7)
    np.testing.assert_allclose(attention_spans(w, mask, ratio=0.01)[0].numpy(), [0, 1], atol=1e-7)
    with pytest.raises(ValueError, match="readout.span"):
        Readout(span="peak")
    with pytest.raises(ValueError, match="attention_ratio"):
        Readout(attention_ratio=0.0)


def test_the_readout_is_honoured_by_predict_spans_and_evaluate(tmp_path: Path) -> None:
    from zeroground.model import attention_spans
    from zeroground.train.evaluate import evaluate

    torch.manual_seed(0)
    cfg = ModelConfig(video_dim=8, num_segments=8, vocab_size=7, embed_dim=8, query_gru_hidden=8,
                      video_gru_hidden=8, hidden=8, fusion_layers=1, nonlocal_layers=1, nonlocal_heads=2,
                      dropout=0.0)
    model = GroundingModel(cfg).eval()
    assert model.readout == Readout(span="regression")  # the reference's behaviour by default
    model.readout = Readout(span="attention")
    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, "open": 4, "door": 5, "sit": 6}
    feats = np.random.default_rng(0).normal(size=(12, 8)).astype(np.float32)
    queries = [["open", "door"], ["sit"]]
    pred = predict_spans(model, cfg, vocab, feats, queries)
    expected = attention_spans(torch.from_numpy(pred.attention), torch.from_numpy(pred.video_mask), 1 / 3)
    np.testing.assert_allclose(pred.spans, expected.numpy(), atol=1e-6)
    model.readout = Readout(span="regression")
    assert not np.allclose(predict_spans(model, cfg, vocab, feats, queries).spans, pred.spans)
    model.readout = Readout(span="attention")

    # through a model directory (metadata.readout) and ``zeroground evaluate``
    save_model_dir(tmp_path / "model", model, cfg, vocab)
    assert load_model_dir(tmp_path / "model")[0].readout == Readout(span="attention")
    (tmp_path / "feats").mkdir()
    np.save(tmp_path / "feats" / "v0.npy", feats)
    ann = tmp_path / "test.json"
    ann.write_text(json.dumps([{"vid": "v0", "duration": 12.0, "timestamp": [0.1, 0.5], "tokens": q} for q in queries]))
    evaluate(tmp_path / "model", tmp_path / "feats", ann, tmp_path / "eval", format="psvl")
    records = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([r["pred"][0] for r in records], pred.spans * 12.0, atol=1e-4)


def _reference_tiou(p, g) -> float:
    """SPEC §5, as the reference computes it: on the spans as given, nothing clamped or reordered."""
    inter = min(p[1], g[1]) - max(p[0], g[0])
    union = max(p[1], g[1]) - min(p[0], g[0])
    if union == 0:
        return 1.0 if inter > 0 else 0.0
    return max(0.0, inter) / union


@pytest.mark.parametrize("span", [(0.8, 0.3), (0.45, 1.4), (1.2, 1.5)], ids=["start>end", "end>1", "both>1"])
def test_evaluate_writes_spans_as_predicted_and_scores_them_as_the_reference(tmp_path: Path, span) -> None:
    from zeroground.train.evaluate import evaluate

    cfg = ModelConfig(video_dim=8, num_segments=8, vocab_size=7, embed_dim=8, query_gru_hidden=8,
                      video_gru_hidden=8, hidden=8, fusion_layers=1, nonlocal_layers=1, nonlocal_heads=2,
                      dropout=0.0)  # regression read-out: the head's (start, end) as they come
    torch.manual_seed(0)
    model = GroundingModel(cfg).eval()
    head = model.loc_regressor_two_stage.MLP_reg[2]  # Linear(hidden, 2) before the final ReLU
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor(span))
    vocab = {"<PAD>": 0, "<UNK>": 1, "<S>": 2, "<E>": 3, "open": 4, "door": 5, "sit": 6}
    save_model_dir(tmp_path / "model", model, cfg, vocab)
    (tmp_path / "feats").mkdir()
    rng = np.random.default_rng(0)
    gts = [[0.1, 0.5], [0.4, 0.9], [0.0, 1.0], [0.5, 0.7], [0.9, 1.0]]
    items = []
    for i, gt in enumerate(gts):
        np.save(tmp_path / "feats" / f"v{i}.npy", rng.standard_normal((12, 8)).astype(np.float32))
        items.append({"vid": f"v{i}", "duration": 10.0 + i, "timestamp": gt, "tokens": ["open", "door"]})
    ann = tmp_path / "test.json"
    ann.write_text(json.dumps(items))
    res = runner.invoke(app, ["evaluate", "-m", str(tmp_path / "model"), "-f", str(tmp_path / "feats"),
                              "-a", str(ann), "-o", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    want = np.float32(span).astype(np.float64)  # the network's float32 output
    for item, rec in zip(items, records):
        np.testing.assert_allclose(rec["pred"], [want * item["duration"]], rtol=1e-12)  # not clamped or reordered
    tious = [_reference_tiou(want, gt) for gt in gts]
    if span[0] > span[1]:
        assert tious == [0.0] * len(gts)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["mIoU"] == pytest.approx(np.mean(tious), abs=1e-9)
    for m in (0.1, 0.3, 0.5, 0.7):
        assert metrics[f"R1@{m}"] == pytest.approx(np.mean([t >= m for t in tious]), abs=1e-12)
    assert evaluate(tmp_path / "model", tmp_path / "feats", ann, tmp_path / "eval2") == metrics
