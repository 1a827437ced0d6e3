"""PSVL pseudo queries: verb statistics by hand, nouns from detections or CLIP tagging, pseudo_label psvl."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from zeroground.cli import app
from zeroground.pseudo.label import PseudoLabelError, pseudo_label
from zeroground.pseudo.psvl import (
    PSVLError,
    VerbStats,
    clip_rank_verbs,
    clip_tag_frames,
    compute_verb_stats,
    corpus_nouns,
    event_nouns,
    pick_verbs,
    read_detections,
    third_person,
    verb_phrase,
    verb_scores,
)

CORPUS = [
    "the man opens the door.",
    "a woman opens the window.",
    "the man closes the door.",
    "someone sits on the chair.",
    "the man holds a cup.",
    "the woman drinks from the cup.",
    "the man opens the box.",
]


@pytest.fixture(scope="session")
def corpus_stats() -> VerbStats:
    return compute_verb_stats(CORPUS)


def test_verb_stats_by_hand(corpus_stats: VerbStats) -> None:
    # subject and object nouns pair with their verb; "on the chair"/"from the cup" via the preposition
    assert corpus_stats.pairs == {
        "man": {"open": 2, "close": 1, "hold": 1},
        "door": {"open": 1, "close": 1},
        "woman": {"open": 1, "drink": 1},
        "window": {"open": 1},
        "chair": {"sit": 1},
        "cup": {"hold": 1, "drink": 1},
        "box": {"open": 1},
    }
    assert corpus_stats.verb_totals == {"open": 6, "close": 2, "sit": 1, "hold": 2, "drink": 2}
    assert corpus_stats.sentences == 7


def test_verb_scores_and_top_pick(corpus_stats: VerbStats) -> None:
    # P(v|door) = {open .5, close .5}; P(v|man) = {open .5, close .25, hold .25}
    scores = verb_scores(corpus_stats, ["door", "man", "zebra"])
    assert scores == pytest.approx({"open": 1.0, "close": 0.75, "hold": 0.25})
    assert pick_verbs(corpus_stats, ["door", "man"], 3, sampling="top") == ["open", "close", "hold"]
    # unknown nouns fall back to corpus-wide verb frequency
    assert pick_verbs(corpus_stats, ["zebra"], 2, sampling="top") == ["open", "close"]


def test_verb_sampling_follows_scores(corpus_stats: VerbStats) -> None:
    rng = np.random.default_rng(0)
    draws = [pick_verbs(corpus_stats, ["door"], 1, rng=rng)[0] for _ in range(400)]
    assert set(draws) == {"open", "close"}
    assert 0.4 < draws.count("open") / 400 < 0.6
    two = pick_verbs(corpus_stats, ["door", "man"], 3, rng=rng)
    assert sorted(two) == ["close", "hold", "open"]  # without replacement: all three


def test_verb_stats_save_load_and_corpus_file(tmp_path: Path, corpus_stats: VerbStats) -> None:
    corpus_stats.save(tmp_path / "verbs.json")
    assert VerbStats.load(tmp_path / "verbs.json") == corpus_stats
    f = tmp_path / "corpus.txt"
    f.write_text("\n".join(CORPUS) + "\n\n")
    assert compute_verb_stats(f) == corpus_stats
    with pytest.raises(PSVLError, match="corpus file not found"):
        compute_verb_stats(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(PSVLError, match="corpus is empty"):
        compute_verb_stats(tmp_path / "empty.txt")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(PSVLError, match="not a verb statistics JSON"):
        VerbStats.load(tmp_path / "bad.json")


def test_event_nouns_rank_by_summed_score() -> None:
    frames = [
        [("person", 0.9), ("cup", 0.5)],
        [("person", 0.8), ("door", 0.95), ("cup", 0.2)],  # cup 0.2 is under min_score
        [("door", 0.9)],
        [("table", 0.99)],
    ]
    # span [0, 0.75) covers frames 0..2 (centres .125, .375, .625)
    assert event_nouns(frames, (0.0, 0.75), num_nouns=5, min_score=0.3) == ["door", "person", "cup"]
    assert event_nouns(frames, (0.0, 0.75), num_nouns=2, min_score=0.3) == ["door", "person"]
    # a span between frame centres still gets the nearest frame's labels
    assert event_nouns(frames, (0.76, 0.8)) == ["table"]


def test_read_detections_validates(tmp_path: Path) -> None:
    good = {"v1": [[["Person", 0.9], ["cup", 1]], []]}
    (tmp_path / "d.json").write_text(json.dumps(good))
    assert read_detections(tmp_path / "d.json") == {"v1": [[("person", 0.9), ("cup", 1.0)], []]}
    (tmp_path / "bad.json").write_text(json.dumps({"v1": [[["cup"]]]}))
    with pytest.raises(PSVLError, match=r"video 'v1' frame 0: expected \[label, score\]"):
        read_detections(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(PSVLError, match="expected an object mapping video id"):
        read_detections(tmp_path / "list.json")
    with pytest.raises(PSVLError, match="detections file not found"):
        read_detections(tmp_path / "missing.json")


def test_clip_tagging_picks_nearest_nouns() -> None:
    nouns = ["cup", "door", "lamp"]
    emb = np.eye(3, 4)  # noun i along axis i
    frames = np.array([[1.0, 0.2, 0, 0], [0, 0.1, 1.0, 0]])
    tags = clip_tag_frames(frames, emb, nouns, top_k=2)
    assert [t[0][0] for t in tags] == ["cup", "lamp"]
    assert [t[1][0] for t in tags] == ["door", "door"]
    assert all(abs(sum(s for _, s in row) - 1.0) < 0.05 for row in tags)  # softmax(100 cos) is peaked
    with pytest.raises(PSVLError, match="same D"):
        clip_tag_frames(np.ones((2, 5)), emb, nouns)


class FakeClip:
    """Stands in for zeroground.features.clip.load_clip(...): prompt i -> axis of its noun."""

    def __init__(self, nouns: list[str], dim: int) -> None:
        self.nouns, self.dim = nouns, dim

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            out[i, next(j for j, n in enumerate(self.nouns) if f" {n}." in t or t == n)] = 1.0
        return out


def _store(folder: Path, second_video: bool = False) -> None:
    folder.mkdir()
    # video "v": frames 0-9 look like a cup (axis 0), 10-19 like a door (axis 1)
    x = np.zeros((20, 4), np.float32)
    x[:10, 0] = 1
    x[10:, 1] = 1
    x += 0.05 * np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    np.save(folder / "v.npy", x)
    if second_video:  # "w": the same two halves in the other order
        np.save(folder / "w.npy", x[::-1].copy())
    (folder / "attrs.json").write_text(json.dumps({"fps": 2.0}))


def test_pseudo_label_psvl_with_clip_tagging(tmp_path: Path, corpus_stats: VerbStats) -> None:
    _store(tmp_path / "feats")
    nouns = ["cup", "door", "lamp", "box"]
    out = tmp_path / "pseudo.json"
    pseudo_label("psvl", tmp_path / "feats", out, clip_model=FakeClip(nouns, 4), verb_stats=corpus_stats,
                 nouns=nouns, num_clusters=2, verb_sampling="top", num_nouns=1, num_verbs=2)
    items = json.loads(out.read_text())
    by_span = {tuple(round(v, 3) for v in it["timestamp"]): it["tokens"] for it in items}
    assert by_span[(0.0, 0.5)] == ["drink", "hold", "cup"]
    assert by_span[(0.5, 1.0)] == ["close", "open", "door"]
    assert all(it["duration"] == 10.0 for it in items)  # 20 frames at 2 fps


def test_corpus_nouns_vocabulary(corpus_stats: VerbStats) -> None:
    # pair counts: man 4, cup 2, door 2, woman 2, box 1, chair 1, window 1
    assert corpus_nouns(corpus_stats) == ["man", "cup", "door", "woman"]
    assert corpus_nouns(corpus_stats, max_nouns=2) == ["man", "cup"]
    assert corpus_nouns(corpus_stats, min_count=10) == ["man", "cup", "door", "woman", "box", "chair", "window"]
    # a "noun" used more often as a verb is dropped
    odd = VerbStats(pairs={"open": {"pull": 1}, "door": {"open": 2}}, verb_totals={"open": 2, "pull": 1})
    assert corpus_nouns(odd, min_count=1) == ["door"]


def test_pseudo_label_psvl_tags_with_corpus_nouns_by_default(tmp_path: Path, corpus_stats: VerbStats) -> None:
    _store(tmp_path / "feats", second_video=True)
    out = tmp_path / "pseudo.json"
    # vocabulary = man, cup, door, woman (axes 0..3): in "v" frames 0-9 are "man", 10-19 "cup"
    pseudo_label("psvl", tmp_path / "feats", out, clip_model=FakeClip(["man", "cup", "door", "woman"], 4),
                 verb_stats=corpus_stats, num_clusters=2, verb_sampling="top", num_nouns=1, num_verbs=1)
    items = json.loads(out.read_text())
    for vid, first in (("v", ("open", "man")), ("w", ("drink", "cup"))):
        tokens = {tuple(it["timestamp"]): tuple(it["tokens"]) for it in items if it["vid"] == vid}
        assert tokens[(0.0, 0.5)] == first
        assert set(tokens.values()) == {("open", "man"), ("drink", "cup")}


def test_pseudo_label_psvl_with_detections_file_via_cli(tmp_path: Path) -> None:
    _store(tmp_path / "feats")
    dets = {"v": [[["cup", 0.9]]] * 5 + [[["door", 0.8], ["person", 0.6]]] * 5}  # 10 detection frames
    (tmp_path / "det.json").write_text(json.dumps(dets))
    (tmp_path / "corpus.txt").write_text("\n".join(CORPUS))
    out = tmp_path / "p.json"
    res = CliRunner().invoke(app, ["pseudo-label", "--method", "psvl", "--features", str(tmp_path / "feats"),
                                   "--detections", str(tmp_path / "det.json"), "--corpus", str(tmp_path / "corpus.txt"),
                                   "--out", str(out), "--num-clusters", "2", "--queries-per-event", "2"])
    assert res.exit_code == 0, res.output
    items = json.loads(out.read_text())
    second = [it for it in items if it["timestamp"][0] == 0.5]
    # door/person know only two verbs (open, close), so both draws are the same query: kept once
    assert len(second) == 1
    assert second[0]["tokens"][-2:] == ["door", "person"]
    assert set(second[0]["tokens"][:-2]) == {"open", "close"}
    first = [it for it in items if it["timestamp"][1] == 0.5]
    assert len(first) == 1 and first[0]["tokens"] in (["hold", "drink", "cup"], ["drink", "hold", "cup"])
    # the report runs on it and finds full coverage of the two planted halves
    gt = [{"vid": "v", "duration": 10.0, "timestamp": [0.0, 0.5], "sentence": "a person holds a cup."},
          {"vid": "v", "duration": 10.0, "timestamp": [0.5, 1.0], "sentence": "a person opens the door."}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    res = CliRunner().invoke(app, ["inspect-pseudo", str(out), "--annotations", str(tmp_path / "gt.json")])
    assert res.exit_code == 0, res.output
    assert "mean best tIoU 1.000" in res.output and ">=0.7: 100.0%" in res.output
    assert (tmp_path / "p.report.png").stat().st_size > 1000


def test_pseudo_label_psvl_errors(tmp_path: Path, corpus_stats: VerbStats) -> None:
    _store(tmp_path / "feats")
    with pytest.raises(PseudoLabelError, match="--detections FILE.json or --clip MODEL"):
        pseudo_label("psvl", tmp_path / "feats", tmp_path / "x.json", verb_stats=corpus_stats)
    with pytest.raises(PseudoLabelError, match="--corpus"):
        pseudo_label("psvl", tmp_path / "feats", tmp_path / "x.json", detections={"v": [[]]})
    with pytest.raises(PseudoLabelError, match=r"no entry for 1 video\(s\): \['v'\]"):
        pseudo_label("psvl", tmp_path / "feats", tmp_path / "x.json", detections={"w": [[]]}, verb_stats=corpus_stats)
    with pytest.raises(PseudoLabelError, match="D=4 but the CLIP model embeds in D=8"):
        pseudo_label("psvl", tmp_path / "feats", tmp_path / "x.json", clip_model=FakeClip(["cup"], 8),
                     nouns=["cup"], verb_stats=corpus_stats)
    res = CliRunner().invoke(app, ["pseudo-label", "--method", "psvl", "--features", str(tmp_path / "nope"),
                                   "--out", str(tmp_path / "x.json")])
    assert res.exit_code == 2 and "feature store not found" in res.output
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("method", sorted(__import__("zeroground.pseudo", fromlist=["x"]).PSEUDO_LABELERS))
def test_every_registered_labeler_round_trips(method: str, tmp_path: Path, corpus_stats: VerbStats) -> None:
    from zeroground.data.annotations import read_psvl_json

    _store(tmp_path / "feats")
    out = tmp_path / f"{method}.json"
    pseudo_label(method, tmp_path / "feats", out, detections={"v": [[("cup", 0.9)]] * 20}, verb_stats=corpus_stats)
    moments = read_psvl_json(out)
    assert moments and all(m.video == "v" and 0 <= m.start < m.end <= m.duration == 10.0 for m in moments)
    if method == "psvl":
        assert all(m.tokens and m.tokens[-1] == "cup" for m in moments)


def test_cli_help_lists_every_registered_method() -> None:
    from zeroground.cli import pseudo_cmds
    from zeroground.pseudo import PSEUDO_LABELERS

    assert pseudo_cmds._METHODS == ", ".join(PSEUDO_LABELERS)
    res = CliRunner().invoke(app, ["pseudo-label", "--help"])
    assert res.exit_code == 0 and "psvl, lfvmr" in res.output


# --------------------------------------------------------------------------- verbs from CLIP (extension)

HAND_STATS = VerbStats(pairs={"cup": {"hold": 1, "drink": 1}, "door": {"open": 1, "close": 1, "pull": 1}},
                       verb_totals={"hold": 1, "drink": 1, "open": 1, "close": 1, "pull": 1})


def test_verb_phrases_use_the_third_person() -> None:
    assert [third_person(v) for v in ("pick", "switch", "close", "carry", "play", "go")] == \
        ["picks", "switches", "closes", "carries", "plays", "goes"]
    assert verb_phrase("a person {verb_s} the {noun}", "pick", "cup") == "a person picks the cup"
    assert verb_phrase("{verb} {noun}", "pick", "cup") == "pick cup"


def test_clip_rank_verbs_puts_the_nearest_phrase_first() -> None:
    # phrase embeddings by hand; the event's frames average closest to "closes the door"
    table = {"a person opens the door": [1, 0, 0, 0], "a person closes the door": [0, 1, 0, 0],
             "a person pulls the door": [0, 0, 1, 0]}
    seen: list[list[str]] = []

    def encode(phrases: list[str]) -> np.ndarray:
        seen.append(list(phrases))
        return np.array([table[p] for p in phrases], np.float64)

    frames = np.array([[0.2, 1.0, 0.1, 0.0], [0.0, 3.0, 0.5, 0.1], [0.3, 0.9, 0.4, 0.0]])
    assert clip_rank_verbs(HAND_STATS, ["door"], frames, encode, 3) == ["close", "pull", "open"]
    assert clip_rank_verbs(HAND_STATS, ["door"], frames, encode, 1) == ["close"]
    # candidates are PSVL's: only verbs that co-occur with the nouns are phrased
    assert sorted(seen[0]) == sorted(table)
    # the corpus alone ranks the tie alphabetically: "close", "open", "pull" -- different order
    assert pick_verbs(HAND_STATS, ["door"], 3, sampling="top") == ["close", "open", "pull"]
    with pytest.raises(PSVLError, match="same model"):
        clip_rank_verbs(HAND_STATS, ["door"], np.ones((2, 5)), encode, 1)


class FakeVerbClip:
    """Tagging prompts -> the noun's axis; verb phrases -> the noun's axis plus an axis per verb."""

    NOUNS = ["cup", "door"]
    VERB_AXIS = {"holds": 2, "opens": 3}

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 4), np.float32)
        for i, t in enumerate(texts):
            words = t.rstrip(".").split()
            out[i, self.NOUNS.index(words[-1])] = 1.0
            if words[0] == "a" and words[1] == "person" and words[2] in self.VERB_AXIS:
                out[i, self.VERB_AXIS[words[2]]] = 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_pseudo_label_psvl_verbs_from_clip_and_default_is_corpus(tmp_path: Path) -> None:
    feats = tmp_path / "feats"
    feats.mkdir()
    x = np.zeros((20, 4), np.float32)
    x[:10, 0], x[:10, 2] = 1.0, 0.5   # a cup, looking like "holds"
    x[10:, 1], x[10:, 3] = 1.0, 0.5   # a door, looking like "opens"
    np.save(feats / "v.npy", x)
    (feats / "attrs.json").write_text(json.dumps({"fps": 2.0}))
    knobs = dict(clip_model=FakeVerbClip(), verb_stats=HAND_STATS, nouns=["cup", "door"], num_clusters=2,
                 verb_sampling="top", num_nouns=1, num_verbs=1)

    def spans(path: Path) -> dict:
        return {tuple(round(v, 3) for v in it["timestamp"]): it["tokens"] for it in json.loads(path.read_text())}

    pseudo_label("psvl", feats, tmp_path / "corpus.json", **knobs)  # default: the paper's corpus-only verbs
    assert spans(tmp_path / "corpus.json")[(0.0, 0.5)] == ["drink", "cup"]
    assert spans(tmp_path / "corpus.json")[(0.5, 1.0)] == ["close", "door"]
    cfg = pseudo_label("psvl", feats, tmp_path / "clip.json", verb_source="clip", **knobs)
    assert cfg.psvl.verb_source == "clip"
    assert spans(tmp_path / "clip.json")[(0.0, 0.5)] == ["hold", "cup"]
    assert spans(tmp_path / "clip.json")[(0.5, 1.0)] == ["open", "door"]


def test_verb_source_is_corpus_by_default_and_clip_needs_a_model(tmp_path: Path) -> None:
    from zeroground.pseudo.psvl import PSVLConfig

    assert PSVLConfig().verb_source == "corpus"
    _store(tmp_path / "feats")
    with pytest.raises(PseudoLabelError, match="--clip"):
        pseudo_label("psvl", tmp_path / "feats", tmp_path / "x.json", detections={"v": [[("cup", 0.9)]] * 20},
                     verb_stats=HAND_STATS, verb_source="clip")
    with pytest.raises(PseudoLabelError, match="verb_source"):
        pseudo_label("psvl", tmp_path / "feats", tmp_path / "x.json", detections={"v": [[("cup", 0.9)]] * 20},
                     verb_stats=HAND_STATS, verb_source="vision")
