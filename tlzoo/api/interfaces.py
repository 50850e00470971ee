"""The contracts between the engine and plugins: Backbone, Head, Strategy, DataSource, Pretrainer.

Everything concrete (timm models, transformers encoders, scikit-learn estimators, file
formats) lives in plugins that implement these.  The engine only ever talks to these
types, which is what lets the same twelve-step runner drive image and text jobs.

Heads come in two kinds, told apart by type: a :class:`TorchHead` builds a torch module
trained by gradient descent, a :class:`FittedHead` is fitted once on extracted features.
A strategy's ``before_training`` receives a :class:`StrategyContext`, not the Run; a
backbone that is a language model declares it structurally (:class:`LanguageModelBackbone`).

Backbones: a :class:`BackboneRequest` carries the engine's settings as typed fields and the
plugin's own options in ``options``; the :class:`BackboneFactory` checks those against its
``defaults()`` (:func:`check_options`, one check for every backbone) and sets the backbone's
``plugin``.  A backbone whose state is learnt from the training split (TF-IDF, PCA, a
vocabulary) is a :class:`FittableBackbone`: the engine fits it once after the split and
restores it from the run's assets at predict time.

Options: every extension kind answers ``defaults() -> dict[str, Any]``, called on what is
registered (the Head class, the factory, strategy, data source or pretrainer object): the
options it takes and their default values (JSON-able).  A head's are ``--set
head.KEY=VALUE``, a pretrainer's ``tl pretrain --set KEY=VALUE``, a backbone factory's
``model.options``; a strategy or data source without options of its own returns ``{}``.
"""

from __future__ import annotations

import hashlib
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch
    from torch import nn

    from tlzoo.api.backbone import (
        Backbone as Backbone,
        FittableBackbone as FittableBackbone,
        fit_backbone as fit_backbone,
    )

# Backbone subclasses nn.Module, so it lives in tlzoo.api.backbone and loads (with torch) on
# first use: everything else here imports without torch, which keeps `tl heads`, `tl plugins`
# and the other listing commands fast.  `from tlzoo.api.interfaces import Backbone` still works.
_IN_BACKBONE_MODULE = ("Backbone", "FittableBackbone", "fit_backbone", "_restore_fitted")


