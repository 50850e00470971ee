"""The kit says what it checked (issue 17 §6): a rule that does not apply to a case skips with its reason
instead of passing, and ``uncovered`` also names a plugin's commands, catalogue entries and step wrappers
that no case covers."""

from __future__ import annotations

import unittest
from typing import Any

import click
import pytest
from kit_fixtures import GoodBag

from tlzoo import BackboneRequest, hookimpl, step_wrapper, steps
from tlzoo.engine.plugins import PluginManager
from tlzoo.engine.zoo import Zoo
from tlzoo.testing import BackboneCase, CommandCase, check_backbone, checks_for, uncovered


def _run(name: str, obj: Any) -> None:
    (check,) = [(case, c) for case, c in checks_for(obj) if c.__name__ == name]
    check[1](check[0])


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ("check_fit_protocol", "not a FittableBackbone: nothing is fitted"),
        ("check_frozen_batchnorm", "no BatchNorm layer with running statistics"),
    ],
)
def test_a_rule_that_does_not_apply_skips_with_its_reason(rule: str, reason: str) -> None:
    with pytest.raises(unittest.SkipTest, match=rf"\[{rule}\] skipped: {reason}"):
        _run(rule, GoodBag())
    check_backbone(GoodBag())  # the all-in-one call still runs every rule that applies, skipping the others


@click.command()
def _hello() -> None:
    """Say hello from the plugin."""
    click.echo("hello")


@click.command()
def _mute() -> None:
    pass


class _Plugin:
    """A plugin with one of each: a command (and a silent one), a catalogue entry, a step wrapper."""

    @hookimpl
    def tlzoo_register_commands(self, cli: Any) -> None:
        cli.add_command(_hello, "hello")
        cli.subgroup("data").add_command(_mute, "mute")

    @hookimpl
    def tlzoo_register_catalogue(self, register: Any) -> None:
        register({"name": "bag-8", "plugin": "bag", "modality": "text", "description": "a bag of letters"})

    @step_wrapper(steps.TRAIN)
    def timed(self, run: Any) -> Any:
        return (yield)


def test_uncovered_names_commands_catalogue_entries_and_step_wrappers() -> None:
    zoo = Zoo(PluginManager(load_entry_points=False, extra=[_Plugin()], builtins=False))
    missing = uncovered([], zoo=zoo, plugin="_Plugin")
    assert missing["commands"] == ["data mute", "hello"]
    assert missing["catalogue"] == ["bag-8"] and missing["step_wrappers"] == ["_Plugin:timed"]
    cases = [
        CommandCase("hello", zoo=zoo),
        CommandCase("data mute", zoo=zoo),
        BackboneCase("bag", BackboneRequest("bag-8")),
    ]
    assert not any(uncovered(cases, zoo=zoo, plugin="_Plugin", exempt=["_Plugin:timed"]).values())
    # the command check: a command with help passes, one without any fails naming its rule
    for case, check in checks_for(cases[0]):
        check(case)
    with pytest.raises(AssertionError, match=r"\[check_command_help\] `tl data mute` has no help text"):
        for case, check in checks_for(cases[1]):
            check(case)
