"""The plugin guide (docs/plugins/) is code: every block in it runs, and it documents everything.

Two kinds of test, after datasette's ``test_docs.py``:

* **The blocks run.**  ``tutorial.md`` and ``reference.md`` are each played in order in an
  empty folder, as a reader would: a block whose first line is ``# file: PATH`` is written
  to PATH (``# append to: PATH`` adds to it), a ``python`` block runs (consecutive ones in
  one process, each in a fresh namespace, tracebacks pointing at the line of the .md file),
  a ``bash`` block runs with ``bash -e``, and a ``console`` block runs each ``$ command``
  and checks the output shown under it: every line shown must appear in what the command
  printed (runs of spaces compared as one, ``...`` matching anything), and the command must
  exit 0, or 2 when the output shown starts with ``Error:``.  ``pip install -e .`` is
  played by writing the package's dist-info (its ``tlzoo`` entry points, read from the
  pyproject.toml the tutorial wrote) into ``site/`` and putting ``site`` and ``src`` on
  PYTHONPATH: what a user's install gives tlzoo, without touching the venv.  A block whose
  first line is ``# not run`` is only shown.  Everything runs offline, with a private
  ``TLZOO_HOME``.
* **Everything is documented.**  Every hook of ``tlzoo/api/hookspecs.py`` has a section in
  reference.md with a runnable example that uses it; the Run-state table lists every step
  (by its ``tlzoo.steps`` constant) with exactly the attributes ``tlzoo.steps.STATE``
  declares; every ``BackboneRequest`` field, engine setting, catalogue key, kit check,
  ``tlzoo.lib`` module, 0.1 step name and plugin alias is named; relative links resolve.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "plugins"
PAGES = (
    "index.md",
    "tutorial.md",
    "reference.md",
    "overview.md",
    "multimodal.md",
    # the user guide, one level up (docs/)
    "../index.md",
    "../cli.md",
    "../models.md",
    "../runs.md",
    "../scale-out.md",
    "../offline.md",
    "../guarantees.md",
    "../python-api.md",
)
TIMEOUT_S = 1800  # a guard against a hung command, not a speed requirement

FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)


@dataclasses.dataclass
class Block:
    lang: str
    code: str
    line: int  # line of the .md file where the code starts (after the opening fence)
    page: Path

    @property
    def first(self) -> str:
        return self.code.split("\n", 1)[0].strip()

    @property
    def shown_only(self) -> bool:
        return self.first.startswith("# not run")

    @property
    def target(self) -> tuple[str, str] | None:
        """("file" | "append", path) for a block that writes a file of the tutorial package."""
        m = re.fullmatch(r"# (file|append to): (\S+)", self.first)
        return (m.group(1).split()[0], m.group(2)) if m else None


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start(2)) + 1
        out.append(Block(m.group(1), m.group(2), line, page))
    return out


# --------------------------------------------------------------------------- playing a page
DRIVER = r"""
import json, os, sys, traceback
sys.path.insert(0, os.getcwd())  # files a page wrote (letters.py) import like a reader's own
for block in json.load(open(sys.argv[1], encoding="utf-8")):
    code = "\n" * (block["line"] - 1) + block["code"]  # tracebacks give the .md file's line numbers
    namespace = {"__name__": "__main__"}
    try:
        exec(compile(code, block["page"], "exec"), namespace)
    except SystemExit as exc:
        if exc.code not in (0, None):
            print(f"FAILED: the python block at {block['page']}:{block['line']} exited {exc.code}", file=sys.stderr)
            sys.exit(1)
    except BaseException:
        traceback.print_exc()
        print(f"FAILED: the python block at {block['page']}:{block['line']}", file=sys.stderr)
        sys.exit(1)
"""


def _env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TLZOO_", "PYTEST_"))}
    env.update(
        {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),  # tl, python, pytest
            "PYTHONPATH": os.pathsep.join([str(work / "site"), str(work / "src")]),
            "TLZOO_HOME": str(work / ".tlzoo-home"),
            "TLZOO_OFFLINE": "1",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HOME": str(work / ".tlzoo-home" / "hf"),
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
            "COLUMNS": "200",
        }
    )
    return env


def _install(work: Path) -> None:
    """What ``pip install -e .`` gives tlzoo: a dist-info with the package's entry points, and src/ on the path."""
    project = tomllib.loads((work / "pyproject.toml").read_text("utf-8"))["project"]
    name, version = project["name"], project["version"]
    info = work / "site" / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, entries in project.get("entry-points", {}).items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def _where(block: Block) -> str:
    return f"{block.page.relative_to(ROOT)}:{block.line}"


