"""The contracts between the engine and plugins: Backbone, Head, Strategy, DataSource, Pretrainer.

Everything concrete (timm models, transformers encoders, scikit-learn estimators, file
formats) lives in plugins that implement these.  The engine only ever talks to these
types, which is what lets the same twelve-step runner drive image and text jobs.

Heads come in two kinds, told apart by type: a :class:`TorchHead` builds a torch module
trained by gradient descent, a :class:`FittedHead` is fitted once on extracted features.
A strategy's ``before_training`` receives a :class:`StrategyContext`, not the Run; a
backbone that is a language model declares it structurally (:class:`LanguageModelBackbone`).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

Modality = Literal["vision", "text"]
MODALITIES: tuple[str, ...] = ("vision", "text")


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

    def subset(self, index: Sequence[int]) -> "Dataset":
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
    def load(self, location: str, options: "DataOptions") -> Dataset:
        """Load every labelled example; raise TlzooError for bad input."""


@dataclass
class DataOptions:
    """What a data source may need from the run configuration."""

    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"


# --------------------------------------------------------------------------- backbone
@dataclass
class BackboneRequest:
    """What the user asked for; a backbone factory turns it into a :class:`Backbone`."""

    model: str
    weights: str | None = None  # a local file or folder overriding the default source
    pretrained: bool = True
    options: dict[str, Any] = field(default_factory=dict)


class Backbone(nn.Module, ABC):
    """A pretrained network that maps raw examples to pooled feature vectors.

    Subclasses set ``modality``, ``num_features``, ``name`` and ``weights_source`` and
    implement ``transform`` (one raw example -> model input, run in DataLoader
    workers), ``collate`` (a list of those -> a batch), ``forward`` (batch ->
    ``[batch, num_features]``) and ``layer_groups`` (bottom to top, for freezing).
    """

    modality: str = ""
    num_features: int = 0
    name: str = ""
    plugin: str = ""
    weights_source: str = "random"  # where the weights came from, recorded in the run

    @abstractmethod
    def transform(self, example: Any, train: bool) -> Any:
        """Prepare one raw example; ``train=True`` applies augmentation."""

    def collate(self, items: list[Any]) -> Any:
        """Combine transformed examples into one batch (default: stack tensors)."""
        return torch.stack(items)

    @abstractmethod
    def forward(self, batch: Any) -> torch.Tensor:
        """Pooled features, shape ``[batch, num_features]``."""

    @abstractmethod
    def layer_groups(self) -> list[nn.Module]:
        """Ordered groups of layers, input side first, for gradual unfreezing."""

    def preprocessing(self) -> dict[str, Any]:
        """A JSON-able description of the preprocessing, part of the cache key."""
        return {}

    def spec(self) -> dict[str, Any]:
        """What is needed to rebuild this backbone's architecture for ``tl predict``."""
        return {"plugin": self.plugin, "model": self.name, "weights_source": self.weights_source}

    def save_assets(self, folder: str) -> None:
        """Write files needed at prediction time besides the weights (e.g. a tokenizer)."""

    def fingerprint(self) -> str:
        """Hash of the weights and preprocessing: changes whenever features would."""
        h = hashlib.sha256(repr(sorted(self.preprocessing().items())).encode())
        h.update(self.name.encode())
        with torch.no_grad():
            for key, tensor in sorted(self.state_dict().items()):
                h.update(key.encode())
                t = tensor.detach().float().flatten()
                # a strided sample plus the sum is cheap and changes with any real update
                h.update(t[:: max(1, t.numel() // 64)].cpu().numpy().tobytes())
                h.update(str(float(t.sum())).encode())
        return h.hexdigest()[:20]


@dataclass
class BackboneFactory:
    """A family of backbones a plugin offers, e.g. ``bert`` or ``efficientnet``."""

    name: str
    modality: str
    create: Callable[[BackboneRequest], Backbone]
    default_model: str
    models: tuple[str, ...] = ()
    accepts_any_model: bool = False  # e.g. any Hugging Face hub id
    description: str = ""
    plugin: str = ""  # filled in by the plugin manager
    options: dict[str, Any] = field(default_factory=dict)  # the plugin's own model.options and their defaults

    def defaults(self) -> dict[str, Any]:
        """The plugin's own options (``model.options``, ``--set model.options.KEY=VALUE``) and their defaults."""
        return dict(self.options)


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
                raise TypeError(f"head class {cls.__name__}: trainable = {flag!r} contradicts its base; "
                                "drop the flag, the base (TorchHead or FittedHead) says it")
            return
        warnings.warn(f"head class {cls.__name__}: Head with a `trainable` flag is deprecated; subclass "
                      f"{'TorchHead' if flag else 'FittedHead'} instead", DeprecationWarning, stacklevel=3)

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.defaults())
        if unknown:
            from .errors import TlzooError, suggest

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
    def fit(self, x: "np.ndarray", y: "np.ndarray", num_classes: int) -> None:
        """Learn from features ``x`` ``[n, d]`` and class indices ``y`` ``[n]`` in ``range(num_classes)``."""

    @abstractmethod
    def predict_proba(self, x: "np.ndarray") -> "np.ndarray":
        """Class probabilities ``[n, num_classes]`` for features ``x``."""

    def to_linear(self) -> tuple["np.ndarray", "np.ndarray"] | None:
        """(weight, bias) when the fitted head is a linear softmax layer, else None."""
        return None

    @abstractmethod
    def state(self) -> dict[str, "np.ndarray"]:
        """Arrays that restore the fitted head (saved as safetensors, never pickled)."""

    @abstractmethod
    def load_state(self, arrays: dict[str, "np.ndarray"]) -> None:
        """Restore what :meth:`state` returned (``tl predict``)."""


def _no_state(self: Any) -> dict[str, "np.ndarray"]:
    return {}


def _no_load_state(self: Any, arrays: dict[str, "np.ndarray"]) -> None:
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
    extra: dict[str, Any] = {} if torch_head else {
        name: default for name, default in (("state", _no_state), ("load_state", _no_load_state))
        if not callable(getattr(cls, name, None))}
    return type(cls.__name__, (cls, TorchHead if torch_head else FittedHead),
                {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__, **extra})


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

    def finetune_language_model(self, texts: list[str], val_texts: list[str], *, epochs: int, lr: float,
                                batch_size: int, seed: int, device: torch.device, log: Callable[[str], None],
                                on_epoch: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
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
    train: Any  # the run's ``train`` config section (tlzoo.core.config.TrainConfig): epochs, lr, batch_size, ...
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
        warnings.warn(f"Strategy.before_training now receives a StrategyContext; ctx.{name} reads the Run and "
                      "stops working in tlzoo 2.0", DeprecationWarning, stacklevel=2)
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

    def before_training(self, ctx: StrategyContext) -> None:
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
        which the engine always passes.  Check options with ``tlzoo.core.pretraining.merge_options``."""
        return {}

    @abstractmethod
    def pretrain(self, corpus: list[str], out: str, options: dict[str, Any],
                 log: Callable[[str], None]) -> dict[str, Any]:
        """Train on ``corpus`` and write to ``out``; return a summary (final loss, perplexity...)."""
