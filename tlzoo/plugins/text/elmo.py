"""ELMo: a character-CNN word encoder under a two-layer bidirectional LSTM language model.

Words are read as UTF-8 bytes by a character CNN (max-pooled filters of widths 1-5, a
highway layer, a projection), so any word, seen or not, gets a representation.  Two
LSTM layers run left-to-right and two right-to-left (with projections and a residual
connection between layers), trained as a forward and a backward language model that
share the character encoder and the softmax (``tl pretrain --plugin elmo``).

As a backbone it returns ELMo's learned scalar mix of its three layers (character
layer, LSTM 1, LSTM 2): softmax-normalised weights times a scale, all trained with the
task; the mixed token vectors are pooled (mean and max) into one document vector.
Layer groups, bottom to top: character CNN, LSTM layer 1, LSTM layer 2, scalar mix.
No package ships ELMo weights, so without ``--weights`` it needs ``--no-pretrained``.
"""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tlzoo.api.errors import TlzooError
from tlzoo.lib.text.batching import length_mask, pad_sequences
from tlzoo.lib.text.lm import LanguageModelTask, LossFn
from tlzoo.lib.text.pooling import pool
from tlzoo.lib.text.pretrained import LMPretrainer, PretrainedLMBackbone
from tlzoo.lib.text.vocab import BOS, EOS, HashedVocab, Vocab, tokenize

ARCH: dict[str, Any] = {"dim": 128, "hidden": 256, "char_dim": 16, "dropout": 0.1}
FILTERS = ((1, 32), (2, 32), (3, 64), (4, 64), (5, 64))  # (width, count) of the character convolutions
MAX_CHARS = 16  # bytes per word, begin/end marks included
PAD_C, BOW, EOW, BOS_C, EOS_C, SHIFT = 0, 1, 2, 3, 4, 5  # character ids; byte b -> b + SHIFT
POOLINGS = ("meanmax", "mean", "max")


