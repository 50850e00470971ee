"""Static word vectors as text backbones: ``glove``, ``word2vec`` and ``fasttext`` (via gensim).

Where the vectors come from: ``glove`` defaults to the packaged GloVe 6B-50d; any of the
three takes ``--weights`` = a GloVe ``.txt``, word2vec ``.bin``/``.txt``, fastText
``.bin``/``.vec``, or a folder written by ``tl pretrain --plugin word2vec|fasttext`` (see
``vector_files.py``; pickle-based gensim ``.kv``/``.model`` files are refused with a
conversion hint).  ``--no-pretrained`` keeps the architecture with random vectors (the
scratch baseline); without any vectors (word2vec/fasttext with no ``--weights``) words are
hashed into ``vocab_size`` random rows.

A run with ``--weights`` keeps a copy of the vectors in its ``assets/vectors`` folder
(safetensors + JSON, as ``tl pretrain`` writes them) and names it in ``model.json``
(``backbone.weights_copy``), so ``tl predict`` reads only files inside the run directory
and still works after the original vectors moved.

What the two strategies mean here (the runner tells the backbone ``train_backbone``):

* **feature-extraction** (nothing in the backbone trains): a document is its pooled word
  vectors: ``mean`` (default), ``max``, or ``sif`` (smooth-inverse-frequency weights
  a / (a + p(w)), a = 1e-3, then the common direction removed; p(w) from the corpus
  counts gensim stored, else Zipf's law on the frequency rank; the common direction is
  the first singular vector of the 20,000 most frequent word vectors, fixed per vector
  set so an example's features never depend on its batch).  Layer groups: embedding, pooled weights.
* **fine-tune** (the backbone trains): an encoder, ``bilstm`` (default; max-pooled
  states of a 1-layer BiLSTM) or ``cnn`` (Kim-style 3/4/5-gram filters, max over time),
  runs over the embedding layer initialised from the vectors.  Features = [pooled
  vectors ; encoder output], so the fine-tune plan's first phase (base frozen, head only)
  already learns from the pooled vectors instead of only from a random encoder.  Layer
  groups = [embedding, encoder]: ``--unfreeze 1`` trains the encoder with the
  embeddings frozen, ``--unfreeze 2`` (or -1) also trains the embeddings.
  The pooled vector is multiplied by per-dimension weights (ones at the start, so
  feature extraction sees the plain pooled vectors); they belong to the top group, and
  form the feature-extraction form's second layer group.  A random
  encoder needs a larger learning rate than a pretrained transformer: use e.g.
  ``--finetune-lr 2e-3``.

Tokens: lower-cased words (``text_vocab.tokenize``).  The embedding layer holds the
``vocab_size`` most frequent words of the vectors (they are the rows that can train).
Out-of-vocabulary fallback, in order: a word outside the embedding rows but in the
vectors gets its (fixed) vector; fastText builds a vector for an unseen word from its
character n-grams; a word joined by ``-`` or ``'`` gets the mean of its known parts;
anything else is ``<unk>`` (skipped when pooling; a trainable, zero-initialised row for
the encoder).  Every run logs and records (metrics.json ``oov``) the share of tokens
not in the vectors and the share left as ``<unk>``.

Options (``--set model.options.KEY=VALUE``): encoder, hidden, dropout, vocab_size,
filters, dim (random vectors only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import Backbone, BackboneRequest, check_options
from tlzoo.lib.text.batching import pad_sequences
from tlzoo.lib.text.pooling import choose_pooling, masked_max, pool
from tlzoo.lib.text.vector_files import Vectors, load_vectors, save_vectors
from tlzoo.lib.text.vocab import HashedVocab, Vocab, tokenize

from .static_vectors_hooks import DEFAULTS

POOLINGS = ("mean", "max", "sif")
ENCODERS = ("bilstm", "cnn")
PAD, UNK = 0, 1
SIF_A = 1e-3
ASSETS = "vectors"  # the run's copy of --weights vectors, under assets/


# ----------------------------------------------------------------------------- encoders
class BiLSTMEncoder(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.out_features = 2 * hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.dropout(x), lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        valid = torch.zeros_like(mask)
        valid[:, 0] = True  # an empty text still has one (padding) step
        valid |= mask
        return masked_max(out, valid)


class CNNEncoder(nn.Module):
    def __init__(self, dim: int, filters: int, dropout: float, widths: tuple[int, ...] = (3, 4, 5)) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(dim, filters, w, padding=w // 2) for w in widths)
        self.dropout = nn.Dropout(dropout)
        self.out_features = filters * len(widths)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        h = self.dropout(x).transpose(1, 2)
        valid = mask.clone()
        valid[:, 0] = True
        outs = []
        for conv in self.convs:
            y = torch.relu(conv(h))[:, :, :t]  # even widths give one extra position
            outs.append(masked_max(y.transpose(1, 2), valid))
        return torch.cat(outs, 1)


# ----------------------------------------------------------------------------- building blocks
def _check_settings(family: str, o: dict[str, Any], max_length: int) -> None:
    """A bad max_length, encoder or size option is a one-line error naming it."""
    if max_length < 1:
        raise TlzooError(f"model.max_length must be at least 1, got {max_length}.")
    if str(o["encoder"]) not in ENCODERS:
        raise TlzooError(f"Unknown encoder '{o['encoder']}' for {family}; use one of {', '.join(ENCODERS)}.")
    for key in ("hidden", "vocab_size", "filters", "dim"):
        if not isinstance(o[key], int) or o[key] < 1:
            raise TlzooError(f"model.options.{key} must be a positive integer, got {o[key]!r}.")


def _embedding_rows(
    vectors: Vectors | None, o: dict[str, Any], pretrained: bool
) -> tuple[list[str], torch.Tensor, str]:
    """(the words of the rows, the rows, where they came from): the ``vocab_size`` most frequent words of
    the vectors, their vectors or random ones as large, or without vectors ``vocab_size`` hashed random rows."""
    gen = torch.Generator().manual_seed(0)  # random rows are reproducible, so tl predict rebuilds them
    if vectors is None:
        n = int(o["vocab_size"])
        return [], torch.randn(n, int(o["dim"]), generator=gen) * 0.3, f"random init (words hashed into {n:,} rows)"
    n = min(int(o["vocab_size"]), len(vectors))
    words = list(vectors.kv.index_to_key[:n])
    if pretrained:
        return words, torch.from_numpy(np.asarray(vectors.kv.vectors[:n], dtype=np.float32)).clone(), vectors.source
    std = float(np.asarray(vectors.kv.vectors[: min(n, 10000)]).std())
    return words, torch.randn(n, vectors.dim, generator=gen) * std, f"random init (vocabulary of {vectors.source})"


def sif_statistics(
    weight: torch.Tensor, n: int, counts: list[int] | None, hashed: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-row weights a / (a + p(w)) and the common direction to remove (see module docstring).

    ``weight`` is the embedding matrix (``<pad>``, ``<unk>``, then ``n`` word rows); ``counts`` the
    corpus counts of those words when the vectors kept them (else Zipf's law on the rank)."""
    if counts:
        c = np.asarray(counts[:n], dtype=np.float64)
        p = c / max(1.0, float(np.sum(counts)))
    else:  # Zipf: p(rank r) = 1 / (r * H_N)
        ranks = np.arange(1, n + 1, dtype=np.float64)
        p = 1.0 / (ranks * (np.log(max(n, 2)) + 0.5772))
    w = np.ones(n + 2, dtype=np.float32)
    w[2:] = (SIF_A / (SIF_A + p)).astype(np.float32)
    w[UNK] = 1.0  # unseen words are rare: full weight
    if hashed:
        return w, None
    top = weight[2 : 2 + min(n, 20000)].double().numpy() * w[2 : 2 + min(n, 20000), None]
    _, _, vt = np.linalg.svd(top, full_matrices=False)
    return w, vt[0].astype(np.float32)


