"""``transformer``: a small Transformer encoder that tlzoo pretrains itself with masked-language modelling.

For domains no pretrained checkpoint fits: ``tl pretrain --plugin transformer --corpus
DIR --out W`` learns a word vocabulary and a BERT-style encoder on your unlabelled text,
then ``tl run --plugin transformer --weights W`` transfers it like any other backbone.

* Tokens: lower-cased words (``text_vocab``), ``vocab_size`` most frequent ones seen at
  least ``min_freq`` times; every text starts with ``<cls>``.
* Encoder: token + learned position embeddings, ``layers`` pre-norm Transformer layers
  (``heads`` attention heads, GELU feed-forward of ``ff`` units), a final LayerNorm.
* Pretraining (BERT's recipe): 15 % of the tokens are chosen; 80 % of those become
  ``<mask>``, 10 % a random word, 10 % stay; the encoder predicts the originals through a
  head whose output matrix is the (tied) token embedding.  AdamW with linear warm-up and
  decay, through the language-model loop of ``tlzoo.lib.text.lm`` (on the GPU when there
  is one).  5 % of the texts are held out (``split_corpus``); the curve shows the
  masked-token loss and perplexity on both (held-out masks are drawn once, with the
  seed, so epochs compare).
* Output folder: the ``tl pretrain`` folder of ``tlzoo.lib.text.pretrained``:
  ``model.safetensors`` (encoder + MLM head), ``vocab.json``, ``description.json``
  (architecture in ``config``), the curve, plus the engine's ``pretraining.json``.
  Folders of tlzoo 0.1 (``config.json`` instead of ``description.json``) still load.
* Backbone: pooling ``mean`` (default), ``cls`` or ``max`` over the last layer; layer
  groups = embeddings, each Transformer layer (the top one with the final norm), so
  ``--unfreeze N`` fine-tunes from the top.  ``--no-pretrained`` keeps the
  architecture and vocabulary with random weights (without ``--weights``, words are
  hashed into ``vocab_size`` rows).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import Backbone, BackboneRequest, check_options
from tlzoo.lib.text.batching import length_mask, pad_sequences
from tlzoo.lib.text.lm import LanguageModelTask, LossFn, linear_warmup_decay
from tlzoo.lib.text.pooling import choose_pooling, pool
from tlzoo.lib.text.pretrained import LMPretrainer, copy_weights, read_weights
from tlzoo.lib.text.vocab import MASK, PAD, UNK, HashedVocab, Vocab, tokenize

from .mini_transformer_hooks import ARCH_DEFAULTS, DEFAULTS

CLS = "<cls>"
SPECIALS = (PAD, UNK, CLS, MASK)
ARCH_KEYS = ("dim", "layers", "heads", "ff", "max_length", "dropout")
POOLINGS = ("mean", "cls", "max")


class MiniEncoder(nn.Module):
    """The encoder shared by pretraining and the backbone; returns hidden states [B, T, dim]."""

    def __init__(
        self, vocab_size: int, dim: int, layers: int, heads: int, ff: int, max_length: int, dropout: float
    ) -> None:
        super().__init__()
        if dim % heads:
            raise TlzooError(f"transformer dim ({dim}) must be a multiple of heads ({heads}).")
        tokens, positions = nn.Embedding(vocab_size, dim, padding_idx=0), nn.Embedding(max_length, dim)
        self.embeddings = nn.ModuleDict({"tokens": tokens, "positions": positions, "norm": nn.LayerNorm(dim)})
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.max_length, self.vocab_size = max_length, vocab_size
        nn.init.normal_(tokens.weight, std=0.02)
        nn.init.normal_(positions.weight, std=0.02)
        with torch.no_grad():
            tokens.weight[0].zero_()

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        e = self.embeddings
        h = self.drop(e["norm"](e["tokens"](ids) + e["positions"](pos)[None]))
        pad = ~mask
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=pad)
        return self.norm(h)


class MLMHead(nn.Module):
    def __init__(self, encoder: MiniEncoder, dim: int) -> None:
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))
        self.bias = nn.Parameter(torch.zeros(encoder.vocab_size))
        self.encoder = [encoder]  # a list: tied weights, not a second registered copy

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.transform(hidden) @ self.encoder[0].embeddings["tokens"].weight.T + self.bias


def _encode(vocab: HashedVocab, text: Any, max_length: int) -> list[int]:
    """<cls> + word ids (hashed rows for words outside the vocabulary), at most max_length ids."""
    words = tokenize("" if text is None else str(text))[: max_length - 1]
    return [vocab.id(CLS)] + [vocab.id(w) for w in words]


def _pad(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids ``[B, T]`` right-padded with <pad> = 0, mask of the real tokens)."""
    ids, lengths = pad_sequences(seqs)
    return ids, length_mask(lengths, ids.size(1))