def word_chars(word: str) -> list[int]:
    """Character ids of one word: begin mark, up to 14 bytes, end mark, padding."""
    if word == BOS:
        ids = [BOW, BOS_C, EOW]
    elif word == EOS:
        ids = [BOW, EOS_C, EOW]
    else:
        ids = [BOW] + [b + SHIFT for b in word.encode("utf-8")[: MAX_CHARS - 2]] + [EOW]
    return ids + [PAD_C] * (MAX_CHARS - len(ids))


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each right-padded sequence within its own length (padding stays put)."""
    t = torch.arange(x.size(1), device=x.device)[None, :]
    rev = lengths[:, None].to(x.device) - 1 - t
    idx = torch.where(rev >= 0, rev, t)
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.size(2)))


# --------------------------------------------------------------------------- network
class CharCNN(nn.Module):
    """Bytes of a word -> one vector: convolutions max-pooled over the word, highway, projection."""

    def __init__(self, dim: int, char_dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(256 + SHIFT, char_dim, padding_idx=PAD_C)
        self.convs = nn.ModuleList(nn.Conv1d(char_dim, n, w) for w, n in FILTERS)
        total = sum(n for _, n in FILTERS)
        self.highway = nn.Linear(total, 2 * total)
        self.proj = nn.Linear(total, dim)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:  # [B, T, C] -> [B, T, dim]
        b, t, c = chars.shape
        x = self.embed(chars.reshape(b * t, c)).transpose(1, 2)
        h = torch.cat([F.relu(conv(x)).max(-1).values for conv in self.convs], -1)
        transform, gate = self.highway(h).chunk(2, -1)
        g = torch.sigmoid(gate)
        h = g * h + (1 - g) * F.relu(transform)
        return self.proj(h).view(b, t, -1)


class BiLayer(nn.Module):
    """One layer of the forward LSTM and one of the backward LSTM (kept separate, as in ELMo),
    each projected back to ``dim``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        # an output projection after the LSTM rather than LSTM(proj_size=...): oneDNN runs only the
        # plain LSTM fast on CPU; the recurrence then uses the full hidden state
        self.fwd = nn.LSTM(dim, hidden, batch_first=True)
        self.bwd = nn.LSTM(dim, hidden, batch_first=True)
        self.fwd_proj, self.bwd_proj = nn.Linear(hidden, dim), nn.Linear(hidden, dim)

    def forward(self, f: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fwd_proj(self.fwd(f)[0]), self.bwd_proj(self.bwd(b)[0])


class BiLM(nn.Module):
    """Character CNN + 2 biLSTM layers; ``layers`` gives the three per-token representations."""

    def __init__(self, dim: int, hidden: int, char_dim: int, dropout: float) -> None:
        super().__init__()
        self.chars = CharCNN(dim, char_dim)
        self.layer1, self.layer2 = BiLayer(dim, hidden), BiLayer(dim, hidden)
        self.drop = nn.Dropout(dropout)

    def run(self, chars: torch.Tensor, lengths: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """(layers [B, T, 2*dim] x 3, top forward states, top backward states in reading order)."""
        x = self.chars(chars)
        outs = [torch.cat([x, x], -1)]
        f, b = x, reverse_padded(x, lengths)  # right padding: neither direction ever reads padding first
        for i, layer in enumerate((self.layer1, self.layer2)):
            fo, bo = layer(self.drop(f), self.drop(b))
            if i > 0:  # residual connection between the LSTM layers
                fo, bo = fo + f, bo + b
            f, b = fo, bo
            outs.append(torch.cat([f, reverse_padded(b, lengths)], -1))
        return outs, f, reverse_padded(b, lengths)


class ScalarMix(nn.Module):
    """gamma * sum_j softmax(s)_j * layer_j (ELMo's task-specific layer weighting)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.scalars = nn.Parameter(torch.zeros(n))
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, layers: list[torch.Tensor]) -> torch.Tensor:
        w = torch.softmax(self.scalars, 0)
        return self.gamma * sum(wi * h for wi, h in zip(w, layers))


class ElmoLM(nn.Module):
    """The biLM plus the softmax shared by both directions (only used for language modelling)."""

    def __init__(self, vocab_size: int, dim: int, hidden: int, char_dim: int, dropout: float) -> None:
        super().__init__()
        self.bilm = BiLM(dim, hidden, char_dim, dropout)
        self.softmax = nn.Linear(dim, vocab_size)


# --------------------------------------------------------------------------- LM batches
def encode_text(text: str, max_tokens: int) -> list[str]:
    toks = tokenize(text)
    return [BOS] + (toks[:max_tokens] if max_tokens > 0 else toks) + [EOS]


def to_batch(sentences: list[list[str]], vocab: HashedVocab | None) -> dict[str, torch.Tensor]:
    """Character ids ``[B, T, MAX_CHARS]`` and lengths; with a vocabulary also the word ids the LM predicts."""
    chars, lengths = pad_sequences([[word_chars(w) for w in s] for s in sentences])
    batch = {"chars": chars, "lengths": lengths}
    if vocab is not None:
        batch["words"] = pad_sequences([[vocab.id(w) for w in s] for s in sentences])[0]
    return batch


def sentence_batches(
    texts: list[str], vocab: HashedVocab, batch_size: int, max_tokens: int, seed: int
) -> list[dict[str, torch.Tensor]]:
    """Texts of similar length batched together (little padding), batches in random order."""
    sents = sorted((encode_text(t, max_tokens) for t in texts), key=len)
    batches = [to_batch(sents[i : i + batch_size], vocab) for i in range(0, len(sents), batch_size)]
    random.Random(seed).shuffle(batches)
    return batches


def lm_loss_fn(model: ElmoLM, device: torch.device) -> LossFn:
    """Forward LM predicts the next word, backward LM the previous one; the loss is their mean."""

    def loss_fn(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int, int]:
        chars, lengths, words = batch["chars"].to(device), batch["lengths"].to(device), batch["words"].to(device)
        _, f, b = model.bilm.run(chars, lengths)
        valid = length_mask(lengths, words.size(1))
        fwd_mask, bwd_mask = valid[:, 1:], valid[:, 1:]  # pairs (t -> t+1) and (t+1 -> t) inside the text
        lf = model.softmax(model.bilm.drop(f[:, :-1][fwd_mask]))
        lb = model.softmax(model.bilm.drop(b[:, 1:][bwd_mask]))
        yf, yb = words[:, 1:][fwd_mask], words[:, :-1][bwd_mask]
        loss = 0.5 * (F.cross_entropy(lf, yf) + F.cross_entropy(lb, yb))
        hits = int((lf.argmax(-1) == yf).sum() + (lb.argmax(-1) == yb).sum()) // 2
        return loss, int(yf.numel()), hits

    return loss_fn


def lm_task(
    model: ElmoLM, vocab: HashedVocab, batch_size: int, max_tokens: int, device: torch.device
) -> LanguageModelTask:
    return LanguageModelTask(
        model,
        lambda texts, seed: sentence_batches(texts, vocab, batch_size, max_tokens, seed),
        lm_loss_fn(model, device),
        clip=1.0,
    )


# --------------------------------------------------------------------------- backbone
class ElmoBackbone(PretrainedLMBackbone):
    family = "elmo"
    poolings = POOLINGS
    arch_defaults = ARCH
    min_length = 3  # <bos>, a word, <eos>

    def build(self, desc: dict[str, Any] | None, tensors: dict[str, torch.Tensor] | None, vocab: Vocab | None) -> None:
        self.vocab = HashedVocab(vocab, 0) if vocab is not None else None
        self.bilm = BiLM(**self.arch)
        self.softmax: nn.Linear | None = None  # no vocabulary: no language-model output
        if self.vocab is not None and tensors is not None:
            self.softmax = nn.Linear(self.arch["dim"], len(self.vocab))
            self.bilm.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("bilm.")})
            self.softmax.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("softmax.")})
        self.mix = ScalarMix(3)
        width = 2 * self.arch["dim"]
        self.num_features = 2 * width if self.pooling == "meanmax" else width

    def preprocessing(self) -> dict[str, Any]:
        return {
            "tokenizer": "text_vocab + utf-8 bytes",
            "max_chars": MAX_CHARS,
            "max_length": self.max_length,
            "pooling": self.pooling,
        }

    def transform(self, example: Any, train: bool) -> list[str]:
        return encode_text("" if example is None else str(example), self.max_length - 2)

    def collate(self, items: list[list[str]]) -> dict[str, torch.Tensor]:
        return to_batch(items, None)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        chars, lengths = batch["chars"], batch["lengths"].to(batch["chars"].device)
        layers, _, _ = self.bilm.run(chars, lengths)
        h = self.mix(layers)
        return pool(h, length_mask(lengths, h.size(1)), ("mean", "max") if self.pooling == "meanmax" else self.pooling)

    def layer_groups(self) -> list[nn.Module]:
        return [self.bilm.chars, self.bilm.layer1, self.bilm.layer2, self.mix]

    def language_model_task(self, batch_size: int, device: torch.device) -> LanguageModelTask:
        """The biLM with its softmax (pretrained weights only), sharing the backbone's modules."""
        if self.softmax is None or self.vocab is None:
            raise TlzooError(
                "elmo without pretraining has no language-model softmax to fine-tune; pass --weights DIR "
                "from `tl pretrain --plugin elmo`, or use --strategy fine-tune."
            )
        lm = ElmoLM(len(self.vocab), **self.arch)
        lm.bilm, lm.softmax = self.bilm, self.softmax  # shared modules: the backbone itself learns
        return lm_task(lm, self.vocab, batch_size, self.max_length - 2, device)


# --------------------------------------------------------------------------- pretraining
class ElmoPretrainer(LMPretrainer):
    name = "elmo"
    description = "character-CNN + 2-layer biLSTM language model (forward and backward) on an unlabelled corpus"
    architecture = "char-CNN + 2-layer biLSTM (dim {dim}, hidden {hidden})"  # softmax over words, no buckets
    options = {
        **ARCH,
        "epochs": 2,
        "batch_size": 64,
        "lr": 2e-3,
        "max_tokens": 80,
        "max_vocab": 10000,
        "min_freq": 2,
        "seed": 0,
    }
    minimums = {"epochs": 1, "batch_size": 1, "dim": 1}

    def check(self, o: dict[str, Any]) -> None:
        super().check(o)
        if o["hidden"] < o["dim"]:
            raise TlzooError(f"elmo's hidden size must be at least its dim ({o['dim']}), got {o['hidden']}.")

    def build_model(self, vocab: HashedVocab, o: dict[str, Any]) -> nn.Module:
        return ElmoLM(len(vocab), **{k: o[k] for k in ARCH})

    def task(self, model: nn.Module, vocab: HashedVocab, o: dict[str, Any], device: torch.device) -> LanguageModelTask:
        assert isinstance(model, ElmoLM)  # built by build_model
        return lm_task(model, vocab, o["batch_size"], o["max_tokens"], device)
