"""zeroground's PSVL extensions: sampled CLIP verbs and nouns, action-evidence event
selection, word dropout and word vectors from a text encoder. Every knob is off by
default (the paper); these tests check each against values computed by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from zeroground.model.word_vectors import WordVectorError, init_word_vectors, word_vector_matrix
from zeroground.pseudo.label import PseudoLabelError, pseudo_label, select_events
from zeroground.pseudo.psvl import (
    PSVLConfig,
    VerbStats,
    action_evidence,
    choose_clip_verbs,
    clip_verb_scores,
    event_noun_scores,
    sample_nouns,
)
from zeroground.train.config import OptimConfig
from zeroground.train.loop import drop_words

STATS = VerbStats(pairs={"door": {"open": 2, "close": 1}}, verb_totals={"open": 2, "close": 1})


def test_paper_defaults_are_unchanged() -> None:
    cfg = PSVLConfig()
    assert (cfg.verb_source, cfg.noun_sampling, cfg.keep_events, cfg.truncation_ratio) == ("corpus", "top", 0, 0.0)
    assert OptimConfig().word_dropout == 0.0


def test_clip_verb_scores_are_the_phrase_cosines() -> None:
    table = {"a person opens the door": [1.0, 0.0], "a person closes the door": [0.6, 0.8]}
    frames = np.array([[3.0, 4.0], [3.0, 4.0]])  # unit direction (0.6, 0.8)
    scores = clip_verb_scores(STATS, ["door"], frames, lambda ps: np.array([table[p] for p in ps]))
    assert list(scores) == ["open", "close"]  # corpus order: P(open|door) = 2/3 first
    assert scores["open"] == pytest.approx(0.6) and scores["close"] == pytest.approx(1.0)


def test_sampled_clip_verbs_follow_the_softmax_of_their_cosines() -> None:
    scores = {"open": 0.50, "pull": 0.49, "close": 0.40}
    rng = np.random.default_rng(0)
    draws = [choose_clip_verbs(scores, 1, sampling="sample", temperature=100.0, rng=rng)[0] for _ in range(6000)]
    z = {v: math.exp(100 * s) for v, s in scores.items()}
    for v in scores:  # softmax(100 x cos): 0.731, 0.269, 0.00012
        assert draws.count(v) / len(draws) == pytest.approx(z[v] / sum(z.values()), abs=0.02)
    assert choose_clip_verbs(scores, 2, sampling="top") == ["open", "pull"]
    two = choose_clip_verbs(scores, 2, sampling="sample", rng=rng)
    assert len(set(two)) == 2


def test_action_evidence_is_best_phrase_minus_neutral_prompt() -> None:
    frames = np.array([[1.0, 0.0], [0.0, 1.0]])  # event embedding (1, 1) / sqrt(2)
    ev = action_evidence({"open": 0.9, "close": 0.2}, frames, neutral=np.array([2.0, 0.0]))
    assert ev == pytest.approx(0.9 - 1 / math.sqrt(2))
    assert action_evidence({}, frames, np.array([1.0, 0.0])) == float("-inf")


def test_select_events_keeps_the_k_with_most_evidence_in_proposal_order() -> None:
    evidence = [0.5, 0.9, 0.3, 0.1]
    assert select_events(evidence, 2) == [0, 1]
    assert select_events(evidence, 10) == [0, 1, 2, 3]
    assert select_events([0.2, 0.7, 0.7, 0.1], 2) == [1, 2]
    assert select_events([0.7, 0.2, 0.7, 0.7], 2) == [0, 2]  # ties: the earlier proposals
    assert select_events([], 3) == []


def test_nouns_are_drawn_in_proportion_to_their_summed_scores() -> None:
    frames = [[("mug", 0.6), ("cup", 0.4)], [("mug", 0.6), ("cup", 0.4)], [("ball", 0.2)]]
    scored = event_noun_scores(frames, (0.0, 1.0), min_score=0.3)
    assert scored == [("mug", pytest.approx(1.2)), ("cup", pytest.approx(0.8))]  # ball is under min_score
    rng = np.random.default_rng(1)
    draws = [sample_nouns(scored, 1, rng)[0] for _ in range(5000)]
    assert draws.count("cup") / len(draws) == pytest.approx(0.4, abs=0.02)
    assert sample_nouns(scored, 5, rng) == ["mug", "cup"]  # every noun, best first


class AxisClip:
    """Nouns -> their axis; "a person <verb> the <noun>" adds an axis per verb; "a person" -> axis 4."""

    AXES = {"cup": 0, "door": 1, "holds": 2, "opens": 3, "person": 4}

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 5), np.float32)
        for i, t in enumerate(texts):
            words = t.rstrip(".").split()
            if t == "a person":
                out[i, 4] = 1.0
                continue
            out[i, self.AXES[words[-1]]] = 1.0
            if len(words) > 2 and words[2] in self.AXES:
                out[i, self.AXES[words[2]]] = 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_keep_events_keeps_the_action_and_drops_the_idle_stretch(tmp_path: Path) -> None:
    feats = tmp_path / "feats"
    feats.mkdir()
    x = np.zeros((30, 5), np.float32)
    x[:10, 0], x[:10, 2] = 1.0, 0.8   # someone holds the cup
    x[10:20, 4] = 1.0                  # a person, doing nothing
    x[20:, 1], x[20:, 3] = 1.0, 0.8    # someone opens the door
    np.save(feats / "v.npy", x)
    (feats / "attrs.json").write_text(json.dumps({"fps": 1.0}))
    stats = VerbStats(pairs={"cup": {"hold": 1}, "door": {"open": 1}, "person": {"hold": 1}},
                      verb_totals={"hold": 2, "open": 1})
    knobs = dict(clip_model=AxisClip(), verb_stats=stats, nouns=["cup", "door", "person"], num_clusters=3,
                 max_atoms=1, min_len=0.2, max_len=0.5, num_nouns=1, num_verbs=1, verb_source="clip",
                 verb_sampling="top", queries_per_event=1)
    pseudo_label("psvl", feats, tmp_path / "all.json", **knobs)
    assert len(json.loads((tmp_path / "all.json").read_text())) == 3
    pseudo_label("psvl", feats, tmp_path / "kept.json", keep_events=2, **knobs)
    kept = {tuple(round(v, 3) for v in it["timestamp"]): it["tokens"]
            for it in json.loads((tmp_path / "kept.json").read_text())}
    assert kept == {(0.0, 0.333): ["hold", "cup"], (0.667, 1.0): ["open", "door"]}
    with pytest.raises(PseudoLabelError, match="verb_source"):
        pseudo_label("psvl", feats, tmp_path / "x.json", **{**knobs, "verb_source": "corpus"}, keep_events=2)
    with pytest.raises(PseudoLabelError, match="noun_sampling"):
        pseudo_label("psvl", feats, tmp_path / "x.json", **knobs, noun_sampling="best")


def test_truncation_ratio_skips_a_proposal_whose_action_goes_on_after_it(tmp_path: Path) -> None:
    feats = tmp_path / "feats"
    feats.mkdir()
    x = np.zeros((30, 5), np.float32)
    x[:10, 0], x[:10, 2] = 1.0, 0.5    # the start of holding the cup: weaker evidence
    x[10:20, 0], x[10:20, 2] = 1.0, 1.0  # holding it for real
    x[20:, 1], x[20:, 3] = 1.0, 0.8    # someone opens the door
    np.save(feats / "v.npy", x)
    (feats / "attrs.json").write_text(json.dumps({"fps": 1.0}))
    stats = VerbStats(pairs={"cup": {"hold": 1}, "door": {"open": 1}}, verb_totals={"hold": 1, "open": 1})
    knobs = dict(clip_model=AxisClip(), verb_stats=stats, nouns=["cup", "door"], num_clusters=3, max_atoms=1,
                 min_len=0.2, max_len=0.5, num_nouns=1, num_verbs=1, verb_source="clip", verb_sampling="top",
                 queries_per_event=1, keep_events=3, aftermath_s=2.0)

    def kept(name: str, **extra: float) -> set[tuple[float, float]]:
        pseudo_label("psvl", feats, tmp_path / name, **knobs, **extra)
        return {tuple(round(v, 3) for v in it["timestamp"]) for it in json.loads((tmp_path / name).read_text())}

    assert kept("all.json") == {(0.0, 0.333), (0.333, 0.667), (0.667, 1.0)}
    # By hand: the first span's evidence is cos((1, 0, .5), hold+cup) - cos(., "a person") = 1.5 / (1.118 x 1.414)
    # = 0.949; the two frames after it score cos((1, 0, 1), hold+cup) = 1.0 > 0.75 x 0.949, so it is a truncated
    # event. The second span's aftermath (the door) scores 0 for "hold the cup"; the last has none.
    assert kept("trunc.json", truncation_ratio=0.75) == {(0.333, 0.667), (0.667, 1.0)}
    assert kept("loose.json", truncation_ratio=1.1) == {(0.0, 0.333), (0.333, 0.667), (0.667, 1.0)}  # 1.0 < 1.04
    with pytest.raises(PseudoLabelError, match="truncation_ratio"):
        kept("x.json", truncation_ratio=-0.5)
    with pytest.raises(PseudoLabelError, match="keep_events"):
        pseudo_label("psvl", feats, tmp_path / "x.json", **{**knobs, "keep_events": 0}, truncation_ratio=0.75)


def test_word_dropout_replaces_only_real_words_at_the_given_rate() -> None:
    ids = torch.tensor([[5, 6, 1, 0, 0]] * 4000)
    out = drop_words(ids, 0.25, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, 2:], ids[:, 2:])  # <UNK> and padding untouched
    dropped = (out[:, :2] == 1).float().mean().item()
    assert dropped == pytest.approx(0.25, abs=0.01)
    assert torch.equal(out, drop_words(ids, 0.25, torch.Generator().manual_seed(0)))  # reproducible
    assert torch.equal(ids, torch.tensor([[5, 6, 1, 0, 0]] * 4000))  # input not modified


def test_word_vectors_are_the_scaled_text_embeddings_and_can_be_frozen() -> None:
    vocab = {"<PAD>": 0, "<UNK>": 1, "<S>": 2, "<E>": 3, "cup": 4, "mug": 5}

    def encode(words: list[str]) -> np.ndarray:
        table = {"cup": [3.0, 4.0, 0.0], "mug": [0.0, 0.0, 2.0]}
        return np.array([table[w] for w in words])

    m = word_vector_matrix(vocab, encode, 3)
    np.testing.assert_allclose(m[4], np.array([0.6, 0.8, 0.0]) * math.sqrt(3), rtol=1e-6)
    np.testing.assert_allclose(m[5], np.array([0.0, 0.0, 1.0]) * math.sqrt(3), rtol=1e-6)
    emb = torch.nn.Embedding(6, 3)
    before = emb.weight[:4].detach().clone()
    assert init_word_vectors(emb, vocab, encode, freeze=True) == 2
    torch.testing.assert_close(emb.weight[4:].detach(), torch.from_numpy(m[4:]))
    torch.testing.assert_close(emb.weight[:4].detach(), before)  # specials keep their init
    assert not emb.weight.requires_grad
    with pytest.raises(WordVectorError, match="embed_dim to 3"):
        init_word_vectors(torch.nn.Embedding(6, 4), vocab, encode)


