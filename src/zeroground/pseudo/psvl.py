"""PSVL pseudo queries (Nam et al., ICCV 2021): a bag of verbs and nouns per pseudo-event.

Why: PSVL trains a grounding model without any paired sentence. For each pseudo-event
it writes a "sentence" that is just 3 verbs + 5 nouns (``["hold", "wash", "fix",
"wall", "man", "shirt", "floor", "door"]`` in the released Charades file):

* **nouns** are the object labels seen in the event's frames -- from an object
  detector's output (a detections file, :func:`read_detections`) or, with no
  detector, from zero-shot tagging of the frames with CLIP over a noun vocabulary
  (:func:`clip_tag_frames`);
* **verbs** are not visible in a still frame, so they come from language alone:
  noun-verb co-occurrence counted in an unpaired text corpus (:func:`compute_verb_stats`),
  and verbs likely for the event's nouns are drawn (:func:`pick_verbs`).
  zeroground's optional extension (``verb_source="clip"``, off by default) ranks those
  same corpus candidates by CLIP similarity of the event's frames to a verb-noun phrase
  (:func:`clip_rank_verbs`), so the verbs say *which* action on the object happens.

Detections file format (JSON)::

    {"VIDEO_ID": [[["person", 0.98], ["cup", 0.71]],   # frame 0: [label, score] pairs
                  [],                                    # frame 1: nothing detected
                  ...],                                  # frames evenly spaced over the video
     ...}

Detection frames need not match the feature frames one to one: frame ``f`` of ``F``
is taken to cover the normalised time ``[f / F, (f + 1) / F)``.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from zeroground.errors import ZerogroundError
from zeroground.io import atomic_write_json

FrameLabels = list[list[tuple[str, float]]]  # per frame: [(label, score), ...]


class PSVLError(ZerogroundError, ValueError):
    """Bad input for PSVL pseudo queries; the message names the file and the item."""


@dataclass
class PSVLConfig:
    """PSVL pseudo-query knobs (documented in docs/methods.md)."""

    num_verbs: int = 3                 # verbs per query (released file: 3)
    num_nouns: int = 5                 # nouns per query (released file: 5)
    queries_per_event: int = 3         # queries (different verb draws) per pseudo-event
    min_score: float = 0.3             # detections below this score are ignored
    verb_sampling: str = "sample"      # "sample" (draw proportional to score) or "top"
    # "top" (paper): the best-scoring nouns; "sample": drawn per query in proportion to score
    noun_sampling: str = "top"
    tag_top_k: int = 3                 # CLIP tagging: labels kept per frame
    tag_prompt: str = "a photo of a {}."  # CLIP tagging prompt; "{}" is the noun
    tag_temperature: float = 100.0     # CLIP's logit scale: softmax(100 * cosine)
    # CLIP tagging vocabulary; None = the corpus's nouns (those with verb statistics,
    # at least `vocab_min_count` pairs, the `vocab_size` most frequent)
    nouns: list[str] | None = None
    vocab_size: int = 1000
    vocab_min_count: int = 2
    exclude_verbs: list[str] = field(default_factory=lambda: ["be", "have", "do"])
    # zeroground extension, not in the paper: where the verbs come from.
    # "corpus" (paper): drawn from noun-verb co-occurrence alone (`verb_sampling`).
    # "clip": the same corpus candidates (verbs seen with the event's nouns), scored by CLIP
    # cosine between the event's mean frame feature and `verb_prompt`; `verb_sampling` "top"
    # keeps the best `num_verbs`, "sample" draws them with p = softmax(verb_temperature x cosine),
    # a new draw per query. Needs a CLIP model.
    verb_source: str = "corpus"
    # "{verb}" = the lemma ("pick"), "{verb_s}" = its third-person form ("picks"), "{noun}" = the noun
    verb_prompt: str = "a person {verb_s} the {noun}"
    verb_temperature: float = 100.0
    # zeroground extension, not in the paper (needs verb_source "clip"): keep only the
    # `keep_events` pseudo-events per video with the most action evidence (best verb-phrase
    # cosine minus the cosine to `neutral_prompt`); 0 keeps every proposal, as the paper does.
    keep_events: int = 0
    neutral_prompt: str = "a person"
    # zeroground extension (needs keep_events > 0): skip a proposal whose action goes on after
    # it ends -- the `aftermath_s` seconds right after its end show more than
    # `truncation_ratio` x its own action evidence (e.g. the crouch that starts a pick-up, which
    # alone reads as "puts down"). 0 keeps truncated proposals, as the paper does.
    truncation_ratio: float = 0.0
    aftermath_s: float = 1.0


# --------------------------------------------------------------------------- nouns


def read_detections(path: str | Path) -> dict[str, FrameLabels]:
    """Read a detections JSON (see module docstring) and validate every entry."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PSVLError(f"{path}: detections file not found") from None
    except json.JSONDecodeError as exc:
        raise PSVLError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PSVLError(f"{path}: expected an object mapping video id -> per-frame detections, "
                        f"found {type(data).__name__}")
    out: dict[str, FrameLabels] = {}
    for vid, frames in data.items():
        if not isinstance(frames, list):
            raise PSVLError(f"{path}: video {vid!r}: expected a list of frames, found {type(frames).__name__}")
        parsed: FrameLabels = []
        for f, dets in enumerate(frames):
            if not isinstance(dets, list):
                raise PSVLError(f"{path}: video {vid!r} frame {f}: expected a list of [label, score]")
            row = []
            for d in dets:
                if (not isinstance(d, (list, tuple)) or len(d) != 2 or not isinstance(d[0], str)
                        or isinstance(d[1], bool) or not isinstance(d[1], (int, float))
                        or not math.isfinite(d[1])):
                    raise PSVLError(f"{path}: video {vid!r} frame {f}: expected [label, score], found {d!r}")
                row.append((d[0].strip().lower(), float(d[1])))
            parsed.append(row)
        out[vid] = parsed
    return out


