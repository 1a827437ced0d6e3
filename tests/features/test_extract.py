"""CLIP encoders and resumable feature extraction from video files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from zeroground.cli import app
from zeroground.features.clip import ClipError, load_clip, preprocess_frames
from zeroground.testing import make_tiny_clip
from zeroground.features.extract import extract, find_videos, read_durations, ExtractError
from zeroground.features.store import FeatureStore
from zeroground.video.decode import decode_video
from zeroground.testing import cut_video, lie_about_duration, scramble_video, write_test_video

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny", seed=1)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for i, secs in enumerate([3.0, 4.0, 2.0]):
        write_test_video(root / f"vid{i}.mp4", seconds=secs, fps=8, size=(48, 64), seed=i)
    return root


def _h5_content(path):
    with h5py.File(path, "r") as fh:
        attrs = {k: fh.attrs[k] for k in fh.attrs if k != "zeroground_writer"}
        data = {k: (fh[k][()], dict(fh[k].attrs)) for k in fh.keys()}
    return attrs, data


# ----------------------------------------------------------------------------- CLIP


def test_tiny_clip_loads_with_transformers_and_tokenizes_words_whole(tmp_path):
    from transformers import AutoProcessor, CLIPModel

    folder = make_tiny_clip(tmp_path / "t", words=["zebra crossing", "opens"])
    assert isinstance(CLIPModel.from_pretrained(folder), CLIPModel)
    proc = AutoProcessor.from_pretrained(folder)
    tokens = proc.tokenizer.convert_ids_to_tokens(proc.tokenizer("Zebra opens").input_ids)
    assert tokens == ["<|startoftext|>", "zebra</w>", "opens</w>", "<|endoftext|>"]
    # unknown words still tokenize (byte alphabet), nothing maps to the unknown token
    assert proc.tokenizer.unk_token_id not in proc.tokenizer("qwxy")["input_ids"][1:-1]


def test_batched_preprocessing_matches_the_hf_processor(tiny):
    from transformers import AutoProcessor, CLIPModel

    proc = AutoProcessor.from_pretrained(tiny)
    model = CLIPModel.from_pretrained(tiny).eval()
    enc = load_clip(tiny)
    rng = np.random.default_rng(0)
    for shape in [(48, 80), (90, 120), (40, 40), (130, 70)]:
        frames = rng.integers(0, 256, size=(2, *shape, 3), dtype=np.uint8)
        ours = preprocess_frames(frames, enc.spec)  # [2, 3, 64, 64]
        ref = torch.stack([proc(images=f, return_tensors="pt")["pixel_values"][0] for f in frames])
        assert ours.shape == ref.shape
        # at most one grey level apart after resizing: 1/255 / min(std)
        assert (ours - ref).abs().max().item() <= 1 / 255 / min(enc.spec.std) + 1e-5
        with torch.no_grad():
            out = model.get_image_features(pixel_values=ref)
            out = out if torch.is_tensor(out) else out.pooler_output
            ref_feats = torch.nn.functional.normalize(out, dim=-1).numpy()
        np.testing.assert_allclose(enc.encode_images(frames), ref_feats, atol=2e-3)


def test_text_features_match_transformers(tiny):
    from transformers import AutoProcessor, CLIPModel

    proc = AutoProcessor.from_pretrained(tiny)
    model = CLIPModel.from_pretrained(tiny).eval()
    texts = ["a person opens the door", "the red ball moves left"]
    with torch.no_grad():
        out = model.get_text_features(**proc.tokenizer(texts, padding=True, return_tensors="pt"))
        out = out if torch.is_tensor(out) else out.pooler_output
    ref = torch.nn.functional.normalize(out, dim=-1).numpy()
    ours = load_clip(tiny).encode_texts(texts)
    assert ours.dtype == np.float32 and ours.shape == (2, 64)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="empty query"):
        load_clip(tiny).encode_texts(["ok", "  "])


def test_hub_id_offline_says_how_to_supply_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ClipError, match=r"(?s)'openai/clip-vit-base-patch32'.*HF_HUB_OFFLINE is set.*save_pretrained.*folder"):
        load_clip("openai/clip-vit-base-patch32")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClipError, match="no config.json"):
        load_clip(tmp_path / "empty")


# ----------------------------------------------------------------------------- extraction


def test_extracted_features_equal_encoding_the_decoded_frames(tiny, videos, tmp_path):
    out = tmp_path / "f.h5"
    report = extract([videos], str(tiny), out, fps=2.0, batch_size=3, progress=False)
    assert report.ok and sorted(report.extracted) == ["vid0", "vid1", "vid2"]
    enc = load_clip(tiny)
    with FeatureStore.open(out) as store:
        assert store.attrs["fps"] == 2.0 and store.attrs["encoder"] == str(tiny) and store.dim == 64
        for i, secs in enumerate([3.0, 4.0, 2.0]):
            feats = store[f"vid{i}"]
            direct = enc.encode_images(decode_video(videos / f"vid{i}.mp4", 2.0).frames)
            assert feats.shape == (int(secs * 2), 64)
            np.testing.assert_allclose(feats, direct, atol=1e-6)
            np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    assert read_durations(out) == {"vid0": 3.0, "vid1": 4.0, "vid2": 2.0}
    # several videos decoded at once: same content
    out3 = tmp_path / "f3.h5"
    extract([videos], str(tiny), out3, fps=2.0, batch_size=3, progress=False, decode_workers=3)
    _, a = _h5_content(out)
    _, b = _h5_content(out3)
    assert a.keys() == b.keys() and all(np.array_equal(a[k][0], b[k][0]) for k in a)


def test_resume_after_a_kill_gives_the_same_file(tiny, videos, tmp_path):
    full = tmp_path / "full.h5"
    extract([videos], str(tiny), full, progress=False)

    resumed = tmp_path / "resumed.h5"
    # A real SIGKILL right after the first video is safely on disk ...
    script = textwrap.dedent(
        f"""
        import os, signal, torch
        torch.set_num_threads(1)
        from zeroground.features.extract import extract
        def die(vid):
            os.kill(os.getpid(), signal.SIGKILL)
        extract([{str(videos)!r}], {str(tiny)!r}, {str(resumed)!r}, progress=False, on_video_done=die, decode_workers=3)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    with h5py.File(resumed, "a") as fh:
        done = [k for k in fh.keys() if fh[k].attrs.get("complete")]
        assert len(done) == 1  # (which one finishes first depends on the decode workers)
        half = next(v for v in ("vid0", "vid1", "vid2") if v not in done)
        # ... and a half-written entry, as a kill inside the next write would leave.
        fh.create_dataset(half, data=np.zeros((2, 64), np.float32))
    with FeatureStore.open(resumed) as store:
        assert store.video_ids == done  # the half entry is invisible to readers

    report = extract([videos], str(tiny), resumed, progress=False)
    assert report.already_done == done and sorted(report.extracted + done) == ["vid0", "vid1", "vid2"]
    attrs_full, data_full = _h5_content(full)
    attrs_res, data_res = _h5_content(resumed)
    assert attrs_full == attrs_res
    assert data_full.keys() == data_res.keys()
    for vid in data_full:
        np.testing.assert_array_equal(data_full[vid][0], data_res[vid][0])
        assert data_full[vid][1] == data_res[vid][1]


