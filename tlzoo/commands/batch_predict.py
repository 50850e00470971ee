"""Batch prediction: the records ``Engine.predict`` and ``tl predict`` classify, and their rows.

:func:`read_records` reads what ``tl run --data`` reads (CSV/TSV/JSONL with a text column,
class folders of images or .txt files, built-in and Hugging Face datasets), plus what only
prediction needs: labels optional (a table without a label column, or with some labels blank)
and a flat folder of images or .txt files.  All of it goes through the one data path,
:func:`tlzoo.engine.data.read_unlabelled`.  :func:`predicted_rows` classifies the records batch
by batch (a progress bar on stderr); :func:`write_predictions` writes one row per record as each
batch is done; cells that hold data are written so that no spreadsheet runs them as formulas
(``infra.safe_text``).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import torch

from tlzoo.api.errors import TlzooError, suggest
from tlzoo.api.interfaces import Dataset
from tlzoo.engine.corpus import read_text
from tlzoo.engine.data import IMAGE_SUFFIXES
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


def records_from_inputs(items: list[Any]) -> Records:
    """Inputs given one by one (arguments, ``--file``, a Python list): unlabelled, numbered from 0."""
    ids = [str(i) for i in range(len(items))]
    return Records(list(items), ids, [_shown(x, i) for x, i in zip(items, ids)], None, "arguments")


def read_lines(path: str, encoding: str) -> list[str]:
    """The non-blank lines of ``tl predict --file``; a wrong encoding is one line saying what to pass."""
    if is_table_path(path):
        raise TlzooError(
            f"--file reads one input per line, and '{path}' is a table; classify its records with "
            f"--data {path} (and --text-column if its text column is not 'text')."
        )
    if not os.path.isfile(path):
        raise TlzooError(f"--file '{path}' does not exist.")
    try:
        with open(path, encoding=encoding, newline=None) as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except LookupError:
        raise TlzooError(
            f"Unknown encoding '{encoding}'; pass --encoding with a name such as utf-8 or latin-1."
        ) from None
    except UnicodeDecodeError as exc:
        raise TlzooError(
            f"--file '{path}' is not valid {encoding} (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); pass its encoding, e.g. --encoding latin-1."
        ) from None


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
    """Every record at ``location`` for a ``modality`` run, read by the one data path with the labels
    optional (:func:`tlzoo.engine.data.read_unlabelled`).

    ``label_column`` None: the ``label`` column when the table has one; named, it must exist.
    ``limit``: the first N records only (0 = all).
    ``from_run``: the columns are the ones the run was trained with (see :func:`run_data_defaults`),
    not the user's: a table without that text column falls back to ``text``, and one without that
    label column is read without labels.
    """
    from tlzoo.api.interfaces import DataOptions
    from tlzoo.engine.data import read_unlabelled

    if limit < 0:
        raise TlzooError(f"--limit must be 0 (every record) or a positive number of records, got {limit}.")
    flat = _flat_folder(Path(location), modality, encoding)
    if flat is not None:
        shown = [_shown(ex, ident) for ex, ident in zip(flat.examples, flat.ids)]
        return Records(list(flat.examples), list(flat.ids), shown, None, "a flat folder").head(limit)
    named = label_column is not None and not from_run
    options = DataOptions(text_column, label_column or "label", encoding, require_labels=False, fields=fields)
    ds, source = read_unlabelled(location, modality, zoo, options, label_named=named, from_run=from_run)
    shown = [_shown(ex, ident) for ex, ident in zip(ds.examples, ds.ids)]
    labels = list(ds.labels) if any(ds.labels) else None
    return Records(list(ds.examples), list(ds.ids), shown, labels, source, list(ds.notes)).head(limit)


def _flat_folder(path: Path, modality: str, encoding: str) -> Dataset | None:
    """A folder of images or ``.txt`` files without class sub-folders: one unlabelled record per file."""
    if not path.is_dir() or any(c.is_dir() and not c.name.startswith(".") for c in path.iterdir()):
        return None
    files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
    images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
    texts = [f for f in files if f.suffix.lower() == ".txt"]
    if images and modality != "vision":
        raise TlzooError(
            f"'{path}' holds images, and this run classifies {modality}; use a run trained with a vision plugin."
        )
    if texts and modality != "text":
        raise TlzooError(f"'{path}' holds .txt files, and this run classifies images; pass a folder of images.")
    if not (images or texts):
        return None
    chosen = images or texts
    examples = [str(f) for f in chosen] if images else [read_text(f, encoding).strip() for f in chosen]
    ids = [f.name for f in chosen]
    return Dataset(examples, [""] * len(chosen), modality, ids=ids, name=str(path.resolve()))


def _shown(example: Any, ident: str) -> str:
    """The input column of a prediction row: a text or an image path, a record as JSON, else the id."""
    if isinstance(example, str):
        return example
    if isinstance(example, os.PathLike):
        return os.fspath(example)
    if isinstance(example, dict):
        return json.dumps(example, ensure_ascii=False, sort_keys=True)
    return ident


def parse_records(items: list[Any], fields: tuple[str, ...]) -> list[Any]:
    """A fused run's inputs from the command line: each one a JSON object of (some of) its fields."""
    out = []
    for item in items:
        why = ""
        try:
            record = json.loads(item) if isinstance(item, str) else item
        except ValueError as exc:
            record, why = None, f" ({item!r} is not valid JSON: {exc})" if str(item).lstrip().startswith("{") else ""
        if not isinstance(record, dict):
            example = json.dumps(dict.fromkeys(fields, "..."))
            raise TlzooError(
                f"This run reads records with the fields {', '.join(fields)}; pass each input as a JSON object, "
                f"e.g. '{example}', or the records of a table with --data FILE.{why}"
            )
        unknown = sorted(set(record) - set(fields))
        if unknown:
            raise TlzooError(
                f"Field '{unknown[0]}' is not an input of this run.{suggest(unknown[0], fields)} "
                f"Its fields are {', '.join(fields)}."
            )
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


