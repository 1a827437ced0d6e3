"""The PSVL model against the reference oracle (../shared/psvl/oracle).

After ``import-psvl`` of the oracle checkpoint: the vocabulary equals the reference's,
one exact eval batch reproduces timestamps and attention within 1e-5 (both the
reference-style and the fast implementation), and the fast GRU equals the packed one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zeroground.model import GroundingModel, ModelConfig, ModelDirError, import_psvl, load_model_dir
from zeroground.model.gru import fused_bigru, packed_bigru

torch.set_num_threads(1)

ORACLE = Path(__file__).resolve().parents[3] / "shared" / "psvl" / "oracle"
PSEUDO_FILE = Path(__file__).resolve().parents[2] / "data" / "psvl" / "charades_train_pseudo_supervision_TEP_PS.json"


@pytest.fixture(scope="module")
def oracle() -> Path:
    if not (ORACLE / "psvl_reference_checkpoint.pth").is_file():
        pytest.skip(f"PSVL oracle {ORACLE} is absent")
    return ORACLE


@pytest.fixture(scope="module")
def psvl_model_dir(oracle: Path, tmp_path_factory) -> Path:
    return import_psvl(oracle / "psvl_reference_checkpoint.pth", PSEUDO_FILE, tmp_path_factory.mktemp("psvl") / "model")


def test_import_builds_the_reference_vocabulary(psvl_model_dir: Path, oracle: Path) -> None:
    _model, cfg, vocab = load_model_dir(psvl_model_dir)
    reference = json.loads((oracle / "vocab_reference.json").read_text())
    assert list(vocab.items()) == list(reference.items())
    assert cfg.vocab_size == 506 and cfg.video_dim == 1024 and cfg.query_encoder == "tokens"


def test_state_dict_names_and_shapes_are_the_contract(oracle: Path) -> None:
    model = GroundingModel(ModelConfig())
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {}
    for line in (oracle / "state_dict_keys.txt").read_text().splitlines():
        name, shape = line.split(" ", 1)
        expected[name] = tuple(int(x) for x in shape.strip("()").replace(" ", "").split(",") if x)
    assert own == expected
    assert sum(p.numel() for p in model.parameters()) == 8_536_700


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_one_batch_reproduces_reference_outputs(psvl_model_dir: Path, oracle: Path, impl: str) -> None:
    model, _cfg, _vocab = load_model_dir(psvl_model_dir, impl=impl)
    batch = np.load(oracle / "one_batch_8.npz")
    with torch.no_grad():
        out = model(torch.from_numpy(batch["video_feats"]), torch.from_numpy(batch["video_masks"]),
                    torch.from_numpy(batch["query_labels"]))
    np.testing.assert_allclose(out["timestamps"].numpy(), batch["timestamps"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out["attention_weights"].numpy(), batch["attention_weights"], rtol=0, atol=1e-5)


def test_checkpoint_of_other_shapes_names_the_tensor(oracle: Path, tmp_path: Path) -> None:
    state = torch.load(oracle / "psvl_reference_checkpoint.pth", map_location="cpu", weights_only=True)
    state["query_encoder.embedding.weight"] = state["query_encoder.embedding.weight"][:300]
    bad = tmp_path / "small_vocab.pth"
    torch.save(state, bad)
    with pytest.raises(ModelDirError, match=r"query_encoder\.embedding\.weight has 300 rows.*506 entries"):
        import_psvl(bad, PSEUDO_FILE, tmp_path / "m1")
    with pytest.raises(ModelDirError, match=r"video_encoder\.gru\.weight_ih_l0.*1024-d video features, the model 500-d"):
        import_psvl(oracle / "psvl_reference_checkpoint.pth", PSEUDO_FILE, tmp_path / "m2", video_dim=500)
    assert not (tmp_path / "m1").exists() and not (tmp_path / "m2").exists()


@settings(max_examples=15, deadline=None)
@given(lengths=st.lists(st.integers(1, 9), min_size=1, max_size=6), seed=st.integers(0, 2**16))
def test_fused_gru_equals_packed_gru(lengths: list[int], seed: int) -> None:
    """Outputs on valid steps, zeros on padding, and gradients agree."""
    torch.manual_seed(seed)
    gru = torch.nn.GRU(7, 5, batch_first=True, bidirectional=True)
    x = torch.randn(len(lengths), 9, 7, requires_grad=True)
    lens = torch.tensor(lengths)
    a, b = packed_bigru(gru, x, lens), fused_bigru(gru, x, lens)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    w = torch.randn_like(a)
    ga = torch.autograd.grad((a * w).sum(), [x, *gru.parameters()])
    gb = torch.autograd.grad((b * w).sum(), [x, *gru.parameters()])
    for u, v in zip(ga, gb):
        torch.testing.assert_close(v, u, rtol=1e-5, atol=1e-5)


def test_fast_and_reference_training_steps_agree() -> None:
    """Same seed, same batch, train mode (dropout, BatchNorm batch stats): same loss and gradients."""
    from zeroground.model import grounding_loss

    cfg = dict(video_dim=24, hidden=16, embed_dim=8, query_gru_hidden=8, video_gru_hidden=8, vocab_size=30,
               num_segments=12, max_query_len=5)
    torch.manual_seed(0)
    ref = GroundingModel(ModelConfig(**cfg), impl="reference")
    fast = GroundingModel(ModelConfig(**cfg), impl="fast")
    fast.load_state_dict(ref.state_dict())
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(6, 12, 24, generator=gen)
    mask = torch.arange(12)[None] < torch.tensor([12, 5, 12, 3, 9, 12])[:, None]
    feats = feats * mask[..., None]
    ids = torch.randint(4, 30, (6, 5), generator=gen)
    ids[torch.arange(5)[None] >= torch.tensor([5, 1, 3, 2, 5, 4])[:, None]] = 0
    guidance = (torch.arange(12)[None] < 4).float().expand(6, 12)
    grads = []
    for model in (ref, fast):
        model.train()
        torch.manual_seed(5)
        out = model(feats, mask, ids)
        loss = grounding_loss(out, torch.full((6,), 0.1), torch.full((6,), 0.4), guidance)["loss"]
        grads.append((loss.detach(), torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-5, atol=1e-6)
    for u, v in zip(grads[0][1], grads[1][1]):
        if u is None:
            assert v is None
        else:
            torch.testing.assert_close(v, u, rtol=1e-4, atol=1e-5)
