"""YAML configs that map 1:1 onto dataclasses.

One function reads any config (``load_config``) and one writes it back
(``save_config``); every run writes its resolved config next to its outputs.
Unknown keys are errors, not silently ignored, so a typo in a YAML file cannot
change an experiment without anyone noticing.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from zeroground.errors import ZerogroundError

T = TypeVar("T")


class ConfigError(ZerogroundError, ValueError):
    """A config file or mapping does not fit its dataclass."""


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        chosen = _by_discriminator([a for a in args if _is_dataclass_type(a)], value, where)
        if chosen is not None:
            return from_dict(chosen, value, where)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} fits none of {tp}: {'; '.join(errors)}")
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, found {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, found {value!r}")
        inner = args[0] if args else Any
        items = [_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, found {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {k: _convert(v, vt, f"{where}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, found {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, found {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, found {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, found {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, found {value!r}")
        return value
    return value


DISCRIMINATOR = "architecture"


def _by_discriminator(classes: list[type], value: Any, where: str) -> type | None:
    """Of several dataclasses that each have a ``Literal`` field named :data:`DISCRIMINATOR`
    (``architecture``), the one whose literal the mapping names (or, without the key, the
    first one): ``model: {architecture: lfvmr, ...}`` reads as the LFVMR config."""
    if len(classes) < 2 or not isinstance(value, dict):
        return None
    tags: dict[Any, type] = {}
    for cls in classes:
        tp = typing.get_type_hints(cls).get(DISCRIMINATOR)
        if typing.get_origin(tp) is not typing.Literal:
            return None
        for tag in typing.get_args(tp):
            tags[tag] = cls
    wanted = value.get(DISCRIMINATOR, typing.get_args(typing.get_type_hints(classes[0])[DISCRIMINATOR])[0])
    if wanted not in tags:
        raise ConfigError(f"{where}.{DISCRIMINATOR}: unknown {wanted!r}; choose one of {list(tags)}")
    return tags[wanted]


def convert(value: Any, tp: Any, where: str = "config") -> Any:
    """``value`` checked and converted to type ``tp`` (a dataclass, a union of dataclasses, ...)."""
    return _convert(value, tp, where)


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from a plain mapping, checking names and types."""
    if not _is_dataclass_type(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown} for {cls.__name__}; "
            f"allowed: {sorted(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(value, hints[name], f"{where}.{name}")
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {missing} for {cls.__name__}")
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Plain-YAML form of a (nested) dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_config(path: str | Path, cls: type[T], overrides: dict[str, Any] | None = None) -> T:
    """Read YAML file ``path`` into dataclass ``cls``.

    ``overrides`` maps dotted keys (``"train.epochs"``) to values and is applied
    on top of the file, so the CLI can change one field without a new file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return from_dict(cls, apply_overrides(data, overrides), where=str(path))


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["train.epochs=5", "model.hidden=64"]`` → {dotted key: YAML-parsed value} (``--set``)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} is not of the form key=value (e.g. train.epochs=5)")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Set dotted keys (``"train.epochs"``) in the nested mapping ``data`` (in place; returned).

    A mapping value is merged key by key (``{"train": {"epochs": 5}}`` changes one field,
    not the whole section)."""
    for dotted, value in (overrides or {}).items():
        if isinstance(value, dict) and value:
            apply_overrides(data, {f"{dotted}.{k}": v for k, v in value.items()})
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {dotted}: {key} is a value, not a section")
            node = child
        node[leaf] = value
    return data


def save_config(obj: Any, path: str | Path) -> Path:
    """Write the resolved config ``obj`` as YAML (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))
    tmp.replace(path)
    return path
