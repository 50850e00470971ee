"""The pretrained-weights folder of tlzoo's own language models, and the base classes that use it.

``tl pretrain --plugin NAME --out DIR`` writes ``model.safetensors`` + ``vocab.json`` +
``description.json`` (+ ``pretraining_curve.png``); ``tl run --plugin NAME --weights DIR``
reads it, and a run keeps a copy in ``assets/pretrained`` so ``tl predict`` never needs
the original folder.

* ``weights_folder`` / ``read_weights`` / ``save_weights`` / ``copy_weights``: the folder;
* ``finish_pretraining``: summary, weights, vocabulary and curve at the end of a pretraining;
* ``PretrainedLMBackbone``: a text backbone built from such a folder (or from random
  weights with ``--no-pretrained``) that can fine-tune its language model on target
  texts (``--strategy ulmfit``); a plugin writes only what its network does;
* ``LMPretrainer``: the ``tl pretrain`` recipe (held-out split, vocabulary, model, the
  training loop of :mod:`tlzoo.lib.text.lm`, the folder); a plugin writes only its
  vocabulary, model and batches.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import Backbone, BackboneFactory, BackboneRequest, Pretrainer, check_options
from tlzoo.lib.text.lm import LanguageModelTask, run_language_model, seed_all, split_corpus
from tlzoo.lib.text.pooling import choose_pooling
from tlzoo.lib.text.vocab import HashedVocab, Vocab

FORMAT = "tlzoo-pretrained-lm"
FORMATS_READ = (FORMAT, "tlzoo-lstm-lm")  # the name of 0.1, when only elmo and ulmfit wrote it
# what a run keeps of the folder (config.json: the transformer's folders of 0.1)
FILES = ("model.safetensors", "vocab.json", "description.json", "config.json")


def weights_folder(plugin: str, weights: str | None, pretrained: bool, assets: str | None = None) -> Path | None:
    """The folder to load, None for random init, or a one-line error saying what to do.

    ``assets`` is a finished run's asset folder (``tl predict``): a copy of the pretrained
    folder kept there wins, so a run still predicts after its ``--weights`` folder moved."""
    if assets and pretrained and (Path(assets) / "pretrained" / "description.json").is_file():
        return Path(assets) / "pretrained"
    if weights:
        p = Path(weights)
        if not p.is_dir():
            raise TlzooError(
                f"--weights '{weights}' is not a folder; pass the --out folder of "
                f"`tl pretrain --plugin {plugin} --corpus FILE --out DIR`."
            )
        return p
    if not pretrained:
        return None
    from tlzoo.engine.features import tlzoo_home

    default = tlzoo_home() / "pretrained" / plugin
    if (default / "description.json").is_file():
        return default
    raise TlzooError(
        f"No pretrained {plugin} weights: no package ships them. Make them with `tl pretrain --plugin "
        f"{plugin} --corpus FILE|DIR --out DIR` and pass --weights DIR, or train from scratch with "
        "--no-pretrained."
    )


def read_weights(folder: Path, plugin: str) -> tuple[dict[str, Any], dict[str, torch.Tensor], Vocab]:
    """(description, tensors, vocabulary) of a folder written by ``save_weights``."""
    from safetensors.torch import load_file

    desc_path = folder / "description.json"
    if not desc_path.is_file() or not (folder / "model.safetensors").is_file():
        raise TlzooError(
            f"'{folder}' holds no pretrained {plugin} weights (description.json + model.safetensors); "
            f"make them with `tl pretrain --plugin {plugin} --corpus FILE --out {folder}`."
        )
    desc = json.loads(desc_path.read_text("utf-8"))
    if desc.get("format") not in FORMATS_READ or desc.get("plugin") != plugin:
        raise TlzooError(
            f"'{folder}' holds weights for '{desc.get('plugin', 'another model')}', not {plugin}; "
            f"pass a folder from `tl pretrain --plugin {plugin}`."
        )
    return desc, load_file(str(folder / "model.safetensors")), Vocab.load(folder / "vocab.json")


def save_weights(
    folder: Path,
    plugin: str,
    tensors: dict[str, torch.Tensor],
    vocab: HashedVocab,
    config: dict[str, Any],
    summary: dict[str, Any],
) -> None:
    from safetensors.torch import save_file

    from tlzoo.engine import artifacts

    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in tensors.items()},
        str(folder / "model.safetensors"),
        metadata={"format": FORMAT, "plugin": plugin},
    )
    vocab.save(folder)
    desc = {
        "format": FORMAT,
        "version": 1,
        "plugin": plugin,
        "config": config,
        "hash_buckets": vocab.buckets,
        "vocab_size": len(vocab.vocab),
        "tokenizer": "tlzoo.lib.text.vocab.tokenize (lower-cased words)",
        "summary": summary,
        "versions": artifacts.versions(),
    }
    (folder / "description.json").write_text(json.dumps(desc, indent=2), "utf-8")


def copy_weights(src: Path | None, assets: str) -> None:
    """Keep a copy of the pretrained folder with a run (see ``weights_folder``)."""
    import shutil

    if src is None:
        return
    dst = Path(assets) / "pretrained"
    if dst.resolve() == src.resolve():
        return
    dst.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def finish_pretraining(
    out: str,
    plugin: str,
    model: torch.nn.Module,
    vocab: HashedVocab,
    config: dict[str, Any],
    rows: list[dict[str, Any]],
    texts: int,
    held_out: int,
    title: str,
) -> dict[str, Any]:
    """Summarise a language-model pretraining, save weights + vocabulary and draw its curve."""
    summary = {
        "epochs": config["epochs"],
        "train_perplexity": rows[-1]["train_perplexity"],
        "val_perplexity": rows[-1].get("val_perplexity"),
        "tokens_per_epoch": rows[-1]["tokens"],
        "texts": texts,
        "held_out_texts": held_out,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": round(sum(r["seconds"] for r in rows), 1),
        "history": rows,
    }
    folder = Path(out)
    save_weights(folder, plugin, model.state_dict(), vocab, config, summary)
    plot_curve(rows, folder / "pretraining_curve.png", f"{title} · {texts:,} texts")
    return summary  # the engine writes its history to pretraining_history.csv


def plot_curve(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Loss and perplexity per epoch, training and held-out."""
    from tlzoo.evaluation.plots import _plt, integer_ticks

    plt = _plt()
    import matplotlib.ticker

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    ep = [r["epoch"] for r in rows]
    a.plot(ep, [r["train_loss"] for r in rows], "o-", label="train")
    b.plot(ep, [r["train_perplexity"] for r in rows], "o-", label="train")
    if rows and "val_loss" in rows[0]:
        a.plot(ep, [r["val_loss"] for r in rows], "s-", label="held-out")
        b.plot(ep, [r["val_perplexity"] for r in rows], "s-", label="held-out")
    a.set(xlabel="epoch", ylabel="cross-entropy (nats / token)", title="loss")
    b.set(xlabel="epoch", ylabel="perplexity", title="perplexity")
    ppl = [r[k] for r in rows for k in ("train_perplexity", "val_perplexity") if k in r]
    if ppl and max(ppl) > 10 * min(ppl):  # log scale only when perplexity spans decades
        b.set_yscale("log")
        b.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    for ax in (a, b):
        integer_ticks(ax, ep)  # one epoch: the tick 1, not 0.945 ... 1.050
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- backbone
class PretrainedLMBackbone(Backbone):
    """A text backbone whose weights come from ``tl pretrain --plugin <family>``.

    Subclasses set ``family`` (the plugin name in the folder), ``poolings`` (the first is
    the default), ``arch_defaults`` (the architecture of a scratch model; a folder records
    its own) and optionally ``min_length``, and implement ``build`` (create the modules,
    from the folder's tensors when there are any) and ``language_model_task``.
    """

    modality = "text"
    family: ClassVar[str] = ""
    poolings: ClassVar[tuple[str, ...]] = ()
    arch_defaults: ClassVar[dict[str, Any]] = {}
    min_length: ClassVar[int] = 0  # the shortest model.max_length that leaves room for a word

    def __init__(self, request: BackboneRequest) -> None:
        super().__init__()
        check_options(self.family, request.options, {})  # the engine's settings only
        self.name = request.model
        self.pooling = choose_pooling(request.pooling, self.poolings, self.family)
        self.max_length = request.max_length or 128
        if self.max_length < self.min_length:
            raise TlzooError(
                f"model.max_length must be at least {self.min_length} for {self.family}, got {self.max_length}."
            )
        self.folder = weights_folder(self.family, request.weights, request.pretrained, request.assets)
        if self.folder is None:
            self.arch = dict(self.arch_defaults)
            self.weights_source = "random init (no pretraining)"
            self.build(None, None, None)
        else:
            desc, tensors, vocab = read_weights(self.folder, self.family)
            self.arch = {k: desc["config"][k] for k in self.arch_defaults}
            self.weights_source = f"tl pretrain folder {self.folder}"
            self.build(desc, tensors, vocab)

    @classmethod
    def factory(cls, description: str) -> BackboneFactory:
        """The factory to register: one model, named like the family."""
        return BackboneFactory(
            name=cls.family,
            modality="text",
            create=cls,
            default_model=cls.family,
            models=(cls.family,),
            description=description,
        )

    def build(self, desc: dict[str, Any] | None, tensors: dict[str, torch.Tensor] | None, vocab: Vocab | None) -> None:
        """Create the modules for ``self.arch``; load ``tensors`` when the folder gave some (else random init)."""
        raise NotImplementedError

    def language_model_task(self, batch_size: int, device: torch.device) -> LanguageModelTask:
        """The backbone's own network as a language model over target texts (its modules, shared)."""
        raise NotImplementedError

    def save_assets(self, folder: str) -> None:
        copy_weights(self.folder, folder)

    def spec(self) -> dict[str, Any]:
        copy = {"weights_copy": "assets/pretrained"} if self.folder is not None else {}  # tl predict reads the copy
        return {**super().spec(), "arch": self.arch, **copy}

    def finetune_language_model(
        self,
        texts: list[str],
        val_texts: list[str],
        *,
        epochs: int,
        lr: float,
        batch_size: int,
        seed: int,
        device: torch.device,
        log: Callable[[str], None],
        on_epoch: Callable[[dict[str, Any]], None],
    ) -> list[dict[str, Any]]:
        """Language-model fine-tuning on target texts (ULMFiT's stage 2, ``--strategy ulmfit``): all layers learn."""
        task = self.language_model_task(batch_size, device)
        for p in self.parameters():
            p.requires_grad_(True)
        try:
            return run_language_model(
                task,
                texts,
                val_texts,
                epochs=epochs,
                lr=lr,
                seed=seed,
                device=device,
                log=log,
                label="lm-finetune",
                on_epoch=on_epoch,
            )
        finally:
            for p in self.parameters():
                p.requires_grad_(False)


