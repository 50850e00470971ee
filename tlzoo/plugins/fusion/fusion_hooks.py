"""The ``fusion`` plugin's registration: a backbone made of one backbone per input column.

``tl run --plugin image=efficientnet_lite0 --plugin title=bert --tabular-columns price,brand``
(or ``RunConfig.use_inputs``) runs the ``fusion`` backbone with ``model.options``::

    inputs   {column: "plugin" or "plugin:model"}   an image or text backbone per column
    tabular  [column, ...]                           numbers standardised, categories one-hot
    weights  {column: path}                          local weights of a column's backbone (optional)

Each record is a dict of those fields (the ``records`` data source reads them from a CSV, TSV or
JSON Lines file).  Features: each input's pooled vector, L2-normalised, concatenated, then one
flag per input that is 1 where the record lacks it (an empty text, a missing or unreadable image,
an empty tabular row): a zero vector and the flag stand in for it.  Light on purpose: no torch here.
"""

from __future__ import annotations

from typing import Any

from tlzoo.api.errors import TlzooError
from tlzoo.api.hookspecs import hookimpl
from tlzoo.api.interfaces import BackboneFactory

from .._lazy import lazy

DEFAULTS: dict[str, Any] = {"inputs": None, "tabular": None, "weights": None}
HELP = {
    "inputs": "{column: plugin or plugin:model}: one image or text backbone per input column",
    "tabular": "[column, ...]: tabular columns, numbers standardised (missing flagged), categories one-hot",
    "weights": "{column: path}: local weights for a column's backbone",
}


def input_columns(options: dict[str, Any]) -> dict[str, str]:
    """The ``inputs`` option checked: {column: plugin spec}."""
    inputs = options.get("inputs") or {}
    if not isinstance(inputs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in inputs.items()):
        raise TlzooError(
            "model.options.inputs must map columns to plugins, e.g. {'image': 'efficientnet_lite0', 'title': 'bert'}."
        )
    return dict(inputs)


def tabular_columns(options: dict[str, Any]) -> list[str]:
    tabular = options.get("tabular") or []
    if isinstance(tabular, str):
        tabular = [c.strip() for c in tabular.split(",") if c.strip()]
    if not isinstance(tabular, list | tuple) or not all(isinstance(c, str) for c in tabular):
        raise TlzooError("model.options.tabular must list column names, e.g. ['price', 'brand'].")
    return list(tabular)


def fields(options: dict[str, Any]) -> tuple[str, ...]:
    """Every column a record must hold: the input columns, then the tabular ones."""
    inputs, tabular = input_columns(options), tabular_columns(options)
    if not inputs and not tabular:
        raise TlzooError(
            "A fused run needs input columns: --plugin COLUMN=PLUGIN (one per image or text column) and/or "
            "--tabular-columns A,B."
        )
    both = sorted(set(inputs) & set(tabular))
    if both:
        raise TlzooError(f"Column '{both[0]}' is both an input (--plugin) and a tabular column; name it once.")
    return (*inputs, *tabular)


@hookimpl
def tlzoo_register_backbones(register: Any) -> None:
    register(
        BackboneFactory(
            name="fusion",
            modality="multimodal",
            create=lazy("tlzoo.plugins.fusion.fused:FusedBackbone"),
            default_model="concat",
            models=("concat",),
            options=DEFAULTS,
            option_help=HELP,
            fields=fields,
            description="several input columns in one model: an image or text backbone per column, tabular "
            "columns; features L2-normalised and concatenated",
        )
    )


@hookimpl
def tlzoo_register_data_sources(register: Any) -> None:
    from .emoji import SOURCES
    from .flags import SOURCES as FLAGS
    from .records import RecordsSource

    register(RecordsSource())
    for source in SOURCES + FLAGS:  # the built-in emoji and flags datasets: records, pictures, names
        register(source)
