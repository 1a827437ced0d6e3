"""Training options for noisy pseudo-labels: weight averaging over the last epochs,
inserted unknown words, and seed ensembles read out as one model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.train.test_loop import make_world, tiny_config
from zeroground.model import ModelDirError, Readout, attention_spans, load_model_dir, predict_spans
from zeroground.model.ensemble import EnsembleModel, save_ensemble_dir
from zeroground.train.loop import TrainingInterrupted, insert_unknown_words, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path]:
    return make_world(tmp_path_factory.mktemp("world"), videos=12, seed=3)


@pytest.fixture(scope="module")
def two_models(world, tmp_path_factory) -> list[Path]:
    feats, ann = world
    root = tmp_path_factory.mktemp("members")
    return [train(tiny_config(feats, ann, **{"train.epochs": 2, "train.plot": False, "train.seed": s,
                                             "readout.span": "attention"}),
                  root / f"run{s}", progress=False, log=None) for s in (0, 1)]


# --------------------------------------------------------------------------- weight averaging


def _checkpoint_weights(run: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in torch.load(run / "checkpoint.pt", weights_only=True)["model"].items()}


def test_average_last_epochs_saves_the_mean_of_the_last_epochs_weights(world, tmp_path: Path) -> None:
    feats, ann = world
    cfg = lambda epochs: tiny_config(feats, ann, **{"train.epochs": epochs, "train.plot": False})  # noqa: E731
    # The weights after epochs 3 and 4 of a plain run: a 3-epoch run and a 4-epoch run replay the same
    # steps (each epoch's shuffle comes from (seed, epoch)), so their final checkpoints are exactly those.
    train(cfg(3), tmp_path / "e3", progress=False, log=None)
    train(cfg(4), tmp_path / "e4", progress=False, log=None)
    w3, w4 = _checkpoint_weights(tmp_path / "e3"), _checkpoint_weights(tmp_path / "e4")
    avg_cfg = cfg(4)
    avg_cfg.train.average_last_epochs = 2
    averaged = load_file(str(train(avg_cfg, tmp_path / "avg", progress=False, log=None) / "weights.safetensors"))
    assert set(averaged) == set(w4)
    for k, v in averaged.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, ((w3[k].double() + w4[k].double()) / 2).float(), rtol=0, atol=1e-6)
        else:  # BatchNorm's batch counter: the latest
            assert torch.equal(v, w4[k])
    # the checkpoint keeps the last epoch's own weights (training continues from them on resume)
    assert all(torch.equal(_checkpoint_weights(tmp_path / "avg")[k], w4[k]) for k in w4)


def test_averaged_run_killed_inside_the_window_resumes_to_the_same_weights(world, tmp_path: Path) -> None:
    feats, ann = world
    cfg = tiny_config(feats, ann, **{"train.epochs": 4, "train.plot": False, "train.average_last_epochs": 3})
    straight = train(cfg, tmp_path / "straight", progress=False, log=None)
    steps_per_epoch = 36 // 16  # 12 videos x 3 moments, batch 16, drop_last
    with pytest.raises(TrainingInterrupted):  # inside epoch 3: one epoch already summed into the average
        train(cfg, tmp_path / "killed", progress=False, log=None, stop_after_steps=2 * steps_per_epoch + 1)
    state = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert state["weight_average"]["count"] == 1
    resumed = train(cfg, tmp_path / "killed", resume=True, progress=False, log=None)
    a, b = load_file(str(straight / "weights.safetensors")), load_file(str(resumed / "weights.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- inserted unknown words


def test_insert_unknown_words_keeps_the_words_in_order_and_adds_unk() -> None:
    ids = torch.tensor([[5, 6, 0, 0, 0, 0], [7, 8, 9, 10, 11, 12], [4, 0, 0, 0, 0, 0]])
    out = insert_unknown_words(ids, 1.0, torch.Generator().manual_seed(0))
    assert out.shape == ids.shape and not torch.equal(out, ids)
    for row_in, row_out in zip(ids.tolist(), out.tolist()):
        words_in = [t for t in row_in if t]
        words_out = [t for t in row_out if t]
        assert [t for t in words_out if t != 1] == words_in  # the query's own words, same order
        assert words_out.count(1) == min(2, len(row_in) - len(words_in))  # two <UNK>, where there is room
        assert row_out[len(words_out):] == [0] * (len(row_out) - len(words_out))  # padding stays at the end
    assert torch.equal(insert_unknown_words(ids, 0.0, torch.Generator().manual_seed(0)), ids)


def test_insert_unknown_words_rate() -> None:
    ids = torch.tensor([[5, 6] + [0] * 6] * 4000)
    out = insert_unknown_words(ids, 0.3, torch.Generator().manual_seed(1))
    per_row = (out == 1).sum(1).float()
    assert abs(float(per_row.mean()) - 0.6) < 0.04  # two chances of 0.3 each
    assert abs(float((per_row == 2).float().mean()) - 0.09) < 0.02


def test_word_insertion_is_a_train_option(world, tmp_path: Path) -> None:
    feats, ann = world
    base = dict(**{"train.epochs": 1, "train.plot": False})
    plain = train(tiny_config(feats, ann, **base), tmp_path / "plain", progress=False, log=None)
    inserted = train(tiny_config(feats, ann, **base, **{"train.word_insertion": 0.5}), tmp_path / "ins",
                     progress=False, log=None)
    a, b = load_file(str(plain / "weights.safetensors")), load_file(str(inserted / "weights.safetensors"))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert "word_insertion: 0.5" in (tmp_path / "ins" / "config.yaml").read_text()


# --------------------------------------------------------------------------- ensembles


def test_ensemble_averages_the_members_attention_and_reads_the_span_from_it(world, two_models, tmp_path) -> None:
    feats, _ = world
    ens_dir = save_ensemble_dir(tmp_path / "ens", two_models)
    model, cfg, vocab = load_model_dir(ens_dir)
    assert isinstance(model, EnsembleModel) and len(model.members) == 2
    video = np.load(feats / "v001.npy")
    queries = [["open", "door"], ["sit", "chair"], ["walk"]]
    members = [predict_spans(*load_model_dir(m), video, queries) for m in two_models]
    mean_att = (members[0].attention + members[1].attention) / 2
    got = predict_spans(model, cfg, vocab, video, queries)
    np.testing.assert_allclose(got.attention, mean_att, atol=1e-6)
    assert model.readout == Readout(span="attention")  # the members' training config, via metadata.readout
    expected = attention_spans(torch.from_numpy(mean_att).double(), torch.from_numpy(got.video_mask),
                               model.readout.attention_ratio).numpy()
    np.testing.assert_allclose(got.spans, expected, atol=1e-6)
    # one video per query (no shared encoding) gives the same
    per_query = predict_spans(model, cfg, vocab, [video] * 3, queries)
    np.testing.assert_allclose(per_query.attention, got.attention, atol=1e-6)
    # the regression read-out averages the members' heads
    model.readout = Readout(span="regression")
    reg = predict_spans(model, cfg, vocab, video, queries)
    for m in members:
        assert m.spans.shape == reg.spans.shape
    m_reg = []
    for m in two_models:
        mm, mc, mv = load_model_dir(m)
        mm.readout = Readout(span="regression")
        m_reg.append(predict_spans(mm, mc, mv, video, queries).spans)
    np.testing.assert_allclose(reg.spans, (m_reg[0] + m_reg[1]) / 2, atol=1e-6)


def test_ensemble_directory_round_trip_and_metadata(two_models, tmp_path) -> None:
    ens_dir = save_ensemble_dir(tmp_path / "ens", two_models)
    assert sorted(p.name for p in ens_dir.iterdir()) == ["config.yaml", "member_0", "member_1", "vocab.json"]
    assert json.loads((ens_dir / "vocab.json").read_text()) == json.loads((two_models[0] / "vocab.json").read_text())
    import yaml

    meta = yaml.safe_load((ens_dir / "config.yaml").read_text())["metadata"]
    assert meta["ensemble_members"] == ["member_0", "member_1"] and meta["member_seeds"] == [0, 1]
    a = load_file(str(ens_dir / "member_1" / "weights.safetensors"))
    b = load_file(str(two_models[1] / "weights.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # an ensemble cannot be a member, and a lost member is named
    with pytest.raises(ModelDirError, match="itself an ensemble"):
        save_ensemble_dir(tmp_path / "nested", [ens_dir, two_models[0]])
    shutil.rmtree(ens_dir / "member_1")
    with pytest.raises(ModelDirError, match="member_1"):
        load_model_dir(ens_dir)


def test_ensemble_refuses_members_of_different_recipes(world, two_models, tmp_path) -> None:
    feats, ann = world
    bigger = train(tiny_config(feats, ann, **{"train.epochs": 1, "train.plot": False, "model.hidden": 16}),
                   tmp_path / "h16", progress=False, log=None)
    with pytest.raises(ModelDirError, match=r"differs in \['hidden'\]"):
        save_ensemble_dir(tmp_path / "ens", [two_models[0], bigger])
    assert not (tmp_path / "ens").exists()


def test_members_with_different_vocabularies_each_read_their_own_word_ids(world, two_models, tmp_path) -> None:
    """Bagging: a member trained on another pseudo-label draw knows other words, with other ids."""
    feats, ann = world
    other_words = tmp_path / "ann2.json"
    items = json.loads(ann.read_text())
    for i, it in enumerate(items):
        it["tokens"] = [t.upper() if i % 2 else t for t in it["tokens"]] + (["extra"] if i % 3 == 0 else [])
    other_words.write_text(json.dumps(items))
    other = train(tiny_config(feats, other_words, **{"train.epochs": 2, "train.plot": False}), tmp_path / "ow",
                  progress=False, log=None)
    own = [json.loads((m / "vocab.json").read_text()) for m in (two_models[0], other)]
    assert own[0] != own[1]
    ens_dir = save_ensemble_dir(tmp_path / "ens", [two_models[0], other])
    vocab = json.loads((ens_dir / "vocab.json").read_text())
    assert set(vocab) == set(own[0]) | set(own[1])
    assert [vocab[s] for s in ("<PAD>", "<UNK>", "<S>", "<E>")] == [0, 1, 2, 3]
    assert sorted(vocab.values()) == list(range(len(vocab)))
    model, cfg, ens_vocab = load_model_dir(ens_dir)
    assert cfg.vocab_size == len(vocab)
    video = np.load(feats / "v001.npy")
    queries = [["open", "door"], ["OPEN", "DOOR", "extra"], ["open", "DOOR", "never-seen"]]
    alone = [predict_spans(*load_model_dir(m), video, queries).attention for m in (two_models[0], other)]
    got = predict_spans(model, cfg, ens_vocab, video, queries)
    np.testing.assert_allclose(got.attention, (alone[0] + alone[1]) / 2, atol=1e-6)


def test_cli_ensemble(two_models, tmp_path) -> None:
    from zeroground.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["ensemble", *map(str, two_models), "--out", str(tmp_path / "ens")])
    assert res.exit_code == 0, res.output
    assert "ensemble of 2 models" in res.output
    model, _, _ = load_model_dir(tmp_path / "ens")
    assert isinstance(model, EnsembleModel)
    res = runner.invoke(app, ["ensemble", str(tmp_path / "missing"), "--out", str(tmp_path / "e2")])
    assert res.exit_code == 2 and "not a model directory" in res.output


@pytest.mark.parametrize("key, value, message", [
    ("train.word_insertion", 1.5, r"train.word_insertion must be in \[0, 1\], found 1.5"),
    ("train.average_last_epochs", 7, r"between 0 and train.epochs \(2\), found 7"),
    ("train.average_last_epochs", -1, r"found -1"),
])
def test_bad_robustness_options_are_clear_errors(world, tmp_path: Path, key, value, message) -> None:
    from zeroground.train.data import TrainingDataError

    feats, ann = world
    with pytest.raises(TrainingDataError, match=message):
        train(tiny_config(feats, ann, **{"train.epochs": 2, key: value}), tmp_path / "run", progress=False, log=None)
    assert not (tmp_path / "run").exists()
