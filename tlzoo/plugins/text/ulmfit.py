"""ULMFiT: an AWD-LSTM language model, its pretraining, and the three-stage ``ulmfit`` strategy.

The backbone is a small AWD-LSTM (Merity et al.): embedding dropout (whole words
dropped), variational ("locked") dropout between layers, DropConnect on the
hidden-to-hidden weights, and a decoder tied to the embedding.  As a classifier
backbone it gives ULMFiT's concat pooling [last state, max, mean] of the top layer.

ULMFiT (Howard & Ruder) in three stages:
1. ``tl pretrain --plugin ulmfit --corpus FILE|DIR --out DIR``: a general language
   model trained on an unlabelled corpus (``UlmfitPretrainer``);
2. ``--strategy ulmfit``: the language model fine-tuned on the target *training* texts
   (``before_training``; history rows with phase ``lm-finetune``);
3. the classifier fine-tuned with gradual unfreezing (one phase per unfrozen group),
   discriminative learning rates (each group 2.6 times lower than the one above) and
   slanted triangular learning rates.
No package ships ULMFiT weights, so without ``--weights`` it needs ``--no-pretrained``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tlzoo.lib.text.batching import length_mask, pad_sequences
from tlzoo.lib.text.lm import LanguageModelTask, LossFn
from tlzoo.lib.text.pooling import pool
from tlzoo.lib.text.pretrained import LMPretrainer, PretrainedLMBackbone
from tlzoo.lib.text.vocab import HashedVocab, Vocab

from .ulmfit_hooks import UlmfitStrategy as UlmfitStrategy  # re-exported: the strategy is torch-free

# architecture defaults (a scratch backbone uses these; pretrained folders record their own)
# dropouts: ULMFiT's (0.02 embedding, 0.25 input, 0.15 hidden, 0.2 weight, 0.1 output) halved, as its
# authors advise for small corpora and short training ("drop_mult" 0.5)
ARCH: dict[str, Any] = {
    "emb": 128,
    "hidden": 256,
    "layers": 3,
    "embed_p": 0.01,
    "input_p": 0.125,
    "hidden_p": 0.075,
    "weight_p": 0.1,
    "output_p": 0.05,
}
SCRATCH_BUCKETS = 16384  # no vocabulary without pretraining: every word is hashed
POOLINGS = ("concat", "mean", "max", "last")


# --------------------------------------------------------------------------- AWD-LSTM
class LockedDropout(nn.Module):
    """Variational dropout: one mask per sequence, the same at every time step."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, T, D]
        if not self.training or self.p == 0:
            return x
        mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - self.p) / (1 - self.p)
        return x * mask


class WordEmbedding(nn.Module):
    """Embedding with embedding dropout (whole words zeroed) and locked input dropout."""

    def __init__(self, vocab_size: int, dim: int, embed_p: float, input_p: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, dim).uniform_(-0.1, 0.1))
        self.embed_p, self.drop = embed_p, LockedDropout(input_p)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        w: torch.Tensor = self.weight
        if self.training and self.embed_p > 0:
            keep = w.new_empty(w.size(0), 1).bernoulli_(1 - self.embed_p) / (1 - self.embed_p)
            w = w * keep
        return self.drop(F.embedding(ids, w, padding_idx=0))


class AWDLayer(nn.Module):
    """One LSTM layer with DropConnect on its recurrent weights, then locked dropout."""

    def __init__(self, n_in: int, n_out: int, weight_p: float, out_p: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_in, n_out, batch_first=True)
        self.weight_p, self.drop = weight_p, LockedDropout(out_p)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        if self.training and self.weight_p > 0:
            from torch.func import functional_call

            w = F.dropout(self.lstm.get_parameter("weight_hh_l0"), self.weight_p, training=True)
            out, state = functional_call(self.lstm, {"weight_hh_l0": w}, (x, state), strict=False)
        else:
            out, state = self.lstm(x, state)
        return self.drop(out), state


class AWDLSTM(nn.Module):
    """Embedding -> LSTM layers -> (tied) decoder."""

    def __init__(
        self,
        vocab_size: int,
        emb: int,
        hidden: int,
        layers: int,
        embed_p: float,
        input_p: float,
        hidden_p: float,
        weight_p: float,
        output_p: float,
    ) -> None:
        super().__init__()
        self.embedding = WordEmbedding(vocab_size, emb, embed_p, input_p)
        sizes = [emb] + [hidden] * (layers - 1) + [emb]  # the top layer returns to emb for the tied decoder
        self.layers = nn.ModuleList(
            AWDLayer(sizes[i], sizes[i + 1], weight_p, hidden_p if i < layers - 1 else 0.0) for i in range(layers)
        )
        self.output_drop = LockedDropout(output_p)
        self.decoder_bias = nn.Parameter(torch.zeros(vocab_size))

    def encode(self, ids: torch.Tensor, states: list[Any] | None = None) -> tuple[torch.Tensor, list[Any]]:
        x = self.embedding(ids)
        new = []
        for i, layer in enumerate(self.layers):
            x, s = layer(x, states[i] if states else None)
            new.append(s)
        return x, new

    def logits(self, top: torch.Tensor) -> torch.Tensor:
        return F.linear(self.output_drop(top), self.embedding.weight, self.decoder_bias)


