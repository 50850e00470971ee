"""House rules that keep the engine small, the layers apart and the CLI fast.

tlzoo/core knows nothing of timm, transformers, gensim, scikit-learn or torchvision
(they live in plugins); the engine (tlzoo/core, tlzoo/cli.py) and the building blocks
(tlzoo/lib) import nothing from tlzoo.plugins, so built-ins are plugins like any other;
``import tlzoo``, ``tl --help`` and ``tl list`` never import torch.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import tlzoo

PACKAGE = Path(tlzoo.__file__).parent
FORBIDDEN_IN_CORE = {"timm", "transformers", "gensim", "sklearn", "torchvision"}


def _imported_modules(path: Path) -> set[str]:
    """Top-level names of every module imported anywhere in the file, lazy imports included."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value).split(".")[0])
    return names


def _imported_dotted(path: Path, package: str | None = None) -> set[str]:
    """Full dotted names of everything the file imports, lazy and relative imports included.

    ``from a.b import c`` gives both ``a.b`` and ``a.b.c`` (``c`` may be a module);
    ``package`` (default: the file's own package) resolves relative imports."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    if package is None:
        package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return names


def _from_plugins(path: Path, package: str | None = None) -> list[str]:
    return sorted(n for n in _imported_dotted(path, package) if n == "tlzoo.plugins" or n.startswith("tlzoo.plugins."))


CORE_FILES = sorted((PACKAGE / "core").rglob("*.py"))
LIB_FILES = sorted((PACKAGE / "lib").rglob("*.py"))
TESTING_FILES = sorted((PACKAGE / "testing").rglob("*.py"))


def test_core_files_found() -> None:
    assert len(CORE_FILES) >= 10


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_imports_no_model_library(path: Path) -> None:
    bad = _imported_modules(path) & FORBIDDEN_IN_CORE
    assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {sorted(bad)}; move that code into a plugin"


@pytest.mark.parametrize("name", ["cli.py", "__init__.py", *(f"testing/{p.name}" for p in TESTING_FILES)])
def test_public_modules_import_no_model_library(name: str) -> None:
    bad = _imported_modules(PACKAGE / name) & FORBIDDEN_IN_CORE
    assert not bad, f"tlzoo/{name} imports {sorted(bad)}"


def test_lib_files_found() -> None:
    assert {p.parent.name for p in LIB_FILES} >= {"lib", "text", "vision"}


@pytest.mark.parametrize(
    "path",
    [*CORE_FILES, PACKAGE / "cli.py", PACKAGE / "__init__.py", *LIB_FILES],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_engine_cli_and_lib_import_nothing_from_plugins(path: Path) -> None:
    bad = _from_plugins(path)
    assert not bad, (
        f"{path.relative_to(PACKAGE.parent)} imports {bad}; the engine, the CLI and tlzoo.lib must not "
        "depend on built-in plugins (a building block belongs in tlzoo/lib, a command or step behind a "
        "hook: tlzoo_register_commands, tlzoo_run_step)"
    )


def test_plugin_scanner_sees_lazy_relative_and_dynamic_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        "import tlzoo.core.errors\nfrom . import zoo\n\ndef f():\n    from ..plugins.text import bert\n"
        "    import tlzoo.plugins.vision.pull\n    importlib.import_module('tlzoo.plugins.data.builtin')\n"
        "    from tlzoo import plugins\n"
    )
    found = _from_plugins(src, package="tlzoo.core")
    assert {
        "tlzoo.plugins.text.bert",
        "tlzoo.plugins.vision.pull",
        "tlzoo.plugins.data.builtin",
        "tlzoo.plugins",
    } <= set(found)
    assert "tlzoo.core.zoo" not in found and "tlzoo.core.errors" not in found


def _heavy_modules_after(code: str) -> dict[str, bool]:
    probe = (
        code + "\nimport json, sys\n"
        "print(json.dumps({m: m in sys.modules for m in ('torch', 'timm', 'transformers', 'numpy', 'sklearn')}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_tlzoo_and_cli_do_not_import_torch() -> None:
    loaded = _heavy_modules_after("import tlzoo, tlzoo.cli, tlzoo.core.api")
    assert not loaded["torch"], "import tlzoo / tlzoo.cli imports torch"
    assert not loaded["timm"] and not loaded["transformers"]


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["list"],
        ["list", "--json"],
        ["run", "--help"],
        ["data", "--help"],
        ["pull", "--help"],
        ["data", "export", "--help"],
    ],
)
def test_light_commands_do_not_import_torch(args: list[str]) -> None:
    code = (
        "import sys\nfrom tlzoo.cli import cli\n"
        f"try:\n    cli.main({args!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n"
    )
    loaded = _heavy_modules_after(code)
    assert not loaded["torch"], f"`tl {' '.join(args)}` imports torch"
    assert not loaded["transformers"] and not loaded["timm"]


def test_builtin_command_plugins_are_light() -> None:
    """The CLI imports these to list and run their commands: torch would make every `tl --help` slow."""
    from tlzoo.core.plugins import BUILTIN_PLUGINS, COMMAND_PLUGINS

    loaded = _heavy_modules_after(
        "import importlib\n"
        + "".join(f"importlib.import_module({BUILTIN_PLUGINS[name]!r})\n" for name in COMMAND_PLUGINS)
    )
    assert not any(loaded.values()), f"a built-in command plugin imports {[m for m, v in loaded.items() if v]}"


def test_testing_kit_imports_without_model_libraries() -> None:
    loaded = _heavy_modules_after("import tlzoo.testing")
    assert not loaded["timm"] and not loaded["transformers"] and not loaded["sklearn"]
