"""The run configuration: typed dataclasses, TOML in and out, ``--set key=value``.

Precedence, lowest first: defaults -> ``--config FILE`` -> CLI options -> ``--set``.
Unknown keys and values of the wrong type are errors that name the key.  ``head.*``
keys other than ``head.name`` are the head's own hyper-parameters, checked by the head.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import TlzooError, suggest


@dataclass
class DataConfig:
    path: str = ""
    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    limit: int = 0  # 0 = use everything; else a stratified subset of this many examples
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    augment: bool = True


@dataclass
class ModelConfig:
    plugin: str = ""
    name: str = ""  # empty: the plugin's default model
    weights: str = ""  # a local file or folder; empty: the default source
    pretrained: bool = True
    pooling: str = ""  # text: cls, mean or max; empty: the backbone's default
    max_length: int = 128  # text: tokens per example
    image_size: int = 0  # vision: 0 = from the weights' configuration
    options: dict[str, Any] = field(default_factory=dict)  # backbone-specific, e.g. --set model.options.encoder=cnn


@dataclass
class HeadConfig:
    name: str = "fc"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    strategy: str = "feature-extraction"
    epochs: int = 0  # 0 = the strategy's default (feature-extraction: 30 head epochs; fine-tune: 3 joint)
    head_epochs: int = 10  # fine-tune: epochs with the backbone frozen (on cached features: cheap)
    lm_epochs: int = 2  # ulmfit: language-model fine-tuning epochs on the target training texts
    batch_size: int = 32
    lr: float = 3e-3  # head learning rate
    finetune_lr: float = 5e-5  # top of the backbone when unfrozen
    unfreeze: int = 2  # fine-tune: how many top layer groups to unfreeze
    lr_decay: float = 0.5  # fine-tune: per-group learning-rate factor going down
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    warmup_fraction: float = 0.1
    schedule: str = "cosine"  # learning rate per step: cosine (after warm-up), onecycle, slanted or constant
    gradual_unfreezing: bool = False  # fine-tune: unfreeze one more group per epoch up to train.unfreeze
    patience: int = 0  # early stopping: stop a phase after N epochs without a better val loss (0 = off)
    num_workers: int = 0
    device: str = "auto"


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    out: str = ""  # empty: runs/<time>-<plugin>
    progress: bool = True

    # ------------------------------------------------------------ building
    @classmethod
    def from_toml(cls, path: str | Path) -> "RunConfig":
        p = Path(path)
        if not p.is_file():
            raise TlzooError(f"Config file '{path}' does not exist; pass an existing TOML file to --config.")
        try:
            data = tomllib.loads(p.read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise TlzooError(f"Config file '{path}' is not valid TOML ({exc}); fix the file.") from None
        cfg = cls()
        cfg.update(data)
        return cfg

    def update(self, data: dict[str, Any], prefix: str = "") -> None:
        """Merge a nested dict (as read from TOML) into this config, checking keys."""
        for key, value in data.items():
            if isinstance(value, dict) and key != "params":
                for sub, v in value.items():
                    if isinstance(v, dict) and f"{key}.{sub}" == "model.options":
                        for opt, ov in v.items():
                            self.set(f"model.options.{opt}", ov)
                        continue
                    if isinstance(v, dict) and f"{key}.{sub}" == "head.params":  # [head.params] as to_toml writes it
                        for opt, ov in v.items():
                            self.set(f"head.{opt}", ov)
                        continue
                    if isinstance(v, dict):
                        raise TlzooError(f"Config key '{key}.{sub}' is nested too deeply.")
                    self.set(f"{key}.{sub}", v)
            else:
                self.set(key, value)

    def set(self, dotted: str, value: Any) -> None:
        """Set one key such as ``train.lr``; strings are parsed to the field's type."""
        parts = dotted.split(".")
        if parts[:2] == ["model", "options"] and len(parts) == 3:  # checked by the backbone plugin
            self.model.options[parts[2]] = _parse_loose(value)
            return
        if parts[0] == "head" and len(parts) == 2 and parts[1] != "name":
            self.head.params[parts[1]] = _parse_loose(value)
            return
        target: Any = self
        for i, part in enumerate(parts):
            fields = {f.name: f for f in dataclasses.fields(target)}
            if part not in fields or (part == "params" and isinstance(target, HeadConfig)):
                known = [".".join(parts[:i] + [n]) for n in fields if n != "params"]
                raise TlzooError(f"Unknown config key '{dotted}'.{suggest(dotted, known) or ' Known: ' + ', '.join(known) + '.'}")
            if i == len(parts) - 1:
                ftype = _resolved_types(type(target))[part]
                if dataclasses.is_dataclass(ftype):
                    raise TlzooError(f"Config key '{dotted}' is a section; set one of its keys, e.g. '{dotted}.{dataclasses.fields(ftype)[0].name}'.")
                setattr(target, part, _coerce(dotted, value, ftype))
            else:
                target = getattr(target, part)
                if not dataclasses.is_dataclass(target):
                    raise TlzooError(f"Config key '{'.'.join(parts[:i + 1])}' is not a section.")

    def apply_overrides(self, overrides: list[str]) -> None:
        for item in overrides:
            if "=" not in item:
                raise TlzooError(f"--set expects key=value, got '{item}'; e.g. --set train.lr=0.001.")
            key, value = item.split("=", 1)
            self.set(key.strip(), value.strip())

    # ------------------------------------------------------------ output
    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        d = self.as_dict()
        lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
        for section, values in d.items():
            if not isinstance(values, dict):
                continue
            lines.append(f"\n[{section}]")
            for k, v in values.items():
                if isinstance(v, dict):
                    continue
                lines.append(f"{k} = {_toml_value(v)}")
            for k, v in values.items():
                if isinstance(v, dict) and v:
                    lines.append(f"\n[{section}.{k}]")
                    lines.extend(f"{kk} = {_toml_value(vv)}" for kk, vv in v.items())
        return "\n".join(lines) + "\n"


def _resolved_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(key: str, value: Any, ftype: Any) -> Any:
    origin = typing.get_origin(ftype)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ftype) if a is not type(None)]
        ftype = args[0]
    name = getattr(ftype, "__name__", str(ftype))
    try:
        if ftype is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if ftype is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if ftype is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if ftype is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        raise TlzooError(f"Config key '{key}' expects {name}, got {value!r}.") from None
    return value


def _parse_loose(value: Any) -> Any:
    """Parse a --set head.* string as JSON when it looks like a number/bool/list."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if v is None:
        return '""'
    return json.dumps(str(v))
