"""export.json names the package of each plugin a model needs, and loading an export without that plugin
says what to install (issue 17 §6); the exported model.safetensors has every other file's mode.

The example plugin (examples/tlzoo-example, installed in the venv as the distribution tlzoo-example) gives
the backbone: raw pixels of 16x16 digits, a fitted knn head (tlzoo's), so each run takes seconds."""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path

import pytest

from tlzoo.api.errors import TlzooError
from tlzoo.commands.predict import Predictor
from tlzoo.engine.plugins import PluginManager
from tlzoo.engine.zoo import Zoo


@pytest.fixture(scope="module")
def exported(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from click.testing import CliRunner

    from tlzoo.cli import cli

    base = tmp_path_factory.mktemp("export-plugins")
    run, dest = base / "run", base / "export"
    for args in (
        ["run", "--plugin", "pixels-16", "--data", str(image_folder), "--head", "knn", "--out", str(run), "-q"],
        ["export", str(run), "--to", str(dest)],
    ):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, res.output
    return dest


def test_export_json_records_each_plugins_package_and_version(exported: Path) -> None:
    rows = {r["role"]: r for r in json.loads((exported / "export.json").read_text())["plugins"]}
    assert rows["backbone"] == {
        "role": "backbone",
        "name": "pixels",
        "plugin": "example",
        "distribution": "tlzoo-example",
        "version": metadata.version("tlzoo-example"),
    }
    assert rows["head"]["name"] == "knn" and rows["head"]["distribution"] == "tlzoo"
    assert rows["head"]["version"] == metadata.version("tlzoo")


def test_loading_without_the_plugin_names_the_package_to_install(exported: Path) -> None:
    Predictor.load(exported, Zoo())  # installed: loads
    without = Zoo(PluginManager(load_entry_points=False))  # the built-ins only: the example is not installed
    with pytest.raises(TlzooError) as info:
        Predictor.load(exported, without)
    message = str(info.value)
    assert "needs the plugin 'example'" in message and "from the package 'tlzoo-example'" in message
    assert "(pip install tlzoo-example)" in message and "\n" not in message


def test_the_exported_weights_have_the_mode_of_every_other_file(exported: Path) -> None:
    modes = {p.name: p.stat().st_mode & 0o777 for p in exported.iterdir() if p.is_file()}
    assert modes["model.safetensors"] == modes["model.json"] == modes["export.json"], modes
    mask = os.umask(0)
    os.umask(mask)
    assert modes["model.safetensors"] == 0o666 & ~mask  # a new file's usual mode (safetensors creates 0600)
