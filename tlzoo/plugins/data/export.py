"""``tl data export NAME FOLDER``: write a built-in dataset to disk (a CSV for texts, PNG folders for images).

A built-in plugin that adds one command to the ``tl data`` group through
``tlzoo_register_commands``, like a third-party one would.  It stays light at import
(click only), because the CLI imports it to list and run its commands; the datasets
(numpy, scikit-learn, PIL) load inside the command.
"""

from __future__ import annotations

from typing import Any

import click

from tlzoo.api.hookspecs import hookimpl
from tlzoo.cli import friendly


@click.command(name="export")
@click.argument("name")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--limit", type=int, default=0, help="A stratified subset of N examples.")
@click.option("--seed", type=int, default=0)
@friendly
def data_export(name: str, folder: str, limit: int, seed: int) -> None:
    """Write a built-in dataset to FOLDER (a CSV for texts, PNG folders per class for images)."""
    from .builtin import export

    click.echo(export(name, folder, limit, seed))


@hookimpl
def tlzoo_register_commands(cli: Any) -> None:
    cli.subgroup("data").add_command(data_export)
