"""The ``tl`` click group: plugin commands added on demand, signals, and failures rendered as one line."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from tlzoo.api.errors import TlzooError
from tlzoo.cli.errors import _CLICK_FLOW, _set_debug, fail, offline_option


class _PluginCommands:
    """What a plugin's ``tlzoo_register_commands`` gets as ``cli``: the tl group, except that
    a command name tl already has keeps tl's command (the clash is recorded).
    ``cli.subgroup("data")`` adds to an existing group (``tl data ...``) by the same rule."""

    def __init__(self, group: click.Group, plugin: str, pm: Any) -> None:
        self._group, self._plugin, self._pm = group, plugin, pm

    def subgroup(self, name: str) -> _PluginCommands:
        """An existing group of ``tl`` (such as ``data``) to add commands to."""
        group = self._group.commands.get(name)
        if not isinstance(group, click.Group):
            groups = sorted(n for n, c in self._group.commands.items() if isinstance(c, click.Group))
            raise TlzooError(f"tl has no command group '{name}' to add commands to; groups: {', '.join(groups)}.")
        return _PluginCommands(group, self._plugin, self._pm)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        name = name or cmd.name or ""
        if self._group.commands.get(name) is cmd:  # the same command again (plugin commands reloaded)
            return
        owner = getattr(self._group.commands.get(name), "tlzoo_plugin", None)
        if name in self._group.commands and owner != self._plugin:  # tl's own, or another plugin's
            self._pm.record(self._plugin, f"command '{name}' already exists; the plugin's one is ignored", warning=True)
            return
        cmd.tlzoo_plugin = self._plugin  # type: ignore[attr-defined]  # a reload replaces its own commands
        self._group.add_command(cmd, name)

    def _decorator(self, make: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if len(args) == 1 and callable(args[0]) and not kwargs:  # @cli.command without parentheses
            cmd = make()(args[0])
            self.add_command(cmd)
            return cmd

        def decorator(f: Callable[..., Any]) -> Any:
            cmd = make(*args, **kwargs)(f)
            self.add_command(cmd)
            return cmd

        return decorator

    def command(self, *args: Any, **kwargs: Any) -> Any:
        return self._decorator(click.command, args, kwargs)

    def group(self, *args: Any, **kwargs: Any) -> Any:
        return self._decorator(click.group, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._group, name)


class PluginGroup(click.Group):
    """Adds commands that plugins register (built-in or installed), loading them only when needed.

    Each plugin's ``tlzoo_register_commands`` runs on its own; a failure is recorded
    (``tl plugins`` shows it) and ``tl --help`` and every other command keep working.
    Running a command installs the SIGINT/SIGTERM handlers and turns any exception,
    from a plugin's command too, into one line (see ``friendly``).
    """

    _loaded = False
    _command_plugins: Any = None  # the PluginManager that loaded plugin commands, for `tl plugins`

    def _load_plugin_commands(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        self._command_plugins = None
        from tlzoo.engine.plugins import COMMAND_PLUGINS, PluginManager

        pm = PluginManager(builtins=COMMAND_PLUGINS)  # only the light built-ins that add commands: no torch
        pm.call_register("tlzoo_register_commands", lambda plugin: _PluginCommands(self, plugin, pm))
        self._command_plugins = pm

    def command_problems(self) -> list[Any]:
        """The PluginInfo of every plugin that failed or clashed while adding its commands."""
        from tlzoo.engine.plugins import allowed_plugins

        self._load_plugin_commands()
        if self._command_plugins is None:
            return []
        allowed = allowed_plugins()  # the commands were added once per process: TLZOO_PLUGINS may have changed since
        return [
            i
            for i in self._command_plugins.plugins()
            if (i.error or i.warnings) and (allowed is None or i.name in allowed)
        ]

    def invoke(self, ctx: click.Context) -> Any:
        from tlzoo.infra.lifecycle import signals_raise_interrupted

        if os.environ.get("TLZOO_PLUGINS"):
            from tlzoo.engine.plugins import unknown_allowed

            for why in unknown_allowed().values():
                click.echo(f"Warning: {why} See `tl plugins`.", err=True)
        with signals_raise_interrupted():
            try:
                return super().invoke(ctx)
            except _CLICK_FLOW:
                raise
            except (Exception, KeyboardInterrupt) as exc:  # a plugin command without @friendly, or the group
                fail(exc, ctx.invoked_subcommand or None)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is None:
            self._load_plugin_commands()
            cmd = super().get_command(ctx, name)
        return cmd

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            name = args[0] if args else ""
            from tlzoo.api.errors import suggest

            hint = suggest(name, self.list_commands(ctx))
            if hint and "No such command" in str(exc):
                raise click.UsageError(f"No such command '{name}'.{hint}", ctx) from None
            raise


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tlzoo", message="tlzoo %(version)s")
@click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    callback=_set_debug,
    help="Print the full traceback of an unexpected error (or set TLZOO_DEBUG=1).",
)
@offline_option
def cli() -> None:
    """tlzoo: transfer learning in one command.

    \b
      tl run --plugin bert --data reviews.csv
      tl run --plugin efficientnet --data ./images/
      tl predict runs/<run> "a new sentence"
      tl list            # known models
    """
