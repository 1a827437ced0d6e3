"""Dual encoders: every family against its own transformers processor, hub ids through a loopback
stand-in for the hub, precision, and refusing another encoder's features."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import REPO_ROOT
from tests.features.hub_standin import HubStandIn
from tests.features.tiny_encoders import make_tiny_siglip
from zeroground.testing import make_tiny_clip
from zeroground.features.encoders import (
    ENCODER_FAMILIES,
    EncoderError,
    check_same_encoder,
    load_encoder,
    parse_encoder,
    resolve_device,
)
from zeroground.features.extract import ExtractError, extract
from zeroground.features.store import FeatureError, FeatureStore
from zeroground.video.decode import decode_video
from zeroground.testing import write_test_video

BUILDERS = {
    "clip": lambda d: make_tiny_clip(d),
    "siglip": lambda d: make_tiny_siglip(d, version=1),
    "siglip2": lambda d: make_tiny_siglip(d, version=2),
}


def _reference_features(folder, model_type, frames, texts):
    """What the model's own processor + get_image_features / get_text_features give (unit rows)."""
    import transformers
    from PIL import Image

    from zeroground.features.encoders import _image_processor

    model = getattr(transformers, ENCODER_FAMILIES[model_type].model_class).from_pretrained(str(folder)).eval()
    proc = _image_processor(model_type, str(folder), {})
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    padding = "max_length" if ENCODER_FAMILIES[model_type].text_padding == "max_length" else True
    with torch.no_grad():
        img = model.get_image_features(**proc(images=[Image.fromarray(f) for f in frames], return_tensors="pt"))
        text_in = tok(texts, padding=padding, max_length=model.config.text_config.max_position_embeddings,
                      truncation=True, return_tensors="pt")
        keep = {"input_ids"} | ({"attention_mask"} & set(tok.model_input_names))
        txt = model.get_text_features(**{k: v for k, v in text_in.items() if k in keep})
    unit = lambda out: torch.nn.functional.normalize(getattr(out, "pooler_output", out), dim=-1).numpy()
    return unit(img), unit(txt)


def _cosines(a, b):
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("model_type", sorted(ENCODER_FAMILIES))
def test_every_family_equals_its_own_processor_and_model(model_type, tmp_path):
    assert set(BUILDERS) == set(ENCODER_FAMILIES)  # a new family needs a tiny builder here
    folder = BUILDERS[model_type](tmp_path / model_type)
    enc = load_encoder(folder)
    assert enc.model_type == model_type and enc.metadata["encoder_type"] == model_type
    frames = np.random.default_rng(1).integers(0, 256, size=(3, 45, 70, 3), dtype=np.uint8)
    texts = ["the person opens the door", "red ball moves left"]
    ref_img, ref_txt = _reference_features(folder, model_type, frames, texts)
    ours_img, ours_txt = enc.encode_images(frames, batch_size=2), enc.encode_texts(texts)
    assert ours_img.shape == (3, enc.dim) and ours_img.dtype == np.float32
    # CLIP's batched torch preprocessing is within one grey level of PIL's; the others use the processor itself.
    assert _cosines(ours_img, ref_img).min() >= (1 - 1e-3 if model_type == "clip" else 1 - 1e-5)
    assert _cosines(ours_txt, ref_txt).min() >= 1 - 1e-5
    np.testing.assert_allclose(np.linalg.norm(ours_txt, axis=1), 1.0, atol=1e-5)


def test_siglip_padding_rule_is_fixed_length(tmp_path):
    enc = load_encoder(make_tiny_siglip(tmp_path / "s", version=1))
    ids = enc.tokenize(["red ball", "the person opens the door"])["input_ids"]
    assert ids.shape == (2, enc.max_text_len)  # padded to the trained length, not to the longest
    # a sentence is embedded the same alone as beside a longer one (no batch-dependent padding)
    np.testing.assert_allclose(enc.encode_texts(["red ball"]), enc.encode_texts(["red ball", "the person opens door"])[:1],
                               atol=1e-6)


def test_extract_with_siglip_equals_processor_on_decoded_frames(tmp_path):
    from typer.testing import CliRunner

    from zeroground.cli import app

    folder = make_tiny_siglip(tmp_path / "siglip", version=1)
    video = write_test_video(tmp_path / "v" / "clip0.mp4", seconds=3.0, fps=8, size=(48, 64))
    out = tmp_path / "f.h5"
    result = CliRunner().invoke(app, ["extract", str(video), "-e", str(folder), "-o", str(out), "--fps", "2", "-q"])
    assert result.exit_code == 0, result.output
    frames = decode_video(video, 2.0).frames
    ref, _ = _reference_features(folder, "siglip", frames, ["red ball"])
    with FeatureStore.open(out) as store:
        assert store.attrs["encoder_type"] == "siglip" and store.dim == 32
        assert _cosines(store["clip0"], ref).min() >= 1 - 1e-5


