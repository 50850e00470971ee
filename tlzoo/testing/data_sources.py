"""``check_data_source``: a DataSource recognises its location and loads a well-formed Dataset.

See :mod:`tlzoo.testing` for how a plugin's tests use it.
"""
from __future__ import annotations

from tlzoo.core.interfaces import Dataset, DataOptions, DataSource

def check_data_source(source: DataSource, location: str, options: DataOptions | None = None,
                      missing: str = "/nonexistent/tlzoo-check/data") -> Dataset:
    """A DataSource: recognises ``location``, loads a well-formed Dataset, ignores what it can't read.

    Returns the loaded dataset for further assertions of your own.
    """
    from tlzoo.core.interfaces import MODALITIES

    assert isinstance(source.name, str) and source.name, "DataSource.name must be set"
    assert source.modality in ("", *MODALITIES), f"modality {source.modality!r} must be '', 'vision' or 'text'"
    assert source.can_load(location), f"{source.name} does not recognise {location!r}"
    assert not source.can_load(missing), f"{source.name} claims it can load a path that does not exist"
    ds = source.load(location, options or DataOptions())
    assert isinstance(ds, Dataset), f"load() must return a Dataset, got {type(ds).__name__}"
    assert len(ds) > 0, "the dataset is empty"
    assert ds.modality in MODALITIES, f"dataset modality {ds.modality!r}"
    if source.modality:
        assert ds.modality == source.modality, "the dataset's modality differs from the source's"
    assert all(isinstance(label, str) and label for label in ds.labels), "labels must be non-empty strings"
    assert len(set(ds.ids)) == len(ds.ids), "ids must be unique (they name rows of predictions.csv)"
    assert ds.fingerprint() == source.load(location, options or DataOptions()).fingerprint(), \
        "loading twice gives different data: the feature cache could not be reused"
    return ds
