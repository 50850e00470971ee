"""The ``fusion`` plugin's registration: a backbone made of one backbone per input column.

``tl run --plugin image=efficientnet_lite0 --plugin title=bert --tabular-columns price,brand``
(or ``RunConfig.use_inputs``) runs the ``fusion`` backbone with ``model.options``::

    inputs   {column: "plugin" or "plugin:model"}   an image or text backbone per column
    tabular  [column, ...]                           numbers standardised, categories one-hot
    weights  {column: path}                          local weights of a column's backbone (optional)

Each record is a dict of those fields (the ``records`` data source reads them from a CSV, TSV or
JSON Lines file).  Features: each input's pooled vector, L2-normalised, concatenated, then one
flag per input that is 1 where the record lacks it (an empty text, a missing or unreadable image,
an empty tabular row): a zero vector and the flag stand in for it.

``fusion`` (``tl run --fusion``) says what is done with those features: ``concat`` (the default) puts
the run's head on all of them; ``late`` fits one copy of the run's fitted head per input and mixes
their probabilities with weights chosen on the validation split; ``mlp`` trains per-input
projections with modality dropout and a small MLP (``fusion_heads``).  The features, and their
cache entries, are the same for all three.  Light on purpose: no torch here.
"""

from __future__ import annotations

from typing import Any

from tlzoo.api.errors import TlzooError, suggest
from tlzoo.api.hookspecs import hookimpl
from tlzoo.api.interfaces import BackboneFactory
from tlzoo.api.steps import EVALUATE, TRAIN

from .._lazy import lazy

FUSIONS = ("concat", "late", "mlp")
DEFAULTS: dict[str, Any] = {
    "inputs": None,
    "tabular": None,
    "weights": None,
    "fusion": "concat",
    "fusion_width": 64,
    "modality_dropout": 0.2,
}
HELP = {
    "inputs": "{column: plugin or plugin:model}: one image or text backbone per input column",
    "tabular": "[column, ...]: tabular columns, numbers standardised (missing flagged), categories one-hot",
    "weights": "{column: path}: local weights for a column's backbone",
    "fusion": "concat (the head on all features), late (a fitted head per input, probabilities mixed with "
    "weights chosen on validation) or mlp (per-input projections, modality dropout, a small MLP); tl run --fusion",
    "fusion_width": "--fusion mlp: the width of each input's projection and of the MLP's hidden layer",
    "modality_dropout": "--fusion mlp: the probability that training zeroes a whole input of an example",
}


def fusion_method(options: dict[str, Any]) -> str:
    """The ``fusion`` option checked: concat, late or mlp; one line with a did-you-mean otherwise."""
    value = options.get("fusion") or "concat"
    if not isinstance(value, str) or value.strip().lower() not in FUSIONS:
        raise TlzooError(
            f"Unknown fusion '{value}'.{suggest(str(value), FUSIONS)} --fusion takes concat (the default), late or mlp."
        )
    return value.strip().lower()


def fusion_head(options: dict[str, Any], head: Any) -> Any:
    """The run's head under ``--fusion``: the configured one for concat, else a late or mlp fusion head over it."""
    method = fusion_method(options)
    if method == "concat":
        return head
    from tlzoo.api.interfaces import FittedHead

    from .fusion_heads import LateFusionHead, MLPFusionHead

    if method == "late":
        if not isinstance(head, FittedHead):
            raise TlzooError(
                f"--fusion late fits one head per input, and '{head.name}' is trained by gradient descent; choose "
                "a fitted head (--head logreg, knn, svm, rf, tree, nb), or --fusion mlp for a trained one."
            )
        late = LateFusionHead(head=head.name, head_params=dict(head.params))
        late.member_class = type(head)
        return late
    if isinstance(head, FittedHead):
        raise TlzooError(
            f"--fusion mlp trains its own head by gradient descent, and '{head.name}' is fitted; use --head fc "
            "(the default), or --fusion late for a fitted head per input."
        )
    width, dropout = options.get("fusion_width", 64), options.get("modality_dropout", 0.2)
    return MLPFusionHead(width=width, modality_dropout=dropout, dropout=head.params.get("dropout", 0.1))


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
            head=fusion_head,
            description="several input columns in one model: an image or text backbone per column, tabular "
            "columns; features L2-normalised and concatenated (--fusion concat), or late or mlp fusion",
        )
    )


@hookimpl
def tlzoo_register_heads(register: Any) -> None:
    from .fusion_heads import LateFusionHead, MLPFusionHead

    register(LateFusionHead)
    register(MLPFusionHead)


@hookimpl(wrapper=True)
def tlzoo_run_step(step: str, run: Any) -> Any:
    """The late head's weights are chosen on the validation split after training; metrics.json records
    the fusion.  (The engine gives every head the input blocks when the model is built.)"""
    factory = getattr(run, "factory", None)
    fused = factory is not None and factory.head is fusion_head
    result = yield
    if fused and step == TRAIN and run.main and hasattr(run.head, "choose"):
        _choose_late_weights(run)
    elif fused and step == EVALUATE and run.main and getattr(run, "metrics", None):
        run.metrics["fusion"] = _fusion_record(run)
    return result


def _choose_late_weights(run: Any) -> None:
    val = run.features.get("val")
    y_val = run.targets["val"].argmax(1) if val is not None and len(val) else []
    run.head.choose(val if val is not None else [], y_val)
    weights = ", ".join(f"{k} {v:.2f}" for k, v in run.head.weight_table().items())
    how = run.head.tuned["chosen_on"]
    run.log(f"  late fusion: one {run.head.params['head']} head per input; weights {weights} ({how})")


def _fusion_record(run: Any) -> dict[str, Any]:
    """metrics.json ``fusion``: the method and what it chose."""
    method = fusion_method(run.config.model.options)
    record: dict[str, Any] = {"method": method, "inputs": [name for name, _ in run.backbone.feature_blocks()]}
    if method == "late":
        tuned = run.head.tuned
        record.update(head=run.head.params["head"], weights=tuned.get("weights"), chosen_on=tuned.get("chosen_on"))
        record.update({k: tuned[k] for k in ("val_log_loss", "val_accuracy", "val_accuracy_per_input") if k in tuned})
    elif method == "mlp":
        record.update({k: run.head.params[k] for k in ("width", "modality_dropout", "dropout")})
    return record


@hookimpl
def tlzoo_register_data_sources(register: Any) -> None:
    from .emoji import SOURCES
    from .flags import SOURCES as FLAGS
    from .records import RecordsSource

    register(RecordsSource())
    for source in SOURCES + FLAGS:  # the built-in emoji and flags datasets: records, pictures, names
        register(source)