def predicted_rows(
    predictor: Predictor,
    records: Records,
    summary: Summary,
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> Iterator[list[dict[str, Any]]]:
    """Classify ``records`` batch by batch: one list of rows per batch, ``summary`` counted as they go.

    A row: id, input (the text, the image path, the record as JSON, or the id of an in-memory image),
    label (predicted), probability (of that label), probabilities (every class); with a label the
    record has, true and loss (-log p of the true class; None when the run does not know it).
    """
    classes = [str(c) for c in predictor.classes]
    index = {c: k for k, c in enumerate(classes)}
    start = 0
    for proba in predictor.iter_proba(records.inputs, batch_size=batch_size, device=device, progress=progress):
        rows = []
        for i, p in enumerate(proba, start):
            best = int(p.argmax())
            row: dict[str, Any] = {
                "id": records.ids[i],
                "input": records.shown[i],
                "label": classes[best],
                "probability": float(p[best]),
                "probabilities": {c: float(v) for c, v in zip(classes, p)},
            }
            true = records.labels[i] if records.labels is not None else None
            if true:
                row.update(true=true, loss=_score(summary, true, p, index, best))
            rows.append(row)
        start += len(proba)
        summary.n = start
        yield rows


def _score(summary: Summary, true: str, p: np.ndarray, index: dict[str, int], best: int) -> float | None:
    """The loss of one labelled record, counted in ``summary``; None for a label the run does not know."""
    if true not in index:
        summary.unknown[true] = summary.unknown.get(true, 0) + 1
        return None
    summary.labelled += 1
    summary.correct += int(best == index[true])
    return float(-np.log(max(float(p[index[true]]), 1e-12)))


def write_predictions(
    predictor: Predictor,
    records: Records,
    out: TextIO,
    *,
    as_json: bool = False,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: bool = True,
    keep: list[dict[str, Any]] | None = None,
) -> Summary:
    """Classify ``records`` batch by batch, writing each batch's rows to ``out`` as it is done.

    CSV columns (those of a run's predictions.csv): id, true (with labels), predicted,
    p_<class>..., probability (of the predicted class), loss (-log p of the true class,
    with labels), input; a data cell a spreadsheet would run as a formula starts with ``'``.
    ``as_json``: one JSON object per record instead (JSON needs no such quoting).
    ``keep``: a list the rows are also appended to.
    """
    classes = [str(c) for c in predictor.classes]
    labelled = records.labels is not None
    writer = None if as_json else csv.writer(out)
    if writer is not None:
        writer.writerow(csv_header(classes, labelled))
    summary = Summary()
    rows = predicted_rows(predictor, records, summary, batch_size=batch_size, device=device, progress=progress)
    for batch in rows:
        for row in batch:
            if writer is not None:
                writer.writerow(_csv_row(row, classes, labelled))
            else:
                out.write(json.dumps(row) + "\n")
        if keep is not None:
            keep.extend(batch)
        out.flush()
    return summary


def csv_header(classes: list[str], labelled: bool) -> list[str]:
    """The columns of a prediction CSV (see :func:`write_predictions`)."""
    true, loss = (["true"], ["loss"]) if labelled else ([], [])
    return ["id", *true, "predicted", *[f"p_{c}" for c in classes], "probability", *loss, "input"]


def _csv_row(row: dict[str, Any], classes: list[str], labelled: bool) -> list[str]:
    """One prediction row as CSV cells; data cells escaped so that no spreadsheet runs them as formulas."""
    true = [cell(row.get("true", ""))] if labelled else []
    loss = row.get("loss")
    losses = [f"{loss:.5f}" if loss is not None else ""] if labelled else []
    probabilities = [f"{row['probabilities'][c]:.5f}" for c in classes]
    return [
        cell(row["id"]),
        *true,
        cell(row["label"]),
        *probabilities,
        f"{row['probability']:.5f}",
        *losses,
        cell(row["input"]),
    ]
