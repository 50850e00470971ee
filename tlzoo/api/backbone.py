"""The backbone contract: :class:`Backbone` (a torch module) and :class:`FittableBackbone`.

Kept apart from :mod:`tlzoo.api.interfaces` because subclassing ``nn.Module`` needs torch:
the interfaces (heads, strategies, factories, requests) import without it, so ``tl heads``,
``tl plugins`` and the other listing commands never wait for torch.  Import these names from
``tlzoo`` or ``tlzoo.api.interfaces`` (both load this module on first use).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from tlzoo.api.interfaces import Dataset


class Backbone(nn.Module, ABC):
    """A pretrained network that maps raw examples to pooled feature vectors.

    Subclasses set ``modality``, ``num_features``, ``name`` and ``weights_source`` and
    implement ``transform`` (one raw example -> model input, run in DataLoader
    workers), ``collate`` (a list of those -> a batch), ``forward`` (batch ->
    ``[batch, num_features]``) and ``layer_groups`` (bottom to top, for freezing).
    ``plugin`` is set by the factory that built it (its name: part of the feature-cache key).
    A backbone whose state is learnt from the training split subclasses :class:`FittableBackbone`.
    """

    modality: str = ""
    num_features: int = 0
    name: str = ""
    plugin: str = ""  # the factory's name, set by BackboneFactory.create
    weights_source: str = "random"  # where the weights came from, recorded in the run

    @abstractmethod
    def transform(self, example: Any, train: bool) -> Any:
        """Prepare one raw example; ``train=True`` applies augmentation."""

    def collate(self, items: list[Any]) -> Any:
        """Combine transformed examples into one batch (default: stack tensors)."""
        return torch.stack(items)

    def extraction_order(self, examples: Sequence[Any]) -> Sequence[int] | None:
        """The order in which feature extraction runs ``examples`` (a chunk of at most 4,096) through
        the network, e.g. longest text first so that each batch pads little; the engine puts the
        features back in the examples' order.  None (the default): as given, in one pass."""
        return None

    def input_report(self, examples: Sequence[Any]) -> str:
        """One line on what extraction does to ``examples`` that a user should know, e.g. "41 of 300
        texts (14%) are longer than --max-length 128 tokens and were cut at the end; ...", or "" (the
        default).  Asked once per extracted split; the run logs it as a warning, keeps it in
        metrics.json (the model card lists it) and in the cache entry, so a run on cached features
        says it again."""
        return ""

    @abstractmethod
    def forward(self, batch: Any) -> torch.Tensor:
        """Pooled features, shape ``[batch, num_features]``."""

    @abstractmethod
    def layer_groups(self) -> list[nn.Module]:
        """Ordered groups of layers, input side first, for gradual unfreezing."""

    def preprocessing(self) -> dict[str, Any]:
        """A JSON-able description of the preprocessing, part of the cache key."""
        return {}

    def feature_blocks(self) -> list[tuple[str, list[int]]]:
        """For a backbone over several inputs (a fused run): each input's name and the feature columns it
        gives; the run then reports what each input adds (``metrics.json`` ``ablation``).  [] for one input."""
        return []

    def feature_members(self) -> list[Member]:
        """For a backbone made of other backbones (a fused run's): its parts, in order.  The engine then
        extracts each member's features on its view of the data, cached under the key a run of that
        member alone uses (shared both ways), and :meth:`join_features` makes this backbone's features of them.
        [] (the default): the features are this backbone's ``forward``, cached whole."""
        return []

    def join_features(self, parts: list[Any], dataset: Dataset) -> Any:
        """This backbone's features (a float32 array ``[len(dataset), num_features]``) from its members'
        (``parts``: one array per member, in :meth:`feature_members` order): what ``forward`` gives."""
        raise NotImplementedError(f"{type(self).__name__} lists members but does not join their features")

    def spec(self) -> dict[str, Any]:
        """What is needed to rebuild this backbone's architecture for ``tl predict``."""
        return {"plugin": self.plugin, "model": self.name, "weights_source": self.weights_source}

    def save_assets(self, folder: str) -> None:
        """Write files needed at prediction time besides the weights (a tokenizer, fitted state)
        into the run's ``assets/``; ``tl predict`` passes that folder back as ``request.assets``."""

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
class Member:
    """One part of a backbone made of others (:meth:`Backbone.feature_members`).

    ``view``: a dataset as this member alone reads it (its column of each record); ``factory`` and
    ``request``: what built it, so that its features are keyed as a run of that backbone keys them
    (None: by its fingerprint, as a run keys a fitted or hub backbone's); ``name``: its input, for the log.
    """

    backbone: Backbone
    view: Callable[[Dataset], Dataset]
    name: str = ""
    factory: Any = None  # BackboneFactory
    request: Any = None  # BackboneRequest


