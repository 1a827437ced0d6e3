"""SPEC §1–2 preprocessing against a line-by-line transcription of the reference loops."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zeroground.model.preprocess import (
    EmptyQueryError,
    build_vocab,
    encode_queries,
    max_offset,
    sample_positions,
    segment_batch,
)


def reference_fixed_length(feat: np.ndarray, num_segment: int, start_pos: float, end_pos: float, spos: int):
    """The reference's get_fixed_length_feat (training offset passed in), kept as loops."""
    nfeats = feat.shape[0]
    stride = 1 if nfeats <= num_segment else nfeats * 1.0 / num_segment
    s = np.round(np.arange(spos, nfeats - 0.5, stride)).astype(int)
    start_pos = float(nfeats - 1.0) * start_pos
    end_pos = float(nfeats - 1.0) * end_pos
    s = s[:num_segment]
    start_index, end_index = None, None
    for i in range(len(s) - 1):
        if s[i] <= end_pos < s[i + 1]:
            end_index = i
        if s[i] <= start_pos < s[i + 1]:
            start_index = i
    if start_index is None:
        start_index = 0
    if end_index is None:
        end_index = num_segment - 1
    cur_feat = feat[s, :]
    nfeats = min(nfeats, num_segment)
    out = np.zeros((num_segment, cur_feat.shape[1]))
    out[:nfeats, :] = cur_feat
    attn = np.zeros(num_segment)
    attn[start_index:end_index + 1] = 1
    return out.astype(np.float32), nfeats, start_index, end_index, attn


def test_vocab_sorts_by_ascending_count_and_keeps_first_appearance_on_ties() -> None:
    vocab = build_vocab([["person", "open", "door"], ["person", "door", "close"], ["person", "sit"]])
    # counts: person 3, open 1, door 2, close 1, sit 1 → ties (open, close, sit) in first-appearance order
    assert vocab == {"<PAD>": 0, "<UNK>": 1, "<S>": 2, "<E>": 3,
                     "open": 4, "close": 5, "sit": 6, "door": 7, "person": 8}


def test_query_ids_unknown_truncation_padding() -> None:
    vocab = {"<PAD>": 0, "<UNK>": 1, "a": 4, "b": 5}
    ids = encode_queries([["a", "zzz", "b"], ["b"] * 12], vocab, max_len=10)
    assert ids.tolist() == [[4, 1, 5, 0, 0, 0, 0, 0, 0, 0], [5] * 10]
    with pytest.raises(EmptyQueryError, match="query 1 has no tokens"):
        encode_queries([["a"], []], vocab)


@pytest.mark.parametrize("frames", [5, 64, 128, 129, 191, 192, 256, 300, 384, 1000])
def test_offset_range_matches_legacy_random_integers(frames: int) -> None:
    stride = 1 if frames <= 128 else frames / 128
    r = stride - 0.5
    if r == np.floor(r):
        r -= 1.0
    legacy = np.random.RandomState(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        seen = {int(legacy.random_integers(0, r)) for _ in range(400)} if r >= 0 else {0}
    assert seen == set(range(max_offset(frames) + 1))
    drawn = {int(segment_batch([np.zeros((frames, 1), np.float32)], rng=np.random.default_rng(i)).video_mask.sum())
             for i in range(5)}
    assert drawn == {min(frames, 128)}


@settings(max_examples=60, deadline=None)
@given(frames=st.integers(1, 700), a=st.floats(0, 1), b=st.floats(0, 1.05), data=st.data())
def test_segment_batch_equals_reference_loops(frames: int, a: float, b: float, data) -> None:
    feat = np.arange(frames, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)  # row t holds t
    offset = data.draw(st.integers(0, max_offset(frames)))
    start, end = min(a, b), max(a, b)
    ref_feat, n, s_idx, e_idx, attn = reference_fixed_length(feat, 128, start, end, offset)

    class FixedOffset:  # a Generator stand-in returning the chosen offset
        def integers(self, low, high):
            assert low == 0 and high == max_offset(frames) + 1
            return offset

    seg = segment_batch([feat], np.array([[start, end]]), 128, rng=FixedOffset())  # type: ignore[arg-type]
    np.testing.assert_array_equal(seg.video_feats[0], ref_feat)
    assert seg.video_mask[0].sum() == n and seg.video_mask[0, :n].all()
    assert (seg.start_index[0], seg.end_index[0]) == (s_idx, e_idx)
    np.testing.assert_array_equal(seg.guidance[0], attn)


def test_end_index_quirk_covers_padding_for_short_videos() -> None:
    seg = segment_batch([np.ones((10, 2), np.float32)], np.array([[0.5, 1.0]]))
    # e' = 9 is the last position: no i < len(p) − 1 holds it → 127, past the 10 valid segments
    assert seg.start_index[0] == 4 and seg.end_index[0] == 127
    assert seg.guidance[0].sum() == 124 and seg.video_mask[0].sum() == 10


def test_positions_round_half_to_even() -> None:
    # T = 320: stride 2.5 → 0, 2.5, 5, 7.5 … round to 0, 2, 5, 8 (half to even)
    assert sample_positions(320)[:4].tolist() == [0, 2, 5, 8]
    assert len(sample_positions(320)) == 128 and len(sample_positions(50)) == 50