# --------------------------------------------------------------------------- pretraining
class LMPretrainer(Pretrainer):
    """``tl pretrain`` for a ``PretrainedLMBackbone``: seeds, held-out split, vocabulary, model,
    training loop, then the folder.  Subclasses set ``name``, ``description``, ``architecture``,
    ``options`` and ``minimums`` and implement ``build_model`` and ``task`` (and ``build_vocab``
    for another vocabulary than words + ``hash_buckets``, ``check`` for other rules).
    """

    architecture: ClassVar[str] = ""  # the network in a few words, formatted with the options (log, curve)
    options: ClassVar[dict[str, Any]] = {}  # every option and its default (epochs, lr, seed included)
    minimums: ClassVar[dict[str, int]] = {"epochs": 1, "batch_size": 1}  # the smallest value of integer options

    def defaults(self) -> dict[str, Any]:
        return dict(self.options)

    def check(self, o: dict[str, Any]) -> None:
        """A one-line TlzooError for options that cannot train (below ``minimums``)."""
        for key, least in self.minimums.items():
            if o[key] < least:
                raise TlzooError(f"Pretrainer option '{key}' must be at least {least}, got {o[key]}.")

    def build_vocab(self, texts: list[str], o: dict[str, Any]) -> HashedVocab:
        """The ``max_vocab`` most frequent words seen ``min_freq`` times, then ``hash_buckets`` (if any) buckets."""
        return HashedVocab.build(texts, o["max_vocab"], o["min_freq"], int(o.get("hash_buckets", 0)))

    def build_model(self, vocab: HashedVocab, o: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def task(self, model: nn.Module, vocab: HashedVocab, o: dict[str, Any], device: torch.device) -> LanguageModelTask:
        raise NotImplementedError

    def pretrain(
        self, corpus: list[str], out: str, options: dict[str, Any], log: Callable[[str], None]
    ) -> dict[str, Any]:
        from tlzoo.api.interfaces import merge_options

        o = merge_options(self.name, options, self.defaults())
        self.check(o)
        seed_all(o["seed"])
        train, val = split_corpus(corpus, o["seed"])
        vocab = self.build_vocab(train, o)
        model = self.build_model(vocab, o)
        buckets = f" + {vocab.buckets:,} hash buckets" if vocab.buckets else ""
        log(
            f"{self.name}: {self.architecture.format(**o)}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M "
            f"parameters; vocabulary {len(vocab.vocab):,} words{buckets}; {len(train):,} training / "
            f"{len(val):,} held-out texts"
        )
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        rows = run_language_model(
            self.task(model, vocab, o, device),
            train,
            val,
            epochs=o["epochs"],
            lr=o["lr"],
            seed=o["seed"],
            device=device,
            log=log,
            label="pretrain",
        )
        return finish_pretraining(
            out,
            self.name,
            model,
            vocab,
            {k: o[k] for k in self.defaults()},
            rows,
            len(train),
            len(val),
            f"{self.name}: {self.architecture.format(**o)}",
        )