def test_hub_id_downloads_through_the_hub_routes_then_loads_offline(tmp_path):
    folder = make_tiny_clip(tmp_path / "tiny")
    video = write_test_video(tmp_path / "v" / "clip0.mp4", seconds=2.0, fps=8, size=(48, 64))
    local = tmp_path / "local.h5"
    assert extract([video], str(folder), local, fps=2.0, progress=False).ok
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf_home"))
    env.pop("HF_HUB_OFFLINE", None)
    cli = [sys.executable, "-m", "zeroground", "extract", str(video), "--encoder", "some-org/some-clip",
           "--fps", "2", "-q", "-o"]
    with HubStandIn({"some-org/some-clip": folder}) as hub:
        env["HF_ENDPOINT"] = hub.url
        first = subprocess.run(cli + [str(tmp_path / "online.h5")], env=env, capture_output=True, text=True, cwd=REPO_ROOT)
        assert first.returncode == 0, first.stderr
        assert any(r.endswith("/model.safetensors") and r.startswith("GET") for r in hub.requests)
        served = len(hub.requests)
        offline = subprocess.run(cli + [str(tmp_path / "offline.h5")], env=dict(env, HF_HUB_OFFLINE="1"),
                                 capture_output=True, text=True, cwd=REPO_ROOT)
        assert offline.returncode == 0, offline.stderr
        assert len(hub.requests) == served  # the cache answered, the hub was not asked
        pinned = subprocess.run(cli[:-3] + [f"some-org/some-clip@{hub.commit}", "--fps", "2", "-q", "-o",
                                            str(tmp_path / "pinned.h5")], env=env, capture_output=True, text=True,
                                cwd=REPO_ROOT)
        assert pinned.returncode == 0, pinned.stderr
    with FeatureStore.open(local) as want:
        for name in ("online", "offline", "pinned"):
            with FeatureStore.open(tmp_path / f"{name}.h5") as got:
                np.testing.assert_allclose(got["clip0"], want["clip0"], atol=1e-6)
                assert got.attrs["encoder_fingerprint"] == want.attrs["encoder_fingerprint"]
                assert got.attrs["encoder_revision"] == hub.commit  # the resolved commit is recorded
    # not cached, offline: the message names the id and says how to give a folder
    with pytest.raises(EncoderError, match=r"(?s)'other-org/other'.*HF_HUB_OFFLINE is set.*folder"):
        load_encoder("other-org/other")


def test_parse_encoder_and_device(tmp_path):
    assert parse_encoder("openai/clip-vit-base-patch32") == ("openai/clip-vit-base-patch32", None)
    assert parse_encoder("org/m@v1.0") == ("org/m", "v1.0")
    (tmp_path / "a@b").mkdir()
    assert parse_encoder(tmp_path / "a@b") == (str(tmp_path / "a@b"), None)  # a folder is never split
    with pytest.raises(EncoderError, match="ID@REVISION"):
        parse_encoder("org/m@")
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(EncoderError, match="dtype 'float8'"):
        load_encoder(make_tiny_clip(tmp_path / "c"), dtype="float8")


def test_bfloat16_vision_tower_stays_close_to_float32(tmp_path):
    """Half precision changes features by rounding only: cosine >= 0.99 to float32 on the tiny CLIP
    (bfloat16 keeps 8 bits of mantissa); the stored features stay float32."""
    folder = make_tiny_clip(tmp_path / "c")
    frames = np.random.default_rng(2).integers(0, 256, size=(6, 64, 80, 3), dtype=np.uint8)
    full = load_encoder(folder).encode_images(frames)
    half = load_encoder(folder, dtype="bfloat16").encode_images(frames)
    assert half.dtype == np.float32
    cos = _cosines(full, half)
    assert cos.min() >= 0.99 and cos.min() < 1 - 1e-7  # close, and really computed in bfloat16
    # the text tower is untouched
    np.testing.assert_array_equal(load_encoder(folder, dtype="bfloat16").encode_texts(["door"]),
                                  load_encoder(folder).encode_texts(["door"]))


def test_another_encoders_features_are_refused(tmp_path):
    video = write_test_video(tmp_path / "v" / "clip0.mp4", seconds=2.0, fps=8, size=(48, 64))
    a, b = make_tiny_clip(tmp_path / "a", seed=0), make_tiny_clip(tmp_path / "b", seed=1)  # same shape, other weights
    out = tmp_path / "f.h5"
    assert extract([video], str(a), out, fps=2.0, progress=False).ok
    write_test_video(tmp_path / "w" / "clip1.mp4", seconds=2.0, fps=8, size=(48, 64))
    with pytest.raises(FeatureError, match="attribute 'encoder'"):  # another folder
        extract([tmp_path / "w"], str(b), out, fps=2.0, progress=False)
    enc_a, enc_b = load_encoder(a), load_encoder(b)
    make_tiny_clip(a, seed=1)  # the same folder, retrained: only the weights tell
    with pytest.raises(ExtractError, match="encoder_fingerprint"):
        extract([tmp_path / "w"], str(a), out, fps=2.0, progress=False)
    with FeatureStore.open(out) as store:
        assert "clip0" in store and "clip1" not in store  # nothing of the refused run was written
    assert enc_a.fingerprint != enc_b.fingerprint and enc_a.dim == enc_b.dim
    check_same_encoder(enc_a.metadata, enc_a.metadata, what="features", where="x")
    with pytest.raises(EncoderError, match=r"made with encoder .*trained on features of"):
        check_same_encoder(enc_a.metadata, enc_b.metadata, what="features", where=str(out))