class FittableBackbone(Backbone):
    """A backbone with state learnt from the run's own training data: a TF-IDF vocabulary, an
    SVD or PCA projection, k-means centres.  Subclass this instead of :class:`Backbone`.

    The fit protocol, honoured by ``tl run``, ``tl compare``, ``tl predict``/``Predictor`` and
    ``tl export``:

    1. The factory builds the backbone unfitted; right after, the create-backbone step (after
       the split) calls ``fit(train)`` once with the training split (never validation or
       test), before any feature is extracted.  ``fit`` must be deterministic (seed anything
       random, e.g. from an option): every process of a torchrun job, and a resumed run, fit
       again and must get the same state.
    2. ``fingerprint()`` must cover the fitted state: it is taken after ``fit``, keys the feature
       cache and is compared by ``tl predict``.  Keep the state in buffers (the default
       fingerprint hashes ``state_dict()``) and anything else, e.g. a vocabulary, in
       ``preprocessing()``.
    3. ``save_assets(folder)`` writes the fitted state into the run's ``assets/`` as
       safetensors, ``.npy`` (read back with ``allow_pickle=False``) or JSON: nothing that runs
       code when read.
    4. When a request carries ``assets`` (``tl predict``: the run's ``assets/``), the factory
       calls ``load_fitted(request.assets)`` right after building the backbone, so a rebuilt
       backbone is fitted before anyone uses it; its features then equal the run's.
    """

    @abstractmethod
    def fit(self, train: Dataset) -> None:
        """Learn the state from the training split (``train.examples``, ``train.labels``)."""

    @abstractmethod
    def load_fitted(self, folder: str) -> None:
        """Restore the state that ``save_assets(folder)`` wrote (raise OSError/ValueError when it is not there)."""

    def fit_summary(self) -> str:
        """What ``fit`` decided, in one line for the run's log (e.g. which columns it read as numbers);
        "" (the default) when there is nothing to say."""
        return ""


def fit_backbone(backbone: Backbone, train: Dataset, log: Callable[[str], None] | None = None) -> None:
    """``backbone.fit(train)`` for a :class:`FittableBackbone` (nothing for any other), with a log line."""
    if not isinstance(backbone, FittableBackbone):
        return
    import time

    started = time.perf_counter()
    backbone.fit(train)
    if log is not None:
        summary = backbone.fit_summary()
        log(
            f"  fitted {backbone.name} on {len(train)} training examples ({time.perf_counter() - started:.1f}s)"
            + (f": {summary}" if summary else "")
        )


def _restore_fitted(backbone: FittableBackbone, folder: str) -> None:
    """``backbone.load_fitted(folder)``; fitted state that is missing or unreadable is a one-line TlzooError."""
    from tlzoo.api.errors import TlzooError

    try:
        backbone.load_fitted(folder)
    except TlzooError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise TlzooError(
            f"The fitted state of backbone '{backbone.name}' in '{folder}' does not load "
            f"({type(exc).__name__}: {detail}); the run is incomplete or damaged: rerun `tl run`."
        ) from None


class UnbuiltBackbone(Backbone):
    """Stands in for a backbone whose features are all cached, so the run never builds it.

    It answers what the run reads after the features exist (name, plugin, modality, width,
    where the weights came from, ``spec()``, ``preprocessing()``, ``fingerprint()``), from what
    the run that extracted the features recorded in the cache manifest (``describe``).  It has
    no parameters and writes no assets; asked for features it raises, which cannot happen:
    the run takes this path only when every split it needs is cached.
    """

    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__()
        self.name = str(info["name"])
        self.plugin = str(info["plugin"])
        self.modality = str(info["modality"])
        self.num_features = int(info["num_features"])
        self.weights_source = str(info["weights_source"])
        self._spec = dict(info["spec"])
        self._preprocessing = dict(info["preprocessing"])
        self._fingerprint = str(info["fingerprint"])

    @staticmethod
    def describe(backbone: Backbone, fingerprint: str) -> dict[str, Any]:
        """What an UnbuiltBackbone needs of ``backbone`` (JSON-able, kept in the cache manifest)."""
        return {
            "name": backbone.name,
            "plugin": backbone.plugin,
            "modality": backbone.modality,
            "num_features": backbone.num_features,
            "weights_source": backbone.weights_source,
            "spec": backbone.spec(),
            "preprocessing": backbone.preprocessing(),
            "fingerprint": fingerprint,
        }

    def transform(self, example: Any, train: bool) -> Any:
        raise RuntimeError(f"backbone {self.name} was not built (its features were cached); it has no transform")

    def forward(self, batch: Any) -> torch.Tensor:
        raise RuntimeError(f"backbone {self.name} was not built (its features were cached); it cannot run")

    def layer_groups(self) -> list[nn.Module]:
        return []

    def preprocessing(self) -> dict[str, Any]:
        return dict(self._preprocessing)

    def spec(self) -> dict[str, Any]:
        return dict(self._spec)

    def fingerprint(self) -> str:
        return self._fingerprint