def __getattr__(name: str) -> Any:
    if name in _IN_BACKBONE_MODULE:
        from tlzoo.api import backbone

        return getattr(backbone, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Modality = Literal["vision", "text"]
MODALITIES: tuple[str, ...] = ("vision", "text", "multimodal")  # multimodal: records with named fields


# --------------------------------------------------------------------------- data
@dataclass
class Dataset:
    """A labelled collection of raw examples.

    ``examples`` hold what a backbone's ``transform`` accepts: strings for text,
    image file paths or PIL images for vision.  Images are decoded lazily.
    """

    examples: list[Any]
    labels: list[str]
    modality: str
    ids: list[str] = field(default_factory=list)
    name: str = ""
    notes: list[str] = field(default_factory=list)  # what loading dropped or doubts, logged as run warnings

    def __post_init__(self) -> None:
        if not self.ids:
            self.ids = [str(i) for i in range(len(self.examples))]
        if not (len(self.examples) == len(self.labels) == len(self.ids)):
            raise ValueError("examples, labels and ids must have the same length")

    def __len__(self) -> int:
        return len(self.examples)

    def subset(self, index: Sequence[int]) -> Dataset:
        return Dataset(
            examples=[self.examples[i] for i in index],
            labels=[self.labels[i] for i in index],
            ids=[self.ids[i] for i in index],
            modality=self.modality,
            name=self.name,
        )

    def fingerprint(self) -> str:
        """Content hash used to key cached features."""
        h = hashlib.sha256()
        for ident, ex in zip(self.ids, self.examples):
            h.update(ident.encode())
            h.update(_example_bytes(ex))
        return h.hexdigest()[:20]


def _example_bytes(ex: Any) -> bytes:
    if isinstance(ex, str):
        import os

        if os.path.isfile(ex) and not ex.endswith(("\n",)):
            st = os.stat(ex)
            return f"{ex}:{st.st_size}:{st.st_mtime_ns}".encode()
        return ex.encode("utf-8", "surrogatepass")
    tobytes = getattr(ex, "tobytes", None)
    return tobytes() if callable(tobytes) else repr(ex).encode()


class DataSource(ABC):
    """Turns a ``--data`` argument into a :class:`Dataset`."""

    name: str = ""
    modality: str = ""  # "vision", "text" or "" for either
    description: str = ""

    def defaults(self) -> dict[str, Any]:
        """Options of this source beyond :class:`DataOptions` and their defaults (none so far)."""
        return {}

    @abstractmethod
    def can_load(self, location: str) -> bool:
        """Whether this source understands ``location`` (a path or a scheme like hf:)."""

    @abstractmethod
    def load(self, location: str, options: DataOptions) -> Dataset:
        """Load every labelled example; raise TlzooError for bad input."""


@dataclass
class DataOptions:
    """What a data source may need from the run configuration."""

    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    # False (tl embed, tl predict --data): labels are optional; a table without the label column is read,
    # and a row with a blank label is kept with the label "" (unlabelled), never dropped
    require_labels: bool = True
    # the named fields each record must hold (a fused run: one per input column, BackboneFactory.fields);
    # empty: one input per record, from text_column (or the source's own layout)
    fields: tuple[str, ...] = ()


# --------------------------------------------------------------------------- backbone
#: The engine's settings: typed fields of :class:`BackboneRequest`, never keys of its ``options``
#: (a plugin's own options may not take these names).
ENGINE_SETTINGS: tuple[str, ...] = ("pooling", "max_length", "image_size", "augment", "train_backbone", "assets")


def _engine_value(key: str, value: Any) -> Any:
    """An engine setting read from a 0.1 ``options`` dict (or model.json) as its field's type."""
    if key == "pooling":
        return str(value) if value else ""
    if key in ("max_length", "image_size"):
        if isinstance(value, bool):
            raise ValueError(f"{key} is a bool")
        return int(value or 0)
    if key == "assets":
        return str(value) if value else None
    return bool(value)


@dataclass
class BackboneRequest:
    """What the user asked for; a backbone factory turns it into a :class:`Backbone`.

    The engine's settings are typed fields (``--pooling``, ``--max-length``, ``--image-size``,
    augmentation, whether the backbone trains, and at predict time the run's ``assets`` folder);
    ``options`` holds the plugin's own keys only (``--set model.options.KEY=VALUE``), which the
    factory checks against its ``defaults()`` before ``create`` runs (:func:`check_options`).
    A request built the 0.1 way, with engine settings inside ``options``, still works: they
    move to their fields, with a DeprecationWarning.
    """

    model: str
    weights: str | None = None  # a local file or folder overriding the default source
    pretrained: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # the plugin's own options only
    pooling: str = ""  # text: token vectors -> one vector ('' = the backbone's default)
    max_length: int = 0  # text: tokens per example (0 = the backbone's default, 128 for the built-ins)
    image_size: int = 0  # vision: input size in pixels (0 = from the weights' own configuration)
    augment: bool = False  # transform(example, train=True) may augment (only when raw examples train the backbone)
    train_backbone: bool = False  # some phase updates the backbone's weights (static vectors then add an encoder)
    assets: str | None = None  # tl predict: the run's assets/ folder (what save_assets wrote); None during a run

    def __post_init__(self) -> None:
        engine = [k for k in ENGINE_SETTINGS if k in self.options]
        if engine:
            warnings.warn(
                f"BackboneRequest: {', '.join(engine)} inside options is deprecated; pass "
                f"{'it' if len(engine) == 1 else 'them'} as BackboneRequest field"
                f"{'' if len(engine) == 1 else 's'} ({', '.join(f'{k}=...' for k in engine)})",
                DeprecationWarning,
                stacklevel=3,
            )
            self._take_engine_settings()

    def _take_engine_settings(self) -> None:
        """Move engine settings found in ``options`` (0.1 requests, old model.json) to their fields."""
        options = dict(self.options)
        for key in ENGINE_SETTINGS:
            if key in options:
                value = options.pop(key)
                if getattr(self, key) == _DEFAULTS[key]:  # a field given explicitly wins
                    setattr(self, key, _engine_value(key, value))
        self.options = options

    def to_json(self) -> dict[str, Any]:
        """``backbone.request`` in model.json: every field but ``assets`` (at predict time always the run's own)."""
        return {
            "model": self.model,
            "weights": self.weights,
            "pretrained": self.pretrained,
            "options": dict(self.options),
            "pooling": self.pooling,
            "max_length": self.max_length,
            "image_size": self.image_size,
            "augment": self.augment,
            "train_backbone": self.train_backbone,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], **override: Any) -> BackboneRequest:
        """What :meth:`to_json` wrote, or a 0.1 model.json's request (engine settings inside ``options``,
        moved to their fields silently); ``override`` sets fields (``assets=``, ``weights=``)."""
        options = dict(data.get("options") or {})
        old = {k: options.pop(k) for k in ENGINE_SETTINGS if k in options}
        request = cls(
            model=str(data["model"]),
            weights=data.get("weights"),
            pretrained=bool(data.get("pretrained", True)),
            options=options,
        )
        for key in ENGINE_SETTINGS:
            if key in data or key in old:
                setattr(request, key, _engine_value(key, data[key] if key in data else old[key]))
        for key, value in override.items():
            setattr(request, key, value)
        return request


