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
  decay.  5 % of the texts are held out; the curve shows the masked-token loss and
  perplexity on both (held-out masks are drawn once, with the seed, so epochs compare).
* Output folder: ``model.safetensors`` (encoder + MLM head), ``config.json``
  (architecture), ``vocab.json``, plus the engine's ``pretraining.json`` and curve.
* Backbone: pooling ``mean`` (default), ``cls`` or ``max`` over the last layer; layer
  groups = embeddings, each Transformer layer (the top one with the final norm), so
  ``--unfreeze N`` fine-tunes from the top.  ``--no-pretrained`` keeps the
  architecture and vocabulary with random weights (without ``--weights``, words are
  hashed into ``vocab_size`` rows).
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tlzoo.core.errors import TlzooError
from tlzoo.core.hookspecs import hookimpl
from tlzoo.core.interfaces import Backbone, BackboneFactory, BackboneRequest, Pretrainer
from tlzoo.core.pretraining import merge_options
from tlzoo.lib.text.batching import length_mask, pad_sequences
from tlzoo.lib.text.pooling import pool
from tlzoo.lib.text.vocab import MASK, PAD, UNK, HashedVocab, Vocab, tokenize

CLS = "<cls>"
SPECIALS = (PAD, UNK, CLS, MASK)
ARCH_KEYS = ("dim", "layers", "heads", "ff", "max_length", "dropout")
ARCH_DEFAULTS: dict[str, Any] = {"dim": 128, "layers": 2, "heads": 4, "ff": 512, "max_length": 128, "dropout": 0.1}
POOLINGS = ("mean", "cls", "max")


