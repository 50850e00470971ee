"""Reading an unlabelled corpus for source-task pretraining (``tl pretrain --corpus``).

A corpus is a list of texts.  Where it can come from:

* a ``.txt`` file: one text per non-empty line;
* a folder: every ``*.txt`` file below it (sub-folders included, so a
  one-folder-per-class dataset works too) is one text;
* a CSV/TSV or JSONL file: the ``text_column`` of every row (labels are not needed);
* anything ``tl run --data`` understands, e.g. a built-in dataset such as
  ``rotten-tomatoes`` or ``hf:NAME``: its texts, labels ignored.

``split="train"`` keeps only the texts that ``tl run`` with the same ``--limit`` and
``--seed`` (and default split fractions) would put in its training split, so a model
pretrained on a labelled dataset's own text never sees that run's test texts.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import TlzooError


@dataclass
class CorpusOptions:
    text_column: str = "text"
    label_column: str = "label"  # only read with split="train"
    encoding: str = "utf-8"
    limit: int = 0  # 0 = everything
    seed: int = 0
    split: str = ""  # "" = all texts; "train" = only the texts of tl run's training split
    val_fraction: float = 0.15
    test_fraction: float = 0.15


def read_text(path: Path, encoding: str) -> str:
    """A whole text file; a wrong encoding is a one-line error naming the file and --encoding."""
    try:
        return path.read_text(encoding)
    except UnicodeDecodeError as exc:
        raise TlzooError(f"'{path}' is not valid {encoding} (byte {exc.start}); "
                         "convert it or pass --encoding (e.g. --encoding latin-1).") from None
    except LookupError:
        raise TlzooError(f"Unknown encoding '{encoding}'; pass a Python codec name such as utf-8 or latin-1.") from None


def _column(path: Path, rows: list[dict[str, Any]], columns: list[str], column: str) -> list[str]:
    if column not in columns:
        from .errors import suggest

        raise TlzooError(f"'{path}' has no column '{column}'.{suggest(column, columns)} "
                         f"Columns: {', '.join(columns)}; choose one with --text-column.")
    return [str(r.get(column) or "") for r in rows]


def read_jsonl_rows(path: Path, encoding: str) -> list[dict[str, Any]]:
    """One JSON object per non-empty line; a bad line is a one-line error naming it."""
    rows = []
    for n, line in enumerate(read_text(path, encoding).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TlzooError(f"'{path}' line {n} is not valid JSON ({exc.msg}); fix that line.") from None
        if not isinstance(row, dict):
            raise TlzooError(f"'{path}' line {n} is not a JSON object; each line needs text and label fields.")
        rows.append(row)
    return rows


def read_csv_rows(content: str, delimiter: str = ",") -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of a CSV/TSV text; newlines inside quoted fields are kept."""
    reader = csv.DictReader(io.StringIO(content, newline=""), delimiter=delimiter)
    columns = list(reader.fieldnames or [])
    return columns, list(reader)


def _table_texts(path: Path, opts: CorpusOptions) -> list[str]:
    name = path.name.lower()
    if name.endswith((".jsonl", ".ndjson")):
        rows = read_jsonl_rows(path, opts.encoding)
        return _column(path, rows, sorted({k for r in rows for k in r}), opts.text_column)
    columns, rows = read_csv_rows(read_text(path, opts.encoding), "\t" if name.endswith(".tsv") else ",")
    return _column(path, rows, columns, opts.text_column)


def _labelled_texts(location: str, opts: CorpusOptions, zoo: Any) -> list[str] | None:
    """Texts of a labelled dataset through the data sources; None if none reads it."""
    from .interfaces import DataOptions

    if zoo is None:
        from .zoo import Zoo

        zoo = Zoo()
    sources = [s for s in zoo.data_sources if s.can_load(location) and s.modality in ("", "text")]
    if not sources:
        return None
    ds = sources[0].load(location, DataOptions(text_column=opts.text_column, label_column=opts.label_column,
                                                encoding=opts.encoding))
    if opts.split:
        from .data import stratified_limit, stratified_split

        if opts.split != "train":
            raise TlzooError(f"Unknown corpus split '{opts.split}'; use 'train' (or nothing for all texts).")
        ds = stratified_limit(ds, opts.limit, opts.seed)
        ds = stratified_split(ds, opts.val_fraction, opts.test_fraction, opts.seed).train
        return [str(x) for x in ds.examples]
    if opts.limit:
        from .data import stratified_limit

        ds = stratified_limit(ds, opts.limit, opts.seed)
    return [str(x) for x in ds.examples]


def read_corpus(location: str, options: CorpusOptions | None = None, zoo: Any = None) -> list[str]:
    """The non-empty texts at ``location`` (see the module docstring), ``limit`` applied."""
    opts = options or CorpusOptions()
    if not location:
        raise TlzooError("No corpus given; pass --corpus FILE|DIR (text, CSV, JSONL, folder of .txt) or a dataset name.")
    path = Path(location)
    texts: list[str] | None = None
    limited = False
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file() and not p.name.startswith("."))
        if not files:
            texts = _labelled_texts(location, opts, zoo)  # e.g. a saved Hugging Face dataset
            limited = True
            if texts is None:
                raise TlzooError(f"No .txt files found under '{path}'; put one text per file there, "
                                 "or pass a .txt file with one text per line.")
        else:
            texts = [read_text(p, opts.encoding) for p in files]
    elif path.is_file() and path.name.lower().endswith((".csv", ".tsv", ".jsonl", ".ndjson")) and not opts.split:
        texts = _table_texts(path, opts)
    elif path.is_file() and (path.suffix.lower() in (".txt", ".text", "") or path.suffix.lower() == ".md"):
        texts = read_text(path, opts.encoding).splitlines()
    else:
        texts = _labelled_texts(location, opts, zoo)
        limited = True
        if texts is None:
            if not os.path.exists(location):
                raise TlzooError(f"Corpus '{location}' does not exist; pass a .txt/CSV/JSONL file, a folder of .txt "
                                 "files, or a dataset name (see `tl data list`).")
            raise TlzooError(f"Don't know how to read corpus '{location}'; pass a .txt file (one text per line), "
                             "a folder of .txt files, or a CSV/JSONL with a text column.")
    if opts.split and not limited:
        raise TlzooError("--split train needs a labelled dataset (e.g. rotten-tomatoes or a CSV with labels); "
                         "drop --split for a plain corpus.")
    texts = [t.strip() for t in texts if t and t.strip()]
    if opts.limit and not limited and len(texts) > opts.limit:
        import random

        keep = sorted(random.Random(opts.seed).sample(range(len(texts)), opts.limit))
        texts = [texts[i] for i in keep]
    if not texts:
        raise TlzooError(f"Corpus '{location}' holds no text; give a file or folder with some.")
    return texts
