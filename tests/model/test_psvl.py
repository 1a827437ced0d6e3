"""Every registered query encoder builds a grounding model that runs, reads out valid spans,
and round-trips through a model directory (a new QUERY_ENCODERS entry is tested for free,
once it names how its queries are made below)."""

from __future__ import annotations

import pytest
import torch

from zeroground.model import QUERY_ENCODERS, GroundingModel, ModelConfig, QueryBatch, load_model_dir, save_model_dir
from zeroground.model.preprocess import build_vocab

VOCAB = build_vocab([["open", "door"], ["take", "cup"]])
# how a batch of B queries looks for each query encoder
QUERIES = {
    "tokens": lambda cfg, b: QueryBatch(ids=torch.randint(1, cfg.vocab_size, (b, 4))),
    "clip": lambda cfg, b: QueryBatch(vectors=torch.nn.functional.normalize(torch.randn(b, cfg.clip_dim), dim=1)),
}


def _cfg(name: str) -> ModelConfig:
    return ModelConfig(query_encoder=name, video_dim=8, num_segments=8, vocab_size=len(VOCAB), embed_dim=8,
                       query_gru_hidden=8, video_gru_hidden=8, hidden=8, fusion_layers=1, nonlocal_layers=1,
                       nonlocal_heads=2, clip_dim=6, dropout=0.0)


def test_every_query_encoder_has_a_query_factory():
    assert set(QUERIES) == set(QUERY_ENCODERS)


@pytest.mark.parametrize("name", sorted(QUERY_ENCODERS))
def test_query_encoder_runs_and_round_trips(name, tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(name)
    model = GroundingModel(cfg).eval()
    feats, mask = torch.randn(3, 8, 8), torch.ones(3, 8, dtype=torch.bool)
    mask[2, 5:] = False  # a shorter video
    query = QUERIES[name](cfg, 3)
    with torch.no_grad():
        out = model(feats, mask, query)
    assert out["timestamps"].shape == (3, 2) and out["attention_weights"].shape == (3, 8)
    assert torch.isfinite(out["attention_weights"]).all()
    spans = out["spans"]
    assert ((0 <= spans) & (spans <= 1)).all() and (spans[:, 0] <= spans[:, 1]).all()
    loaded, cfg2, vocab = load_model_dir(save_model_dir(tmp_path / name, model, cfg, VOCAB if name == "tokens" else None))
    assert cfg2 == cfg
    with torch.no_grad():
        again = loaded(feats, mask, query)
    torch.testing.assert_close(again["timestamps"], out["timestamps"])
