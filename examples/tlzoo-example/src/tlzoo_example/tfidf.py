"""``tfidf``: a text backbone fitted on the run's own training texts (TF-IDF, then a truncated SVD).

No pretrained weights: ``fit`` learns a vocabulary of word 1-2-grams with their inverse
document frequencies, and a truncated SVD (latent semantic analysis) of the training
texts' TF-IDF matrix, seeded so every fit of the same texts gives the same projection.
A text's features are its TF-IDF vector (sub-linear term frequency, L2-normalised, as
scikit-learn computes it) projected on the SVD components, then L2-normalised.

The fit protocol (``tlzoo.FittableBackbone``): the engine calls ``fit`` on the training split
before extracting features; the state lives in two buffers (``idf``, ``components``, so the
default fingerprint and the feature cache follow it) and the vocabulary, whose hash is in
``preprocessing()``.  ``save_assets`` writes ``tfidf/vocabulary.json`` and
``tfidf/state.safetensors`` (no pickle), and ``load_fitted`` reads them back when ``tl
predict`` rebuilds the backbone with the run's assets folder.

Options (``--set model.options.KEY=VALUE``): ``dim`` (feature width), ``ngram_max``,
``min_df``, ``max_features``, ``sublinear_tf`` and ``seed`` (of the SVD).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tlzoo import BackboneRequest, Dataset, FittableBackbone, TlzooError, check_options

from .plugin import (
    TFIDF_DEFAULTS as DEFAULTS,
    tfidf_factory as tfidf_factory,  # the factory lives in the light hooks module
)

FOLDER = "tfidf"  # inside the run's assets/


class TfidfSvdBackbone(FittableBackbone):
    modality = "text"

    def __init__(self, request: BackboneRequest) -> None:
        super().__init__()
        self.name = request.model
        self.options = check_options("tfidf", request.options, DEFAULTS)  # defaults filled in, keys and types checked
        for key in ("dim", "ngram_max", "min_df", "max_features"):
            if self.options[key] < 1:
                raise TlzooError(f"model.options.{key} of tfidf must be at least 1, got {self.options[key]}.")
        self.num_features = int(self.options["dim"])
        self.weights_source = "fitted on the training split (TF-IDF + truncated SVD)"
        self.vocabulary: dict[str, int] = {}
        self._analyse: Any = None  # scikit-learn's tokenizer with these options, built on first use
        # the fitted state: empty until fit() or load_fitted()
        self.register_buffer("idf", torch.zeros(0))
        self.register_buffer("components", torch.zeros(self.num_features, 0))

    # ------------------------------------------------------------ fitting
    def _vectorizer(self, **extra: Any) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        o = self.options
        return TfidfVectorizer(
            lowercase=True,
            ngram_range=(1, int(o["ngram_max"])),
            min_df=int(o["min_df"]),
            max_features=int(o["max_features"]),
            sublinear_tf=bool(o["sublinear_tf"]),
            dtype=np.float64,
            **extra,
        )

    def fit(self, train: Dataset) -> None:
        from sklearn.decomposition import TruncatedSVD

        texts = [str(t) for t in train.examples]
        vectorizer = self._vectorizer()
        try:
            x = vectorizer.fit_transform(texts)
        except ValueError:  # no word in any training text (or all below min_df)
            raise TlzooError(
                f"tfidf found no vocabulary in the {len(texts)} training texts; lower "
                "model.options.min_df or check the text column."
            ) from None
        terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
        self.vocabulary = {t: i for i, t in enumerate(terms)}
        self.idf = torch.from_numpy(vectorizer.idf_.astype(np.float32))
        # rank limited by the data: at most one component fewer than terms and texts; zero rows pad to dim
        rank = min(self.num_features, len(terms) - 1, len(texts) - 1)
        components = np.zeros((self.num_features, len(terms)), np.float32)
        if rank >= 1:
            svd = TruncatedSVD(
                n_components=rank, algorithm="randomized", n_iter=7, random_state=int(self.options["seed"])
            )
            svd.fit(x)
            components[:rank] = _signed(svd.components_).astype(np.float32)
        self.components = torch.from_numpy(components)

    @property
    def fitted(self) -> bool:
        return bool(self.vocabulary)

    def save_assets(self, folder: str) -> None:
        if not self.fitted:
            return
        from safetensors.torch import save_file

        out = Path(folder) / FOLDER
        out.mkdir(parents=True, exist_ok=True)
        terms = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        (out / "vocabulary.json").write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")
        save_file(
            {"idf": self.idf.contiguous(), "components": self.components.contiguous()}, str(out / "state.safetensors")
        )

    def load_fitted(self, folder: str) -> None:
        from safetensors.torch import load_file

        where = Path(folder) / FOLDER
        terms = json.loads((where / "vocabulary.json").read_text(encoding="utf-8"))
        state = load_file(str(where / "state.safetensors"))
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise ValueError("vocabulary.json is not a list of terms")
        if state["idf"].shape != (len(terms),) or state["components"].shape != (self.num_features, len(terms)):
            raise ValueError(f"state.safetensors does not fit {len(terms)} terms and {self.num_features} features")
        self.vocabulary = {t: i for i, t in enumerate(terms)}
        self.idf = state["idf"].float()
        self.components = state["components"].float()

    # ------------------------------------------------------------ features
    def transform(self, example: Any, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The text's TF-IDF vector as (term ids, weights), as scikit-learn's TfidfVectorizer computes it."""
        if not self.fitted:
            raise TlzooError("the tfidf backbone is not fitted: call fit(train) first (tl run does).")
        if self._analyse is None:
            self._analyse = self._vectorizer().build_analyzer()
        terms = self._analyse(str(example))
        counts = Counter(i for i in (self.vocabulary.get(term) for term in terms) if i is not None)
        ids = sorted(counts)
        tf = [1.0 + math.log(counts[i]) if self.options["sublinear_tf"] else float(counts[i]) for i in ids]
        weights = torch.tensor(tf, dtype=torch.float32) * self.idf[torch.tensor(ids, dtype=torch.long)]
        norm = float(weights.norm())
        return torch.tensor(ids, dtype=torch.long), weights / norm if norm > 0 else weights

    def collate(self, items: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        dense = torch.zeros(len(items), len(self.vocabulary))
        for row, (ids, weights) in enumerate(items):
            dense[row, ids] = weights
        return dense

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        z = batch.to(self.components.dtype) @ self.components.T
        return z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def layer_groups(self) -> list[nn.Module]:
        return []  # nothing trains by gradient descent

    def preprocessing(self) -> dict[str, Any]:
        terms = json.dumps(sorted(self.vocabulary, key=self.vocabulary.__getitem__), ensure_ascii=False)
        return {
            "tokenizer": "scikit-learn word n-grams, lower-cased",
            "options": self.options,
            "vocabulary": hashlib.sha256(terms.encode()).hexdigest()[:16],
            "terms": len(self.vocabulary),
        }


def _signed(components: np.ndarray) -> np.ndarray:
    """Each component's sign fixed (largest entry positive): an SVD's signs are otherwise arbitrary."""
    flip = np.sign(components[np.arange(len(components)), np.abs(components).argmax(1)])
    return components * np.where(flip == 0, 1, flip)[:, None]
