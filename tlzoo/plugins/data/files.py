"""Data sources for files and folders on disk: texts and images, labelled by column or by folder.

* CSV (or TSV, ``.csv.gz``) and JSON Lines with a text column and a label column (``csv``, ``jsonl``);
* a folder with one sub-folder per class holding images (``image-folder``) or ``.txt``
  files (``text-folder``: one example per file, nested folders allowed, the label is the
  top sub-folder's name; empty files are kept as empty texts, which every text backbone
  encodes safely);
* a CSV/TSV of image paths (``image-csv``): an image-path column (``--text-column``, else
  the first of image/path/file/filename/filepath) and a label column; relative paths are
  relative to the CSV.

The data sources of this package are grouped by where the data comes from: ``files``
(here), ``hub`` (Hugging Face datasets, online or saved with ``save_to_disk``) and
``builtin`` (named datasets that arrive with the set-up).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tlzoo.api.errors import TlzooError, suggest
from tlzoo.api.hookspecs import hookimpl
from tlzoo.api.interfaces import DataOptions, Dataset, DataSource
from tlzoo.engine.corpus import Table, read_csv_table, read_jsonl_table, read_text, text_codec
from tlzoo.engine.data import IMAGE_SUFFIXES, RowReport, label_text

from ._sources import SuffixSource, class_files, is_saved_hf


def _where(path: Path) -> str:
    """A dataset read from disk is named by its absolute path: ``tl cache ls`` then tells an exported
    ``./digits`` folder from the built-in ``digits`` dataset."""
    return str(path.resolve())


PATH_COLUMNS = ("image", "path", "file", "filename", "filepath", "image_path", "img")


def _check_columns(path: Path, table: Table, opts: DataOptions) -> None:
    wanted = {"--text-column": opts.text_column, "--label-column": opts.label_column}
    if not opts.require_labels and opts.label_column not in table.columns:
        del wanted["--label-column"]  # unlabelled records are fine here
    for option, col in wanted.items():
        if col not in table.columns:
            raise TlzooError(
                f"'{path}' has no column '{col}'.{suggest(col, table.columns)} "
                f"Columns: {', '.join(table.columns)}; choose one with {option}."
            )
    table.refuse_duplicates(str(path), wanted)


def _rows_to_dataset(path: Path, table: Table, opts: DataOptions) -> Dataset:
    """Labelled rows as a Dataset; rows without a label or a text are dropped and counted."""
    texts, labels, ids = [], [], []
    report = RowReport(path.name)
    for i, (row, line) in enumerate(zip(table.rows, table.lines)):
        report.total += 1
        if opts.label_column not in row and opts.require_labels:
            report.drop(f"missing the '{opts.label_column}' field", line)
            continue
        try:
            label = label_text(row.get(opts.label_column))
        except ValueError as exc:
            raise TlzooError(
                f"'{path}' line {line}: the label is not a class name ({exc}); use a string or a number."
            ) from None
        if label is None and not opts.require_labels:
            label = ""  # an unlabelled record: kept
        elif label is None:
            report.drop("with an empty, NaN or null label", line)
            continue  # unlabelled rows cannot train or be scored
        text = row.get(opts.text_column)
        if text is None:
            report.drop(f"missing the '{opts.text_column}' field", line)
            continue
        if label:
            report.keep_label(label)
        texts.append(
            text if isinstance(text, str) else json.dumps(text) if isinstance(text, (list, dict)) else str(text)
        )
        labels.append(label)
        ids.append(str(row.get("id", i)))
    return Dataset(texts, labels, modality="text", ids=ids, name=_where(path), notes=report.notes())


class TextTableSource(SuffixSource):
    """Rows with a text and a label column: ``read_table``, then the columns checked and the rows read."""

    modality = "text"

    def read_table(self, path: Path, options: DataOptions) -> Table:
        raise NotImplementedError

    def load(self, location: str, options: DataOptions) -> Dataset:
        path = Path(location)
        table = self.read_table(path, options)
        _check_columns(path, table, options)
        return _rows_to_dataset(path, table, options)


class CSVSource(TextTableSource):
    name = "csv"
    description = "CSV (or TSV) with a text column and a label column"
    suffixes = (".csv", ".tsv", ".csv.gz")

    def read_table(self, path: Path, options: DataOptions) -> Table:
        location = str(path)
        if location.endswith(".gz"):
            import gzip

            try:
                content = gzip.decompress(path.read_bytes()).decode(text_codec(options.encoding))
            except UnicodeDecodeError:
                raise TlzooError(f"'{path}' is not valid {options.encoding}; pass --encoding.") from None
            except (OSError, EOFError) as exc:
                raise TlzooError(
                    f"'{path}' is not a readable gzip file ({exc}); recompress it or pass the plain CSV."
                ) from None
        else:
            content = read_text(path, options.encoding)
        if not content.strip():
            raise TlzooError(f"'{path}' is empty; give a CSV with a header row and labelled rows.")
        return read_csv_table(content, "\t" if location.lower().endswith(".tsv") else ",", f"'{path}'")


class JSONLSource(TextTableSource):
    name = "jsonl"
    description = "JSON Lines, one object per line with text and label fields"
    suffixes = (".jsonl", ".ndjson")

    def read_table(self, path: Path, options: DataOptions) -> Table:
        table = read_jsonl_table(path, options.encoding)
        if not table.rows:
            raise TlzooError(f"'{path}' is empty; give one JSON object per line.")
        return table


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
        found = class_files(root, "*", lambda f: f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        paths, labels = [str(f) for f, _ in found], [label for _, label in found]
        if not paths:
            if any(f.suffix.lower() == ".txt" for c in root.iterdir() if c.is_dir() for f in c.rglob("*.txt")):
                raise TlzooError(
                    f"'{root}' holds .txt files, not images: text data, but the backbone is vision; "
                    "choose a text plugin (see `tl list --modality text`) or pass a folder of images."
                )
            raise TlzooError(
                f"No images found under '{root}'; expected one sub-folder per class holding "
                f"{', '.join(sorted(IMAGE_SUFFIXES))} files."
            )
        ids = [str(Path(p).relative_to(root)) for p in paths]
        return Dataset(paths, labels, modality="vision", ids=ids, name=_where(root))


def _holds_text_classes(p: Path) -> bool:
    """A folder (not a saved Hugging Face dataset) with a class sub-folder holding a .txt file."""
    return (
        p.is_dir()
        and not is_saved_hf(p)
        and any(c.is_dir() and next(c.rglob("*.txt"), None) is not None for c in p.iterdir())
    )


class TextFolderSource(DataSource):
    name = "text-folder"
    modality = "text"
    description = "a folder with one sub-folder of .txt files per class"

    def can_load(self, location: str) -> bool:
        return _holds_text_classes(Path(location))

    def load(self, location: str, options: DataOptions) -> Dataset:
        root = Path(location)
        found = class_files(root, "*.txt", Path.is_file)
        texts = [read_text(f, options.encoding).strip() for f, _ in found]
        labels, ids = [label for _, label in found], [str(f.relative_to(root)) for f, _ in found]
        if not texts:
            raise TlzooError(
                f"No .txt files found under '{root}'; expected one sub-folder per class holding .txt files."
            )
        return Dataset(texts, labels, modality="text", ids=ids, name=_where(root))


def _is_file(p: Path) -> bool:
    """``Path.is_file`` that is False, not an error, for a long text or one with a NUL byte."""
    try:
        return p.is_file()
    except (OSError, ValueError):
        return False


class ImageCSVSource(SuffixSource):
    name = "image-csv"
    modality = "vision"
    description = "CSV/TSV with an image-path column and a label column (paths relative to the CSV)"
    suffixes = (".csv", ".tsv")

    def load(self, location: str, options: DataOptions) -> Dataset:
        path = Path(location)
        table = read_csv_table(
            read_text(path, options.encoding), "\t" if location.lower().endswith(".tsv") else ",", f"'{path}'"
        )
        column = _image_column(path, table.columns, options)
        labelled = options.label_column in table.columns
        wanted = {"--text-column": column, **({"--label-column": options.label_column} if labelled else {})}
        table.refuse_duplicates(str(path), wanted)
        values = [str(r.get(column) or "").strip() for r in table.rows]
        _refuse_texts(path, column, values)
        ds = _image_rows_to_dataset(path, table, values, options)
        unused = [c for c in table.columns if c not in (column, options.label_column, "id")]
        if unused:  # never dropped silently (issue 16)
            ds.notes.append(
                f"columns not used: {', '.join(unused)} (a vision run reads the image paths of '{column}'; "
                "fuse the others with --plugin COL=... or --tabular-columns)"
            )
        return ds


def _image_column(path: Path, columns: list[str], options: DataOptions) -> str:
    """The image-path column (``--text-column``, else a usual name), after checking the label column is there."""
    if not columns:
        raise TlzooError(f"'{path}' is empty; give a header row with an image-path and a label column.")
    if options.text_column not in columns and options.text_column != DataOptions.text_column:
        raise TlzooError(  # asked for by name (not the default 'text'): never ignored for a usual name
            f"'{path}' has no column '{options.text_column}' (--text-column names the image-path column of "
            f"an image CSV).{suggest(options.text_column, columns)} Columns: {', '.join(columns)}; "
            "fix --text-column or leave it out to take a column named image, path or file."
        )
    column = (
        options.text_column
        if options.text_column in columns
        else next((c for c in columns if c.lower() in PATH_COLUMNS), "")
    )
    if not column:
        raise TlzooError(
            f"'{path}' has no image-path column.{suggest(options.text_column, columns)} Columns: "
            f"{', '.join(columns)}; name it with --text-column."
        )
    if options.label_column not in columns and options.require_labels:
        raise TlzooError(
            f"'{path}' has no column '{options.label_column}'.{suggest(options.label_column, columns)} "
            f"Columns: {', '.join(columns)}; choose one with --label-column."
        )
    return column


def _refuse_texts(path: Path, column: str, values: list[str]) -> None:
    """A column of sentences, not image paths, means text data given to a vision backbone: say so."""
    present = [v for v in values if v]
    if (
        present
        and not any(Path(v).suffix.lower() in IMAGE_SUFFIXES for v in present)
        and not any(_is_file(path.parent / v) for v in present[:20])
    ):  # paths without a suffix still count
        sample = " ".join(present[0].split())[:40]
        raise TlzooError(
            f"'{path}' holds text, not image paths (column '{column}': '{sample}'), but the backbone "
            "is vision; choose a text plugin (see `tl list --modality text`), or pass a folder of "
            "images or a CSV whose column lists image files."
        )


def _image_rows_to_dataset(path: Path, table: Table, values: list[str], options: DataOptions) -> Dataset:
    """Rows with a label and an existing image as a Dataset; rows without either are dropped and counted."""
    examples, labels, ids = [], [], []
    report = RowReport(path.name)
    for row, line, rel in zip(table.rows, table.lines, values):
        report.total += 1
        try:
            label = label_text(row.get(options.label_column))
        except ValueError:  # pragma: no cover - CSV fields are strings
            label = None
        if label is None and not options.require_labels:
            label = ""  # an unlabelled record: kept
        elif label is None:
            report.drop("with an empty, NaN or missing label", line)
            continue  # unlabelled rows cannot train or be scored
        if not rel:
            report.drop("with an empty image path", line)
            continue
        image = Path(rel) if os.path.isabs(rel) else path.parent / rel
        if not _is_file(image):
            raise TlzooError(
                f"'{path}' line {line}: image '{rel}' does not exist (looked in {image.parent}); "
                "fix the path or remove the row."
            )
        if label:
            report.keep_label(label)
        examples.append(str(image))
        labels.append(label)
        ids.append(str(row.get("id") or rel))
    return Dataset(examples, labels, modality="vision", ids=ids, name=_where(path), notes=report.notes())


@hookimpl
def tlzoo_register_data_sources(register: Any) -> None:
    register(CSVSource())
    register(JSONLSource())
    register(ImageFolderSource())
    register(TextFolderSource())
    register(ImageCSVSource())
