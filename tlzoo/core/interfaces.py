"""The contracts between the engine and plugins: Backbone, Head, Strategy, DataSource.

Everything concrete (timm models, transformers encoders, scikit-learn estimators, file
formats) lives in plugins that implement these.  The engine only ever talks to these
types, which is what lets the same twelve-step runner drive image and text jobs.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

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


# --------------------------------------------------------------------------- heads
class Head(ABC):
    """The new layers put on top of a backbone.

    ``trainable`` heads build a torch module trained by gradient descent (and can be
    fine-tuned together with the backbone); the others are fitted once on extracted
    features, scikit-learn style.
    """

    name: str = ""
    trainable: bool = True
    params: dict[str, Any]

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
        return {}

    # trainable heads
    def build(self, num_features: int, num_classes: int) -> nn.Module:
        raise NotImplementedError(f"head '{self.name}' is not trainable")

    # fitted heads
    def fit(self, x: "np.ndarray", y: "np.ndarray", num_classes: int) -> None:
        raise NotImplementedError(f"head '{self.name}' is trainable, not fitted")

    def predict_proba(self, x: "np.ndarray") -> "np.ndarray":
        raise NotImplementedError

    def to_linear(self) -> tuple["np.ndarray", "np.ndarray"] | None:
        """(weight, bias) when the fitted head is a linear softmax layer, else None."""
        return None

    def state(self) -> dict[str, "np.ndarray"]:
        """Arrays that restore a fitted head (saved as safetensors, never pickled)."""
        return {}

    def load_state(self, arrays: dict[str, "np.ndarray"]) -> None:
        raise NotImplementedError


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


class Strategy(ABC):
    name: str = ""
    description: str = ""

    @abstractmethod
    def plan(self, head: Head, train: Any) -> Plan:
        """Turn the head and the ``train`` config section into a :class:`Plan`."""

    def before_training(self, run: Any) -> None:
        """Optional work at the start of the train step, e.g. ULMFiT's language-model
        fine-tuning on the target texts.  ``run`` is the :class:`tlzoo.core.runner.Run`."""


# --------------------------------------------------------------------------- pretraining
class Pretrainer(ABC):
    """Source-task training on an unlabelled corpus (``tl pretrain --plugin NAME``).

    ``pretrain`` writes into ``out`` everything ``tl run --plugin NAME --weights out``
    needs: weights (safetensors or the library's native format), the vocabulary or
    tokenizer, a small JSON/TOML description and a loss curve PNG.
    """

    name: str = ""  # the backbone plugin whose weights this produces
    description: str = ""

    @abstractmethod
    def pretrain(self, corpus: list[str], out: str, options: dict[str, Any],
                 log: Callable[[str], None]) -> dict[str, Any]:
        """Train on ``corpus`` and write to ``out``; return a summary (final loss, perplexity...)."""
