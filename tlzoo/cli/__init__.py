"""The ``tl`` command: a thin click layer over the Python API (``tlzoo.Engine`` and the commands).

torch, timm and transformers are imported only inside commands that need them, so ``tl --help``
and ``tl list`` stay fast.  One module per group of commands; each registers on the group in
``tlzoo.cli.app``; ``tlzoo.cli.errors`` renders every failure as one line.
"""

from __future__ import annotations

import atexit
import gc

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
    # at exit, skip the interpreter's last garbage collection over every object torch, transformers and
    # scikit-learn made (0.5-1.5 s of a `tl predict` on two busy cores, issue 17 §8); atexit handlers,
    # logging and the standard streams still flush as before.  The console script only: not under tests.
    atexit.register(gc.freeze)
    cli()
