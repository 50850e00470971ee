"""Hugging Face datasets as data sources, texts and images.

* ``--data hf:NAME`` (or ``hf:NAME:CONFIG`` for texts, ``hf:NAME:SPLIT`` for images):
  ``datasets.load_dataset`` from the hub (online, or the local datasets cache), always
  through ``core.network.hub_access``.  Offline without a cache it fails with a message
  saying how to get the data.
* ``--data DIR`` saved with ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``.

Texts (``huggingface``): every split is used (tlzoo makes its own stratified split);
``ClassLabel`` integers become their names.  Images (``hf-images``): a dataset with an
Image column and a label column; rows stay in the memory-mapped Arrow files and decode
one by one in DataLoader workers.  ``datasets`` is imported only when needed.
"""

from __future__ import annotations

from typing import Any

from tlzoo.api.errors import TlzooError, suggest
from tlzoo.api.hookspecs import hookimpl
from tlzoo.api.interfaces import DataOptions, Dataset
from tlzoo.engine.data import RowReport, label_text

from ._sources import HubSource


class HuggingFaceSource(HubSource):
    name = "huggingface"
    modality = "text"
    description = "hf:NAME[:CONFIG] from the Hugging Face hub, or a folder saved with save_to_disk"

    def load(self, location: str, options: DataOptions) -> Dataset:
        import datasets

        config = location[3:].partition(":")[2] if location.startswith("hf:") else ""
        data = self.open(location, name=config or None)
        parts = list(data.values()) if isinstance(data, datasets.DatasetDict) else [data]
        texts: list[str] = []
        labels: list[str] = []
        ids: list[str] = []
        report = RowReport(location, position="row")
        split_names = list(data.keys()) if isinstance(data, datasets.DatasetDict) else ["data"]
        for split, part in zip(split_names, parts):
            columns = list(part.column_names)
            for option, col in (("--text-column", options.text_column), ("--label-column", options.label_column)):
                if col not in columns:
                    raise TlzooError(
                        f"Dataset '{location}' has no column '{col}'.{suggest(col, columns)} "
                        f"Columns: {', '.join(columns)}; choose one with {option}."
                    )
            feature = part.features[options.label_column]
            names = getattr(feature, "names", None)
            for i, (text, label) in enumerate(zip(part[options.text_column], part[options.label_column])):
                report.total += 1
                if isinstance(label, int) and not isinstance(label, bool) and label < 0:
                    cls_name = None  # unlabelled (e.g. a hidden test split uses -1)
                elif names and isinstance(label, int) and not isinstance(label, bool):
                    cls_name = names[label] if label < len(names) else str(label)
                else:
                    try:
                        cls_name = label_text(label)
                    except ValueError:
                        raise TlzooError(
                            f"Dataset '{location}' split {split} row {i}: the label is a "
                            f"{type(label).__name__}, not a class name; choose another --label-column."
                        ) from None
                if cls_name is None:
                    report.drop(f"without a label (None, NaN, empty or -1) in split {split}", i)
                    continue
                if text is None:
                    report.drop(f"without a text in split {split}", i)
                    continue
                report.keep_label(cls_name)
                texts.append(str(text))
                labels.append(cls_name)
                ids.append(f"{split}-{i}")
        if not texts:
            why = f" ({'; '.join(n.rstrip('.') for n in report.notes())})" if report.notes() else ""
            raise TlzooError(f"Dataset '{location}' has no labelled rows{why}; check --label-column.")
        return Dataset(texts, labels, modality="text", ids=ids, name=location.removeprefix("hf:"), notes=report.notes())


# --------------------------------------------------------------------------- Hugging Face datasets
class ArrowImage:
    """One image row of a Hugging Face dataset, decoded only when a worker asks for it."""

    __slots__ = ("ds", "column", "index")

    def __init__(self, ds: Any, column: str, index: int) -> None:
        self.ds, self.column, self.index = ds, column, index

    def open_image(self) -> Any:
        return self.ds[self.index][self.column]

    def tobytes(self) -> bytes:  # the feature-cache key: the dataset's content hash + row
        return f"{self.ds._fingerprint}:{self.index}".encode()

    def __repr__(self) -> str:
        return f"<{self.column} row {self.index}>"


class HFImageSource(HubSource):
    name = "hf-images"
    modality = "vision"
    description = "Hugging Face image datasets: hf:NAME[:SPLIT] (online) or a folder written by save_to_disk"

    def load(self, location: str, options: DataOptions) -> Dataset:
        ds = self._split(location)
        from datasets import ClassLabel, Image as ImageFeature

        features = ds.features
        images = [c for c, f in features.items() if isinstance(f, ImageFeature)]
        column = options.text_column if options.text_column in images else (images[0] if images else "")
        if not column:
            raise TlzooError(
                f"'{location}' has no Image column (columns: {', '.join(features)}); this source reads image datasets."
            )
        label_col = (
            options.label_column
            if options.label_column in features
            else next((c for c, f in features.items() if isinstance(f, ClassLabel)), "")
        )
        if not label_col:
            raise TlzooError(
                f"'{location}' has no column '{options.label_column}'."
                f"{suggest(options.label_column, list(features))} Choose one with --label-column."
            )
        feature = features[label_col]
        raw = ds[label_col]
        labels: list[str | None] = []
        report = RowReport(location, position="row")
        for i, v in enumerate(raw):
            report.total += 1
            if isinstance(feature, ClassLabel):
                label = None if v is None or v == -1 else feature.int2str(int(v))
            else:
                try:
                    label = label_text(v)
                except ValueError:
                    label = None
            if label is None:  # -1: ClassLabel's "no label", e.g. a hidden test split
                report.drop("without a label (None, NaN, empty or -1)", i)
            else:
                report.keep_label(label)
            labels.append(label)
        keep = [i for i, label in enumerate(labels) if label is not None]
        ds = ds.cast_column(column, ImageFeature(decode=True))
        return Dataset(
            [ArrowImage(ds, column, i) for i in keep],
            [str(labels[i]) for i in keep],
            modality="vision",
            ids=[f"{i}" for i in keep],
            name=location,
            notes=report.notes(),
        )

    def _split(self, location: str) -> Any:
        """One split: ``hf:NAME:SPLIT`` (default train), or a saved dataset's train split (else its first)."""
        import datasets

        if location.startswith("hf:"):
            return self.open(location, split=location[3:].partition(":")[2] or "train")
        loaded = self.open(location)
        if isinstance(loaded, datasets.DatasetDict):
            split = "train" if "train" in loaded else next(iter(loaded))
            return loaded[split]
        return loaded


@hookimpl
def tlzoo_register_data_sources(register: Any) -> None:
    register(HuggingFaceSource())
    register(HFImageSource())
