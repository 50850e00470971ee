"""Built-in data sources: CSV/JSONL texts and image folders (one sub-folder per class)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tlzoo.core.corpus import read_csv_rows, read_jsonl_rows, read_text
from tlzoo.core.errors import TlzooError, suggest
from tlzoo.core.hookspecs import hookimpl
from tlzoo.core.interfaces import Dataset, DataOptions, DataSource

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def _check_columns(path: Path, columns: list[str], opts: DataOptions) -> None:
    for option, col in (("--text-column", opts.text_column), ("--label-column", opts.label_column)):
        if col not in columns:
            raise TlzooError(f"'{path}' has no column '{col}'.{suggest(col, columns)} "
                             f"Columns: {', '.join(columns)}; choose one with {option}.")


def _rows_to_dataset(path: Path, rows: list[dict[str, Any]], opts: DataOptions) -> Dataset:
    texts, labels, ids = [], [], []
    for i, row in enumerate(rows):
        text, label = row.get(opts.text_column), row.get(opts.label_column)
        if label is None or str(label).strip() == "":
            continue  # unlabelled rows cannot train or be scored
        text = "" if text is None else str(text)
        texts.append(text)
        labels.append(str(label).strip())
        ids.append(str(row.get("id", i)))
    return Dataset(texts, labels, modality="text", ids=ids, name=path.name)


class CSVSource(DataSource):
    name = "csv"
    modality = "text"
    description = "CSV (or TSV) with a text column and a label column"

    def can_load(self, location: str) -> bool:
        return location.lower().endswith((".csv", ".tsv", ".csv.gz")) and os.path.isfile(location)

    def load(self, location: str, options: DataOptions) -> Dataset:
        path = Path(location)
        if location.endswith(".gz"):
            import gzip

            try:
                content = gzip.decompress(path.read_bytes()).decode(options.encoding)
            except UnicodeDecodeError:
                raise TlzooError(f"'{path}' is not valid {options.encoding}; pass --encoding.") from None
        else:
            content = read_text(path, options.encoding)
        if not content.strip():
            raise TlzooError(f"'{path}' is empty; give a CSV with a header row and labelled rows.")
        columns, rows = read_csv_rows(content, "\t" if location.lower().endswith(".tsv") else ",")
        _check_columns(path, columns, options)
        return _rows_to_dataset(path, rows, options)


class JSONLSource(DataSource):
    name = "jsonl"
    modality = "text"
    description = "JSON Lines, one object per line with text and label fields"

    def can_load(self, location: str) -> bool:
        return location.lower().endswith((".jsonl", ".ndjson")) and os.path.isfile(location)

    def load(self, location: str, options: DataOptions) -> Dataset:
        path = Path(location)
        rows = read_jsonl_rows(path, options.encoding)
        if not rows:
            raise TlzooError(f"'{path}' is empty; give one JSON object per line.")
        columns = sorted({k for r in rows for k in r})
        _check_columns(path, columns, options)
        return _rows_to_dataset(path, rows, options)


class ImageFolderSource(DataSource):
    name = "image-folder"
    modality = "vision"
    description = "a folder with one sub-folder of images per class (nested folders allowed)"

    def can_load(self, location: str) -> bool:
        p = Path(location)
        if (p / "dataset_dict.json").is_file():  # a saved Hugging Face DatasetDict, not class folders
            return False
        return p.is_dir() and any(c.is_dir() for c in p.iterdir())

    def load(self, location: str, options: DataOptions) -> Dataset:
        root = Path(location)
        paths, labels = [], []
        for class_dir in sorted(c for c in root.iterdir() if c.is_dir() and not c.name.startswith(".")):
            for f in sorted(class_dir.rglob("*")):
                if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                    paths.append(str(f))
                    labels.append(class_dir.name)
        if not paths:
            raise TlzooError(f"No images found under '{root}'; expected one sub-folder per class holding "
                             f"{', '.join(sorted(IMAGE_SUFFIXES))} files.")
        ids = [str(Path(p).relative_to(root)) for p in paths]
        return Dataset(paths, labels, modality="vision", ids=ids, name=root.name)


@hookimpl
def tlzoo_register_data_sources(register: Any) -> None:
    register(CSVSource())
    register(JSONLSource())
    register(ImageFolderSource())
