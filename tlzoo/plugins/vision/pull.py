"""``tl pull NAME...``: fetch pretrained weights once, use them offline afterwards.

A built-in plugin that adds one command (``tlzoo_register_commands``), like a third-party
one would.  It stays light at import (click and the catalogue; no torch), because the
CLI imports it to list and run its commands: timm and torchvision load inside the command.

Each model's weights land in ``$TLZOO_HOME/weights/<model>.safetensors`` with their
preprocessing beside them in ``<model>.json``; ``tl run`` finds them there (second in
the weights order) without any network.  Weights come from an installed weights
package when there is one (so pulling EfficientNet-Lite0 works offline), else from
the hub, which needs the network: offline (``--offline``, ``TLZOO_OFFLINE``,
``HF_HUB_OFFLINE``) or with a hub that does not answer, ``tl pull`` refuses at once.

The catalogue's text encoders with hub weights (bert-base-uncased, e5, bge, gte, ...) are
pulled into the Hugging Face cache instead (config, tokenizer and safetensors files only;
see :mod:`tlzoo.plugins.text.hub_pull`), where the bert plugin finds them offline.
"""

from __future__ import annotations

from typing import Any

import click

from tlzoo.api.errors import TlzooError, suggest
from tlzoo.api.hookspecs import hookimpl
from tlzoo.cli import friendly, offline_option
from tlzoo.engine.registry import CatalogueEntry, load_catalogue
from tlzoo.infra import network

TORCHVISION = ("alexnet", "googlenet")


def _text_hub_id(entry: CatalogueEntry) -> str:
    """The hub id a catalogued transformers encoder downloads from ('' when it has none)."""
    if entry.modality != "text" or entry.plugin != "bert":
        return ""
    return next((w.partition(":")[2] for w in entry.weights if w.startswith("hub:")), "")


def resolve(name: str) -> str:
    """A catalogue model name (vision, or a text encoder with hub weights), or a vision plugin
    name meaning its default model."""
    entries = [e for e in load_catalogue() if e.modality == "vision" or _text_hub_id(e)]
    names = [e.name for e in entries]
    if name in names:
        return name
    default = next((e.name for e in entries if e.modality == "vision" and e.plugin == name and e.default), None)
    if default:
        return default
    other = next((e for e in load_catalogue() if e.name == name), None)
    if other is not None:
        raise TlzooError(
            f"'{name}' is a {other.modality} model without hub weights; `tl pull` fetches vision weights and "
            "the transformers encoders of `tl list --modality text`. Load it from a local folder with --weights."
        )
    families = sorted({e.plugin for e in entries if e.modality == "vision"})  # `tl pull FAMILY`: its default
    raise TlzooError(f"Unknown model '{name}'.{suggest(name, [*families, *names])} See `tl list`.")


def pull_weights(name: str) -> str:
    """Cache ``name``'s pretrained weights; return the file (or, for a text encoder, the folder) written."""
    model = resolve(name)
    if model == "lenet5":
        raise TlzooError("lenet5 has no pretrained weights anywhere; train it with --no-pretrained.")
    entry = next(e for e in load_catalogue() if e.name == model)
    hub_id = _text_hub_id(entry)
    if hub_id:
        from tlzoo.plugins.text.hub_pull import pull as text_pull

        return text_pull(model, hub_id)
    packaged = any(w.startswith("package:") for w in entry.weights)
    if network.offline() and not packaged:
        # refused before torch or timm load: offline, only a weights package could serve it
        raise TlzooError(
            f"`tl pull {model}` needs the network (the weights are on the hub), but "
            f"{network.OFFLINE_HINT}; run it on a machine that is online and copy "
            f"$TLZOO_HOME/weights/{model}.safetensors (+ .json) here, or pass --weights FILE."
        )
    if not packaged:  # the hub's answer (or silence) arrives while torch and timm load
        kind, _, where = next((w for w in entry.weights if w.startswith(("hub:", "url:"))), ":").partition(":")
        if kind:
            network.probe_soon(network.endpoint() if kind == "hub" else where)
    if model in TORCHVISION:
        from .torchvision_models import pull

        return pull(model)
    from .timm_vision import pull as timm_pull

    return timm_pull(model)


@click.command()
@click.argument("names", nargs=-1, required=True)
@offline_option
@friendly
def pull(names: tuple[str, ...]) -> None:
    """Download pretrained weights for later offline runs: vision into $TLZOO_HOME/weights, text encoders
    into the Hugging Face cache."""
    for name in names:
        click.echo(pull_weights(name))


@hookimpl
def tlzoo_register_commands(cli: Any) -> None:
    cli.add_command(pull)
