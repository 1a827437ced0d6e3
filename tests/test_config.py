"""Atomic writes and the YAML ↔ dataclass config loader."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

from zeroground.config import ConfigError, from_dict, load_config, save_config
from zeroground.io import atomic_path, atomic_write_json


@dataclass
class Inner:
    epochs: int = 5
    lr: float = 1e-3


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)
    path: str | None = None


def test_config_round_trip_and_overrides(tmp_path):
    cfg = Outer(name="run", inner=Inner(epochs=7, lr=0.5), tags=["a", "b"])
    p = save_config(cfg, tmp_path / "c.yaml")
    assert load_config(p, Outer) == cfg
    over = load_config(p, Outer, {"inner.epochs": 9, "path": "/x"})
    assert over.inner.epochs == 9 and over.path == "/x" and over.inner.lr == 0.5


def test_config_rejects_unknown_and_mistyped_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['epoch'\]"):
        from_dict(Outer, {"inner": {"epoch": 3}})
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(Outer, {"inner": {"epochs": "many"}})
    (tmp_path / "bad.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(tmp_path / "bad.yaml", Outer)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml", Outer)


def test_atomic_path_keeps_old_file_on_error_and_uses_umask(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text().strip().replace(" ", "").replace("\n", "") == '{"a":1}'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~umask)