_DEFAULTS: dict[str, Any] = {f: getattr(BackboneRequest(""), f) for f in ENGINE_SETTINGS}


_TRUE_WORDS = ("true", "1", "yes", "on")
_FALSE_WORDS = ("false", "0", "no", "off")


def typed_like(want: Any, value: Any, loose: bool = False) -> tuple[bool, Any]:
    """Whether ``value`` has the type of the default ``want`` (bool; int; float, which takes an
    int and returns it as a float; str; a default of None takes anything), and the value to use.

    ``loose`` is for values typed by hand (``--set``, a TOML file, a command-line option): a string
    is parsed too (true/false, yes/no, on/off, 1/0 for a bool; a number for an int or a float), an
    integral float is a fine int, and a number a fine str.  The run configuration uses it for every
    engine setting, so plugin options and engine settings follow one set of rules.
    """
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(want, bool):
        if loose and isinstance(value, str) and value.lower() in _TRUE_WORDS + _FALSE_WORDS:
            return True, value.lower() in _TRUE_WORDS
        return isinstance(value, bool), value
    if isinstance(want, (int, float)) and loose and isinstance(value, str):
        try:
            return True, type(want)(value)
        except ValueError:
            return False, value
    if isinstance(want, int):
        if loose and isinstance(value, float) and value.is_integer():
            return True, int(value)
        return isinstance(value, int) and not isinstance(value, bool), value
    if isinstance(want, float):
        return number, float(value) if number else value
    if isinstance(want, str):
        if loose and number:
            return True, str(value)
        return isinstance(value, str), value
    return True, value


def check_options(
    owner: str, options: Mapping[str, Any], defaults: Mapping[str, Any], where: str = "model.options"
) -> dict[str, Any]:
    """``defaults`` updated by ``options``: the one check every backbone's options go through.

    ``BackboneFactory.create`` calls it before the plugin's code runs, so a backbone never sees
    an unknown key; a plugin calls it (or ``factory.check_options``) again where it wants the
    merged values.  An unknown key is a one-line TlzooError with "did you mean" and the list of
    options; a value whose type differs from its default's (bool; int; float, which takes an
    int; str) names the key and the type expected.  A default of None takes anything, and a
    value of None means the default.
    """
    from tlzoo.api.errors import TlzooError, suggest

    merged = dict(defaults)
    for key, value in options.items():
        if key not in defaults:
            if key in ENGINE_SETTINGS:
                hint = f" It is an engine setting: BackboneRequest.{key} (--{key.replace('_', '-')} or model.{key})."
            else:
                hint = suggest(key, defaults)
            listing = ", ".join(f"{k}={v!r}" for k, v in sorted(defaults.items())) or "none"
            raise TlzooError(f"Unknown option {where}.{key} for {owner}.{hint} Options: {listing}.")
        if value is None:
            continue
        want = defaults[key]
        ok, value = typed_like(want, value)
        if not ok:
            raise TlzooError(
                f"{where}.{key} of {owner} expects {type(want).__name__} (like its default {want!r}), got {value!r}."
            )
        merged[key] = value
    return merged