# --------------------------------------------------------------------------- LM batches
def stream_batches(texts: list[str], vocab: HashedVocab, batch_size: int, bptt: int, seed: int) -> list[Any]:
    """Shuffle texts, join them into one token stream (``<bos>`` before each), cut into
    ``batch_size`` parallel rows and windows of ``bptt``: AWD-LSTM's contiguous batching."""
    g = torch.Generator().manual_seed(seed)
    bos = vocab.vocab.stoi["<bos>"]
    ids: list[int] = []
    for i in torch.randperm(len(texts), generator=g).tolist():
        ids.append(bos)
        ids.extend(vocab.encode(texts[i]))
    data = torch.tensor(ids, dtype=torch.long)
    rows = max(1, min(batch_size, (len(data) - 1) // 2))
    n = (len(data) - 1) // rows
    x_all = data[: n * rows].view(rows, n)
    y_all = data[1 : n * rows + 1].view(rows, n)
    return [(x_all[:, i : i + bptt], y_all[:, i : i + bptt], i == 0) for i in range(0, n, bptt)]


def lm_loss_fn(model: AWDLSTM, device: torch.device) -> LossFn:
    """Next-token loss; the hidden state flows across windows (truncated backprop)."""
    state: dict[str, Any] = {"h": None}

    def loss_fn(batch: Any) -> tuple[torch.Tensor, int, int]:
        x, y, first = batch
        x, y = x.to(device), y.to(device)
        if first:
            state["h"] = None
        top, h = model.encode(x, state["h"])
        state["h"] = [(a.detach(), b.detach()) for a, b in h]
        logits = model.logits(top)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        return loss, y.numel(), int((logits.argmax(-1) == y).sum())

    return loss_fn


def lm_task(model: AWDLSTM, vocab: HashedVocab, batch_size: int, bptt: int, device: torch.device) -> LanguageModelTask:
    return LanguageModelTask(
        model, lambda texts, seed: stream_batches(texts, vocab, batch_size, bptt, seed), lm_loss_fn(model, device)
    )


# --------------------------------------------------------------------------- backbone
class UlmfitBackbone(PretrainedLMBackbone):
    """AWD-LSTM encoder; features = pooled top-layer states (concat: last, max, mean)."""

    family = "ulmfit"
    poolings = POOLINGS
    arch_defaults = ARCH

    def build(self, desc: dict[str, Any] | None, tensors: dict[str, torch.Tensor] | None, vocab: Vocab | None) -> None:
        if desc is None or vocab is None:
            self.vocab = HashedVocab.empty(SCRATCH_BUCKETS)
        else:
            self.vocab = HashedVocab(vocab, int(desc["hash_buckets"]))
        self.lm = AWDLSTM(len(self.vocab), **self.arch)
        if tensors is not None:
            self.lm.load_state_dict(tensors)
        width = self.arch["emb"]
        self.num_features = 3 * width if self.pooling == "concat" else width

    def preprocessing(self) -> dict[str, Any]:
        return {
            "tokenizer": "text_vocab",
            "vocab": self.vocab.digest(),
            "max_length": self.max_length,
            "pooling": self.pooling,
        }

    def transform(self, example: Any, train: bool) -> list[int]:
        bos = self.vocab.vocab.stoi["<bos>"]
        return [bos] + self.vocab.encode("" if example is None else str(example), self.max_length - 1)

    def collate(self, items: list[list[int]]) -> dict[str, torch.Tensor]:
        ids, lengths = pad_sequences(items)
        return {"ids": ids, "lengths": lengths}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, lengths = batch["ids"], batch["lengths"].to(batch["ids"].device)
        top, _ = self.lm.encode(ids)  # right padding: states at real positions never saw padding
        methods = ("last", "max", "mean") if self.pooling == "concat" else self.pooling
        return pool(top, length_mask(lengths, ids.size(1)), methods)

    def layer_groups(self) -> list[nn.Module]:
        # the decoder bias learns with the embedding (their weights are tied)
        return [nn.ModuleList([self.lm.embedding, self.lm.output_drop]), *self.lm.layers]

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "vocab": self.vocab.digest()}

    def language_model_task(self, batch_size: int, device: torch.device) -> LanguageModelTask:
        """ULMFiT stage 2: the AWD-LSTM itself adapts to the target texts, in windows of 50 tokens."""
        return lm_task(self.lm, self.vocab, batch_size, 50, device)


# --------------------------------------------------------------------------- pretraining
class UlmfitPretrainer(LMPretrainer):
    name = "ulmfit"
    description = "AWD-LSTM language model (ULMFiT stage 1) on an unlabelled corpus"
    architecture = "AWD-LSTM {layers} layers (emb {emb}, hidden {hidden})"
    options = {
        **ARCH,
        "epochs": 4,
        "batch_size": 32,
        "bptt": 50,
        "lr": 3e-3,
        "max_vocab": 20000,
        "min_freq": 2,
        "hash_buckets": 2048,
        "seed": 0,
    }
    minimums = {"epochs": 1, "layers": 1, "batch_size": 1, "bptt": 2}

    def build_model(self, vocab: HashedVocab, o: dict[str, Any]) -> nn.Module:
        return AWDLSTM(len(vocab), **{k: o[k] for k in ARCH})

    def task(self, model: nn.Module, vocab: HashedVocab, o: dict[str, Any], device: torch.device) -> LanguageModelTask:
        assert isinstance(model, AWDLSTM)  # built by build_model
        return lm_task(model, vocab, o["batch_size"], o["bptt"], device)
