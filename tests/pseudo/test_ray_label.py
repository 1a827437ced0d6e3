"""``pseudo-label --engine ray``: the per-video work as Ray tasks writes the same files as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from zeroground.features.store import H5FeatureWriter
from zeroground.pseudo.label import PseudoLabelError, pseudo_label
from zeroground.pseudo.psvl import VerbStats
from zeroground.testing import make_tiny_clip

pytest.importorskip("ray")

NOUNS = ["door", "cup", "book", "chair", "phone", "box"]
STATS = VerbStats(pairs={"door": {"open": 3, "close": 2}, "cup": {"hold": 2, "take": 1}, "book": {"open": 1, "hold": 2},
                         "chair": {"sit": 3}, "phone": {"hold": 1, "take": 2}, "box": {"open": 1, "put": 2}},
                  verb_totals={"open": 5, "close": 2, "hold": 5, "take": 3, "sit": 3, "put": 2}, sentences=20)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """12 videos of CLIP image features of the tiny CLIP's space: each a few steady scenes,
    every scene near one noun's text embedding (so tagging finds nouns), plus noise."""
    from zeroground.features.clip import load_clip

    root = tmp_path_factory.mktemp("world")
    clip = load_clip(str(make_tiny_clip(root / "clip", seed=2)))
    nouns = np.asarray(clip.encode_texts([f"a photo of a {n}." for n in NOUNS]))  # [V, D]
    rng = np.random.default_rng(0)
    feats = root / "feats.h5"
    with H5FeatureWriter(feats, attrs={"fps": 2.0, "encoder": "tiny", "dim": nouns.shape[1]}) as w:
        for v in range(12):
            scenes = []
            for _ in range(int(rng.integers(2, 5))):
                scenes.append(np.repeat(nouns[rng.integers(len(NOUNS))][None], int(rng.integers(5, 15)), 0))
            x = np.concatenate(scenes) + 0.05 * rng.standard_normal((sum(len(s) for s in scenes), nouns.shape[1]))
            w.add(f"vid{v:02d}", (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return root, feats, clip


@pytest.mark.parametrize("knobs", [
    {"verb_sampling": "sample", "noun_sampling": "sample"},  # corpus verbs, CLIP tagging
    {"verb_source": "clip", "keep_events": 3},  # CLIP verbs: the CLIP model travels to the workers
], ids=["corpus-verbs", "clip-verbs"])
def test_psvl_on_ray_writes_the_bytes_one_process_writes(world, ray_cluster, tmp_path, knobs):
    root, feats, clip = world
    outs = {}
    for engine in ("local", "ray"):
        outs[engine] = tmp_path / engine / "psvl.json"
        outs[engine].parent.mkdir()
        pseudo_label("psvl", feats, outs[engine], clip_model=clip, verb_stats=STATS, nouns=NOUNS, seed=7,
                     engine=engine, **knobs)
    local = outs["local"].read_bytes()
    assert local == outs["ray"].read_bytes()
    assert local.count(b'"vid"') >= 12 * 2  # every video labelled, several items each


def test_lfvmr_on_ray_writes_the_bytes_one_process_writes(world, ray_cluster, tmp_path):
    root, feats, _ = world
    # a separate query store held in memory: its arrays travel with the tasks
    from zeroground.features.store import FeatureStore

    store = FeatureStore.open(feats)
    query = {v: store[v][::2] * 2.0 for v in store.video_ids}
    outs = {}
    for engine in ("local", "ray"):
        for name, qs in (("same", None), ("query", query)):
            outs[engine, name] = tmp_path / engine / f"{name}.json"
            outs[engine, name].parent.mkdir(exist_ok=True)
            pseudo_label("lfvmr_psvlnet", feats, outs[engine, name], query_store=qs, selection="random", seed=3,
                         engine=engine)
    for name in ("same", "query"):
        assert outs["local", name].read_bytes() == outs["ray", name].read_bytes()
        a, b = (outs[e, name].with_suffix(".npy").read_bytes() for e in ("local", "ray"))
        assert a == b and len(np.load(outs["local", name].with_suffix(".npy"))) >= 12
    # the seed LFVMR's labeller (spans only) too
    for engine in ("local", "ray"):
        pseudo_label("lfvmr", feats, tmp_path / engine / "seed.json", seed=3, engine=engine)
    assert (tmp_path / "local" / "seed.json").read_bytes() == (tmp_path / "ray" / "seed.json").read_bytes()
    assert not (tmp_path / "ray" / "seed.npy").exists()


def test_an_error_inside_a_task_is_the_error_one_process_raises(world, ray_cluster, tmp_path):
    root, feats, _ = world
    wrong = np.ones((1, 8), np.float32)  # 8-d "CLIP" text space for 64-d features
    fake = type("Fake", (), {"encode_texts": lambda self, texts: np.repeat(wrong, len(texts), 0)})()
    with pytest.raises(PseudoLabelError, match="features have D=64 but the CLIP model embeds in D=8"):
        pseudo_label("psvl", feats, tmp_path / "x.json", clip_model=fake, verb_stats=STATS, nouns=NOUNS,
                     engine="ray")
    with pytest.raises(PseudoLabelError, match="unknown engine"):
        pseudo_label("lfvmr", feats, tmp_path / "x.json", engine="threads")


def test_without_engine_ray_nothing_of_ray_is_imported(world, tmp_path):
    root, feats, _ = world
    code = ("import sys\nfrom zeroground.cli import main\n"
            f"sys.argv = ['zeroground', 'pseudo-label', '--method', 'lfvmr', '--features', {str(feats)!r}, "
            f"'--out', {str(tmp_path / 'p.json')!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('RAY' if any(m == 'ray' or m.startswith('ray.') for m in sys.modules) else 'NO-RAY')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)])}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "NO-RAY"
    assert (tmp_path / "p.json").is_file()


def test_a_task_whose_worker_is_killed_is_retried_to_the_same_output(world, ray_cluster, tmp_path):
    """SIGKILL of a Ray worker in the middle of its chunk: the task runs again in another
    process (the work is a pure function of its inputs) and the file is the one-process file."""
    import zeroground.pseudo.label as label

    root, feats, _ = world
    marker = tmp_path / "killed"
    real_on_ray = label._on_ray

    def dying_chunk(vids, source, shared, clip_model, query_source=None):
        import os
        import signal

        if "vid05" in vids and not marker.exists():
            marker.write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)
        return label._lfvmr_chunk(vids, source, shared, clip_model, query_source)  # lfvmr_psvlnet's unit

    def on_ray(chunk_fn, *args, **kwargs):
        return real_on_ray(dying_chunk, *args, **kwargs)

    label._on_ray = on_ray
    try:
        pseudo_label("lfvmr_psvlnet", feats, tmp_path / "ray.json", seed=4, engine="ray")
    finally:
        label._on_ray = real_on_ray
    assert marker.exists()
    pseudo_label("lfvmr_psvlnet", feats, tmp_path / "local.json", seed=4)
    assert (tmp_path / "ray.json").read_bytes() == (tmp_path / "local.json").read_bytes()
    assert (tmp_path / "ray.npy").read_bytes() == (tmp_path / "local.npy").read_bytes()