@dataclass
class BackboneFactory:
    """A family of backbones a plugin offers, e.g. ``bert`` or ``efficientnet``.

    ``create(request)`` is called through the factory: the request's ``options`` are checked
    against ``options`` (:func:`check_options`: unknown keys and wrong types are one-line
    errors) before the plugin's callable runs, the backbone it returns gets ``plugin`` set
    to the factory's name, and a :class:`FittableBackbone` built with ``request.assets``
    restores its fitted state from there (``load_fitted``).  ``options`` may not use the names of the engine's settings
    (:data:`ENGINE_SETTINGS`): those are typed fields of the request.

    ``weights_files(request)`` (optional) names the files the request's pretrained weights (and
    tokenizer or other files that decide the features) are read from, cheaply and without building
    the backbone; None when they cannot be named so (the hub, random init).  Declare it only when
    the request and those files alone decide the features (not for a :class:`FittableBackbone`, nor
    for one whose assets ``tl predict`` needs): the feature cache then keys by the request and a
    digest of the files, and a run whose every split is cached skips building the backbone.
    """

    name: str
    modality: str
    create: Callable[[BackboneRequest], Backbone]
    default_model: str
    models: tuple[str, ...] = ()
    accepts_any_model: bool = False  # e.g. any Hugging Face hub id
    description: str = ""
    plugin: str = ""  # the plugin that registered it, filled in by the plugin manager
    options: dict[str, Any] = field(default_factory=dict)  # the plugin's own model.options and their defaults
    option_help: dict[str, str] = field(default_factory=dict)  # one line per option, for `tl config`
    # the files a request's weights come from, found without building the backbone (None: not known
    # without building, e.g. the hub or random init); see the class docstring
    weights_files: Callable[[BackboneRequest], list[str] | None] | None = None
    # the named fields a record must hold for a backbone built from these model.options (a fused backbone:
    # its input columns); None: one input per record.  The run asks the data source for exactly these.
    fields: Callable[[dict[str, Any]], tuple[str, ...]] | None = None

    def __post_init__(self) -> None:
        clash = sorted(set(self.options) & set(ENGINE_SETTINGS))
        if clash:
            raise TypeError(
                f"backbone factory '{self.name}': option '{clash[0]}' is an engine setting "
                f"(BackboneRequest.{clash[0]}); read it from the request's field and drop the option"
            )
        make = getattr(self.create, "_tlzoo_create", self.create)  # dataclasses.replace passes the wrapper

        def create(request: BackboneRequest) -> Backbone:
            from tlzoo.api.backbone import FittableBackbone, _restore_fitted

            self.check_options(request.options)
            backbone = make(request)
            backbone.plugin = self.name
            if request.assets is not None and isinstance(backbone, FittableBackbone):
                _restore_fitted(backbone, request.assets)
            return backbone

        create._tlzoo_create = make  # type: ignore[attr-defined]  # a mark on the function object
        create.__doc__ = getattr(make, "__doc__", None)
        self.create = create

    def defaults(self) -> dict[str, Any]:
        """The plugin's own options (``model.options``, ``--set model.options.KEY=VALUE``) and their defaults."""
        return dict(self.options)

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``defaults()`` updated by ``options``, or a one-line TlzooError (see :func:`check_options`)."""
        return check_options(self.name, options, self.defaults())


# --------------------------------------------------------------------------- heads
class _HeadKind:
    """``Head.trainable``, kept for 0.1 code: True for a TorchHead, False for a FittedHead; read-only."""

    def __get__(self, obj: Any, owner: type) -> bool:
        return issubclass(owner, TorchHead)

    def __set__(self, obj: Any, value: Any) -> None:
        raise AttributeError("Head.trainable is read-only: it follows the head's type (TorchHead or FittedHead)")


class Head(ABC):
    """The new layers put on top of a backbone: subclass :class:`TorchHead` or :class:`FittedHead`.

    This common base holds the name and the options: ``defaults()`` lists every option with
    its default, and the constructor rejects unknown ones (``--set head.KEY=VALUE``).
    """

    name: str = ""
    params: dict[str, Any]
    trainable = _HeadKind()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        flag = vars(cls).get("trainable")
        if flag is None or isinstance(flag, _HeadKind):
            return
        kinds = [k for k in (globals().get("TorchHead"), globals().get("FittedHead")) if k is not None]
        if any(issubclass(cls, k) for k in kinds):
            if bool(flag) != issubclass(cls, kinds[0]):
                raise TypeError(
                    f"head class {cls.__name__}: trainable = {flag!r} contradicts its base; "
                    "drop the flag, the base (TorchHead or FittedHead) says it"
                )
            return
        warnings.warn(
            f"head class {cls.__name__}: Head with a `trainable` flag is deprecated; subclass "
            f"{'TorchHead' if flag else 'FittedHead'} instead",
            DeprecationWarning,
            stacklevel=3,
        )

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.defaults())
        if unknown:
            from tlzoo.api.errors import TlzooError, suggest

            key = sorted(unknown)[0]
            raise TlzooError(
                f"Unknown option head.{key} for head '{self.name}'.{suggest(key, self.defaults())} "
                f"Options: {', '.join(sorted(self.defaults())) or 'none'}."
            )
        self.params = {**self.defaults(), **params}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every option of this head and its default value (JSON-able)."""
        return {}


