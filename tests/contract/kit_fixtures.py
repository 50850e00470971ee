"""Small backbones for tests/contract/test_kit.py: one that keeps the contract and one per rule broken.

They live in an importable module (not inside a test function) because the kit's
cross-process check rebuilds them in a fresh Python process by ``module:attr``; every
class builds with no arguments (or from a request through :func:`make`).  All are small
text backbones over bags of words, checked in a moment; ``TfIdf`` and its broken
variants are FittableBackbones (their state is learnt from the training split).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tlzoo.api.interfaces import (
    Backbone,
    BackboneFactory,
    BackboneRequest,
    Dataset,
    FittableBackbone,
)

DIM = 64  # hash buckets
WIDTH = 8  # features


def _words(text: Any) -> list[str]:
    return str(text).lower().split()


def _bag(indices: list[int], dim: int = DIM) -> torch.Tensor:
    out = torch.zeros(dim)
    for i in indices:
        out[i] += 1.0
    return out


class GoodBag(Backbone):
    """Keeps the contract: CRC32 word buckets (the same in every process) -> two linear layers."""

    modality = "text"
    num_features = WIDTH
    weights_source = "random"

    def __init__(self, request: BackboneRequest | None = None) -> None:
        super().__init__()
        self.name = request.model if request is not None else "good-bag"
        self.embed = nn.Linear(DIM, 16)
        self.top = nn.Linear(16, WIDTH)

    def index(self, word: str) -> int:
        return zlib.crc32(word.encode("utf-8")) % DIM

    def transform(self, example: Any, train: bool) -> torch.Tensor:
        return _bag([self.index(w) for w in _words(example)])

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.top(torch.tanh(self.embed(batch)))

    def layer_groups(self) -> list[nn.Module]:
        return [self.embed, self.top]

    def preprocessing(self) -> dict[str, Any]:
        return {"buckets": DIM, "hash": "crc32"}


def make(request: BackboneRequest) -> Backbone:
    """A factory function (importable as ``kit_fixtures:make``): the class named by ``request.model``."""
    classes = {
        "good-bag": GoodBag,
        "hash-bag": HashBag,
        "char-trigrams": CharTrigrams,
        "unseeded-projection": UnseededProjection,
        "tfidf": TfIdf,
    }
    backbone = classes[request.model](request) if request.model != "char-trigrams" else CharTrigrams()
    backbone.name = request.model
    return backbone


# --------------------------------------------------------------------------- one rule broken each
class WrongWidth(GoodBag):
    """Declares 12 features but gives 8."""

    num_features = WIDTH + 4


class DropoutLeftOn(GoodBag):
    """Dropout that ignores eval mode."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.top(nn.functional.dropout(torch.tanh(self.embed(batch)), 0.5, training=True))


class NoiseInForward(GoodBag):
    """torch.randn added in forward, in every mode."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        out = super().forward(batch)
        return out + 0.01 * torch.randn_like(out)


class AugmentAtEval(GoodBag):
    """Word dropout applied whatever ``train`` says."""

    def transform(self, example: Any, train: bool) -> torch.Tensor:
        return _bag([self.index(w) for w in _words(example) if random.random() > 0.3])


class BatchMean(GoodBag):
    """Features normalised by the batch mean: an example's features depend on its batch."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        out = super().forward(batch)
        return out - out.mean(0, keepdim=True)


class BlindFingerprint(GoodBag):
    """A fingerprint that ignores the weights: the feature cache would serve stale features."""

    def fingerprint(self) -> str:
        return "always-the-same"


class HashBag(GoodBag):
    """Buckets from Python's hash(): different in every process (PYTHONHASHSEED)."""

    def index(self, word: str) -> int:
        return hash(word) % DIM


class NaNForEmpty(GoodBag):
    """Divides the bag by its word count: the empty text gets NaN features."""

    def transform(self, example: Any, train: bool) -> torch.Tensor:
        bag = super().transform(example, train)
        return bag / bag.sum()