def _run_python(group: list[Block], work: Path) -> None:
    spec = work / ".docs-blocks.json"
    spec.write_text(
        json.dumps([{"code": b.code, "line": b.line, "page": str(b.page.relative_to(ROOT))} for b in group])
    )
    driver = work / ".docs-driver.py"
    driver.write_text(DRIVER)
    proc = subprocess.run(
        [sys.executable, str(driver), str(spec)],
        cwd=work,
        env=_env(work),
        text=True,
        capture_output=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


def _run_bash(block: Block, work: Path) -> None:
    script = []
    for line in block.code.splitlines():
        if line.strip() == "pip install -e .":
            _install(work)
        else:
            script.append(line)
    proc = subprocess.run(
        ["bash", "-e", "-c", "\n".join(script)],
        cwd=work,
        env=_env(work),
        text=True,
        capture_output=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 0, f"bash block at {_where(block)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def _squash(line: str) -> str:
    return " ".join(line.split())


def _shown_line_matches(shown: str, printed: list[str]) -> bool:
    pattern = re.compile(".*".join(re.escape(part) for part in _squash(shown).split("...")))
    return any(pattern.fullmatch(p) for p in printed)


def _run_console(block: Block, work: Path) -> None:
    commands: list[tuple[str, list[str]]] = []
    for line in block.code.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        elif commands:
            commands[-1][1].append(line)
    assert commands, f"console block at {_where(block)} has no `$ command` line"
    for command, shown in commands:
        if command.strip() == "pip install -e .":
            _install(work)
            continue
        proc = subprocess.run(
            ["bash", "-c", command], cwd=work, env=_env(work), text=True, capture_output=True, timeout=TIMEOUT_S
        )
        printed = [_squash(p) for p in (proc.stdout + "\n" + proc.stderr).splitlines()]
        expected_rc = 2 if any(s.startswith("Error:") for s in shown) else 0
        where = f"`{command}` (console block at {_where(block)})"
        assert proc.returncode == expected_rc, (
            f"{where} exited {proc.returncode}, expected {expected_rc}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
        for s in shown:
            if s.strip() and s.strip() != "...":
                assert _shown_line_matches(s, printed), (
                    f"{where} did not print the line shown:\n  {s.strip()}\nit printed:\n"
                    + textwrap.indent("\n".join(printed[-60:]), "  ")
                )


def play(page: Path, work: Path) -> int:
    """Play every block of ``page`` in order in ``work``; returns how many blocks ran or were written."""
    done = 0
    pending: list[Block] = []

    def flush() -> None:
        if pending:
            _run_python(pending, work)
            pending.clear()

    for block in blocks(page):
        if block.shown_only:
            continue
        target = block.target
        if target is not None:
            flush()
            kind, rel = target
            path = work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            body = block.code.split("\n", 1)[1] if "\n" in block.code else ""
            if kind == "append":
                assert path.exists(), f"{_where(block)} appends to {rel}, which no earlier block wrote"
                body = path.read_text(encoding="utf-8") + body
            path.write_text(body, encoding="utf-8")
        elif block.lang == "python":
            pending.append(block)
        elif block.lang == "bash":
            flush()
            _run_bash(block, work)
        elif block.lang == "console":
            flush()
            _run_console(block, work)
        else:
            continue
        done += 1
    flush()
    return done


def test_the_tutorial_runs_from_start_to_finish(tmp_path: Path) -> None:
    """Every block of tutorial.md, in order: the package is written, installed, run and tested with the kit."""
    assert play(DOCS / "tutorial.md", tmp_path) >= 15


def test_every_reference_example_runs(tmp_path: Path) -> None:
    assert play(DOCS / "reference.md", tmp_path) >= 15


# --------------------------------------------------------------------------- everything is documented
def _text(*pages: str) -> str:
    return "\n".join((DOCS / p).read_text(encoding="utf-8") for p in pages)


def _sections(page: str) -> list[tuple[str, str]]:
    """(heading line, body up to the next heading of the same or a higher level) of ``page``."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines(keepends=True)
    out: list[tuple[str, str]] = []
    fenced = False
    heads: list[tuple[int, int]] = []  # (line index, level)
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            heads.append((i, len(line) - len(line.lstrip("#"))))
    for n, (i, level) in enumerate(heads):
        end = next((j for j, lv in heads[n + 1 :] if lv <= level), len(lines))
        out.append((lines[i].strip(), "".join(lines[i + 1 : end])))
    return out


def test_every_hook_has_a_section_with_a_runnable_example() -> None:
    from tlzoo.api import hookspecs

    hooks = [n for n in dir(hookspecs) if n.startswith("tlzoo_") and hasattr(getattr(hookspecs, n), "tlzoo_spec")]
    assert len(hooks) >= 8
    sections = _sections("reference.md")
    for hook in hooks:
        found = [body for head, body in sections if head.startswith("#") and f"`{hook}" in head]
        assert found, f"reference.md has no heading naming the hook `{hook}`"
        runnable = [
            m.group(2)
            for m in FENCE.finditer(found[0])
            if m.group(1) == "python" and not m.group(2).startswith("# not run") and hook in m.group(2)
        ]
        assert runnable, f"the section of `{hook}` in reference.md has no runnable python example using it"


def test_the_run_state_table_is_the_runners() -> None:
    """One row per step: its constant, and exactly the attributes ``steps.STATE`` says it sets."""
    from tlzoo import steps

    text = _text("reference.md")
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\|\s*`steps\.([A-Z_]+)`", line)
        if m:
            rows[m.group(1)] = line
    constants = {
        name: getattr(steps, name) for name in dir(steps) if name.isupper() and isinstance(getattr(steps, name), str)
    }
    for step in steps.STEPS:
        constant = next(n for n, v in constants.items() if v == step)
        assert constant in rows, f"the Run-state table in reference.md has no row for steps.{constant}"
        cells = rows[constant].split("|")
        assert f"`{step}`" in rows[constant], f"the row of steps.{constant} does not give its value `{step}`"
        documented = set(re.findall(r"`run\.(\w+)`", "|".join(cells[3:])))
        declared = {attr for attr, _ in steps.STATE[step]}
        assert documented == declared, (
            f"steps.{constant}: the table lists {sorted(documented)}, tlzoo.steps.STATE declares {sorted(declared)}"
        )
    assert set(rows) <= set(constants), f"rows for unknown constants: {sorted(set(rows) - set(constants))}"
    for name in ("STEPS", "PROBE_STEPS", "LABELS", "STATE", "FILES", "DEPRECATED"):
        assert f"steps.{name}" in text, f"reference.md does not mention tlzoo.steps.{name}"


def test_requests_catalogue_kit_lib_and_old_names_are_documented() -> None:
    from tlzoo.api import interfaces, steps
    from tlzoo.engine import plugins, registry
    from tlzoo.testing import all_checks

    text = _text(*PAGES)
    for f in dataclasses.fields(interfaces.BackboneRequest):
        assert re.search(rf"\|\s*`{f.name}`", text), f"BackboneRequest.{f.name} has no row in the request table"
    for key in interfaces.ENGINE_SETTINGS:
        assert f"`{key}`" in text, f"engine setting {key} is not documented"
    for key in registry.CATALOGUE_FIELDS:
        assert f"`{key}`" in text, f"catalogue key {key} is not documented"
    for kind, checks in all_checks().items():
        for check in checks:
            assert f"`{check.__name__}`" in text, f"kit check {check.__name__} ({kind}) is not documented"
    for module in sorted((ROOT / "tlzoo" / "lib").rglob("*.py")):
        if module.name == "__init__.py":
            continue
        dotted = ".".join(module.relative_to(ROOT).with_suffix("").parts)
        assert f"`{dotted}`" in text, f"the building block {dotted} is not documented"
    for old, new in steps.DEPRECATED.items():
        assert f"`{old}`" in text and f"`{new}`" in text, f"the 0.1 step name {old} -> {new} is not documented"
    for alias in plugins.ALIASES:
        assert f"`{alias}`" in text, f"the plugin alias {alias} is not documented"
    for name in plugins.BUILTIN_PLUGINS:
        assert f"`{name}`" in text, f"the built-in plugin name {name} is not documented"


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of ``page``: lower case, punctuation dropped, spaces as hyphens."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {
        re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)
    }


def test_links_between_the_docs_resolve() -> None:
    """Relative links point at files that exist, and ``#anchors`` at headings of the page linked."""
    for page in [*(DOCS / p for p in PAGES), ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md", ROOT / "README.md"]:
        text = FENCE.sub("", page.read_text(encoding="utf-8"))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
            if anchor and path.suffix == ".md":
                assert anchor in _anchors(path), f"{page.relative_to(ROOT)} links to {target}: no such heading"


@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_is_run_or_says_why_not(page: str) -> None:
    """A python block is either run (and tested above) or starts with ``# not run`` and a reason."""
    for block in blocks(DOCS / page):
        if block.lang == "python" and block.shown_only:
            assert len(block.first) > len("# not run") + 3, (
                f"{_where(block)}: say why the block is not run (`# not run: <reason>`)"
            )
