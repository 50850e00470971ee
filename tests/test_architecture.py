"""House rules that keep the engine small and the CLI fast.

tlzoo/core knows nothing of timm, transformers, gensim, scikit-learn or torchvision
(they live in plugins), and ``import tlzoo``, ``tl --help`` and ``tl list`` never
import torch.
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
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names.add(str(node.args[0].value).split(".")[0])
    return names


CORE_FILES = sorted((PACKAGE / "core").rglob("*.py"))


def test_core_files_found() -> None:
    assert len(CORE_FILES) >= 10


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_imports_no_model_library(path: Path) -> None:
    bad = _imported_modules(path) & FORBIDDEN_IN_CORE
    assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {sorted(bad)}; move that code into a plugin"


@pytest.mark.parametrize("name", ["testing.py", "cli.py", "__init__.py"])
def test_public_modules_import_no_model_library(name: str) -> None:
    bad = _imported_modules(PACKAGE / name) & FORBIDDEN_IN_CORE
    assert not bad, f"tlzoo/{name} imports {sorted(bad)}"


def test_scanner_sees_lazy_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("def f():\n    import timm.models\n    from sklearn.linear_model import X\n"
                   "    importlib.import_module('gensim.models')\n")
    assert _imported_modules(src) >= {"timm", "sklearn", "gensim"}


def _heavy_modules_after(code: str) -> dict[str, bool]:
    probe = (code + "\nimport json, sys\n"
             "print(json.dumps({m: m in sys.modules for m in ('torch', 'timm', 'transformers', 'numpy', 'sklearn')}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_tlzoo_and_cli_do_not_import_torch() -> None:
    loaded = _heavy_modules_after("import tlzoo, tlzoo.cli, tlzoo.core.api")
    assert not loaded["torch"], "import tlzoo / tlzoo.cli imports torch"
    assert not loaded["timm"] and not loaded["transformers"]


@pytest.mark.parametrize("args", [["--help"], ["list"], ["list", "--json"], ["run", "--help"]])
def test_light_commands_do_not_import_torch(args: list[str]) -> None:
    code = ("import sys\nfrom tlzoo.cli import cli\n"
            f"try:\n    cli.main({args!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n")
    loaded = _heavy_modules_after(code)
    assert not loaded["torch"], f"`tl {' '.join(args)}` imports torch"
    assert not loaded["transformers"] and not loaded["timm"]


def test_testing_kit_imports_without_model_libraries() -> None:
    loaded = _heavy_modules_after("import tlzoo.testing")
    assert not loaded["timm"] and not loaded["transformers"] and not loaded["sklearn"]