class RaisesInForward(GoodBag):
    """An IndexError from deep inside forward."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.layer_groups()[5](batch)


# --------------------------------------------------------------------------- parameter-free maps
class CharTrigrams(Backbone):
    """A fixed character-trigram hashing map (CRC32), L2-normalised: no parameters, no layer groups."""

    modality = "text"
    name = "char-trigrams"
    num_features = DIM
    weights_source = "none (a fixed hashing map)"

    def transform(self, example: Any, train: bool) -> torch.Tensor:
        text = f"  {str(example).lower()}  "
        bag = _bag([zlib.crc32(text[i : i + 3].encode("utf-8")) % DIM for i in range(len(text) - 2)])
        return bag / bag.norm().clamp_min(1e-12)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return batch

    def layer_groups(self) -> list[nn.Module]:
        return []

    def preprocessing(self) -> dict[str, Any]:
        return {"char_trigrams": DIM, "hash": "crc32"}


class UnseededProjection(Backbone):
    """CRC32 word buckets times a projection drawn with np.random at build time: parameter-free,
    but no two builds (and no two processes) agree."""

    modality = "text"
    num_features = WIDTH
    weights_source = "random"

    def __init__(self, request: BackboneRequest | None = None) -> None:
        super().__init__()
        self.name = request.model if request is not None else "unseeded-projection"
        self.projection = np.random.randn(DIM, WIDTH).astype(np.float32)

    def transform(self, example: Any, train: bool) -> torch.Tensor:
        return _bag([zlib.crc32(w.encode("utf-8")) % DIM for w in _words(example)])

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return batch @ torch.from_numpy(self.projection)

    def layer_groups(self) -> list[nn.Module]:
        return []


# --------------------------------------------------------------------------- fitted on the training split
class TfIdf(FittableBackbone):
    """TF-IDF over the 16 words most frequent in the training split: no parameters; the vocabulary is
    saved as JSON and the IDF weights as a buffer (so the default fingerprint covers them)."""

    modality = "text"
    num_features = 16
    weights_source = "fitted on the training split"

    def __init__(self, request: BackboneRequest | None = None) -> None:
        super().__init__()
        self.name = request.model if request is not None else "tfidf"
        self.vocab: list[str] = []
        self.register_buffer("idf", torch.zeros(self.num_features))

    def choose(self, frequency: dict[str, int]) -> list[str]:
        return sorted(frequency, key=lambda w: (-frequency[w], w))[: self.num_features]

    def fit(self, train: Dataset) -> None:
        docs = [set(_words(t)) for t in train.examples]
        frequency: dict[str, int] = {}
        for doc in docs:
            for w in doc:
                frequency[w] = frequency.get(w, 0) + 1
        words = self.choose(frequency)
        self.vocab = words + [""] * (self.num_features - len(words))
        self.idf = torch.tensor([math.log((1 + len(docs)) / (1 + frequency.get(w, 0))) + 1 for w in self.vocab])

    def preprocessing(self) -> dict[str, Any]:
        return {"vocab": hashlib.sha256("\n".join(self.vocab).encode()).hexdigest()[:16]}

    def save_assets(self, folder: str) -> None:
        (Path(folder) / "tfidf.json").write_text(json.dumps({"vocab": self.vocab, "idf": self.idf.tolist()}))

    def load_fitted(self, folder: str) -> None:
        saved = json.loads((Path(folder) / "tfidf.json").read_text())
        self.vocab, self.idf = saved["vocab"], torch.tensor(saved["idf"])

    def transform(self, example: Any, train: bool) -> torch.Tensor:
        index = {w: i for i, w in enumerate(self.vocab) if w}
        return _bag([index[w] for w in _words(example) if w in index], self.num_features)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch * self.idf
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def layer_groups(self) -> list[nn.Module]:
        return []


class UnstableFit(TfIdf):
    """Breaks ties between equally frequent words at random: two fits on the same split differ."""

    def choose(self, frequency: dict[str, int]) -> list[str]:
        words = list(frequency)
        random.shuffle(words)
        return sorted(words, key=lambda w: -frequency[w])[: self.num_features]


class FingerprintMissesFit(TfIdf):
    """Keeps the fitted vocabulary out of the fingerprint (and IDF weights out of the state)."""

    def __init__(self, request: BackboneRequest | None = None) -> None:
        super().__init__(request)
        del self.idf
        self.idf = torch.zeros(self.num_features)  # a plain attribute: not in state_dict()

    def preprocessing(self) -> dict[str, Any]:
        return {}


# a factory as a plugin registers it (importable as ``kit_fixtures:FACTORY``): options checked, plugin set
FACTORY = BackboneFactory(
    "kit-bags",
    "text",
    make,
    default_model="good-bag",
    models=("good-bag", "hash-bag", "char-trigrams", "unseeded-projection", "tfidf"),
)
