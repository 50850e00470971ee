"""Batch prediction: ``tl predict RUN --data SOURCE`` and ``--out FILE``.

:func:`read_records` reads what ``tl run --data`` reads (CSV/TSV/JSONL with a text column,
class folders of images or .txt files, built-in and Hugging Face datasets), plus what only
prediction needs: a table of texts without a label column (or with some labels blank) and a
flat folder of images or .txt files.  Tables of texts are read here with the same readers the
CSV/JSONL data sources use, so quoted multi-line fields stay one record; everything else (a
CSV of image paths included, which needs its labels) goes through the data source
``Zoo.data_source_for`` picks.  :func:`write_predictions` streams the records through the
model batch by batch (a progress bar on stderr) and writes one row per record; cells that
hold data are written so that no spreadsheet runs them as formulas (``infra.safe_text``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import torch

from tlzoo.api.errors import TlzooError
from tlzoo.engine.zoo import Zoo
from tlzoo.infra.safe_text import spreadsheet_cell as cell

if TYPE_CHECKING:
    from tlzoo.commands.predict import Predictor

TABLE_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".jsonl", ".ndjson")


def is_table_path(item: str) -> bool:
    """Whether ``item`` names a CSV/TSV/JSONL file by its suffix (what ``--data`` reads record by record)."""
    return str(item).strip().lower().endswith(TABLE_SUFFIXES)


@dataclass
class Records:
    """What ``tl predict --data`` classifies: raw inputs, their ids, and labels where the source has them."""

    inputs: list[Any]  # texts, image paths, or in-memory images (built-in datasets)
    ids: list[str]
    shown: list[str]  # the ``input`` column: the text, the image path, or the id of an in-memory image
    labels: list[str] | None = None  # None: no labels at all; "" for a record without one
    source: str = ""  # what read them, for the log
    notes: list[str] = field(default_factory=list)  # records skipped, for the log

    def __len__(self) -> int:
        return len(self.inputs)

    def head(self, limit: int) -> Records:
        """The first ``limit`` records (all of them for 0)."""
        if limit <= 0 or limit >= len(self):
            return self
        return Records(
            self.inputs[:limit],
            self.ids[:limit],
            self.shown[:limit],
            self.labels[:limit] if self.labels is not None else None,
            self.source,
            self.notes,
        )


def records_from_inputs(items: list[str]) -> Records:
    """Inputs given on the command line (or by ``--file``): unlabelled, numbered from 0."""
    return Records(list(items), [str(i) for i in range(len(items))], [str(x) for x in items], None, "arguments")


def read_records(
    location: str,
    modality: str,
    zoo: Zoo,
    *,
    text_column: str = "text",
    label_column: str | None = None,
    encoding: str = "utf-8",
    limit: int = 0,
    from_run: bool = False,
    fields: tuple[str, ...] = (),
) -> Records:
    """Every record at ``location`` for a ``modality`` run (see the module docstring).

    ``label_column`` None: the ``label`` column when the table has one; named, it must exist.
    ``limit``: the first N records only (0 = all).
    ``from_run``: the columns are the ones the run was trained with (see :func:`run_data_defaults`),
    not the user's: a table without that text column falls back to ``text``, and one without that
    label column is read without labels.
    """
    from tlzoo.engine.data import IMAGE_SUFFIXES

    if limit < 0:
        raise TlzooError(f"--limit must be 0 (every record) or a positive number of records, got {limit}.")
    path = Path(location)
    if path.is_dir() and not any(c.is_dir() and not c.name.startswith(".") for c in path.iterdir()):
        files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
        images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
        texts = [f for f in files if f.suffix.lower() == ".txt"]
        if images and modality != "vision":
            raise TlzooError(
                f"'{path}' holds images, and this run classifies {modality}; use a run trained with a vision plugin."
            )
        if texts and modality != "text":
            raise TlzooError(f"'{path}' holds .txt files, and this run classifies images; pass a folder of images.")
        if images or texts:  # a flat folder: one unlabelled record per file
            chosen = images or texts
            from tlzoo.engine.corpus import read_text

            inputs: list[Any] = [str(f) for f in chosen] if images else [read_text(f, encoding).strip() for f in chosen]
            shown = [str(f) for f in chosen] if images else [str(x) for x in inputs]
            return Records(inputs, [f.name for f in chosen], shown, None, "a flat folder").head(limit)
    if path.is_file() and path.suffix.lower() in (".txt", ".text") and modality == "text":
        raise TlzooError(
            f"'{path}' is a plain text file; pass it with --file (one text per line), or give a "
            "CSV/JSONL with a text column to --data."
        )
    source = zoo.data_source_for(location, modality)  # the right errors for a missing path or the wrong modality
    if path.is_file() and is_table_path(location) and source.modality == "text":  # texts: labels optional
        return _table_records(path, text_column, label_column, encoding, source.name, from_run).head(limit)
    from tlzoo.api.interfaces import DataOptions

    options = DataOptions(text_column, label_column or "label", encoding, require_labels=not fields, fields=fields)
    ds = source.load(location, options)
    shown = [_shown(ex, ident) for ex, ident in zip(ds.examples, ds.ids)]
    labels = list(ds.labels) if any(ds.labels) else None  # a fused run's records: labels optional
    return Records(list(ds.examples), list(ds.ids), shown, labels, source.name, list(ds.notes)).head(limit)


def _shown(example: Any, ident: str) -> str:
    """The input column of a prediction row: a text or an image path, a record as JSON, else the id."""
    if isinstance(example, str):
        return example
    if isinstance(example, dict):
        return json.dumps(example, ensure_ascii=False, sort_keys=True)
    return ident


def parse_records(items: list[Any], fields: tuple[str, ...]) -> list[Any]:
    """A fused run's inputs from the command line: each one a JSON object of (some of) its fields."""
    out = []
    for item in items:
        try:
            record = json.loads(item) if isinstance(item, str) else item
        except ValueError:
            record = None
        if not isinstance(record, dict):
            example = json.dumps(dict.fromkeys(fields, "..."))
            raise TlzooError(
                f"This run reads records with the fields {', '.join(fields)}; pass each input as a JSON object, "
                f"e.g. '{example}', or the records of a table with --data FILE."
            )
        unknown = sorted(set(record) - set(fields))
        if unknown:
            raise TlzooError(f"Field '{unknown[0]}' is not an input of this run; its fields are {', '.join(fields)}.")
        out.append(record)
    return out


