"""One version: the package, its installed metadata (what `tl plugins` shows) and the CHANGELOG agree."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.version import Version

import tlzoo

ROOT = Path(__file__).resolve().parents[2]


def test_installed_metadata_is_the_package_version() -> None:
    assert metadata.version("tlzoo") == tlzoo.__version__, "reinstall: make venv (the editable metadata is stale)"


def test_changelog_names_the_version_being_built() -> None:
    version = Version(tlzoo.__version__)
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    first = re.search(r"^## \[(.+?)\](?: \((.+?)\))?", changelog, flags=re.M)
    assert first, "CHANGELOG.md has no version heading"
    if version.is_prerelease or version.is_devrelease:
        assert first.group(1) == "Unreleased" and first.group(2) == version.base_version, first.group(0)
    else:
        assert first.group(1) == str(version), first.group(0)