class TorchHead(Head):
    """A head trained by gradient descent as a torch module, alone on cached features or
    together with the backbone (fine-tuning)."""

    @abstractmethod
    def build(self, num_features: int, num_classes: int) -> nn.Module:
        """A fresh module mapping ``[batch, num_features]`` features to ``[batch, num_classes]`` logits."""


class FittedHead(Head):
    """A head fitted once on extracted features, scikit-learn style (the backbone stays frozen)."""

    @abstractmethod
    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        """Learn from features ``x`` ``[n, d]`` and class indices ``y`` ``[n]`` in ``range(num_classes)``."""

    @abstractmethod
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``[n, num_classes]`` for features ``x``."""

    def to_linear(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(weight, bias) when the fitted head is a linear softmax layer, else None."""
        return None

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """Arrays that restore the fitted head (saved as safetensors, never pickled)."""

    @abstractmethod
    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned (``tl predict``)."""


def _no_state(self: Any) -> dict[str, np.ndarray]:
    return {}


def _no_load_state(self: Any, arrays: dict[str, np.ndarray]) -> None:
    raise NotImplementedError(f"head '{self.name}' cannot be restored: it defines no load_state")


def head_class(cls: type[Head]) -> type[Head]:
    """``cls`` when it is a TorchHead or FittedHead; a 0.1 ``Head`` subclass (``trainable`` flag) adapted.

    The adapted class subclasses ``cls`` and the kind its flag names (a class without the
    flag is a TorchHead when it defines ``build``), so isinstance checks work; the zoo
    registers heads through this and records the deprecation against the plugin."""
    if not (isinstance(cls, type) and issubclass(cls, Head)):
        raise TypeError(f"register() takes a TorchHead or FittedHead subclass, got {cls!r}")
    if issubclass(cls, (TorchHead, FittedHead)):
        return cls
    flag = next((vars(k)["trainable"] for k in cls.__mro__ if k is not Head and "trainable" in vars(k)), None)
    torch_head = bool(flag) if flag is not None else callable(getattr(cls, "build", None))
    extra: dict[str, Any] = (
        {}
        if torch_head
        else {
            name: default
            for name, default in (("state", _no_state), ("load_state", _no_load_state))
            if not callable(getattr(cls, name, None))
        }
    )
    return type(
        cls.__name__,
        (cls, TorchHead if torch_head else FittedHead),
        {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__, **extra},
    )


# --------------------------------------------------------------------------- strategies
@dataclass
class Phase:
    """One stretch of training: which backbone groups learn, how long, how fast.

    ``train_groups`` counts backbone layer groups from the top (0 = backbone frozen,
    -1 = all).  The head always trains.  ``lr_decay`` < 1 gives discriminative
    learning rates: each group below the top gets ``lr * lr_decay**depth``.
    """

    name: str
    epochs: int
    lr: float
    train_groups: int = 0
    lr_decay: float = 1.0
    warmup_fraction: float = 0.0
    schedule: str = "cosine"  # cosine (after warm-up), slanted (ULMFiT's STLR), onecycle, constant


@dataclass
class Plan:
    """What a strategy decided: extract features once and fit, or train in phases."""

    phases: list[Phase]
    extract_features: bool  # True: the backbone never trains; features are cached

    @property
    def trains_backbone(self) -> bool:
        """Whether some phase updates backbone weights (then raw examples, not cached features, feed it)."""
        return not self.extract_features and any(p.train_groups != 0 for p in self.phases)


@runtime_checkable
class LanguageModelBackbone(Protocol):
    """A backbone that is (the encoder of) a language model and can go on training as one on
    plain texts: what the ``ulmfit`` strategy needs for its stage 2.  Structural: a backbone
    with this method satisfies ``isinstance(backbone, LanguageModelBackbone)``."""

    def finetune_language_model(
        self,
        texts: list[str],
        val_texts: list[str],
        *,
        epochs: int,
        lr: float,
        batch_size: int,
        seed: int,
        device: torch.device,
        log: Callable[[str], None],
        on_epoch: Callable[[dict[str, Any]], None],
    ) -> list[dict[str, Any]]:
        """Train the language model on ``texts`` (all layers), scoring ``val_texts``; call
        ``on_epoch(row)`` after each epoch (a history row: phase, epoch, train_loss, ...) and
        return the rows.  The backbone's parameters are left frozen (``requires_grad`` False)."""
        ...


