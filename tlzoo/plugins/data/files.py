"""Built-in data sources: CSV/JSONL texts and image folders (one sub-folder per class)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tlzoo.core.corpus import Table, read_csv_table, read_jsonl_table, read_text, text_codec
from tlzoo.core.data import IMAGE_SUFFIXES, RowReport, label_text
from tlzoo.core.errors import TlzooError, suggest
from tlzoo.core.hookspecs import hookimpl
from tlzoo.core.interfaces import Dataset, DataOptions, DataSource



def _check_columns(path: Path, table: Table, opts: DataOptions) -> None:
    wanted = {"--text-column": opts.text_column, "--label-column": opts.label_column}
    for option, col in wanted.items():
        if col not in table.columns:
            raise TlzooError(f"'{path}' has no column '{col}'.{suggest(col, table.columns)} "
                             f"Columns: {', '.join(table.columns)}; choose one with {option}.")
    table.refuse_duplicates(str(path), wanted)


def _rows_to_dataset(path: Path, table: Table, opts: DataOptions) -> Dataset:
    """Labelled rows as a Dataset; rows without a label or a text are dropped and counted."""
    texts, labels, ids = [], [], []
    report = RowReport(path.name)
    for i, (row, line) in enumerate(zip(table.rows, table.lines)):
        report.total += 1
        if opts.label_column not in row:
            report.drop(f"missing the '{opts.label_column}' field", line)
            continue
        try:
            label = label_text(row[opts.label_column])
        except ValueError as exc:
            raise TlzooError(f"'{path}' line {line}: the label is not a class name ({exc}); "
                             "use a string or a number.") from None
        if label is None:
            report.drop("with an empty, NaN or null label", line)
            continue  # unlabelled rows cannot train or be scored
        text = row.get(opts.text_column)
        if text is None:
            report.drop(f"missing the '{opts.text_column}' field", line)
            continue
        report.keep_label(label)
        texts.append(text if isinstance(text, str) else json.dumps(text) if isinstance(text, (list, dict)) else str(text))
        labels.append(label)
        ids.append(str(row.get("id", i)))
    return Dataset(texts, labels, modality="text", ids=ids, name=path.name, notes=report.notes())


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
                content = gzip.decompress(path.read_bytes()).decode(text_codec(options.encoding))
            except UnicodeDecodeError:
                raise TlzooError(f"'{path}' is not valid {options.encoding}; pass --encoding.") from None
            except (OSError, EOFError) as exc:
                raise TlzooError(f"'{path}' is not a readable gzip file ({exc}); recompress it or pass the plain CSV.") from None
        else:
            content = read_text(path, options.encoding)
        if not content.strip():
            raise TlzooError(f"'{path}' is empty; give a CSV with a header row and labelled rows.")
        table = read_csv_table(content, "\t" if location.lower().endswith(".tsv") else ",", f"'{path}'")
        _check_columns(path, table, options)
        return _rows_to_dataset(path, table, options)


class JSONLSource(DataSource):
    name = "jsonl"
    modality = "text"
    description = "JSON Lines, one object per line with text and label fields"

    def can_load(self, location: str) -> bool:
        return location.lower().endswith((".jsonl", ".ndjson")) and os.path.isfile(location)

    def load(self, location: str, options: DataOptions) -> Dataset:
        path = Path(location)
        table = read_jsonl_table(path, options.encoding)
        if not table.rows:
            raise TlzooError(f"'{path}' is empty; give one JSON object per line.")
        _check_columns(path, table, options)
        return _rows_to_dataset(path, table, options)


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
            if any(f.suffix.lower() == ".txt" for c in root.iterdir() if c.is_dir() for f in c.rglob("*.txt")):
                raise TlzooError(f"'{root}' holds .txt files, not images: text data, but the backbone is vision; "
                                 "choose a text plugin (see `tl list --modality text`) or pass a folder of images.")
            raise TlzooError(f"No images found under '{root}'; expected one sub-folder per class holding "
                             f"{', '.join(sorted(IMAGE_SUFFIXES))} files.")
        ids = [str(Path(p).relative_to(root)) for p in paths]
        return Dataset(paths, labels, modality="vision", ids=ids, name=root.name)


@hookimpl
def tlzoo_register_data_sources(register: Any) -> None:
    register(CSVSource())
    register(JSONLSource())
    register(ImageFolderSource())
