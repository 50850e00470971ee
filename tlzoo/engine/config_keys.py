"""Every ``--set`` key with its default and meaning: what ``tl config`` prints.

The engine's keys come from the :class:`~tlzoo.engine.config.RunConfig` dataclasses (their
defaults) and :data:`MEANINGS` (one line each; ``tests/integration/test_default_settings.py`` checks that every
field has one).  The plugins' keys come from what the plugins declare, so a third-party
plugin's keys appear too: a backbone factory's ``options`` (``model.options.KEY``, meanings
from its ``option_help``) and a head's ``defaults()`` (``head.KEY``).  Torch-free: only
the plugins' light registration modules are imported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tlzoo.engine.config import OPTION_NAMES, RunConfig

MEANINGS: dict[str, str] = {
    "data.path": "the data: a CSV/JSONL file, a folder of class sub-folders, hf:NAME or a built-in name (--data)",
    "data.text_column": "the column holding the text (or the image path of an image CSV)",
    "data.label_column": "the column holding the label",
    "data.encoding": "encoding of text files",
    "data.limit": "use a stratified subset of this many examples (0 = all)",
    "data.val_fraction": "share of the examples held out for validation (early stopping, best weights)",
    "data.test_fraction": "share of the examples held out for the test figures",
    "data.augment": "augment training images where the backbone trains on them (--no-augment: never)",
    "model.plugin": "the backbone plugin or a catalogued model name (tl list)",
    "model.name": "the plugin's model (empty: the plugin's default)",
    "model.weights": "local weights: a checkpoint folder or a weights file (empty: the default source)",
    "model.pretrained": "start from pretrained weights; false (--no-pretrained): random weights, every layer trains",
    "model.pooling": "text: how token states become one vector, cls, mean, max or pooler (empty: the backbone's)",
    "model.max_length": "text: tokens kept per example",
    "model.image_size": "vision: input size in pixels (0: the size the weights were trained at)",
    "model.options": "the backbone plugin's own options, model.options.KEY (listed below per plugin)",
    "head.name": "the new head: fc (trained with the network) or a fitted one, logreg, svm, rf, knn, tree, nb",
    "head.params": "the head's own options, head.KEY (listed below per head)",
    "train.strategy": "feature-extraction, fine-tune or ulmfit (tl strategies)",
    "train.epochs": "feature-extraction: head epochs; fine-tune: joint epochs; from scratch: all (0 = default)",
    "train.head_epochs": "fine-tune: epochs with the backbone frozen first (on cached features)",
    "train.lm_epochs": "ulmfit: language-model fine-tuning epochs on the training texts",
    "train.batch_size": "examples per batch (training and feature extraction)",
    "train.lr": "head learning rate; also every layer's when training from scratch",
    "train.finetune_lr": "fine-tune: learning rate of the top unfrozen layer group",
    "train.unfreeze": "fine-tune: how many top layer groups train (-1 = all); 0 with --no-pretrained: keep it frozen",
    "train.lr_decay": "fine-tune: each group below the top learns at lr x this factor per step down",
    "train.weight_decay": "AdamW weight decay",
    "train.label_smoothing": "label smoothing of the cross-entropy loss",
    "train.warmup_fraction": "share of a phase's steps spent warming the learning rate up",
    "train.schedule": "learning rate per step: cosine (after warm-up), onecycle, slanted or constant",
    "train.gradual_unfreezing": "fine-tune: thaw one more layer group per epoch up to train.unfreeze (ULMFiT)",
    "train.patience": "early stopping: end a phase after this many epochs without a better val loss (0 = off)",
    "train.num_workers": "DataLoader worker processes (0 = load in the main process)",
    "train.device": "auto, cpu or cuda",
    "train.amp": "on a GPU: bfloat16 autocast where supported (false: float32 throughout); never on CPU",
    "seed": "random seed: the split, the initial weights, the shuffling",
    "out": "the run folder (empty: runs/<time>-<plugin>)",
    "progress": "progress bars on stderr (--quiet turns them off)",
}


@dataclass
class Key:
    """One configuration key: its name, default, meaning, and who declares it."""

    key: str
    default: Any
    meaning: str
    option: str = ""  # the tl run option that sets it, if any
    source: str = "engine"  # "engine", or the plugins / heads that declare it

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def engine_keys() -> list[Key]:
    """The RunConfig keys, in the order of the dataclasses (sections' own dicts as one line each)."""
    keys: list[Key] = []

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            dotted = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(value):
                walk(value, dotted + ".")
                continue
            keys.append(Key(dotted, value, MEANINGS.get(dotted, "(no description)"), OPTION_NAMES.get(dotted, "")))

    walk(RunConfig(), "")
    return keys


def plugin_keys(zoo: Any, plugin: str = "") -> list[Key]:
    """``model.options.KEY`` of every backbone factory (or of ``plugin``'s) and ``head.KEY`` of every head.

    Factories that declare the same key with the same default and meaning share one line."""
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for name, factory in zoo.backbones.items():
        if plugin and plugin not in (name, factory.plugin):
            continue
        for key, default in factory.options.items():
            meaning = factory.option_help.get(key, "") or "(the plugin documents it)"
            grouped.setdefault((f"model.options.{key}", repr(default), meaning), []).append(name)
    keys = [
        Key(key, _literal(default), meaning, "", ", ".join(names)) for (key, default, meaning), names in grouped.items()
    ]
    keys.sort(key=lambda k: (k.key, k.source))
    if not plugin:
        for name, cls in zoo.heads.items():
            for key, default in cls.defaults().items():
                keys.append(Key(f"head.{key}", default, f"an option of the {name} head (tl heads)", "", f"head {name}"))
    return keys


def _literal(text: str) -> Any:
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def format_keys(keys: list[Key]) -> list[str]:
    """Aligned lines: key, default (as --set takes it), the option, meaning, and for plugins who declares it."""
    rows = []
    for k in keys:
        default = _show(k.default)
        where = "" if k.source == "engine" else f"  [{k.source}]"
        rows.append((k.key, default, k.option, k.meaning + where))
    if not rows:
        return []
    widths = [min(max(len(r[i]) for r in rows), cap) for i, cap in ((0, 34), (1, 20), (2, 16))]
    return [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows]


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '""' if value == "" else value
    if isinstance(value, dict):
        return "{}" if not value else ", ".join(f"{k}={_show(v)}" for k, v in value.items())
    return repr(value)
