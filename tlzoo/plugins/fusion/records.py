"""The ``records`` data source: rows of a CSV, TSV or JSON Lines file as records with named fields.

A fused run asks for its input columns (``DataOptions.fields``); each example is a dict
``{column: value}`` (None where the row has no value), image paths made absolute relative to the
file.  The notes the run logs say which columns the run does not use, and how many records lack
each input, so nothing is dropped or filled in silently.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tlzoo.api.errors import TlzooError, suggest
from tlzoo.api.interfaces import DataOptions, Dataset, DataSource
from tlzoo.engine.corpus import Table, read_csv_table, read_jsonl_table, read_text
from tlzoo.engine.data import RowReport, image_file_problem, image_pixel_cap, image_pixels, is_image_path, label_text

SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")


def read_table(path: Path, encoding: str) -> Table:
    name = path.name.lower()
    if name.endswith((".jsonl", ".ndjson")):
        table = read_jsonl_table(path, encoding)
    else:
        table = read_csv_table(read_text(path, encoding), "\t" if name.endswith(".tsv") else ",", f"'{path}'")
    if not table.rows:
        raise TlzooError(f"'{path}' holds no records; give a header row and one record per row.")
    return table


class RecordsSource(DataSource):
    name = "records"
    modality = "multimodal"
    description = "CSV/TSV/JSONL rows as records with named fields (a fused run's input columns)"

    def can_load(self, location: str) -> bool:
        return location.lower().endswith(SUFFIXES) and os.path.isfile(location)

    def load(self, location: str, options: DataOptions) -> Dataset:
        path = Path(location)
        if not options.fields:
            raise TlzooError(f"'{path}' is read as records for a fused run; name its input columns (--plugin COL=...).")
        table = read_table(path, options.encoding)
        label = options.label_column
        wanted = {f"an input of the run, named by --plugin {f}=... or --tabular-columns": f for f in options.fields}
        if options.require_labels or label in table.columns:
            wanted["--label-column"] = label
        for what, column in wanted.items():
            if column not in table.columns:
                raise TlzooError(
                    f"'{path}' has no column '{column}' ({what}).{suggest(column, table.columns)} "
                    f"Columns: {', '.join(table.columns)}."
                )
        table.refuse_duplicates(str(path), wanted)
        examples, labels, ids = [], [], []
        report = RowReport(path.name)
        missing = dict.fromkeys(options.fields, 0)
        for i, (row, line) in enumerate(zip(table.rows, table.lines)):
            report.total += 1
            value = label_text(row.get(label)) if label in table.columns else None
            if value is None and options.require_labels:
                report.drop("with an empty, NaN or missing label", line)
                continue
            record = {f: _field(row.get(f), path) for f in options.fields}
            for f, v in record.items():
                missing[f] += v is None or (isinstance(v, str) and not v.strip()) or _missing_image(v)
            if value:
                report.keep_label(value)
            examples.append(record)
            labels.append(value or "")
            ids.append(str(row.get("id", i)))
        notes = report.notes()
        unused = [c for c in table.columns if c not in options.fields and c != label and c != "id"]
        if unused:
            notes.append(f"columns not used: {', '.join(unused)} (add them with --plugin COL=... or --tabular-columns)")
        lacking = [f"{f} in {n}" for f, n in missing.items() if n]
        if lacking:
            notes.append(
                "records lacking an input (empty, or a missing or unreadable image): "
                f"{', '.join(lacking)} of {len(examples)}; a zero vector and a missing-input flag stand in"
            )
        return Dataset(examples, labels, modality="multimodal", ids=ids, name=str(path.resolve()), notes=notes)


def _field(value: Any, path: Path) -> Any:
    """A field's value: None for empty, an image path made absolute (relative to the file), JSON kept as text."""
    if value is None:
        return None
    if isinstance(value, list | dict):
        return json.dumps(value)
    if isinstance(value, bool | int | float):
        return value
    text = str(value)
    name = text.strip()
    if name and not os.path.isabs(name) and (is_image_path(name) or _names_an_image(path.parent, name)):
        return str(path.parent / name)  # relative to the file, never to the working directory
    return text


def _names_an_image(folder: Path, name: str) -> bool:
    """Whether ``name`` (a cell without an image suffix) is the path of an image file beside the table:
    an existing file whose header Pillow recognises.  A text that happens to name another file stays text."""
    if "\n" in name or len(name) > 1024:
        return False
    try:
        candidate = folder / name
        return candidate.is_file() and not image_file_problem(str(candidate), "header")
    except (OSError, ValueError):  # a name the file system refuses (a NUL byte, too long)
        return False


def _missing_image(value: Any) -> bool:
    return isinstance(value, str) and is_image_path(value) and not readable_image(value)


def readable_image(path: str) -> bool:
    """Whether ``path`` is an image file Pillow opens and verifies (a PNG's chunks and their CRCs, a JPEG's
    header) within the pixel cap a run decodes: a missing, empty, truncated or foreign file is not, nor a
    picture over the cap (which a run of the image backbone alone refuses), and a fused run gives it a
    counted placeholder."""
    return not image_file_problem(path, "verify") and image_pixels(path) <= image_pixel_cap()