def fallback_vector(vectors: Vectors | None, token: str) -> np.ndarray | None:
    """The fallback vector of a word outside the embedding rows, or None (-> <unk>)."""
    if vectors is None:
        return None
    kv = vectors.kv
    if token in kv.key_to_index:
        return np.array(kv.get_vector(token), dtype=np.float32)
    if vectors.subwords:
        return np.asarray(kv.get_vector(token), dtype=np.float32)  # from character n-grams
    parts = [p for p in token.replace("\u2019", "'").replace("'", "-").split("-") if p in kv.key_to_index]
    if parts and parts != [token]:
        return np.mean([kv.get_vector(p) for p in parts], axis=0).astype(np.float32)
    return None


# ----------------------------------------------------------------------------- backbone
class StaticVectorBackbone(Backbone):
    modality = "text"

    def __init__(self, request: BackboneRequest, family: str) -> None:
        super().__init__()
        o = check_options(family, request.options, DEFAULTS)
        self.family, self.name = family, request.model
        self.pooling = choose_pooling(request.pooling, POOLINGS, family)
        self.max_length = request.max_length or 128
        _check_settings(family, o, self.max_length)
        self.encoder_name = str(o["encoder"])
        self.with_encoder = request.train_backbone
        self.options = {k: o[k] for k in DEFAULTS}

        vectors: Vectors | None = None
        if request.weights or family == "glove":
            vectors = load_vectors(request.weights, family)
        elif request.pretrained:
            load_vectors(None, family)  # raises the "train them with tl pretrain" error
        self.vectors = vectors if request.pretrained else None
        # what save_assets copies into the run: --weights vectors (the packaged GloVe needs no copy)
        self._copy_source = vectors if request.weights else None
        self._weights_path = Path(request.weights).resolve() if request.weights else None
        self.hashed = vectors is None
        self.words, table, self.weights_source = _embedding_rows(vectors, o, request.pretrained)
        self.index = {w: i + 2 for i, w in enumerate(self.words)}
        n = len(self.words) if vectors is not None else int(o["vocab_size"])
        self.dim = vectors.dim if vectors is not None else int(o["dim"])
        self.embedding = nn.Embedding(n + 2, self.dim, padding_idx=PAD)
        with torch.no_grad():
            self.embedding.weight.zero_()
            self.embedding.weight[2:] = table
        self.vocab_rows = n
        self.hashing = HashedVocab(Vocab([]), n)  # without vectors: <pad>, <unk>, then n hashed rows
        counts = self.vectors.counts if self.vectors is not None else None
        self.sif_weights, self.common = sif_statistics(self.embedding.weight.detach(), n, counts, self.hashed)
        self.encoder: nn.Module | None = None
        if self.with_encoder:
            if self.encoder_name == "bilstm":
                self.encoder = BiLSTMEncoder(self.dim, int(o["hidden"]), float(o["dropout"]))
            else:
                self.encoder = CNNEncoder(self.dim, int(o["filters"]), float(o["dropout"]))
        # per-dimension weights of the pooled vector, identity at the start: the top layer group of the
        # feature-extraction form (the contract wants at least two groups), part of the encoder group otherwise
        self.scale = nn.Parameter(torch.ones(self.dim))
        self.num_features = self.dim + (self.encoder.out_features if self.encoder is not None else 0)

    # ------------------------------------------------------------ tokens -> ids
    def transform(self, example: Any, train: bool) -> dict[str, Any]:
        tokens = tokenize("" if example is None else str(example))[: self.max_length]
        ids: list[int] = []
        extra: list[tuple[int, np.ndarray]] = []
        for i, tok in enumerate(tokens):
            if self.hashed:
                ids.append(self.hashing.id(tok))
                continue
            row = self.index.get(tok)
            if row is not None:
                ids.append(row)
                continue
            ids.append(UNK)
            vec = fallback_vector(self.vectors, tok)
            if vec is not None:
                extra.append((i, vec))
        return {"ids": ids, "extra": extra}

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids, _ = pad_sequences([it["ids"] for it in items])
        t = ids.size(1)
        extra = torch.zeros(len(items), t, self.dim)
        has_extra = torch.zeros(len(items), t, dtype=torch.bool)
        for b, it in enumerate(items):
            for i, vec in it["extra"]:
                extra[b, i] = torch.from_numpy(vec)
                has_extra[b, i] = True
        return {"ids": ids, "extra": extra, "has_extra": has_extra}

    # ------------------------------------------------------------ forward
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, has_extra = batch["ids"], batch["has_extra"]
        emb = self.embedding(ids)
        emb = torch.where(has_extra.unsqueeze(-1), batch["extra"].to(emb.dtype), emb)
        tokens = ids != PAD
        known = tokens & ((ids != UNK) | has_extra)  # <unk> carries nothing: skip it when pooling
        pooled = self._pool(emb, ids, known) * self.scale
        if self.encoder is None:
            return pooled
        return torch.cat([pooled, self.encoder(emb, tokens)], 1)

    def _pool(self, emb: torch.Tensor, ids: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        if self.pooling != "sif":
            return pool(emb, known, self.pooling)
        m = known.unsqueeze(-1).to(emb.dtype)
        w = torch.from_numpy(self.sif_weights).to(emb.device)[ids].unsqueeze(-1) * m
        out = (emb * w).sum(1) / m.sum(1).clamp(min=1.0)
        if self.common is not None:
            u = torch.from_numpy(self.common).to(emb.device, emb.dtype)
            out = out - (out @ u).unsqueeze(1) * u
        return out

    def layer_groups(self) -> list[nn.Module]:
        top: nn.Module = _Holder(self.scale)
        if self.encoder is not None:
            top = nn.ModuleList([top, self.encoder])
        return [self.embedding, top]

    # ------------------------------------------------------------ description
    def preprocessing(self) -> dict[str, Any]:
        return {
            "tokenizer": "tlzoo.text_vocab (lower-cased words)",
            "max_length": self.max_length,
            "pooling": self.pooling,
            "vocab_rows": self.vocab_rows,
            "dim": self.dim,
            "encoder": self.encoder_name if self.encoder is not None else None,
            "subwords": bool(self.vectors is not None and self.vectors.subwords),
            "hashed": self.hashed,
            "options": self.options,
        }

    def spec(self) -> dict[str, Any]:
        spec = {**super().spec(), "family": self.family}
        if self._copy_source is not None:
            spec["weights_copy"] = f"assets/{ASSETS}"  # tl predict loads this instead of request.weights
        return spec

    def save_assets(self, folder: str) -> None:
        """Copy the ``--weights`` vectors into the run (safetensors + JSON, no pickle): see the module docstring."""
        if self._copy_source is None:
            return
        dst = Path(folder) / ASSETS
        if self._weights_path is not None and self._weights_path in (
            dst.resolve(),
            (dst / "vectors.safetensors").resolve(),
        ):
            return  # built from this very copy: nothing to write (and never overwrite the arrays being read)
        src = self._copy_source
        save_vectors(
            src.kv,
            dst,
            self.family,
            {"copy_of": src.source, "tokenizer": src.info.get("tokenizer", "as the source vectors")},
            counts=src.counts,
        )

    def oov_report(self, texts: list[Any]) -> dict[str, Any]:
        """Shares of tokens missing from the vectors, and left as <unk> after the fallbacks."""
        total = missing = unk = 0
        seen: dict[str, bool] = {}
        vectors = self.vectors
        kv = vectors.kv if vectors is not None else None
        for text in texts:
            for tok in tokenize("" if text is None else str(text))[: self.max_length]:
                total += 1
                if kv is None:
                    continue
                if tok not in kv.key_to_index:
                    missing += 1
                    if tok not in seen:
                        seen[tok] = fallback_vector(vectors, tok) is None
                    unk += seen[tok]
        if vectors is None:
            return {"tokens": total, "oov_rate": None, "unk_rate": None, "note": "no pretrained vectors"}
        return {
            "tokens": total,
            "oov_rate": round(missing / max(1, total), 5),
            "unk_rate": round(unk / max(1, total), 5),
            "oov_types": len(seen),
            "subwords": vectors.subwords,
        }


class _Holder(nn.Module):
    """Wraps a bare parameter so it can form (part of) a layer group; not registered twice."""

    def __init__(self, param: nn.Parameter) -> None:
        super().__init__()
        self.param = param