@dataclass(frozen=True)
class StrategyContext:
    """What ``Strategy.before_training`` may use: the run's parts a strategy needs, not the whole Run.

    The test split is deliberately absent: nothing a strategy learns may see it.  The
    datasets are the run's own; read them, never modify them.
    """

    backbone: Backbone  # its weights may change (e.g. language-model fine-tuning); features are extracted after
    head: Head
    plan: Plan
    train_set: Dataset  # the training split
    val_set: Dataset  # the validation split (may be empty)
    train: Any  # the run's ``train`` config section (tlzoo.engine.config.TrainConfig): epochs, lr, batch_size, ...
    seed: int
    device: torch.device
    log: Callable[[str], None]
    record: Callable[[dict[str, Any]], None]  # add a row to history.csv (phase, epoch, train_loss, ...)
    assets: Path | None  # the run's assets/ folder, saved with the model (None in a `tl compare` probe)
    main: bool = True  # False on the other ranks under torchrun: only the main process writes files
    _run: Any = field(default=None, repr=False, compare=False)

    def __getattr__(self, name: str) -> Any:  # 0.1 strategies read the Run: still served, with a warning
        run = self.__dict__.get("_run")
        if name.startswith("__") or run is None or not hasattr(run, name):
            raise AttributeError(f"StrategyContext has no attribute '{name}'")
        warnings.warn(
            f"Strategy.before_training now receives a StrategyContext; ctx.{name} reads the Run and "
            "stops working in tlzoo 2.0",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(run, name)


class Strategy(ABC):
    """Turns the head and the ``train`` config section into a :class:`Plan`; may prepare the
    backbone before training (``before_training``)."""

    name: str = ""
    description: str = ""

    def defaults(self) -> dict[str, Any]:
        """The strategy's own options and their defaults (the built-ins have none: they read ``train.*``)."""
        return {}

    @abstractmethod
    def plan(self, head: Head, train: Any) -> Plan:
        """Turn the head and the ``train`` config section into a :class:`Plan`."""

    def plan_from_scratch(self, head: Head, train: Any) -> Plan | None:
        """The plan for a backbone with random weights (``model.pretrained`` false), or None to keep
        :meth:`plan`'s.  Called after ``plan``.  Freezing random layers only hurts, so the built-ins
        train every layer from the first epoch here, unless the user set a plan of their own."""
        return None

    def before_training(self, ctx: StrategyContext) -> None:  # noqa: B027 - optional: a no-op unless overridden
        """Optional work at the start of the train step, before features are extracted, e.g.
        ULMFiT's language-model fine-tuning on the target training texts."""


# --------------------------------------------------------------------------- pretraining
class Pretrainer(ABC):
    """Source-task training on an unlabelled corpus (``tl pretrain --plugin NAME``).

    ``pretrain`` writes into ``out`` everything ``tl run --plugin NAME --weights out``
    needs: weights (safetensors or the library's native format), the vocabulary or
    tokenizer, a small JSON/TOML description and a loss curve PNG.
    """

    name: str = ""  # the backbone plugin whose weights this produces
    description: str = ""

    def defaults(self) -> dict[str, Any]:
        """Every option (``tl pretrain --set KEY=VALUE``) and its default; include ``epochs`` and ``seed``,
        which the engine always passes.  Check options with ``tlzoo.api.interfaces.merge_options``."""
        return {}

    @abstractmethod
    def pretrain(
        self, corpus: list[str], out: str, options: dict[str, Any], log: Callable[[str], None]
    ) -> dict[str, Any]:
        """Train on ``corpus`` and write to ``out``; return a summary (final loss, perplexity...)."""


def merge_options(plugin: str, options: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` updated by ``options``; an unknown key or a wrong type is a one-line error.

    For pretrainers: ``opts = merge_options(self.name, options, self.defaults())``.
    ``epochs`` and ``seed`` always arrive from the engine, so include them in ``defaults``.
    """
    from tlzoo.api.errors import TlzooError, suggest

    merged = dict(defaults)
    for key, value in options.items():
        if key not in defaults:
            raise TlzooError(
                f"Unknown option '{key}' for pretrainer '{plugin}'.{suggest(key, defaults)} "
                f"Options: {', '.join(f'{k}={v!r}' for k, v in sorted(defaults.items()))}."
            )
        want = defaults[key]
        ok, value = typed_like(want, value)
        if not ok:
            raise TlzooError(f"Pretrainer option '{key}' expects {type(want).__name__}, got {value!r}.")
        merged[key] = value
    return merged
