"""The listing commands load no heavy library (issue 10, goal 5), checked without timing.

`tl list`, `tl data list`, `tl heads`, `tl strategies`, `tl plugins` and `tl --help` must answer
in a fraction of a second; what would make them slow is importing torch (seconds), timm,
transformers, scikit-learn or gensim, and even numpy (a tenth of a second).  Each command runs in
a fresh interpreter with the built-in plugins, and again with every installed plugin (the example
package, whose hooks module shows third-party authors the same light registration), then the
interpreter says which of those modules it imported.  The light registration modules repeat
a few names and defaults of the torch-side code; the last tests check that they agree.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tlzoo.engine.plugins import BUILTIN_PLUGINS

HEAVY = ("torch", "timm", "transformers", "sklearn", "gensim", "torchvision", "numpy")
LIGHT_COMMANDS = [["list"], ["data", "list"], ["heads"], ["strategies"], ["plugins"], ["--help"]]


def _heavy_after(args: list[str], installed: bool = False) -> tuple[dict[str, bool], str]:
    probe = (
        "import json, sys\nfrom tlzoo.cli import cli\n"
        f"try:\n    cli.main({args!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    )
    env = {**os.environ, "TLZOO_PLUGINS": ",".join(BUILTIN_PLUGINS), "HF_HUB_OFFLINE": "1"}
    if installed:
        del env["TLZOO_PLUGINS"]
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stdout


@pytest.mark.parametrize("args", LIGHT_COMMANDS, ids=" ".join)
def test_listing_commands_import_no_heavy_library(args: list[str]) -> None:
    loaded, stdout = _heavy_after(args)
    heavy = [m for m, present in loaded.items() if present]
    assert not heavy, f"`tl {' '.join(args)}` imports {heavy}"
    assert stdout.strip(), f"`tl {' '.join(args)}` printed nothing"


@pytest.mark.parametrize("args", [["heads"], ["plugins"]], ids=" ".join)
def test_the_installed_example_plugin_stays_light(args: list[str]) -> None:
    if importlib.util.find_spec("tlzoo_example") is None:  # pragma: no cover - a venv made before the example
        pytest.skip("tlzoo-example is not installed (make venv installs it)")
    loaded, stdout = _heavy_after(args, installed=True)
    heavy = [m for m, present in loaded.items() if present]
    assert not heavy, f"`tl {' '.join(args)}` with the installed plugins imports {heavy}"
    assert ("ridge" if args == ["heads"] else "example") in stdout


def test_listing_commands_still_list_everything() -> None:
    """The light path lists what the torch-side modules define: every head, strategy and dataset."""
    _, heads = _heavy_after(["heads"])
    for name in ("fc", "logreg", "svm", "rf", "knn", "tree", "nb"):
        assert f"\n{name} " in "\n" + heads, f"`tl heads` lost {name}"
    _, strategies = _heavy_after(["strategies"])
    assert all(s in strategies for s in ("feature-extraction", "fine-tune", "ulmfit"))
    _, data = _heavy_after(["data", "list"])
    assert all(d in data for d in ("digits", "rotten-tomatoes"))
    _, plugins = _heavy_after(["plugins"])
    assert "ERROR" not in plugins and all(name in plugins for name in BUILTIN_PLUGINS)


def test_registration_agrees_with_the_torch_side() -> None:
    """Names, options and defaults registered without torch equal those of the classes they stand for."""
    from tlzoo.engine.zoo import Zoo
    from tlzoo.lib.vision.images import AUGMENT_OPTIONS
    from tlzoo.plugins._lazy import LazyPretrainer
    from tlzoo.plugins.vision.timm_vision_hooks import AUGMENT_OPTIONS as LIGHT_AUGMENT_OPTIONS

    assert LIGHT_AUGMENT_OPTIONS == AUGMENT_OPTIONS
    zoo = Zoo()
    for name, pretrainer in zoo.pretrainers.items():
        if isinstance(pretrainer, LazyPretrainer):
            real = pretrainer.real()
            assert real.name == name and pretrainer.description == real.description
            assert pretrainer.defaults() == real.defaults()
    for family in ("elmo", "ulmfit"):  # the language-model backbones: one model each, named like the family
        from tlzoo.plugins._lazy import load

        cls = load(f"tlzoo.plugins.text.{family}:{family.capitalize()}Backbone")
        factory = zoo.backbones.get(family)
        assert cls.family == family == factory.default_model and factory.models == (family,)


def test_a_lazily_registered_backbone_builds_and_names_its_plugin() -> None:
    """The factory's create imports the backbone's module on first use; the result is a real Backbone."""
    from tlzoo import Backbone, BackboneRequest
    from tlzoo.engine.zoo import Zoo

    factory = Zoo().backbones.get("lenet")
    backbone = factory.create(BackboneRequest("lenet5", pretrained=False))
    assert isinstance(backbone, Backbone) and backbone.plugin == "lenet" and backbone.num_features > 0
