"""Named registries, the model catalogue (registry.toml), and their agreement with the plugins."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tlzoo.api.errors import TlzooError, suggest
from tlzoo.engine.registry import CATALOGUE_FIELDS, Registry, filter_catalogue, full_catalogue, load_catalogue


@pytest.fixture(scope="module")
def zoo() -> Any:
    from tlzoo.engine.zoo import Zoo

    return Zoo()


@pytest.fixture
def reg() -> Registry[int]:
    r: Registry[int] = Registry("plugin", "tl list")
    for i, name in enumerate(["resnet50", "resnet18", "efficientnet_b0", "bert", "densenet121"]):
        r.add(name, i, plugin="p")
    return r


def test_registry_get_and_list(reg: Registry[int]) -> None:
    assert reg.get("bert") == 3
    assert reg.list() == sorted(["resnet50", "resnet18", "efficientnet_b0", "bert", "densenet121"])
    assert reg.list("resnet*") == ["resnet18", "resnet50"]
    assert reg.list("*net*") == ["densenet121", "efficientnet_b0", "resnet18", "resnet50"]
    assert reg.list("*50") == ["resnet50"]
    assert reg.list("vgg*") == []
    assert "bert" in reg and "vgg" not in reg and len(reg) == 5


def test_registry_unknown_name_suggests(reg: Registry[int]) -> None:
    with pytest.raises(TlzooError) as info:
        reg.get("resnt50")
    msg = str(info.value)
    assert msg.startswith("Unknown plugin 'resnt50'.")
    assert "Did you mean 'resnet50'" in msg and "See `tl list`." in msg


def test_registry_unknown_without_close_name_lists_known(reg: Registry[int]) -> None:
    with pytest.raises(TlzooError, match="Known: bert, densenet121"):
        reg.get("zzzzzz")


def test_registry_refuses_duplicates(reg: Registry[int]) -> None:
    with pytest.raises(TlzooError, match="registered twice.*TLZOO_PLUGINS"):
        reg.add("bert", 9, plugin="other")


def test_suggest_prefix_and_case() -> None:
    assert "'efficientnet'" in suggest("efficient", ["efficientnet", "bert"])
    assert "'BERT'" in suggest("bert", ["BERT", "vgg"])
    assert suggest("qqqq", ["bert", "vgg"]) == ""


# --------------------------------------------------------------------------- catalogue
def test_catalogue_parses_and_is_well_formed() -> None:
    entries = load_catalogue()
    assert len(entries) >= 5
    names = [e.name for e in entries]
    assert len(names) == len(set(names)), "duplicate model names in registry.toml"
    for e in entries:
        assert e.modality in ("vision", "text", "multimodal"), e.name
        assert e.plugin and e.description, e.name
        assert isinstance(e.weights, list), e.name
        for w in e.weights:
            assert ":" in w, f"{e.name}: weights source {w!r} should be kind:location"


def test_catalogue_refuses_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown key"):
        load_catalogue('[[model]]\nname = "x"\nplugin = "p"\nmodality = "text"\nsizee = 3\n')


def test_filter_catalogue() -> None:
    entries = load_catalogue()
    text = filter_catalogue(entries, modality="text")
    assert text and all(e.modality == "text" for e in text)
    bert = filter_catalogue(entries, pattern="bert")  # a plugin name matches its models
    assert bert and all(e.plugin == "bert" or e.name == "bert" for e in bert)
    assert {e.name for e in filter_catalogue(entries, pattern="*MiniLM*")} == {"all-MiniLM-L6-v2"}


def test_catalogue_and_plugins_agree(zoo: Any) -> None:
    """registry.toml and every installed plugin's entries (the Zoo's catalogue) against every registered factory."""
    entries = zoo.catalogue
    assert {e.name for e in load_catalogue()} <= {e.name for e in entries}
    for e in entries:
        assert e.plugin in zoo.backbones, (
            f"catalogue ({e.registered_by}): '{e.name}' names plugin '{e.plugin}', which is not registered"
        )
        factory = zoo.backbones.get(e.plugin)
        assert e.name in factory.models, f"registry.toml: '{e.name}' is not in {e.plugin}'s factory.models"
        assert e.modality == factory.modality, f"registry.toml: '{e.name}' modality differs from its plugin"
    by_name = {e.name: e for e in entries}
    for name, factory in zoo.backbones.items():
        default = by_name.get(factory.default_model)
        assert default is not None, f"plugin '{name}': default model '{factory.default_model}' is not catalogued"
        assert default.plugin == name and default.default, (
            f"registry.toml: '{factory.default_model}' should be 'default = true' for plugin '{name}'"
        )
        if zoo.plugins.is_builtin(factory.plugin):  # tlzoo's own backbones are in tlzoo's registry.toml
            assert default.registered_by == "built-in", f"plugin '{name}': catalogued by {default.registered_by}"
        for model in factory.models:
            assert model in by_name, f"plugin '{name}' offers '{model}', which registry.toml does not catalogue"
    defaults = [e for e in entries if e.default]
    assert len({e.plugin for e in defaults}) == len(defaults), "a plugin has more than one default model"


def test_resolve_backbone_by_plugin_or_model(zoo: Any) -> None:
    factory, model = zoo.resolve_backbone("bert")
    assert factory.name == "bert" and model == factory.default_model
    factory, model = zoo.resolve_backbone("efficientnet_b0")
    assert factory.name == "efficientnet" and model == "efficientnet_b0"
    with pytest.raises(TlzooError, match="Did you mean 'efficientnet'"):
        zoo.resolve_backbone("efficientnett")
    with pytest.raises(TlzooError, match="Unknown model 'efficientnet_b9'.*Did you mean"):
        zoo.resolve_backbone("efficientnet", "efficientnet_b9")


# the modern families of issue 17 §7: (plugin, default model, a pattern naming them, a typo and its fix)
MODERN = [
    ("vit", "vit_base_patch16_224", "vit_*", "vitt", "vit"),
    ("deit", "deit_base_patch16_224", "deit_*", "diet", "deit"),
    ("clip", "clip_vit_b32", "clip_*", "clipp", "clip"),
    ("convnext", "convnext_tiny", "convnext_*", "convnxt", "convnext"),
    ("efficientnetv2", "efficientnetv2_s", "efficientnetv2_*", "efficientnet_v2", "efficientnetv2"),
    ("regnet", "regnety_032", "regnet*", "regnt", "regnet"),
    ("bert", "e5-small-v2", "e5-*", "e5-smal-v2", "e5-small-v2"),
    ("bert", "bge-small-en-v1.5", "bge-*", "bge-small-en", "bge-small-en-v1.5"),
    ("bert", "gte-small", "gte-*", "gte-smal", "gte-small"),
]


@pytest.mark.parametrize("plugin, model, pattern, typo, fix", MODERN, ids=[row[2].strip("-_*") for row in MODERN])
def test_modern_family_is_catalogued_with_hub_weights(
    zoo: Any, plugin: str, model: str, pattern: str, typo: str, fix: str
) -> None:
    entries = filter_catalogue(load_catalogue(), pattern=pattern)
    assert len(entries) >= 2 and model in {e.name for e in entries}
    for e in entries:
        assert e.plugin == plugin and e.num_features and e.licence, e.name
        assert [w.split(":")[0] for w in e.weights] == ["hub"], e.name  # nothing packaged: `tl pull` or --weights
        assert e.weights[0].removeprefix("hub:").startswith("timm/" if e.modality == "vision" else e.source)
    by_family = plugin if plugin != "bert" else model  # a family name means its default model
    factory, resolved = zoo.resolve_backbone(by_family)
    assert (factory.name, resolved) == (plugin, model)
    with pytest.raises(TlzooError, match=f"Did you mean '{fix}'"):
        zoo.resolve_backbone(typo)


# --------------------------------------------------------------------------- CLI
def test_tl_list_json(run_cli: Any) -> None:
    res = run_cli("list", "--json")
    assert res.exit_code == 0, res
    rows = json.loads(res.stdout)
    assert [r["name"] for r in rows] == [e.name for e in full_catalogue()]  # tlzoo's and the installed plugins'
    assert len(rows) >= len(load_catalogue())
    for row in rows:
        assert set(CATALOGUE_FIELDS) <= set(row)
        assert row["name"] and row["plugin"] and row["registered_by"]
        assert row["modality"] in ("vision", "text", "multimodal") or row["registered_by"] != "built-in"
    builtin = {e.name for e in load_catalogue()}
    assert all(r["registered_by"] == "built-in" for r in rows if r["name"] in builtin)


def test_tl_list_filters(run_cli: Any) -> None:
    rows = json.loads(run_cli("list", "*MiniLM*", "--json").stdout)
    assert [r["name"] for r in rows] == ["all-MiniLM-L6-v2"]
    rows = json.loads(run_cli("list", "--modality", "vision", "--json").stdout)
    assert rows and all(r["modality"] == "vision" for r in rows)
    res = run_cli("list")
    assert res.exit_code == 0 and "all-MiniLM-L6-v2" in res.stdout
    res = run_cli("list", "nothing-matches-this*")
    assert res.exit_code == 0 and "No model matches" in res.stderr


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"name": "m", "plugin": "p", "modality": "text", "licnce": "mit"},
            "unknown key 'licnce'.*Did you mean 'licence'",
        ),
        ({"name": "m", "modality": "text"}, "needs 'plugin'"),
        ({"name": "m", "plugin": "p", "modality": "visoin"}, "modality 'visoin'. Did you mean 'vision'?"),
        ({"name": "m", "plugin": "p", "modality": "Audio Clips"}, "modality 'Audio Clips'. Use vision, text, multi"),
        (
            {"name": "m", "plugin": "p", "modality": "text", "num_features": "64"},
            "'num_features' of model 'm' is a str",
        ),
        ({"name": "m", "plugin": "p", "modality": "text", "weights": ["hub:x", 3]}, "list of strings"),
        ("m", "a catalogue entry is a dict"),
    ],
)
def test_a_plugin_catalogue_entry_is_checked_like_registry_toml(raw: Any, message: str) -> None:
    from tlzoo.engine.registry import catalogue_entry

    with pytest.raises(TlzooError, match=message):
        catalogue_entry(raw, registered_by="mine", where="catalogue entry of plugin 'mine'")


def test_list_matches_the_registering_plugin_too() -> None:
    from tlzoo.engine.registry import CatalogueEntry

    entries = [CatalogueEntry("a", "fam", "text", registered_by="mine"), CatalogueEntry("b", "bert", "text")]
    assert [e.name for e in filter_catalogue(entries, pattern="mine")] == ["a"]
    assert [e.name for e in filter_catalogue(entries, pattern="built-in")] == ["b"]


def test_tl_list_warns_about_a_plugin_that_imports_a_heavy_library_at_its_top(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    site = tmp_path / "site"
    info = site / "tlzoo_heavy-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tlzoo-heavy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[tlzoo]\nheavy = tlzoo_heavy\n")
    (site / "tlzoo_heavy.py").write_text(
        "import sklearn.linear_model  # at the top: every `tl list` pays for it\nfrom tlzoo import hookimpl\n\n"
        "@hookimpl\ndef tlzoo_register_catalogue(register):\n"
        "    register({'name': 'heavy-model', 'plugin': 'heavy', 'modality': 'text'})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("TLZOO_PLUGINS", None)
    res = subprocess.run(
        [sys.executable, "-c", "from tlzoo.cli import cli; cli.main(['list', '--json'])"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "heavy-model" in {r["name"] for r in json.loads(res.stdout)}
    assert (
        "Warning: plugin 'heavy': importing it loads sklearn, so `tl --help` and `tl list` wait for that; "
        "import heavy modules inside the hooks."
    ) in res.stderr
