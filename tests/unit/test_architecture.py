"""House rules that keep the engine small, the layers apart and the CLI fast.

The layers, lowest first: ``api`` (the plugin contract), ``infra`` (plumbing), ``evaluation``
(metrics, plots), ``engine``, ``lib`` (building blocks for plugins), ``commands`` (built on the
engine), ``facade`` (``Engine``), ``cli``.  Each imports only from the layers ``ARROWS`` allows, so
the engine never imports a command or the CLI; no module imports itself in a circle.  None of
api/infra/evaluation/engine/commands knows timm, transformers, gensim, scikit-learn or torchvision
(they live in plugins); nothing but plugins imports from tlzoo.plugins, so built-ins are plugins like
any other; ``import tlzoo``, ``tl --help`` and ``tl list`` never import torch.
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


def _imported_dotted(path: Path, package: str | None = None, runtime_only: bool = False) -> set[str]:
    """Full dotted names of everything the file imports, lazy and relative imports included.

    ``from a.b import c`` gives both ``a.b`` and ``a.b.c`` (``c`` may be a module);
    ``package`` (default: the file's own package) resolves relative imports; ``runtime_only``
    leaves out what an ``if TYPE_CHECKING:`` block imports."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
                node.body = []
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


CORE_AREAS = ("api", "infra", "evaluation", "engine", "commands")
CORE_FILES = sorted(p for area in CORE_AREAS for p in (PACKAGE / area).rglob("*.py")) + [PACKAGE / "facade.py"]
LIB_FILES = sorted((PACKAGE / "lib").rglob("*.py"))
TESTING_FILES = sorted((PACKAGE / "testing").rglob("*.py"))


def test_core_files_found() -> None:
    assert len(CORE_FILES) >= 10


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_imports_no_model_library(path: Path) -> None:
    bad = _imported_modules(path) & FORBIDDEN_IN_CORE
    assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {sorted(bad)}; move that code into a plugin"


CLI_FILES = sorted((PACKAGE / "cli").rglob("*.py")) if (PACKAGE / "cli").is_dir() else [PACKAGE / "cli.py"]


@pytest.mark.parametrize(
    "name",
    [*(str(p.relative_to(PACKAGE)) for p in CLI_FILES), "__init__.py", *(f"testing/{p.name}" for p in TESTING_FILES)],
)
def test_public_modules_import_no_model_library(name: str) -> None:
    bad = _imported_modules(PACKAGE / name) & FORBIDDEN_IN_CORE
    assert not bad, f"tlzoo/{name} imports {sorted(bad)}"


def test_lib_files_found() -> None:
    assert {p.parent.name for p in LIB_FILES} >= {"lib", "text", "vision"}


@pytest.mark.parametrize(
    "path",
    [*CORE_FILES, *CLI_FILES, PACKAGE / "__init__.py", *LIB_FILES],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_engine_cli_and_lib_import_nothing_from_plugins(path: Path) -> None:
    bad = _from_plugins(path)
    assert not bad, (
        f"{path.relative_to(PACKAGE.parent)} imports {bad}; the engine, the CLI and tlzoo.lib must not "
        "depend on built-in plugins (a building block belongs in tlzoo/lib, a command or step behind a "
        "hook: tlzoo_register_commands, tlzoo_run_step)"
    )


# what each area may import from tlzoo (its own modules always); lazy imports count, TYPE_CHECKING ones do not
ARROWS: dict[str, set[str]] = {
    "api": set(),
    "infra": {"api"},
    "evaluation": {"api", "infra"},
    "engine": {"api", "infra", "evaluation"},
    "lib": {"api", "infra", "evaluation", "engine"},
    "commands": {"api", "infra", "evaluation", "engine", "lib"},
    "facade": {"api", "engine", "commands"},
    "cli": {"api", "infra", "evaluation", "engine", "commands", "facade"},
    "testing": {"api", "infra", "engine", "lib"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tlzoo"


def _runtime_imports(path: Path) -> set[str]:
    """tlzoo modules the file imports at run time (lazy ones included; ``if TYPE_CHECKING:`` blocks left out)."""
    return {n for n in _imported_dotted(path, runtime_only=True) if n == "tlzoo" or n.startswith("tlzoo.")}


ALL_FILES = sorted(p for p in PACKAGE.rglob("*.py"))
MODULES = {_module_name(p): p for p in ALL_FILES}
GRAPH = {m: {d for d in _runtime_imports(p) if d in MODULES and d != m} for m, p in MODULES.items()}


@pytest.mark.parametrize("area", sorted(ARROWS))
def test_each_layer_imports_only_what_its_arrows_allow(area: str) -> None:
    bad = sorted(
        f"{m} imports {d}"
        for m, deps in GRAPH.items()
        if _area(m) == area
        for d in deps
        if _area(d) != area and _area(d) not in ARROWS[area] and d != "tlzoo"
    )
    assert not bad, f"{area} may import only {sorted(ARROWS[area])}: " + "; ".join(bad)


def test_no_import_circles() -> None:
    """Tarjan's strongly connected components over every tlzoo module (lazy imports count)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_engine_never_imports_a_command_or_the_cli() -> None:
    assert not {"commands", "cli", "facade"} & ARROWS["engine"]
    engine = [m for m in GRAPH if _area(m) == "engine"]
    assert len(engine) >= 10 and all(_area(d) not in ("commands", "cli", "facade") for m in engine for d in GRAPH[m])


def test_no_folder_holds_more_than_about_15_modules() -> None:
    for folder in {p.parent for p in ALL_FILES}:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= 16, f"{folder.relative_to(PACKAGE.parent)} holds {len(modules)} modules; split it"


def test_plugin_scanner_sees_lazy_relative_and_dynamic_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        "import tlzoo.api.errors\nfrom . import zoo\n\ndef f():\n    from ..plugins.text import bert\n"
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
    assert "tlzoo.engine.zoo" not in found and "tlzoo.api.errors" not in found


def _heavy_modules_after(code: str) -> dict[str, bool]:
    probe = (
        code + "\nimport json, sys\n"
        "print(json.dumps({m: m in sys.modules for m in ('torch', 'timm', 'transformers', 'numpy', 'sklearn')}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_tlzoo_and_cli_do_not_import_torch() -> None:
    loaded = _heavy_modules_after("import tlzoo, tlzoo.cli, tlzoo.engine.registry")
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
    from tlzoo.engine.plugins import BUILTIN_PLUGINS, COMMAND_PLUGINS

    loaded = _heavy_modules_after(
        "import importlib\n"
        + "".join(f"importlib.import_module({BUILTIN_PLUGINS[name]!r})\n" for name in COMMAND_PLUGINS)
    )
    assert not any(loaded.values()), f"a built-in command plugin imports {[m for m, v in loaded.items() if v]}"


def test_testing_kit_imports_without_model_libraries() -> None:
    loaded = _heavy_modules_after("import tlzoo.testing")
    assert not loaded["timm"] and not loaded["transformers"] and not loaded["sklearn"]