# ----------------------------------------------------------------------------- pretraining
class MaskedLM(nn.Module):
    """The encoder and its MLM head: what ``tl pretrain --plugin transformer`` trains and saves."""

    def __init__(self, vocab_size: int, arch: dict[str, Any]) -> None:
        super().__init__()
        self.encoder = MiniEncoder(vocab_size, **arch)
        self.mlm = MLMHead(self.encoder, int(arch["dim"]))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.mlm(self.encoder(ids, mask))


def _mask(
    seqs: list[list[int]], vocab: HashedVocab, prob: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BERT's masking: (inputs, mask of real tokens, targets with -100 where nothing is predicted)."""
    ids, mask = _pad(seqs)
    chosen = torch.from_numpy(rng.random(ids.shape) < prob) & mask
    chosen[:, 0] = False  # never the <cls> position
    targets = torch.where(chosen, ids, torch.full_like(ids, -100))
    roll = torch.from_numpy(rng.random(ids.shape))
    inputs = ids.clone()
    inputs[chosen & (roll < 0.8)] = vocab.id(MASK)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[swap] = torch.from_numpy(rng.integers(len(SPECIALS), len(vocab), size=int(swap.sum())))
    return inputs, mask, targets


def mask_batches(
    texts: list[str], vocab: HashedVocab, batch_size: int, max_length: int, prob: float, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The texts in a seeded random order, in batches with masks drawn from the same seed."""
    rng = np.random.default_rng(seed)
    seqs = [_encode(vocab, t, max_length) for t in texts]
    order = rng.permutation(len(seqs))
    return [
        _mask([seqs[i] for i in order[b : b + batch_size]], vocab, prob, rng) for b in range(0, len(order), batch_size)
    ]


def mlm_loss_fn(model: MaskedLM, device: torch.device) -> LossFn:
    """Cross-entropy over the masked positions; None for a batch where no token was chosen."""

    def loss_fn(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int, int] | None:
        ids, mask, targets = (t.to(device) for t in batch)
        chosen = targets != -100
        n = int(chosen.sum())
        if not n:
            return None
        logits = model(ids, mask)
        loss = nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1), ignore_index=-100)
        return loss, n, int((logits.argmax(-1)[chosen] == targets[chosen]).sum())

    return loss_fn


class MLMPretrainer(LMPretrainer):
    name = "transformer"
    description = "a small Transformer encoder pretrained with masked-language modelling"
    architecture = "{layers} pre-norm Transformer layers (dim {dim}, {heads} heads, ff {ff})"
    options = {
        **ARCH_DEFAULTS,
        "epochs": 10,
        "seed": 0,
        "vocab_size": 20000,
        "min_freq": 2,
        "lr": 5e-4,
        "batch_size": 32,
        "mask_prob": 0.15,
        "warmup": 0.1,
        "weight_decay": 0.01,
    }
    minimums = {
        **dict.fromkeys(("epochs", "dim", "layers", "heads", "ff", "batch_size", "vocab_size"), 1),
        "max_length": 2,
    }

    def build_vocab(self, texts: list[str], o: dict[str, Any]) -> HashedVocab:
        vocab = Vocab.build(texts, max_size=o["vocab_size"], min_freq=o["min_freq"], specials=SPECIALS)
        if len(vocab) <= len(SPECIALS):
            raise TlzooError(f"No word occurs {o['min_freq']} times in the corpus; give more text or --set min_freq=1.")
        return HashedVocab(vocab, 0)

    def build_model(self, vocab: HashedVocab, o: dict[str, Any]) -> nn.Module:
        return MaskedLM(len(vocab), {k: o[k] for k in ARCH_KEYS})

    def task(self, model: nn.Module, vocab: HashedVocab, o: dict[str, Any], device: torch.device) -> LanguageModelTask:
        assert isinstance(model, MaskedLM)  # built by build_model
        return LanguageModelTask(
            model,
            lambda texts, seed: mask_batches(texts, vocab, o["batch_size"], o["max_length"], o["mask_prob"], seed),
            mlm_loss_fn(model, device),
            clip=1.0,
            betas=(0.9, 0.999),
            weight_decay=o["weight_decay"],
            schedule=linear_warmup_decay(o["warmup"]),
        )


def _read_folder(folder: Path) -> tuple[dict[str, Any], Vocab, dict[str, torch.Tensor]]:
    """Architecture, vocabulary and tensors of a ``tl pretrain --plugin transformer`` folder."""
    legacy = folder / "config.json"
    if legacy.is_file() and not (folder / "description.json").is_file():  # written by tlzoo 0.1
        from safetensors.torch import load_file

        config = json.loads(legacy.read_text())
        if config.get("format") != "tlzoo-mini-transformer" or not (folder / "model.safetensors").is_file():
            raise TlzooError(f"'{folder}' is not a `tl pretrain --plugin transformer` folder; pass one.")
        tensors = load_file(str(folder / "model.safetensors"))
        return {k: config[k] for k in ARCH_KEYS}, Vocab.load(folder / "vocab.json"), tensors
    desc, tensors, vocab = read_weights(folder, "transformer")
    return {k: desc["config"][k] for k in ARCH_KEYS}, vocab, tensors


# ----------------------------------------------------------------------------- backbone
class MiniTransformerBackbone(Backbone):
    modality = "text"

    def __init__(self, request: BackboneRequest) -> None:
        super().__init__()
        # the architecture options apply without --weights only (a folder records its own)
        opts = check_options("transformer", request.options, DEFAULTS)
        self.name = request.model
        self.pooling = choose_pooling(request.pooling, POOLINGS, "transformer")
        self.vocab: Vocab | None = None
        state: dict[str, torch.Tensor] | None = None
        self.folder = Path(request.weights) if request.weights else None  # copied into the run by save_assets
        if request.weights:
            folder = Path(request.weights)
            arch, self.vocab, tensors = _read_folder(folder)
            rows = len(self.vocab)
            if request.pretrained:
                state = {k[len("encoder.") :]: v for k, v in tensors.items() if k.startswith("encoder.")}
                self.weights_source = f"tl pretrain folder {folder} (masked-language modelling)"
            else:
                self.weights_source = f"random init (architecture and vocabulary of {folder})"
        elif request.pretrained:
            raise TlzooError(
                "The transformer plugin has no packaged weights; pretrain them with `tl pretrain --plugin "
                "transformer --corpus FILE|DIR --out DIR` and pass --weights DIR, or use --no-pretrained."
            )
        else:
            arch = {k: opts[k] for k in ARCH_KEYS if k != "max_length"}
            arch["max_length"] = request.max_length or ARCH_DEFAULTS["max_length"]
            rows = int(opts["vocab_size"])
            torch.manual_seed(0)  # a reproducible random init, so tl predict rebuilds the same network
            self.weights_source = f"random init (words hashed into {rows:,} rows)"
        self.rows = rows
        # without --weights every word is hashed into the rows after the specials
        self.words = (
            HashedVocab(self.vocab, 0) if self.vocab is not None else HashedVocab.empty(rows - len(SPECIALS), SPECIALS)
        )
        self.arch = arch
        self.max_length = min(request.max_length or int(arch["max_length"]), int(arch["max_length"]))
        self.encoder = MiniEncoder(rows, **arch)
        if state is not None:
            self.encoder.load_state_dict(state)
        self.num_features = int(arch["dim"])

    def transform(self, example: Any, train: bool) -> list[int]:
        return _encode(self.words, example, self.max_length)

    def collate(self, items: list[list[int]]) -> dict[str, torch.Tensor]:
        ids, mask = _pad(items)
        return {"ids": ids, "mask": mask}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["mask"]
        return pool(self.encoder(batch["ids"], mask), mask, self.pooling)

    def layer_groups(self) -> list[nn.Module]:
        enc = self.encoder
        layers: list[nn.Module] = list(enc.layers)
        layers[-1] = nn.ModuleList([layers[-1], enc.norm])
        return [enc.embeddings, *layers]

    def save_assets(self, folder: str) -> None:
        """Keep the --weights folder's files with the run, so tl predict never reads the original path."""
        copy_weights(self.folder, folder)

    def spec(self) -> dict[str, Any]:
        copy = {"weights_copy": "assets/pretrained"} if self.folder is not None else {}  # tl predict reads the copy
        return {**super().spec(), **copy}

    def preprocessing(self) -> dict[str, Any]:
        return {
            "tokenizer": "tlzoo.text_vocab (lower-cased words) + <cls>",
            "vocab": self.rows,
            "hashed": self.vocab is None,
            "max_length": self.max_length,
            "pooling": self.pooling,
        }