class MiniEncoder(nn.Module):
    """The encoder shared by pretraining and the backbone; returns hidden states [B, T, dim]."""

    def __init__(self, vocab_size: int, dim: int, layers: int, heads: int, ff: int, max_length: int,
                 dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise TlzooError(f"transformer dim ({dim}) must be a multiple of heads ({heads}).")
        self.embeddings = nn.ModuleDict({
            "tokens": nn.Embedding(vocab_size, dim, padding_idx=0),
            "positions": nn.Embedding(max_length, dim),
            "norm": nn.LayerNorm(dim),
        })
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.max_length = max_length
        nn.init.normal_(self.embeddings["tokens"].weight, std=0.02)
        nn.init.normal_(self.embeddings["positions"].weight, std=0.02)
        with torch.no_grad():
            self.embeddings["tokens"].weight[0].zero_()

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
        self.bias = nn.Parameter(torch.zeros(encoder.embeddings["tokens"].num_embeddings))
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
class MLMPretrainer(Pretrainer):
    name = "transformer"
    description = "a small Transformer encoder pretrained with masked-language modelling"

    def defaults(self) -> dict[str, Any]:
        return {**ARCH_DEFAULTS, "epochs": 10, "seed": 0, "vocab_size": 20000, "min_freq": 2, "lr": 5e-4,
                "batch_size": 32, "mask_prob": 0.15, "warmup": 0.1, "weight_decay": 0.01}

    def pretrain(self, corpus: list[str], out: str, options: dict[str, Any],
                 log: Callable[[str], None]) -> dict[str, Any]:
        o = merge_options(self.name, options, self.defaults())
        for key in ("epochs", "dim", "layers", "heads", "ff", "batch_size", "vocab_size"):
            if o[key] < 1:
                raise TlzooError(f"Pretrainer option '{key}' must be at least 1, got {o[key]}.")
        if o["max_length"] < 2:
            raise TlzooError(f"Pretrainer option 'max_length' must be at least 2, got {o['max_length']}.")
        rng = np.random.default_rng(o["seed"])
        torch.manual_seed(o["seed"])
        order = rng.permutation(len(corpus))
        n_val = max(1, len(corpus) // 20) if len(corpus) >= 20 else 0
        held = [corpus[i] for i in order[:n_val]]
        train = [corpus[i] for i in sorted(order[n_val:])]
        vocab = Vocab.build(train, max_size=o["vocab_size"], min_freq=o["min_freq"], specials=SPECIALS)
        if len(vocab) <= len(SPECIALS):
            raise TlzooError(f"No word occurs {o['min_freq']} times in the corpus; give more text or --set min_freq=1.")
        arch = {k: o[k] for k in ARCH_KEYS}
        encoder = MiniEncoder(len(vocab), **arch)
        head = MLMHead(encoder, o["dim"])
        params = list(encoder.parameters()) + [p for n, p in head.named_parameters()]
        words = HashedVocab(vocab, 0)
        train_seqs = [_encode(words, t, o["max_length"]) for t in train]
        val_seqs = [_encode(words, t, o["max_length"]) for t in held]
        n_tok = sum(len(s) - 1 for s in train_seqs)
        log(f"  vocabulary {len(vocab):,} words; {n_tok:,} training tokens, {len(held)} held-out texts; "
            f"encoder {sum(p.numel() for p in encoder.parameters()) / 1e6:.2f} M parameters; {o['epochs']} epochs")
        val_batches = [self._mask(val_seqs[i:i + o["batch_size"]], vocab, o["mask_prob"], np.random.default_rng(o["seed"] + 1 + i))
                       for i in range(0, len(val_seqs), o["batch_size"])]
        opt = torch.optim.AdamW(params, lr=o["lr"], weight_decay=o["weight_decay"])
        steps = o["epochs"] * math.ceil(len(train_seqs) / o["batch_size"])
        warm = max(1, int(steps * o["warmup"]))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
        history = []
        for epoch in range(1, o["epochs"] + 1):
            start = time.perf_counter()
            encoder.train()
            head.train()
            perm = rng.permutation(len(train_seqs))
            total = count = 0.0
            for b in range(0, len(perm), o["batch_size"]):
                ids, mask, targets = self._mask([train_seqs[i] for i in perm[b:b + o["batch_size"]]], vocab,
                                                o["mask_prob"], rng)
                if not (targets != -100).any():
                    continue
                logits = head(encoder(ids, mask))
                loss = nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1), ignore_index=-100)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                n = int((targets != -100).sum())
                total += float(loss.detach()) * n
                count += n
            row: dict[str, Any] = {"epoch": epoch, "train_loss": round(total / max(1, count), 5)}
            row["train_perplexity"] = round(math.exp(min(row["train_loss"], 50)), 3)
            if val_batches:
                vl = self._evaluate(encoder, head, val_batches)
                row.update(val_loss=round(vl, 5), val_perplexity=round(math.exp(min(vl, 50)), 3))
            row["seconds"] = round(time.perf_counter() - start, 2)
            history.append(row)
            log(f"  epoch {epoch}/{o['epochs']}: masked-token loss {row['train_loss']:.4f} "
                f"(perplexity {row['train_perplexity']:.1f})"
                + (f" | held-out {row['val_loss']:.4f} (perplexity {row['val_perplexity']:.1f})" if val_batches else "")
                + f" [{row['seconds']}s]")
        from safetensors.torch import save_file

        state = {f"encoder.{k}": v.detach().contiguous() for k, v in encoder.state_dict().items()}
        state.update({f"mlm.{k}": v.detach().contiguous() for k, v in head.state_dict().items()})
        save_file(state, f"{out}/model.safetensors", metadata={"format": "tlzoo-mini-transformer"})
        vocab.save(f"{out}/vocab.json")
        Path(out, "config.json").write_text(json.dumps({"format": "tlzoo-mini-transformer", "version": 1,
                                                         "vocab_size": len(vocab), **arch}, indent=2) + "\n")
        last = history[-1]
        return {"vocabulary": len(vocab), "training_tokens": n_tok, "held_out_texts": len(held),
                "final_train_loss": last["train_loss"], "final_val_loss": last.get("val_loss"),
                "final_val_perplexity": last.get("val_perplexity"), "loss": "masked-token cross-entropy",
                "history": history}

    @staticmethod
    def _mask(seqs: list[list[int]], vocab: Vocab, prob: float,
              rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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

    @staticmethod
    @torch.inference_mode()
    def _evaluate(encoder: MiniEncoder, head: MLMHead, batches: list[Any]) -> float:
        encoder.eval()
        head.eval()
        total = count = 0.0
        for ids, mask, targets in batches:
            n = int((targets != -100).sum())
            if not n:
                continue
            logits = head(encoder(ids, mask))
            total += float(nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1),
                                                       ignore_index=-100, reduction="sum"))
            count += n
        return total / max(1.0, count)


