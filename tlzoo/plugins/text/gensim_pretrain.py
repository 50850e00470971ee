"""``tl pretrain --plugin word2vec|fasttext``: train word vectors on a corpus with gensim.

Texts are tokenized exactly as the backbones tokenize them (``text_vocab.tokenize``), so
every word the run looks up was spelled the same way in training.  5 % of the texts
(at least one, when there are 20 or more) are held out to draw an honest curve.

gensim reports no comparable per-epoch loss (none at all for FastText), so the curve is
our own measure, the same for both: the skip-gram negative-sampling loss
-log s(v_w . u_c) - sum_k log s(-v_w . u_k) per (word, context) pair, on a fixed seeded
sample of pairs from the training texts and from the held-out texts, with
``negative`` noise words drawn from the unigram^0.75 distribution as in training.
fastText is scored with its n-gram vectors, so unseen held-out words count too.

Output (no pickle: nothing in it can run code when loaded): ``vectors.safetensors``
(the word vectors; fastText adds its n-gram buckets ``vectors_ngrams`` and the
full-word vectors ``vectors_vocab``), ``vocab.json`` (the words in row order, most
frequent first, with their corpus counts), ``vectors.json`` (format, dims, and
``min_n``/``max_n``/``bucket`` for fastText: how ``vector_files.load_folder`` rebuilds
gensim's KeyedVectors) and ``vectors.vec`` (word2vec text format, portable, vocabulary
words only).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tlzoo.api.errors import TlzooError
from tlzoo.api.hookspecs import hookimpl
from tlzoo.api.interfaces import Pretrainer, merge_options
from tlzoo.lib.lazy import lazy_module
from tlzoo.lib.text.vector_files import gensim_quiet, save_vectors
from tlzoo.lib.text.vocab import tokenize

if TYPE_CHECKING:
    import numpy as np
else:  # imported on first use: the listing commands (tl heads, tl plugins ...) load no numpy
    np = lazy_module("numpy")

MAX_PAIRS = 20000  # pairs scored per split and epoch: enough for a smooth curve, cheap


class GensimPretrainer(Pretrainer):
    fasttext = False

    def defaults(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "epochs": 10,
            "seed": 0,
            "dim": 100,
            "window": 5,
            "min_count": 2,
            "sg": 1,
            "negative": 5,
            "alpha": 0.025,
            "min_alpha": 0.0001,
            "sample": 1e-3,
            "workers": 1,
        }
        if self.fasttext:
            d.update(min_n=3, max_n=6, bucket=200000)
        return d

    def pretrain(
        self, corpus: list[str], out: str, options: dict[str, Any], log: Callable[[str], None]
    ) -> dict[str, Any]:
        gensim_quiet()
        o = merge_options(self.name, options, self.defaults())
        for key in ("epochs", "dim", "window", "min_count", "negative", "workers"):
            if o[key] < 1:
                raise TlzooError(f"Pretrainer option '{key}' must be at least 1, got {o[key]}.")
        rng = np.random.default_rng(o["seed"])
        train, held = _split([s for s in (tokenize(t) for t in corpus) if s], rng)
        n_tokens = sum(len(s) for s in train)
        model = self._model(o, train)
        log(
            f"  vocabulary {len(model.wv.index_to_key):,} words (min_count {o['min_count']}), "
            f"{n_tokens:,} training tokens, {len(held)} held-out texts; {o['epochs']} epoch{'s' * (o['epochs'] != 1)}"
        )
        history = _train(model, train, held, o, rng, log)
        save_vectors(
            model.wv, out, self.name, {"tokenizer": "tlzoo.lib.text.vocab.tokenize (lower-cased words)", "options": o}
        )
        model.wv.save_word2vec_format(f"{out}/vectors.vec")
        return {
            "vocabulary": len(model.wv.index_to_key),
            "training_tokens": n_tokens,
            "held_out_texts": len(held),
            "final_train_loss": history[-1].get("train_loss"),
            "final_val_loss": history[-1].get("val_loss"),
            "loss": "skip-gram negative-sampling loss per pair",
            "history": history,
        }

    def _model(self, o: dict[str, Any], train: list[list[str]]) -> Any:
        """An untrained Word2Vec or FastText model with its vocabulary built from ``train``."""
        from gensim.models import FastText, Word2Vec

        common = dict(
            vector_size=o["dim"],
            window=o["window"],
            min_count=o["min_count"],
            sg=o["sg"],
            negative=o["negative"],
            sample=o["sample"],
            seed=o["seed"],
            workers=o["workers"],
            alpha=o["alpha"],
            min_alpha=o["min_alpha"],
        )
        if self.fasttext:
            model = FastText(min_n=o["min_n"], max_n=o["max_n"], bucket=o["bucket"], **common)
        else:
            model = Word2Vec(**common)
        model.build_vocab(corpus_iterable=train)
        if not model.wv.index_to_key:
            raise TlzooError(
                f"No word occurs {o['min_count']} times in the corpus; give more text or --set min_count=1."
            )
        return model


def _split(sentences: list[list[str]], rng: np.random.Generator) -> tuple[list[list[str]], list[list[str]]]:
    """(training, held-out) sentences: 5 % held out (at least one) from 20 sentences on; training keeps its order."""
    order = rng.permutation(len(sentences))
    n_val = max(1, len(sentences) // 20) if len(sentences) >= 20 else 0
    held = [sentences[i] for i in order[:n_val]]
    train = [sentences[i] for i in sorted(order[n_val:])]
    return train, held


def _train(
    model: Any,
    train: list[list[str]],
    held: list[list[str]],
    o: dict[str, Any],
    rng: np.random.Generator,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """One gensim epoch at a time (the learning rate decaying linearly overall), scored after each."""
    pairs = {"train": _pairs(train, model, o["window"], rng), "val": _pairs(held, model, o["window"], rng)}
    noise = _noise(model, o["negative"], max(len(p[0]) for p in pairs.values()), rng)
    history = []
    epochs = o["epochs"]
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        a0 = o["alpha"] - (o["alpha"] - o["min_alpha"]) * (epoch - 1) / epochs
        a1 = o["alpha"] - (o["alpha"] - o["min_alpha"]) * epoch / epochs
        model.train(corpus_iterable=train, total_examples=len(train), epochs=1, start_alpha=a0, end_alpha=a1)
        row: dict[str, Any] = {"epoch": epoch}
        for split, (centres, contexts) in pairs.items():
            if len(centres):
                row[f"{split}_loss"] = round(_ns_loss(model, centres, contexts, noise), 5)
        row["seconds"] = round(time.perf_counter() - start, 2)
        history.append(row)
        log(
            f"  epoch {epoch}/{epochs}: loss {row.get('train_loss', float('nan')):.4f}"
            + (f" | held-out {row['val_loss']:.4f}" if "val_loss" in row else "")
            + f" ({row['seconds']}s)"
        )
    return history


def _pairs(
    sentences: list[list[str]], model: Any, window: int, rng: np.random.Generator
) -> tuple[list[str], np.ndarray]:
    """(centre words, context ids) sampled from ``sentences``; contexts must be in the vocabulary."""
    index = model.wv.key_to_index
    centres: list[str] = []
    contexts: list[int] = []
    for s in sentences:
        for i, word in enumerate(s):
            for j in range(max(0, i - window), min(len(s), i + window + 1)):
                if j != i and s[j] in index:
                    centres.append(word)
                    contexts.append(index[s[j]])
    if len(centres) > MAX_PAIRS:
        keep = np.sort(rng.choice(len(centres), MAX_PAIRS, replace=False))
        centres = [centres[k] for k in keep]
        contexts = [contexts[k] for k in keep]
    return centres, np.asarray(contexts, dtype=np.int64)


def _noise(model: Any, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    counts = np.array([model.wv.get_vecattr(w, "count") for w in model.wv.index_to_key], dtype=np.float64)
    p = counts**0.75
    return rng.choice(len(counts), size=(n, k), p=p / p.sum())


def _ns_loss(model: Any, centres: list[str], contexts: np.ndarray, noise: np.ndarray) -> float:
    wv = model.wv
    known = [w in wv.key_to_index or hasattr(wv, "vectors_ngrams") for w in centres]
    idx = [i for i, ok in enumerate(known) if ok]
    if not idx:
        return float("nan")
    v = np.stack([wv.get_vector(centres[i]) for i in idx]).astype(np.float64)
    out = np.asarray(model.syn1neg, dtype=np.float64)
    pos = np.einsum("nd,nd->n", v, out[contexts[idx]])
    neg = np.einsum("nd,nkd->nk", v, out[noise[: len(idx)]])
    loss = np.logaddexp(0, -pos) + np.logaddexp(0, neg).sum(1)  # -log s(x) = log(1 + e^-x)
    return float(loss.mean())


class Word2VecPretrainer(GensimPretrainer):
    name = "word2vec"
    description = "word2vec (gensim): skip-gram or CBOW with negative sampling"


class FastTextPretrainer(GensimPretrainer):
    name = "fasttext"
    description = "fastText (gensim): word2vec plus character n-grams, so unseen words get vectors"
    fasttext = True


@hookimpl
def tlzoo_register_pretrainers(register: Any) -> None:
    register(Word2VecPretrainer())
    register(FastTextPretrainer())
