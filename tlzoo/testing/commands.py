"""The parts of a plugin beyond its objects: ``tl`` commands, catalogue entries and step wrappers.

:func:`registered_extras` lists what each plugin adds of these three, for
:func:`~tlzoo.testing.uncovered`; :class:`CommandCase` checks one command (``tl NAME --help``
answers with its help, so ``tl --help`` and the command's own help work).  A catalogue entry
is covered by a :class:`~tlzoo.testing.BackboneCase` of that model; a step wrapper runs only
inside a run, so a plugin's own test of that run covers it: name it (``plugin:function``) in ``exempt``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ._rules import Check, default_zoo, rule, skip

EXTRA_KINDS = ("commands", "catalogue", "step_wrappers")


class _Recorder:
    """What a plugin's ``tlzoo_register_commands`` gets here: records each command under its ``tl`` path."""

    def __init__(self, found: dict[str, Any], prefix: str = "") -> None:
        self._found, self._prefix = found, prefix

    def subgroup(self, name: str) -> _Recorder:
        return _Recorder(self._found, f"{self._prefix}{name} ")

    def add_command(self, cmd: Any, name: str | None = None) -> None:
        self._found[f"{self._prefix}{name or cmd.name}"] = cmd


def plugin_commands(zoo: Any = None) -> dict[str, dict[str, Any]]:
    """``{plugin: {"data export": command, ...}}``: the commands each plugin adds to ``tl``
    (a plugin whose hook fails adds none here; ``tl plugins`` shows its error)."""
    zoo = zoo or default_zoo()
    out: dict[str, dict[str, Any]] = {}
    for impl in zoo.plugins.pm.hook.tlzoo_register_commands.get_hookimpls():
        found: dict[str, Any] = {}
        try:
            impl.function(**{arg: _Recorder(found) for arg in impl.argnames})
        except Exception:  # noqa: BLE001  (recorded by tl's own loading; nothing to check here)
            found = {}
        out.setdefault(impl.plugin_name, {}).update(found)
    return out


def registered_extras(zoo: Any = None, plugin: str | None = None) -> dict[str, list[str]]:
    """What ``plugin`` (else every plugin) adds besides objects: ``commands`` (``tl`` paths),
    ``catalogue`` (model names; registry.toml's own entries are not a plugin's) and
    ``step_wrappers`` (``plugin:function``)."""
    from tlzoo.engine.registry import BUILTIN

    zoo = zoo or default_zoo()
    commands = [n for p, cmds in plugin_commands(zoo).items() if plugin in (None, p) for n in cmds]
    catalogue = [e.name for e in zoo.catalogue if e.registered_by != BUILTIN and plugin in (None, e.registered_by)]
    wrappers = [
        f"{impl.plugin_name}:{impl.function.__name__}"
        for impl in zoo.plugins.pm.hook.tlzoo_run_step.get_hookimpls()
        if plugin in (None, impl.plugin_name) and not impl.plugin_name.startswith("tlzoo.")  # tl's own step runner
    ]
    return {"commands": commands, "catalogue": catalogue, "step_wrappers": wrappers}


@rule
def check_command_help(command: Any, path: str = "") -> None:
    """``tl PATH --help`` exits 0 and prints the command's usage, and the command says in one line what it does."""
    import click
    from click.testing import CliRunner

    assert isinstance(command, click.Command), f"'{path}' is a {type(command).__name__}, not a click command"
    res = CliRunner().invoke(command, ["--help"], prog_name=f"tl {path}".strip())
    assert res.exit_code == 0, f"`tl {path} --help` exited {res.exit_code}: {res.output[-300:]}"
    assert "Usage:" in res.output, f"`tl {path} --help` printed no usage line"
    summary = command.get_short_help_str(limit=200).strip()
    assert summary, f"`tl {path}` has no help text: give the command a docstring or help="


@dataclass(eq=False)
class CommandCase:
    """A ``tl`` command a plugin adds, by its path (``"data export"``) or as ``(path, command)``."""

    command: Any
    id: str = ""
    zoo: Any = None

    def __post_init__(self) -> None:
        self.path = self.command if isinstance(self.command, str) else str(getattr(self.command, "name", ""))
        self.id = self.id or self.path.replace(" ", "-")

    def resolve(self) -> Any:
        """The click command."""
        if not isinstance(self.command, str):
            return self.command
        for cmds in plugin_commands(self.zoo).values():
            if self.command in cmds:
                return cmds[self.command]
        skip("check_command_help", f"no plugin adds the command 'tl {self.command}'")

    def checks(self) -> Iterator[Check]:
        for fn in COMMAND_CHECKS:
            yield Check(fn, _with_command)


def _with_command(case: CommandCase, rule: Callable[..., Any]) -> Any:
    return rule(case.resolve(), case.path)


COMMAND_CHECKS: tuple[Callable[..., None], ...] = (check_command_help,)
"""Every command check, each called as ``check(command, path)``."""
