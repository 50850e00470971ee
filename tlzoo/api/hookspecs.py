"""The pluggy hook specifications every tlzoo plugin (built-in or not) implements.

Registration hooks receive a ``register`` callback, so one plugin can register many
things.  Entry-point group and project name: ``tlzoo``.
"""

from __future__ import annotations

from typing import Any

from tlzoo.api.markers import hookimpl as hookimpl, hookspec  # hookimpl re-exported: tlzoo.api.hookspecs.hookimpl
from tlzoo.api.steps import state_table


@hookspec
def tlzoo_register_backbones(register: Any) -> None:
    """Register BackboneFactory objects: ``register(factory)``."""


@hookspec
def tlzoo_register_heads(register: Any) -> None:
    """Register Head classes: ``register(HeadClass)``."""


@hookspec
def tlzoo_register_strategies(register: Any) -> None:
    """Register Strategy instances: ``register(strategy)``."""


@hookspec
def tlzoo_register_data_sources(register: Any) -> None:
    """Register DataSource instances: ``register(source)``; earlier ones win ties."""


@hookspec
def tlzoo_register_pretrainers(register: Any) -> None:
    """Register Pretrainer instances (source-task training): ``register(pretrainer)``."""


@hookspec
def tlzoo_register_catalogue(register: Any) -> None:
    """Add models to the catalogue (``tl list``, ``--plugin NAME``, ``--model NAME``): ``register({"name": ...,
    "plugin": FACTORY, "modality": "text", ...})``, one dict per model with registry.toml's keys.

    ``tl list`` imports the plugin's entry-point module for this and nothing else: keep that module
    light (no torch, sklearn or the like at its top; import them inside the other hooks)."""


@hookspec
def tlzoo_register_commands(cli: Any) -> None:
    """Add click commands to ``tl``: ``cli.add_command(...)``, or ``cli.subgroup("data").add_command(...)``.

    Loaded for ``tl --help``: keep the plugin's module light (click at import, the work inside the command)."""


@hookspec(firstresult=True)
def tlzoo_run_step(step: str, run: Any) -> Any:
    """Wrap a step of ``tl run`` and ``tl compare``: ``@tlzoo.step_wrapper(steps.TRAIN)`` (names checked at import).

    A raw implementation must be a wrapper, ``@hookimpl(wrapper=True)``, that ends with
    ``return (yield)``; a plain one (it would replace the step) is refused when its plugin loads.
    ``step`` is one of ``tlzoo.steps.STEPS``; ``run`` is the ``tlzoo.Run``.  After each step the
    run holds what it and every earlier step set (``tl compare`` runs ``steps.PROBE_STEPS``):

    """


if tlzoo_run_step.__doc__:  # the table lives in steps.STATE, so the docs cannot drift from the runner
    tlzoo_run_step.__doc__ = (
        tlzoo_run_step.__doc__.rstrip(" ") + "\n".join("    " + line for line in state_table().splitlines()) + "\n"
    )