def run_data_defaults(run_dir: str | Path) -> dict[str, str]:
    """The text column, label column and encoding a run was trained with (its config.toml ``[data]``).

    ``tl predict RUN --data new.csv`` uses them when the user names none; a folder without a
    readable config.toml (an older run, a hand-made folder) gives ``{}``.
    """
    import tomllib

    try:
        data = tomllib.loads((Path(run_dir) / "config.toml").read_text(encoding="utf-8")).get("data", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    keys = ("text_column", "label_column", "encoding")
    return {k: data[k] for k in keys if isinstance(data, dict) and isinstance(data.get(k), str) and data[k]}


def _table_records(
    path: Path, text_column: str, label_column: str | None, encoding: str, source: str, from_run: bool = False
) -> Records:
    """The records of a CSV/TSV/JSONL file: the labels are optional (a blank one leaves that record unlabelled)."""
    from tlzoo.api.errors import suggest
    from tlzoo.engine.corpus import read_csv_table, read_jsonl_table, read_text, text_codec
    from tlzoo.engine.data import RowReport, label_text

    name = path.name.lower()
    if name.endswith((".jsonl", ".ndjson")):
        table = read_jsonl_table(path, encoding)
    else:
        if name.endswith(".gz"):
            import gzip

            try:
                content = gzip.decompress(path.read_bytes()).decode(text_codec(encoding))
            except UnicodeDecodeError:
                raise TlzooError(f"'{path}' is not valid {encoding}; pass --encoding.") from None
            except (OSError, EOFError) as exc:
                raise TlzooError(
                    f"'{path}' is not a readable gzip file ({exc}); recompress it or pass the plain CSV."
                ) from None
        else:
            content = read_text(path, encoding)
        table = read_csv_table(content, "\t" if name.endswith(".tsv") else ",", f"'{path}'")
    if not table.rows:
        raise TlzooError(
            f"'{path}' holds no records; give a header row and one record per row (CSV) or one "
            "JSON object per line (JSONL)."
        )
    if from_run and text_column not in table.columns and "text" in table.columns:
        text_column = "text"  # the run's column is not there: the usual default is
    if from_run and label_column is not None and label_column not in table.columns:
        label_column = None  # the run's label column is not there: predict without labels
    if text_column not in table.columns:
        raise TlzooError(
            f"'{path}' has no column '{text_column}'.{suggest(text_column, table.columns)} "
            f"Columns: {', '.join(table.columns)}; choose one with --text-column."
        )
    column = label_column or "label"
    if label_column is not None and column not in table.columns:
        raise TlzooError(
            f"'{path}' has no column '{column}'.{suggest(column, table.columns)} "
            f"Columns: {', '.join(table.columns)}; choose one with --label-column, or leave it out "
            "to predict without labels."
        )
    labelled = column in table.columns and column != text_column
    wanted = {"--text-column": text_column, **({"--label-column": column} if labelled else {})}
    table.refuse_duplicates(str(path), wanted)
    texts: list[str] = []
    labels: list[str] = []
    ids: list[str] = []
    report = RowReport(path.name)
    for i, (row, line) in enumerate(zip(table.rows, table.lines)):
        report.total += 1
        text = row.get(text_column)
        if text is None:
            report.drop(f"missing the '{text_column}' field", line)
            continue
        label = ""
        if labelled:
            try:
                label = label_text(row.get(column)) or ""
            except ValueError as exc:
                raise TlzooError(
                    f"'{path}' line {line}: the label is not a class name ({exc}); use a string or "
                    "a number, or leave --label-column out."
                ) from None
        texts.append(
            text if isinstance(text, str) else json.dumps(text) if isinstance(text, (list, dict)) else str(text)
        )
        labels.append(label)
        ids.append(str(row.get("id", i)))
    has_labels = labelled and any(labels)
    return Records(list(texts), ids, texts, labels if has_labels else None, source, report.notes())


@dataclass
class Summary:
    """What :func:`write_predictions` wrote."""

    n: int = 0
    labelled: int = 0  # records whose label is one of the run's classes
    correct: int = 0
    unknown: dict[str, int] = field(default_factory=dict)  # labels the run does not know -> records

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


def write_predictions(
    predictor: Predictor,
    records: Records,
    out: TextIO,
    *,
    as_json: bool = False,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> Summary:
    """Classify ``records`` batch by batch, writing each batch's rows to ``out`` as it is done.

    CSV columns (those of a run's predictions.csv): id, true (with labels), predicted,
    p_<class>..., probability (of the predicted class), loss (-log p of the true class,
    with labels), input; a data cell a spreadsheet would run as a formula starts with ``'``.
    ``as_json``: one JSON object per record instead (JSON needs no such quoting).
    """
    classes = [str(c) for c in predictor.classes]
    index = {c: k for k, c in enumerate(classes)}
    labels = records.labels
    writer = None if as_json else csv.writer(out)
    if writer is not None:
        writer.writerow(
            ["id"]
            + (["true"] if labels is not None else [])
            + ["predicted"]
            + [f"p_{c}" for c in classes]
            + ["probability"]
            + (["loss"] if labels is not None else [])
            + ["input"]
        )
    summary = Summary()
    start = 0
    for proba in predictor.iter_proba(records.inputs, batch_size=batch_size, device=device, progress=progress):
        for k, p in enumerate(proba):
            i = start + k
            best = int(p.argmax())
            true = labels[i] if labels is not None else None
            loss = None
            if true:
                if true in index:
                    loss = float(-np.log(max(float(p[index[true]]), 1e-12)))
                    summary.labelled += 1
                    summary.correct += int(best == index[true])
                else:
                    summary.unknown[true] = summary.unknown.get(true, 0) + 1
            if writer is not None:
                writer.writerow(
                    [cell(records.ids[i])]
                    + ([cell(true)] if labels is not None else [])
                    + [cell(classes[best])]
                    + [f"{v:.5f}" for v in p]
                    + [f"{p[best]:.5f}"]
                    + ([f"{loss:.5f}" if loss is not None else ""] if labels is not None else [])
                    + [cell(records.shown[i])]
                )
            else:
                row: dict[str, Any] = {
                    "id": records.ids[i],
                    "input": records.shown[i],
                    "label": classes[best],
                    "probability": float(p[best]),
                    "probabilities": {c: float(v) for c, v in zip(classes, p)},
                }
                if true:
                    row.update(true=true, loss=loss)
                out.write(json.dumps(row) + "\n")
        start += len(proba)
        summary.n = start
        out.flush()
    return summary
