"""The ``tl`` command: a thin click layer over the Python API (``tlzoo.Engine`` and the commands).

torch, timm and transformers are imported only inside commands that need them, so ``tl --help``
and ``tl list`` stay fast.  One module per group of commands; each registers on the group in
``tlzoo.cli.app``; ``tlzoo.cli.errors`` renders every failure as one line.
"""

from __future__ import annotations

from tlzoo.cli import (  # register the commands
    catalogue as catalogue,
    embed as embed,
    predict as predict,
    train as train,
)
from tlzoo.cli.app import PluginGroup as PluginGroup, cli as cli
from tlzoo.cli.errors import fail as fail, friendly as friendly, offline_option as offline_option
from tlzoo.cli.train import RUN_OPTIONS as RUN_OPTIONS, _run_config as _run_config, run as run


def main() -> None:
    cli()
