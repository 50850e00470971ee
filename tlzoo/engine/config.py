"""The run configuration: typed dataclasses, TOML in and out, ``--set key=value``.

Each engine setting is declared once, in the dataclasses below, with :func:`setting`: its
type (the annotation), default, meaning, range or choices, and the ``tl run`` option that sets
it.  Everything else is derived from that declaration: ``tl config`` (``config_keys``), the
options and help of ``tl run``, ``tl lr-find`` and ``tl compare`` (``cli/train.py``), the type
and range checks of ``--set`` and of a ``--config`` file, and did-you-mean for unknown keys.

Precedence, lowest first: defaults -> ``--config FILE`` -> CLI options -> ``--set``.
Unknown keys and values of the wrong type are errors that name the key.  ``head.*``
keys other than ``head.name`` are the head's own hyper-parameters, checked by the head.
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlzoo.api.errors import TlzooError
from tlzoo.api.settings import Setting, collect_settings, setting
from tlzoo.infra.config_text import coerce, parse_loose, toml_value, unknown_key
from tlzoo.infra.epochs_compat import (
    UNSET_EPOCHS,
    EpochsCompat,
    accept_old_epochs,
    resolve_old_epochs,
    set_old_epochs,
)

_INF = float("inf")
__all__ = ["RunConfig", "Setting", "setting", "settings"]


def _at_least(low: float) -> Callable[[Any], bool]:
    return lambda v: low <= v < _INF


_HEAD_DEFAULTS = "feature-extraction 30, fine-tune 10"
_JOINT_DEFAULTS = "fine-tune 3, from scratch 10"


@dataclass
class DataConfig:
    path: str = setting(
        "",
        "the data: a CSV/JSONL file, a folder of class sub-folders, hf:NAME or a built-in name (--data)",
        flag="--data",
        short="-d",
        option_help="CSV/JSONL of texts, a folder with one sub-folder of images or .txt files per class, "
        "hf:NAME or a saved Hugging Face dataset, or a built-in name (tl data list)",
    )
    text_column: str = setting(
        "text", "the column holding the text (or the image path of an image CSV)", flag="--text-column"
    )
    label_column: str = setting("label", "the column holding the label", flag="--label-column")
    encoding: str = setting("utf-8", "encoding of text files", flag="--encoding")
    limit: int = setting(
        0,
        "use a stratified subset of this many examples (0 = all)",
        flag="--limit",
        check=_at_least(0),
        must="0 (all examples) or a positive number of examples",
    )
    val_fraction: float = setting(
        0.15,
        "share of the examples held out for validation (early stopping, best weights)",
        flag="--val-fraction",
        check=lambda v: 0 <= v < 1,
        must="a fraction in [0, 1)",
    )
    test_fraction: float = setting(
        0.15,
        "share of the examples held out for the test figures (0 with --cv K: all data cross-validated)",
        flag="--test-fraction",
        check=lambda v: 0 <= v < 1,
        must="a fraction in [0, 1) (0 only with --cv K, which then scores the run)",
    )
    augment: bool = setting(
        True,
        "augment training images where the backbone trains on them (--no-augment: never)",
        flag="--no-augment",
        option_help="No training-time augmentation",
    )
    strict_inputs: bool = setting(
        False,
        "every image is read at step 2, and an unreadable one (missing, corrupt, truncated) stops the run in one "
        "line naming the file; false: a fused run gives it a counted placeholder, a single-input image run leaves "
        "out, counted, each example whose file is missing or not an image (a file whose pixels are cut short still "
        "stops it when decoded)",
        flag="--strict-inputs",
        option_help="Stop at step 2 on an unreadable image (missing, corrupt, truncated), naming the file, instead "
        "of leaving it out (or, in a fused run, a placeholder), counted in the log",
    )


@dataclass
class ModelConfig:
    plugin: str = setting(
        "",
        "the backbone plugin or a catalogued model name (tl list)",
        flag="--plugin",
        short="-p",
        option_help="Backbone plugin (bert, efficientnet, ...) or a catalogued model name",
    )
    name: str = setting(
        "",
        "the plugin's model (empty: the plugin's default)",
        flag="--model",
        short="-m",
        shown="the plugin's default",
        option_help="Model of the plugin (see `tl list`)",
    )
    weights: str = setting(
        "",
        "local weights: a checkpoint folder or a weights file (empty: the default source)",
        flag="--weights",
        option_help="Local weights: a checkpoint folder or a weights file",
    )
    pretrained: bool = setting(
        True,
        "start from pretrained weights; false (--no-pretrained): random weights, every layer trains",
        flag="--no-pretrained",
        option_help="Random weights, every layer trained from epoch 1 (the scratch baseline)",
    )
    pooling: str = setting(
        "",
        "text: how token states become one vector, cls, mean, max or pooler (empty: the backbone's)",
        flag="--pooling",
        shown="the backbone's",
        option_help="Text: how token states become one vector, cls, mean, max or pooler",
    )
    max_length: int = setting(
        128,
        "text: tokens kept per example",
        flag="--max-length",
        check=_at_least(1),
        must="a positive number of tokens per example",
    )
    image_size: int = setting(
        0,
        "vision: input size in pixels (0: the size the weights were trained at)",
        flag="--image-size",
        check=lambda v: 0 <= v <= 1024,  # real models take 32 to 1024 px; 100,000 took 24 GB before the OOM killer
        must="a size in pixels from 1 to 1024 (or 0: the size the weights were trained at)",
        unset="the size the weights were trained at",
        option_help="Vision: input size in pixels",
    )
    options: dict[str, Any] = setting(
        help="the backbone plugin's own options, model.options.KEY (listed below per plugin)", factory=dict
    )


@dataclass
class HeadConfig:
    name: str = setting(
        "fc",
        "the new head: fc (trained with the network) or a fitted one, logreg, svm, rf, knn, tree, nb",
        flag="--head",
        option_help="New head: fc, logreg, svm, rf, knn, tree, nb (options: `tl heads`)",
    )
    params: dict[str, Any] = setting(help="the head's own options, head.KEY (listed below per head)", factory=dict)


@accept_old_epochs
@dataclass
class TrainConfig(EpochsCompat):
    strategy: str = setting(
        "feature-extraction",
        "feature-extraction, fine-tune or ulmfit (tl strategies)",
        flag="--strategy",
        short="-s",
        option_help="feature-extraction, fine-tune or ulmfit (see `tl strategies`)",
    )
    head_epochs: int = setting(
        UNSET_EPOCHS,
        "epochs of the new head alone, the backbone frozen (on cached features): feature extraction's "
        "training, fine-tune's first phase (0 skips it there)",
        flag="--head-epochs",
        check=_at_least(0),
        must=f"0 or more (leave it out for the strategy's own: {_HEAD_DEFAULTS})",
        unset=f"the strategy's default: {_HEAD_DEFAULTS}",
        option_help="Epochs of the new head alone, the backbone frozen: all of feature extraction's training, "
        "fine-tune's first phase (0 skips it)",
    )
    joint_epochs: int = setting(
        0,
        "epochs with the backbone training: fine-tune's joint phase (after the head epochs), every layer "
        "from scratch (--no-pretrained)",
        flag="--joint-epochs",
        check=_at_least(1),
        must=f"at least 1 (0 is not the default: leave it out for the strategy's own, {_JOINT_DEFAULTS})",
        unset=f"the strategy's default: {_JOINT_DEFAULTS}",
        option_help="Epochs with the backbone training: fine-tune's joint phase (after --head-epochs), every "
        "layer's from scratch (--no-pretrained)",
    )
    lm_epochs: int = setting(
        2, "ulmfit: language-model fine-tuning epochs on the training texts", check=_at_least(0), must="0 or more"
    )
    batch_size: int = setting(
        32,
        "examples per batch (training and feature extraction)",
        flag="--batch-size",
        short="-b",
        check=_at_least(1),
        must="at least 1",
    )
    lr: float = setting(
        1e-2,  # measured: BENCHMARKS.md, "The fc head's learning rate" (3e-3 was still improving at epoch 30)
        "head learning rate; also every layer's when training from scratch",
        flag="--lr",
        check=lambda v: 0 < v < _INF,
        must="a positive learning rate",
    )
    finetune_lr: float = setting(
        5e-5,
        "fine-tune: learning rate of the top unfrozen layer group",
        flag="--finetune-lr",
        check=lambda v: 0 < v < _INF,
        must="a positive learning rate",
    )
    unfreeze: int = setting(
        2,
        "fine-tune: how many top layer groups train (-1 = all); 0 with --no-pretrained: keep it frozen",
        flag="--unfreeze",
        check=_at_least(-1),
        must="-1 (all groups), 0 or a number of layer groups",
    )
    lr_decay: float = setting(
        0.5,
        "fine-tune: each group below the top learns at lr x this factor per step down",
        check=lambda v: 0 < v <= 1,
        must="a factor in (0, 1]",
    )
    weight_decay: float = setting(0.01, "AdamW weight decay", check=_at_least(0), must="0 or more")
    label_smoothing: float = setting(
        0.0, "label smoothing of the cross-entropy loss", check=lambda v: 0 <= v < 1, must="in [0, 1)"
    )
    warmup_fraction: float = setting(
        0.1,
        "share of a phase's steps spent warming the learning rate up",
        check=lambda v: 0 <= v < 1,
        must="a fraction in [0, 1)",
    )
    schedule: str = setting(
        "cosine",
        "learning rate per step: cosine (after warm-up), onecycle, slanted or constant",
        choices=("cosine", "onecycle", "slanted", "constant"),
    )
    gradual_unfreezing: bool = setting(
        False, "fine-tune: thaw one more layer group per epoch up to train.unfreeze (ULMFiT)"
    )
    patience: int = setting(
        0,
        "early stopping: end a phase after this many epochs without a better val loss (0 = off)",
        check=_at_least(0),
        must="0 (off) or a number of epochs",
    )
    cv: int = setting(
        0,
        "feature extraction: also score the head by K-fold cross-validation on every example outside the "
        "test split (accuracy and macro-F1: mean, sd, 95% interval; features extracted once)",
        flag="--cv",
        check=lambda v: v == 0 or 2 <= v < _INF,
        must="0 (off) or a number of folds of at least 2",
        option_help="Also score the head by K-fold cross-validation on the examples outside the test split "
        "(feature extraction; cached features)",
    )
    refit_full: bool = setting(
        False,
        "after selection, refit the chosen head (or plan, as many epochs as kept) on train + validation "
        "and save that as the run's model (--refit-full)",
        flag="--refit-full",
        option_help="Refit the chosen head (or fine-tune plan, same epochs) on train + validation and save that "
        "as the model",
    )
    num_workers: int = setting(
        0,
        "DataLoader worker processes (0 = load in the main process)",
        flag="--num-workers",
        check=_at_least(0),
        must="0 (load in the main process) or more",
    )
    device: str = setting("auto", "auto, cpu or cuda", flag="--device", option_help="auto, cpu or cuda")
    amp: bool = setting(
        True,
        "on a GPU: bfloat16 autocast where supported (false: float32 throughout); never on CPU",
        flag="--no-amp",
        option_help="On a GPU: train and extract in float32 (default: bfloat16 autocast where the GPU supports it)",
    )


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = setting(
        0,
        "random seed: the split, the initial weights, the shuffling",
        flag="--seed",
        check=lambda v: 0 <= v < 2**32,
        must="an integer in [0, 2**32)",
    )
    out: str = setting(
        "",
        "the run folder (empty: runs/<time>-<plugin>)",
        flag="--out",
        short="-o",
        shown="runs/<time>-<plugin>",
        option_help="Run directory",
    )
    progress: bool = setting(True, "progress bars on stderr (--quiet turns them off)")

    def __post_init__(self) -> None:
        self._given: set[str] = set()  # keys set by a config file, an option or --set (see given)
        self.notes: list[str] = []  # one line each for the run's log: old spellings read as their new keys

    def given(self, dotted: str) -> bool:
        """Whether the key ``dotted`` was set (config file, option, ``--set``) rather than left at its
        default: a default may then be chosen for the machine (the batch size for a GPU)."""
        return dotted in self._given

    def use_inputs(self, inputs: dict[str, str], tabular: list[str] | tuple[str, ...] = ()) -> RunConfig:
        """A fused run: ``inputs`` maps each image or text column to ``"plugin"`` or ``"plugin:model"``,
        ``tabular`` lists tabular columns (``use_inputs({"image": "efficientnet_lite0"}, ["price"])``)."""
        self.set("model.plugin", "fusion")
        self.set("model.options.inputs", dict(inputs))
        self.set("model.options.tabular", list(tabular))
        return self

    # ------------------------------------------------------------ building
    @classmethod
    def from_toml(cls, path: str | Path) -> RunConfig:
        p = Path(path)
        if not p.is_file():
            raise TlzooError(f"Config file '{path}' does not exist; pass an existing TOML file to --config.")
        try:
            data = tomllib.loads(p.read_text("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # a binary file: not UTF-8
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
        """Set one key such as ``train.lr``; strings are parsed to the setting's type, then its range
        or choices are checked (one line naming the key, its option and what it must be)."""
        parts = dotted.split(".")
        if dotted == "train.epochs":  # 0.2's key: validate() reads it once the strategy is known
            set_old_epochs(self, coerce(dotted, value, int))
            return
        if parts[:2] == ["model", "options"] and len(parts) == 3:  # checked by the backbone plugin
            self.model.options[parts[2]] = parse_loose(value)
            return
        if parts[0] == "head" and len(parts) == 2 and parts[1] != "name":
            self.head.params[parts[1]] = parse_loose(value)
            return
        decl = settings().get(dotted)
        if decl is None or decl.type is dict:
            raise unknown_key(dotted, settings())
        coerced = coerce(dotted, value, decl.type)
        decl.check_value(coerced)
        target: Any = self
        for part in parts[:-1]:
            target = getattr(target, part)
        setattr(target, parts[-1], coerced)
        self._given.add(dotted)

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
        for dotted, decl in settings().items():
            value = self.get(dotted)
            if decl.unset and value == decl.default:  # "not set": the strategy or the weights decide
                continue
            decl.check_value(value)
        resolve_old_epochs(self)
        d = self.data
        if d.test_fraction == 0 and not self.train.cv:
            raise TlzooError(
                "--test-fraction 0 leaves no test split to score the run; add --cv K to score it by K-fold "
                "cross-validation on all the data instead, or give a test fraction in (0, 1)."
            )
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

    def get(self, dotted: str) -> Any:
        """The value of one key such as ``train.lr``."""
        target: Any = self
        for part in dotted.split("."):
            target = getattr(target, part)
        return target

    # ------------------------------------------------------------ output
    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        d = self.as_dict()
        lines = [f"{k} = {toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
        for section, values in d.items():
            if not isinstance(values, dict):
                continue
            lines.append(f"\n[{section}]")
            for k, v in values.items():
                if isinstance(v, dict):
                    continue
                decl = settings()[f"{section}.{k}"]
                if decl.unset and v == decl.default:  # a comment, not "epochs = 0": reads back as the default
                    lines.append(f"# {k}: not set ({decl.unset})")
                    continue
                if decl.key in NOT_USED_BY.get(self.train.strategy, ()):  # a comment: it reads back as the default
                    lines.append(f"# {k} = {toml_value(v)}  (not used by {self.train.strategy})")
                    continue
                lines.append(f"{k} = {toml_value(v)}")
            if section == "train" and self.train._old_epochs:  # 0.2's key set in Python: moved when read back
                lines.append(f"epochs = {self.train._old_epochs}  # deprecated (0.2): read as head or joint epochs")
            for k, v in values.items():
                if isinstance(v, dict) and v:
                    lines.append(f"\n[{section}.{k}]")
                    lines.extend(f"{kk} = {toml_value(vv)}" for kk, vv in v.items())
        return "\n".join(lines) + "\n"


# keys a built-in strategy never reads: config.toml writes them as comments in its runs
NOT_USED_BY: dict[str, tuple[str, ...]] = {
    "feature-extraction": ("train.finetune_lr", "train.lr_decay", "train.gradual_unfreezing", "train.lm_epochs"),
    "fine-tune": ("train.lm_epochs",),
}


@functools.cache
def settings() -> dict[str, Setting]:
    """Every engine setting by its dotted key, in the order of the dataclasses, with its key, type
    and default filled in: the one source of the tables below, of ``tl config`` and of the options."""
    return collect_settings(RunConfig)


# Derived views of the declarations, kept for code that reads them by these names.
# Ranges of numeric keys: (test, what it must be), checked on ``set`` and in ``validate``.
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    k: (s.check, s.must) for k, s in settings().items() if s.check is not None
}
# Keys whose default means "not set, decided later": config.toml writes them as a comment saying so
UNSET: dict[str, tuple[Any, str]] = {k: (s.default, s.unset) for k, s in settings().items() if s.unset}
# the command-line option that takes a key's value, for messages and suggested commands
OPTION_NAMES: dict[str, str] = {k: s.flag for k, s in settings().items() if s.flag and not s.negative}