def clip_tag_frames(frame_features: np.ndarray, noun_embeddings: np.ndarray, nouns: Sequence[str], *,
                    top_k: int = 3, temperature: float = 100.0) -> FrameLabels:
    """Zero-shot frame tagging: per frame, the ``top_k`` nouns by CLIP similarity.

    ``frame_features`` ``[T, D]`` are CLIP image embeddings and ``noun_embeddings``
    ``[V, D]`` the CLIP text embeddings of the noun prompts (both L2-normalised, as
    ``load_clip`` returns them). Scores are ``softmax(temperature * cosine)`` over the
    vocabulary, CLIP's own zero-shot classifier, so they read like detector confidences.
    """
    f = np.asarray(frame_features, dtype=np.float64)
    e = np.asarray(noun_embeddings, dtype=np.float64)
    if f.ndim != 2 or e.ndim != 2 or f.shape[1] != e.shape[1]:
        raise PSVLError(f"CLIP tagging needs frame features [T, D] and noun embeddings [V, D] of the same D; "
                        f"found {f.shape} and {e.shape} (are the features CLIP features of this model?)")
    if e.shape[0] != len(nouns):
        raise PSVLError(f"{e.shape[0]} noun embeddings for {len(nouns)} nouns")
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    logits = temperature * (f @ e.T)  # [T, V]
    logits -= logits.max(1, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(1, keepdims=True)
    k = max(1, min(top_k, len(nouns)))
    top = np.argsort(-prob, axis=1)[:, :k]  # [T, k]
    return [[(nouns[j], float(prob[t, j])) for j in top[t]] for t in range(f.shape[0])]


def draw_distinct(weights: Sequence[float] | np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``min(k, n)`` distinct indices drawn without replacement with probability
    proportional to ``weights`` (the one sampling rule of verbs and nouns)."""
    p = np.asarray(weights, dtype=np.float64)
    return rng.choice(len(p), size=min(k, len(p)), replace=False, p=p / p.sum())


def event_noun_scores(frame_labels: FrameLabels, span: tuple[float, float], *,
                      min_score: float = 0.3) -> list[tuple[str, float]]:
    """Labels of the event covering normalised ``span`` with their summed score over its
    frames, best first (ties by first appearance). At least the frame nearest the event's
    centre is used, so a very short event still gets nouns."""
    n = len(frame_labels)
    if n == 0:
        return []
    s, e = span
    centres = (np.arange(n) + 0.5) / n
    idx = np.flatnonzero((centres >= s) & (centres < e))
    if idx.size == 0:
        idx = np.array([int(np.clip(np.floor((s + e) / 2 * n), 0, n - 1))])
    score: dict[str, float] = defaultdict(float)
    for f in idx:
        for label, sc in frame_labels[f]:
            if sc >= min_score:
                score[label] += sc
    return sorted(score.items(), key=lambda kv: -kv[1])  # stable: ties keep first appearance


def event_nouns(frame_labels: FrameLabels, span: tuple[float, float], *, num_nouns: int = 5,
                min_score: float = 0.3) -> list[str]:
    """The ``num_nouns`` best nouns of :func:`event_noun_scores`."""
    return [label for label, _ in event_noun_scores(frame_labels, span, min_score=min_score)[:num_nouns]]


def sample_nouns(scored: list[tuple[str, float]], k: int, rng: np.random.Generator) -> list[str]:
    """``k`` distinct nouns drawn without replacement in proportion to their summed score
    (``psvl.noun_sampling: sample``), listed best first. Synonyms a tagger rates about
    equally ("mug" / "cup") then both reach the pseudo queries, as both reach test sentences."""
    if not scored or k <= 0:
        return []
    return [scored[i][0] for i in sorted(draw_distinct([sc for _, sc in scored], k, rng))]


# --------------------------------------------------------------------------- verbs


@dataclass
class VerbStats:
    """Noun -> verb co-occurrence counts from a text corpus (lemmas)."""

    pairs: dict[str, dict[str, int]]   # noun -> {verb: count}
    verb_totals: dict[str, int]        # verb -> count over all pairs (fallback prior)
    sentences: int = 0

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, {"pairs": self.pairs, "verb_totals": self.verb_totals,
                                 "sentences": self.sentences})

    @classmethod
    def load(cls, path: str | Path) -> "VerbStats":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            return cls(pairs={n: dict(v) for n, v in data["pairs"].items()},
                       verb_totals=dict(data["verb_totals"]), sentences=int(data.get("sentences", 0)))
        except FileNotFoundError:
            raise PSVLError(f"{path}: verb statistics file not found") from None
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise PSVLError(f"{path}: not a verb statistics JSON ({{pairs, verb_totals}}): {exc}") from None


#: Dependency labels linking a noun to "its" verb. dobj/nsubj/nsubjpass/attr hang
#: directly on the verb; a pobj hangs on a preposition whose head is the verb
#: ("sits on the chair" -> (chair, sit)), or on the "by" of a passive ("was opened by
#: the man" -> (man, open)); "dative" covers "hands the man a cup".
DIRECT_DEPS = frozenset({"dobj", "nsubj", "nsubjpass", "attr", "dative", "oprd"})


def verb_noun_pairs(doc: Any, exclude_verbs: Iterable[str] = ("be", "have", "do")) -> list[tuple[str, str]]:
    """``(noun_lemma, verb_lemma)`` pairs of one spaCy doc (see :data:`DIRECT_DEPS`).

    Conjoined nouns share their verb ("opens the door and the window")."""
    excl = set(exclude_verbs)
    pairs = []
    for tok in doc:
        if tok.pos_ != "NOUN":
            continue
        head = tok
        while head.dep_ == "conj" and head.head is not head:  # conjunct inherits the first noun's role
            head = head.head
        verb = None
        if head.dep_ in DIRECT_DEPS and head.head.pos_ == "VERB":
            verb = head.head
        elif head.dep_ == "pobj" and head.head.dep_ in ("prep", "agent") and head.head.head.pos_ == "VERB":
            verb = head.head.head
        if verb is not None:
            lemma = verb.lemma_.lower()
            if lemma not in excl:
                pairs.append((tok.lemma_.lower(), lemma))
    return pairs


def compute_verb_stats(corpus: str | Path | Sequence[str], *, exclude_verbs: Iterable[str] = ("be", "have", "do"),
                       progress: bool = False) -> VerbStats:
    """Count noun-verb pairs over a corpus: a text file with one sentence per line, or a list of sentences."""
    from zeroground.pseudo.text import parse

    if isinstance(corpus, (str, Path)):
        path = Path(corpus)
        if not path.is_file():
            raise PSVLError(f"{path}: corpus file not found (expected plain text, one sentence per line)")
        sentences = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        if not sentences:
            raise PSVLError(f"{path}: corpus is empty (expected plain text, one sentence per line)")
    else:
        sentences = [s for s in corpus if s and s.strip()]
    pairs: dict[str, Counter] = defaultdict(Counter)
    totals: Counter = Counter()
    docs = parse(sentences)
    if progress:
        from tqdm import tqdm

        docs = tqdm(docs, total=len(sentences), desc="parsing corpus", unit="sent")
    excl = tuple(exclude_verbs)
    for doc in docs:
        for noun, verb in verb_noun_pairs(doc, excl):
            pairs[noun][verb] += 1
            totals[verb] += 1
    return VerbStats(pairs={n: dict(c) for n, c in pairs.items()}, verb_totals=dict(totals),
                     sentences=len(sentences))


def corpus_nouns(stats: VerbStats, *, max_nouns: int = 1000, min_count: int = 2) -> list[str]:
    """The tagging vocabulary implied by a corpus: nouns seen with a verb at least
    ``min_count`` times, most frequent first (ties alphabetical), at most ``max_nouns``.

    Why the corpus: a noun with no verb statistics cannot give a verb, and the corpus
    is the user's statement of what the videos are about. Words the corpus uses more
    often as verbs than as nouns are left out (spaCy mis-tags "open" in "pulls the
    door open"). Falls back to every noun of
    the corpus when the threshold leaves none (tiny corpora).
    """
    counts = {n: sum(v.values()) for n, v in stats.pairs.items()}
    # a word the corpus uses more often as a verb ("pulls the door open") is a tagging error
    counts = {n: c for n, c in counts.items() if stats.verb_totals.get(n, 0) <= c}
    ranked = sorted(counts, key=lambda n: (-counts[n], n))
    kept = [n for n in ranked if counts[n] >= min_count] or ranked
    return kept[:max_nouns]


def load_verb_stats(corpus: str | Path, **kw: Any) -> VerbStats:
    """A ``.json`` is read as saved statistics, anything else parsed as a corpus."""
    return VerbStats.load(corpus) if str(corpus).lower().endswith(".json") else compute_verb_stats(corpus, **kw)


def verb_scores(stats: VerbStats, nouns: Sequence[str]) -> dict[str, float]:
    """Score of each verb for a bag of nouns: ``sum_n P(verb | noun)``.

    Conditioning on each noun (instead of raw counts) keeps one frequent noun
    ("person") from drowning out the others. Nouns absent from the corpus contribute
    nothing; with no known noun the corpus-wide verb frequency is used.
    """
    scores: dict[str, float] = defaultdict(float)
    for n in nouns:
        verbs = stats.pairs.get(n)
        if not verbs:
            continue
        total = sum(verbs.values())
        for v, c in verbs.items():
            scores[v] += c / total
    if not scores:
        total = sum(stats.verb_totals.values()) or 1
        scores = {v: c / total for v, c in stats.verb_totals.items()}
    return dict(scores)


def pick_verbs(stats: VerbStats, nouns: Sequence[str], k: int, *, sampling: str = "sample",
               rng: np.random.Generator | None = None) -> list[str]:
    """``k`` distinct verbs for the nouns: the top-scoring (``"top"``; ties alphabetical)
    or drawn without replacement in proportion to score (``"sample"``)."""
    scores = verb_scores(stats, nouns)
    if not scores or k <= 0:
        return []
    verbs = sorted(scores, key=lambda v: (-scores[v], v))
    if sampling == "top":
        return verbs[:k]
    if sampling != "sample":
        raise PSVLError(f"unknown verb sampling {sampling!r}; choose 'sample' or 'top'")
    if rng is None:
        raise PSVLError("verb sampling 'sample' needs a random generator")
    return [verbs[i] for i in draw_distinct([scores[v] for v in verbs], k, rng)]


# --------------------------------------------------------------------------- verbs from CLIP (extension)

VERB_SOURCES = ("corpus", "clip")


def third_person(verb: str) -> str:
    """Third-person singular of a lemma ("pick" -> "picks", "switch" -> "switches",
    "carry" -> "carries"): captions say "a man picks up the cup", and a word-level CLIP
    tokenizer may know only that form."""
    irregular = {"be": "is", "have": "has", "do": "does", "go": "goes"}
    if verb in irregular:
        return irregular[verb]
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if len(verb) > 1 and verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def verb_phrase(prompt: str, verb: str, noun: str) -> str:
    """Fill ``prompt``'s ``{verb}`` (lemma), ``{verb_s}`` (third person) and ``{noun}``."""
    return prompt.format(verb=verb, verb_s=third_person(verb), noun=noun)


def event_embedding(frame_features: np.ndarray) -> np.ndarray:
    """The event's CLIP vector: mean of its L2-normalised frame features, renormalised."""
    f = np.asarray(frame_features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] == 0:
        raise PSVLError(f"event embedding needs frame features [T>0, D]; found shape {f.shape}")
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    m = f.mean(0)
    return m / max(float(np.linalg.norm(m)), 1e-12)


def clip_verb_scores(stats: VerbStats, nouns: Sequence[str], frame_features: np.ndarray,
                     encode: Any, *, prompt: str = "a person {verb_s} the {noun}") -> dict[str, float]:
    """CLIP evidence for each corpus-candidate verb of ``nouns`` on an event's frames.

    Candidates are exactly PSVL's (verbs with a nonzero :func:`verb_scores`), listed in
    corpus order (higher ``verb_scores`` first, then alphabetical; dicts keep it). Each
    is scored by the highest cosine between :func:`event_embedding` of ``frame_features``
    ``[T, D]`` and the CLIP text embedding of ``prompt`` filled with the verb and one of
    the event's nouns it co-occurs with in the corpus (all of the nouns when none does).
    ``encode`` maps a list of phrases to ``[N, D]`` text embeddings (``clip.encode_texts``).
    With no nouns there is nothing to phrase: every candidate scores 0.
    """
    scores = verb_scores(stats, nouns)
    verbs = sorted(scores, key=lambda v: (-scores[v], v))
    if not verbs or not nouns:
        return {v: 0.0 for v in verbs}
    phrases: dict[str, list[str]] = {}
    for v in verbs:
        with_v = [n for n in nouns if v in stats.pairs.get(n, {})] or list(nouns)
        phrases[v] = [verb_phrase(prompt, v, n) for n in with_v]
    flat = [p for v in verbs for p in phrases[v]]
    emb = np.asarray(encode(flat), dtype=np.float64)  # [P, D]
    if emb.ndim != 2 or emb.shape[0] != len(flat):
        raise PSVLError(f"text encoder returned shape {emb.shape} for {len(flat)} phrases")
    ev = event_embedding(frame_features)
    if emb.shape[1] != ev.shape[0]:
        raise PSVLError(f"verb phrases embed in D={emb.shape[1]} but the frame features have D={ev.shape[0]}; "
                        "verb_source 'clip' needs CLIP image features of the same model")
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    cos = emb @ ev
    best, i = {}, 0
    for v in verbs:
        n = len(phrases[v])
        best[v] = float(cos[i:i + n].max())
        i += n
    return best


def choose_clip_verbs(scores: dict[str, float], k: int, *, sampling: str = "top", temperature: float = 100.0,
                      rng: np.random.Generator | None = None) -> list[str]:
    """``k`` distinct verbs from :func:`clip_verb_scores`: the best (``"top"``; ties keep corpus
    order) or drawn without replacement with probability ``softmax(temperature * cosine)``
    (``"sample"``): several draws per event then cover the synonyms CLIP rates about equally
    ("picks up" / "grabs" / "lifts"), which a test sentence may use any of."""
    verbs = list(scores)
    if not verbs or k <= 0:
        return []
    if sampling == "top":
        order = sorted(range(len(verbs)), key=lambda j: (-scores[verbs[j]], j))
        return [verbs[j] for j in order[:k]]
    if sampling != "sample":
        raise PSVLError(f"unknown verb sampling {sampling!r}; choose 'sample' or 'top'")
    if rng is None:
        raise PSVLError("verb sampling 'sample' needs a random generator")
    logits = temperature * np.array([scores[v] for v in verbs], dtype=np.float64)
    return [verbs[i] for i in draw_distinct(np.exp(logits - logits.max()), k, rng)]


def clip_rank_verbs(stats: VerbStats, nouns: Sequence[str], frame_features: np.ndarray,
                    encode: Any, k: int, *, prompt: str = "a person {verb_s} the {noun}") -> list[str]:
    """The ``k`` corpus-candidate verbs of ``nouns`` that best match the event's frames
    (:func:`clip_verb_scores`, best first; ties keep the corpus order). With no nouns there
    is nothing to phrase, so the corpus ranking is returned."""
    return choose_clip_verbs(clip_verb_scores(stats, nouns, frame_features, encode, prompt=prompt), k)


def action_evidence(verb_cosines: dict[str, float], frame_features: np.ndarray, neutral: np.ndarray) -> float:
    """How much better the event's frames match its best verb phrase than a neutral
    description (``neutral``: the CLIP text embedding of e.g. "a person", ``[D]``).

    High where something is being done to an object; low for idle or walking stretches
    and for spans that straddle two actions, whose pseudo queries would teach the model
    words for moments no sentence describes."""
    if not verb_cosines:
        return float("-inf")
    n = np.asarray(neutral, dtype=np.float64)
    n = n / max(float(np.linalg.norm(n)), 1e-12)
    return max(verb_cosines.values()) - float(event_embedding(frame_features) @ n)
