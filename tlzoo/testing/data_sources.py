"""The data-source contract: :data:`DATA_SOURCE_CHECKS`, :class:`DataSourceCase` and ``check_data_source``.

Every check takes ``(source, location, options=None, missing=...)``: a location the
source must load, its :class:`~tlzoo.api.interfaces.DataOptions`, and a path that does
not exist.  See :mod:`tlzoo.testing` for how a plugin's tests use them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tlzoo.api.interfaces import MODALITIES, DataOptions, Dataset, DataSource

from ._rules import Check, default_zoo, defaults_of, rule

MISSING = "/nonexistent/tlzoo-check/data"


@rule
def check_data_source_recognises(
    source: DataSource, location: str, options: DataOptions | None = None, missing: str = MISSING
) -> None:
    """name, modality and JSON-able ``defaults()`` are declared; ``can_load`` accepts ``location`` and
    refuses a path that does not exist."""
    assert isinstance(source, DataSource), f"{type(source).__name__} must subclass tlzoo's DataSource"
    assert isinstance(source.name, str) and source.name, "DataSource.name must be set"
    assert source.modality in ("", *MODALITIES), f"modality {source.modality!r} must be '' or one of {MODALITIES}"
    try:
        json.dumps(defaults_of(source))
    except TypeError as exc:
        raise AssertionError(f"defaults() are not JSON-able ({exc})") from None
    assert source.can_load(location), f"{source.name} does not recognise {location!r}"
    assert not source.can_load(missing), f"{source.name} claims it can load {missing!r}, which does not exist"


@rule
def check_data_source_loads(
    source: DataSource, location: str, options: DataOptions | None = None, missing: str = MISSING
) -> None:
    """``load`` gives a non-empty Dataset of the source's modality, non-empty string labels and unique ids."""
    _load_well_formed(source, location, options)


def _load_well_formed(source: DataSource, location: str, options: DataOptions | None) -> Dataset:
    ds = source.load(location, options or DataOptions())
    assert isinstance(ds, Dataset), f"load() must return a Dataset, got {type(ds).__name__}"
    assert len(ds) > 0, "the dataset is empty"
    assert ds.modality in MODALITIES, f"dataset modality {ds.modality!r} is not one of {MODALITIES}"
    if source.modality:
        assert ds.modality == source.modality, (
            f"the dataset's modality {ds.modality!r} differs from the source's {source.modality!r}"
        )
    bad = next((i for i, label in enumerate(ds.labels) if not (isinstance(label, str) and label)), None)
    if bad is not None:
        raise AssertionError(f"labels must be non-empty strings; row {bad} has {ds.labels[bad]!r}")
    assert len(set(ds.ids)) == len(ds.ids), "ids must be unique (they name rows of predictions.csv)"
    return ds


@rule
def check_data_source_is_stable(
    source: DataSource, location: str, options: DataOptions | None = None, missing: str = MISSING
) -> None:
    """Loading twice gives the same data (same fingerprint), so the feature cache can be reused."""
    first = source.load(location, options or DataOptions())
    again = source.load(location, options or DataOptions())
    assert first.fingerprint() == again.fingerprint(), (
        "loading twice gives different data: the feature cache could not be reused"
    )


DATA_SOURCE_CHECKS: tuple[Callable[..., None], ...] = (
    check_data_source_recognises,
    check_data_source_loads,
    check_data_source_is_stable,
)
"""Every data-source check, each called as ``check(source, location, options=None, missing=...)``."""


def check_data_source(
    source: DataSource, location: str, options: DataOptions | None = None, missing: str = MISSING
) -> Dataset:
    """Run every check in :data:`DATA_SOURCE_CHECKS`; returns the loaded dataset for assertions of your own."""
    for check in DATA_SOURCE_CHECKS:
        check(source, location, options, missing)
    return source.load(location, options or DataOptions())


@dataclass(eq=False)
class DataSourceCase:
    """A data source for the checks (the object or its registered name) and a location it loads.

    ``location`` may be a function returning it, to make the files at test time.
    """

    source: Any
    location: str | Callable[[], str]
    options: DataOptions | None = None
    id: str = ""
    zoo: Any = None

    def __post_init__(self) -> None:
        if not self.id:
            self.id = (
                self.source
                if isinstance(self.source, str)
                else str(getattr(self.source, "name", "") or type(self.source).__name__)
            )

    def resolve(self) -> DataSource:
        """The data source object."""
        if not isinstance(self.source, str):
            return self.source
        found = [s for s in (self.zoo or default_zoo()).data_sources if s.name == self.source]
        if not found:
            raise LookupError(f"no data source named {self.source!r} is registered")
        return found[0]

    def get_location(self) -> str:
        """The location (made now if given as a function)."""
        return str(self.location() if callable(self.location) else self.location)

    def checks(self) -> Iterator[Check]:
        """Every data-source check bound to this case."""
        for fn in DATA_SOURCE_CHECKS:
            yield Check(fn, _with_location)


def _with_location(case: DataSourceCase, rule: Callable[..., Any]) -> Any:
    return rule(case.resolve(), case.get_location(), case.options)