def test_corrupt_video_is_skipped_and_named(tiny, videos, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for p in videos.iterdir():
        os.symlink(p, mixed / p.name)
    (mixed / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    out = tmp_path / "m.h5"
    result = CliRunner().invoke(app, ["extract", str(mixed), "--encoder", str(tiny), "--out", str(out), "-q"])
    assert result.exit_code == 3, result.output
    assert "broken.mp4" in result.output and "skipped" in result.output
    with FeatureStore.open(out) as store:
        assert store.video_ids == ["vid0", "vid1", "vid2"]
    # rerun: the good ones are done, the broken one is still reported
    result = CliRunner().invoke(app, ["extract", str(mixed), "--encoder", str(tiny), "--out", str(out), "-q"])
    assert result.exit_code == 3 and "3 already done" in result.output


@pytest.fixture(scope="module")
def damaged_videos(tmp_path_factory):
    """Two whole videos and five damaged ones: cut MKV / WebM / MP4, scrambled MP4, lying MKV."""
    root = tmp_path_factory.mktemp("damaged")
    src = tmp_path_factory.mktemp("src")
    kw = dict(seconds=6.0, fps=10, size=(48, 64), gop=10)
    write_test_video(root / "whole.mp4", **kw)
    write_test_video(root / "whole2.mkv", **kw)
    cut_video(write_test_video(src / "a.mkv", **kw), root / "cut_mkv.mkv", 0.5)
    cut_video(write_test_video(src / "b.webm", codec="libvpx-vp9", **kw), root / "cut_webm.webm", 0.5)
    cut_video(write_test_video(src / "c.mp4", container_options={"movflags": "faststart"}, **kw),
              root / "cut_mp4.mp4", 0.75)
    scramble_video(write_test_video(src / "d.mp4", **kw), root / "scrambled_mp4.mp4", 0.4, 0.6)
    lie_about_duration(write_test_video(src / "e.mkv", **kw), root / "lying_mkv.mkv", 12.0)
    return root


DAMAGED_IDS = ["cut_mkv", "cut_mp4", "cut_webm", "lying_mkv", "scrambled_mp4"]


def test_truncated_videos_are_reported_and_skipped_with_no_features(tiny, damaged_videos, tmp_path):
    out = tmp_path / "d.h5"
    result = CliRunner().invoke(app, ["extract", str(damaged_videos), "--encoder", str(tiny), "--out", str(out),
                                      "--fps", "2", "-q"])
    assert result.exit_code == 3, result.output
    assert "2 video(s) extracted" in result.output and "5 skipped" in result.output
    for vid in DAMAGED_IDS:
        line = next(ln for ln in result.output.splitlines() if f"{vid}." in ln)
        assert line.startswith("skipped") and "decoding stopped at" in line, line
    with FeatureStore.open(out) as store:
        assert store.video_ids == ["whole", "whole2"]
    assert set(read_durations(out)) == {"whole", "whole2"}


def test_allow_truncated_keeps_the_features_up_to_where_decoding_stopped(tiny, damaged_videos, tmp_path):
    out = tmp_path / "t.h5"
    result = CliRunner().invoke(app, ["extract", str(damaged_videos), "--encoder", str(tiny), "--out", str(out),
                                      "--fps", "2", "--allow-truncated", "-q"])
    assert result.exit_code == 0, result.output
    durations = read_durations(out)
    clip = load_clip(str(tiny))
    with FeatureStore.open(out) as store:
        assert sorted(store.video_ids) == sorted(DAMAGED_IDS + ["whole", "whole2"])
        for vid in DAMAGED_IDS:
            path = next(damaged_videos.glob(f"{vid}.*"))
            d = decode_video(path, 2.0, allow_truncated=True)
            assert d.truncated_at is not None and d.duration <= 6.0 and durations[vid] == pytest.approx(d.duration)
            assert store[vid].shape[0] == len(d.frames) == max(1, int(np.floor(d.duration * 2 + 0.5)))
            np.testing.assert_allclose(store[vid], clip.encode_images(d.frames), atol=1e-5)


def test_extract_refuses_mixing_settings_and_clashing_ids(tiny, videos, tmp_path):
    out = tmp_path / "a.h5"
    extract([videos / "vid2.mp4"], str(tiny), out, fps=1.0, progress=False)
    result = CliRunner().invoke(app, ["extract", str(videos), "-e", str(tiny), "-o", str(out), "--fps", "2", "-q"])
    assert result.exit_code == 2 and "fps" in result.output
    (tmp_path / "x").mkdir()
    write_test_video(tmp_path / "x" / "vid2.mkv", seconds=1.0, fps=4, size=(32, 32))
    with pytest.raises(ExtractError, match="share the id 'vid2'"):
        find_videos([videos, tmp_path / "x"])
    result = CliRunner().invoke(app, ["extract", str(videos), "-e", "openai/clip-vit-base-patch32", "-o", str(tmp_path / "b.h5")])
    assert result.exit_code == 2 and "Hugging Face cache" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(tiny):
    with pytest.raises(ClipError, match="CUDA is not available"):
        load_clip(tiny, device="cuda")
