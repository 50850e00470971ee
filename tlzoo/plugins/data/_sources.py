"""What the built-in data sources share: knowing a location by its suffix or its name, walking class
folders, and opening Hugging Face datasets (through the hub, or saved with ``save_to_disk``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import DataSource

HF_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")


class SuffixSource(DataSource):
    """A source for the files whose names end with one of ``suffixes`` (any case)."""

    suffixes: tuple[str, ...] = ()

    def can_load(self, location: str) -> bool:
        return location.lower().endswith(self.suffixes) and os.path.isfile(location)


class NamedSource(DataSource):
    """A dataset that arrives with the set-up, asked for by name (``--data NAME``)."""

    def names(self) -> set[str]:
        """Every location this source answers to."""
        return {self.name}

    def can_load(self, location: str) -> bool:
        return location in self.names()


def class_files(root: Path, pattern: str, keep: Callable[[Path], bool]) -> list[tuple[Path, str]]:
    """(file, class) for the files matching ``pattern`` that ``keep`` accepts, under one sub-folder per
    class (nested folders allowed; hidden class folders skipped), in a stable order."""
    found: list[tuple[Path, str]] = []
    for class_dir in sorted(c for c in root.iterdir() if c.is_dir() and not c.name.startswith(".")):
        found.extend((f, class_dir.name) for f in sorted(class_dir.rglob(pattern)) if keep(f))
    return found


def is_saved_hf(p: Path) -> bool:
    """Whether ``p`` is a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    return p.is_dir() and any((p / m).is_file() for m in HF_MARKERS)


class HubSource(DataSource):
    """A Hugging Face dataset: ``hf:NAME[:...]`` from the hub (or its cache), or a saved folder."""

    def can_load(self, location: str) -> bool:
        return location.startswith("hf:") or is_saved_hf(Path(location))

    def open(self, location: str, **load_options: Any) -> Any:
        """The ``Dataset`` or ``DatasetDict`` at ``location``; ``load_options`` go to ``load_dataset``.

        The hub is reached only through ``core.network.hub_access`` (offline or unanswered: the
        datasets cache only, at once); every failure is one line saying what to do."""
        try:
            import datasets
        except ImportError:
            raise TlzooError("Hugging Face data needs the datasets package; `pip install datasets`.") from None
        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()
        if not location.startswith("hf:"):
            try:
                return datasets.load_from_disk(location)
            except Exception as exc:
                raise TlzooError(
                    f"Could not read the saved dataset '{location}' ({type(exc).__name__}); "
                    "pass a folder written by save_to_disk()."
                ) from None
        spec = location[3:]
        name = spec.partition(":")[0]
        if not name:
            raise TlzooError("hf: needs a dataset name, e.g. --data hf:rotten_tomatoes.")
        from tlzoo.infra import network

        why = ""
        try:
            with network.hub_access() as why:
                return datasets.load_dataset(name, **load_options)
        except Exception as exc:  # offline, unknown name, missing config: all end here
            first = why or (str(exc).splitlines() or [""])[0][:160]
            raise TlzooError(
                f"Could not load Hugging Face dataset '{spec}' from the hub ({type(exc).__name__}: "
                f"{first}). Offline? Load it once while online (it is then cached), or save it with "
                "save_to_disk() and pass that folder to --data."
            ) from None