# ----------------------------------------------------------------------------- backbone
class MiniTransformerBackbone(Backbone):
    modality = "text"

    def __init__(self, request: BackboneRequest) -> None:
        super().__init__()
        opts = request.options
        self.name = request.model
        self.pooling = opts.get("pooling") or "mean"
        if self.pooling not in POOLINGS:
            raise TlzooError(f"Unknown pooling '{self.pooling}' for transformer; use one of {', '.join(POOLINGS)}.")
        known = set(ARCH_KEYS) | {"vocab_size", "pooling", "max_length", "image_size", "augment", "train_backbone", "assets"}
        unknown = sorted(set(opts) - known)
        if unknown:
            raise TlzooError(f"Unknown option model.options.{unknown[0]} for transformer; options: "
                             f"{', '.join(f'{k}={v!r}' for k, v in ARCH_DEFAULTS.items())}, vocab_size=20000 "
                             "(architecture options apply without --weights only).")
        self.vocab: Vocab | None = None
        state: dict[str, torch.Tensor] | None = None
        self.folder = Path(request.weights) if request.weights else None  # copied into the run by save_assets
        if request.weights:
            folder = Path(request.weights)
            if not (folder / "config.json").is_file() or not (folder / "vocab.json").is_file():
                raise TlzooError(f"--weights '{folder}' is not a `tl pretrain --plugin transformer` folder "
                                 "(config.json and vocab.json missing).")
            config = json.loads((folder / "config.json").read_text())
            if config.get("format") != "tlzoo-mini-transformer":
                raise TlzooError(f"'{folder}/config.json' is not a tlzoo transformer config; pass a `tl pretrain` folder.")
            arch = {k: config[k] for k in ARCH_KEYS}
            self.vocab = Vocab.load(folder / "vocab.json")
            rows = len(self.vocab)
            if request.pretrained:
                from safetensors.torch import load_file

                state = {k[len("encoder."):]: v for k, v in load_file(str(folder / "model.safetensors")).items()
                         if k.startswith("encoder.")}
                self.weights_source = f"tl pretrain folder {folder} (masked-language modelling)"
            else:
                self.weights_source = f"random init (architecture and vocabulary of {folder})"
        elif request.pretrained:
            raise TlzooError("The transformer plugin has no packaged weights; pretrain them with `tl pretrain --plugin "
                             "transformer --corpus FILE|DIR --out DIR` and pass --weights DIR, or use --no-pretrained.")
        else:
            arch = {k: opts.get(k, ARCH_DEFAULTS[k]) for k in ARCH_KEYS if k != "max_length"}
            arch["max_length"] = int(opts.get("max_length") or ARCH_DEFAULTS["max_length"])
            rows = int(opts.get("vocab_size", 20000))
            torch.manual_seed(0)  # a reproducible random init, so tl predict rebuilds the same network
            self.weights_source = f"random init (words hashed into {rows:,} rows)"
        self.rows = rows
        # without --weights every word is hashed into the rows after the specials
        self.words = HashedVocab(self.vocab, 0) if self.vocab is not None else HashedVocab.empty(rows - len(SPECIALS), SPECIALS)
        self.arch = arch
        self.max_length = min(int(opts.get("max_length") or arch["max_length"]), int(arch["max_length"]))
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
        import shutil

        if self.folder is None:
            return
        dst = Path(folder) / "pretrained"
        if dst.resolve() == self.folder.resolve():
            return
        dst.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "vocab.json", "model.safetensors"):
            if (self.folder / name).is_file():
                shutil.copy2(self.folder / name, dst / name)

    def spec(self) -> dict[str, Any]:
        copy = {"weights_copy": "assets/pretrained"} if self.folder is not None else {}  # tl predict reads the copy
        return {**super().spec(), **copy}

    def preprocessing(self) -> dict[str, Any]:
        return {"tokenizer": "tlzoo.text_vocab (lower-cased words) + <cls>", "vocab": self.rows,
                "hashed": self.vocab is None, "max_length": self.max_length, "pooling": self.pooling}


@hookimpl
def tlzoo_register_backbones(register: Any) -> None:
    register(BackboneFactory(
        name="transformer", modality="text", create=MiniTransformerBackbone, default_model="mini-transformer",
        models=("mini-transformer",),
        description="a small Transformer encoder pretrained by `tl pretrain --plugin transformer` (masked LM)",
    ))


@hookimpl
def tlzoo_register_pretrainers(register: Any) -> None:
    register(MLMPretrainer())
