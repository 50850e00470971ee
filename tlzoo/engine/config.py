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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlzoo.api.errors import TlzooError, suggest


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
    amp: bool = True  # on a GPU: bfloat16 autocast where it supports it (false: float32 throughout); never on CPU


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    out: str = ""  # empty: runs/<time>-<plugin>
    progress: bool = True

    def __post_init__(self) -> None:
        self._given: set[str] = set()  # keys set by a config file, an option or --set (see given)

    def given(self, dotted: str) -> bool:
        """Whether the key ``dotted`` was set (config file, option, ``--set``) rather than left at its
        default: a default may then be chosen for the machine (the batch size for a GPU)."""
        return dotted in self._given

    # ------------------------------------------------------------ building
    @classmethod
    def from_toml(cls, path: str | Path) -> RunConfig:
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
                raise TlzooError(
                    f"Unknown config key '{dotted}'.{suggest(dotted, known) or ' Known: ' + ', '.join(known) + '.'}"
                )
            if i == len(parts) - 1:
                ftype = _resolved_types(type(target))[part]
                if dataclasses.is_dataclass(ftype):
                    first = dataclasses.fields(ftype)[0].name
                    raise TlzooError(
                        f"Config key '{dotted}' is a section; set one of its keys, e.g. '{dotted}.{first}'."
                    )
                coerced = _coerce(dotted, value, ftype)
                _check_range(dotted, coerced)
                setattr(target, part, coerced)
                self._given.add(dotted)
            else:
                target = getattr(target, part)
                if not dataclasses.is_dataclass(target):
                    raise TlzooError(f"Config key '{'.'.join(parts[: i + 1])}' is not a section.")

    def apply_overrides(self, overrides: list[str]) -> None:
        for item in overrides:
            if "=" not in item:
                raise TlzooError(f"--set expects key=value, got '{item}'; e.g. --set train.lr=0.001.")
            key, value = item.split("=", 1)
            self.set(key.strip(), value.strip())

    def validate(self) -> None:
        """Check every range and every cross-key rule; runs before any data is read.

        ``set`` already checks one key at a time; this also catches values assigned
        directly in Python and rules that span keys (the split fractions' sum).
        """
        for dotted in RANGES:
            target: Any = self
            for part in dotted.split("."):
                target = getattr(target, part)
            _check_range(dotted, target)
        d = self.data
        if d.val_fraction + d.test_fraction >= 1:
            raise TlzooError(
                f"Split fractions val={d.val_fraction}, test={d.test_fraction} are invalid: they sum to "
                f"{d.val_fraction + d.test_fraction:g}, and their sum must be below 1 to leave training "
                "examples; lower --val-fraction or --test-fraction."
            )
        if not d.text_column or not d.label_column:
            raise TlzooError(
                "data.text_column and data.label_column must name columns; pass --text-column and --label-column."
            )
        if d.encoding:
            import codecs

            try:
                codecs.lookup(d.encoding)
            except LookupError:
                raise TlzooError(
                    f"Unknown encoding '{d.encoding}'; pass a Python codec name such as utf-8 or latin-1 to --encoding."
                ) from None

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
                unset = UNSET.get(f"{section}.{k}")
                if unset is not None and v == unset[0]:  # a comment, not "epochs = 0": reads back as the default
                    lines.append(f"# {k}: not set ({unset[1]})")
                    continue
                lines.append(f"{k} = {_toml_value(v)}")
            for k, v in values.items():
                if isinstance(v, dict) and v:
                    lines.append(f"\n[{section}.{k}]")
                    lines.extend(f"{kk} = {_toml_value(vv)}" for kk, vv in v.items())
        return "\n".join(lines) + "\n"


# Ranges of numeric keys: (test, what it must be).  Checked on ``set`` and in ``validate``,
# so a bad value fails when the configuration is built, never after minutes of work.
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data.limit": (lambda v: v >= 0, "0 (all examples) or a positive number of examples"),
    "data.val_fraction": (lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
    "data.test_fraction": (lambda v: 0 < v < 1, "a fraction in (0, 1): a test set is needed to score the run"),
    "model.max_length": (lambda v: v >= 1, "a positive number of tokens per example"),
    "model.image_size": (lambda v: v >= 0, "a positive size in pixels (or 0: the size the weights were trained at)"),
    "train.epochs": (lambda v: v >= 0, "0 (the strategy's default) or more"),
    "train.head_epochs": (lambda v: v >= 0, "0 or more"),
    "train.lm_epochs": (lambda v: v >= 0, "0 or more"),
    "train.batch_size": (lambda v: v >= 1, "at least 1"),
    "train.lr": (lambda v: 0 < v < float("inf"), "a positive learning rate"),
    "train.finetune_lr": (lambda v: 0 < v < float("inf"), "a positive learning rate"),
    "train.unfreeze": (lambda v: v >= -1, "-1 (all groups), 0 or a number of layer groups"),
    "train.lr_decay": (lambda v: 0 < v <= 1, "a factor in (0, 1]"),
    "train.weight_decay": (lambda v: 0 <= v < float("inf"), "0 or more"),
    "train.label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "train.warmup_fraction": (lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
    "train.patience": (lambda v: v >= 0, "0 (off) or a number of epochs"),
    "train.num_workers": (lambda v: v >= 0, "0 (load in the main process) or more"),
    "seed": (lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)"),
}

# Keys whose default means "not set, decided later": config.toml writes them as a comment saying so
UNSET: dict[str, tuple[Any, str]] = {
    "train.epochs": (0, "the strategy's default: feature-extraction 30 head epochs, fine-tune 3 joint, scratch 10"),
    "model.image_size": (0, "the size the weights were trained at"),
}

# the command-line option that sets a key, for messages
OPTION_NAMES = {
    "data.text_column": "--text-column",
    "data.label_column": "--label-column",
    "data.encoding": "--encoding",
    "data.limit": "--limit",
    "data.val_fraction": "--val-fraction",
    "data.test_fraction": "--test-fraction",
    "model.max_length": "--max-length",
    "model.image_size": "--image-size",
    "train.epochs": "--epochs",
    "train.head_epochs": "--head-epochs",
    "train.batch_size": "--batch-size",
    "train.lr": "--lr",
    "train.finetune_lr": "--finetune-lr",
    "train.unfreeze": "--unfreeze",
    "train.num_workers": "--num-workers",
    "train.device": "--device",
    "seed": "--seed",
}


def _check_range(dotted: str, value: Any) -> None:
    rule = RANGES.get(dotted)
    if rule is None or rule[0](value):
        return
    option = OPTION_NAMES.get(dotted)
    name = f"{option} ({dotted})" if option else dotted
    raise TlzooError(f"{name} must be {rule[1]}, got {value!r}.")


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
