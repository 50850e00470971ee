"""The ``static_vectors`` plugin's registration: ``glove``, ``word2vec`` and ``fasttext``, and the
step wrapper that reports the out-of-vocabulary rate of their runs.

Light on purpose (no torch): listing commands import it.  :mod:`tlzoo.plugins.text.static_vectors`
loads when one of these backbones is built.
"""

from __future__ import annotations

import sys
from typing import Any

from tlzoo.api.hookspecs import hookimpl
from tlzoo.api.interfaces import BackboneFactory, BackboneRequest
from tlzoo.api.steps import CREATE_BACKBONE, EVALUATE

from .._lazy import load

IMPLEMENTATION = "tlzoo.plugins.text.static_vectors"
DEFAULTS: dict[str, Any] = {
    "encoder": "bilstm",
    "hidden": 128,
    "dropout": 0.25,
    "vocab_size": 50000,
    "filters": 100,
    "dim": 100,
}
HELP: dict[str, str] = {
    "encoder": "fine-tune: the encoder over the word vectors, bilstm or cnn",
    "hidden": "fine-tune: units of the BiLSTM encoder",
    "dropout": "fine-tune: dropout in the encoder",
    "vocab_size": "rows of the embedding layer: the most frequent words (or hashed buckets without vectors)",
    "filters": "fine-tune: CNN filters per n-gram width (3, 4, 5)",
    "dim": "vector width when there are no vectors to load (random rows)",
}
FAMILIES = {
    "glove": ("glove-6B-50d", "GloVe vectors: the packaged 6B-50d offline, or any GloVe/word2vec/fastText file"),
    "word2vec": ("word2vec", "word2vec vectors trained by `tl pretrain --plugin word2vec`, or a .bin/.txt file"),
    "fasttext": (
        "fasttext",
        "fastText vectors (sub-words for unseen words): `tl pretrain --plugin fasttext` or a .bin/.vec",
    ),
}


def _factory(family: str) -> BackboneFactory:
    default, description = FAMILIES[family]

    def create(request: BackboneRequest) -> Any:
        return load(f"{IMPLEMENTATION}:StaticVectorBackbone")(request, family)

    return BackboneFactory(
        name=family,
        modality="text",
        create=create,
        options=DEFAULTS,
        option_help=HELP,
        default_model=default,
        models=(default,),
        description=description,
    )


@hookimpl
def tlzoo_register_backbones(register: Any) -> None:
    for family in FAMILIES:
        register(_factory(family))


@hookimpl(wrapper=True)
def tlzoo_run_step(step: str, run: Any) -> Any:
    """Report the out-of-vocabulary rate of static-vector runs (logged, and in metrics.json)."""
    result = yield
    backbone = getattr(run, "backbone", None)
    module = sys.modules.get(IMPLEMENTATION)  # loaded once such a backbone exists; no other run needs it
    if module is not None and isinstance(backbone, module.StaticVectorBackbone):
        if step == CREATE_BACKBONE:
            s = run.splits
            report = backbone.oov_report(list(s.train.examples) + list(s.val.examples) + list(s.test.examples))
            run.extras["oov"] = report  # a plugin keeps its values in run.extras, never in new attributes
            if report["oov_rate"] is None:
                run.log(f"  out-of-vocabulary: not applicable ({report['note']})")
            else:
                fallback = "fastText sub-words" if report["subwords"] else "parts of compounds"
                run.log(
                    f"  out-of-vocabulary: {report['oov_rate']:.2%} of {report['tokens']:,} tokens not in the "
                    f"vectors; {report['unk_rate']:.2%} left as <unk> after the fallback ({fallback})"
                )
            lr = run.config.train.finetune_lr
            if backbone.encoder is not None and lr < 5e-4:
                run.log(
                    f"  note: the {backbone.encoder_name} encoder starts from random weights and learns slowly at "
                    f"--finetune-lr {lr:g}; 1e-3 to 3e-3 suits it"
                )
        elif step == EVALUATE and run.extras.get("oov") is not None:
            run.metrics["oov"] = run.extras["oov"]
    return result
