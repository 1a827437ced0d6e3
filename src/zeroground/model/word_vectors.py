"""Word embeddings of a token-query model initialised from a text encoder.

Why: PSVL learns its word embeddings from scratch on pseudo queries, so a word the
pseudo queries use rarely ("close" when the tagger says "shut", "cup" when it says
"mug") stays almost untrained, however often test sentences use it. Starting each
word at its CLIP text embedding puts synonyms next to each other, and in the space
the video features live in when those are CLIP features, so the model needs far
fewer pseudo pairs to tie a word to what it looks like. Off by default
(``train.word_vectors: null``), which is PSVL.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from zeroground.errors import ZerogroundError

SPECIALS = 4  # <PAD>, <UNK>, <S>, <E>: keep their own initialisation (PAD is never read)


class WordVectorError(ZerogroundError, ValueError):
    """Word vectors that do not fit the model."""


def word_vector_matrix(vocab: dict[str, int], encode: Any, dim: int, *, prompt: str = "{}") -> np.ndarray:
    """``[V, dim]`` rows for the vocabulary's words (indices >= 4): the L2-normalised text
    embedding of ``prompt`` filled with the word, scaled to norm ``sqrt(dim)`` (the norm of
    a default ``nn.Embedding`` row). Rows of the special tokens are zero here and left alone
    by :func:`init_word_vectors`."""
    words = sorted((i, w) for w, i in vocab.items() if i >= SPECIALS)
    out = np.zeros((max(vocab.values()) + 1, dim), dtype=np.float32)
    if not words:
        return out
    emb = np.asarray(encode([prompt.format(w) for _, w in words]), dtype=np.float64)  # [W, D]
    if emb.ndim != 2 or emb.shape[1] != dim:
        raise WordVectorError(
            f"the text encoder embeds words in D={emb.shape[-1]} but the model's word embedding is "
            f"{dim}-d: set model.embed_dim to {emb.shape[-1]} to use these word vectors")
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    out[[i for i, _ in words]] = (emb * math.sqrt(dim)).astype(np.float32)
    return out


def init_word_vectors(embedding: torch.nn.Embedding, vocab: dict[str, int], encode: Any, *,
                      prompt: str = "{}", freeze: bool = False) -> int:
    """Copy :func:`word_vector_matrix` into ``embedding``'s word rows; returns how many.
    ``freeze`` stops gradient updates of the whole embedding."""
    if max(vocab.values()) >= embedding.num_embeddings:
        raise WordVectorError(f"vocabulary has index {max(vocab.values())} but the embedding holds "
                              f"{embedding.num_embeddings} rows (model.vocab_size)")
    matrix = torch.from_numpy(word_vector_matrix(vocab, encode, embedding.embedding_dim, prompt=prompt))
    rows = torch.tensor(sorted(i for i in vocab.values() if i >= SPECIALS), dtype=torch.long)
    with torch.no_grad():
        if len(rows):
            embedding.weight[rows] = matrix[rows]
    embedding.weight.requires_grad_(not freeze)
    return int(len(rows))
