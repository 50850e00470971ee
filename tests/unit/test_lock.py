"""requirements.lock is what every install uses: it must agree with pyproject.toml and the Makefile.

A dependency added to pyproject.toml without `make lock` (or a lock edited by hand to a version the
project does not allow) fails here, before a fresh machine finds out.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!-]*)$")


def locked() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for raw in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = LINE.match(line)
        assert match, f"requirements.lock: '{line}' is not an exact NAME==VERSION pin"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"requirements.lock pins {name} twice"
        pins[name] = Version(match.group(2))
    return pins


def declared() -> list[tuple[str, Requirement]]:
    """Every requirement of tlzoo (all extras) and of the example plugin, with where it is declared."""
    out: list[tuple[str, Requirement]] = []
    for path in (ROOT / "pyproject.toml", ROOT / "examples" / "tlzoo-example" / "pyproject.toml"):
        project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
        groups = {"dependencies": project.get("dependencies", [])}
        groups.update({f"[{k}]": v for k, v in project.get("optional-dependencies", {}).items()})
        for group, reqs in groups.items():
            out += [(f"{path.relative_to(ROOT)} {group}", Requirement(r)) for r in reqs]
    return out


def test_every_line_of_the_lock_is_an_exact_pin() -> None:
    assert len(locked()) > 50  # the whole venv, not a hand-picked few


@pytest.mark.parametrize("where,req", declared(), ids=lambda v: str(v) if isinstance(v, Requirement) else "")
def test_each_declared_dependency_is_locked_within_its_range(where: str, req: Requirement) -> None:
    name = canonicalize_name(req.name)
    if name == "tlzoo":
        return  # the example plugin depends on tlzoo itself, installed from the checkout
    pins = locked()
    assert name in pins, f"{where} needs {req} but requirements.lock has no {name}: run `make lock`"
    assert req.specifier.contains(pins[name], prereleases=True), (
        f"{where} needs {req} but requirements.lock pins {name}=={pins[name]}: run `make lock`"
    )


def test_makefile_pins_match_the_lock() -> None:
    """The torch builds and the --no-deps data packages the Makefile names are the locked versions."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    pins = locked()
    named = re.findall(r"^(?:TORCH|NODEPS) := (.+)$", makefile, flags=re.M)
    assert len(named) == 2, "the Makefile's TORCH and NODEPS lines moved"
    for spec in " ".join(named).split():
        name, version = spec.split("==")
        assert pins.get(canonicalize_name(name)) == Version(version), f"Makefile pins {spec}, the lock does not"
    pip = re.search(r"^PIP_VERSION := (\S+)$", makefile, flags=re.M)
    assert pip, "the Makefile's PIP_VERSION line moved"


def test_ci_and_make_install_from_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "--no-deps -r $(LOCK)" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
