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
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlzoo.api.errors import TlzooError


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


def text_codec(encoding: str) -> str:
    """``utf-8`` reads as ``utf-8-sig``: a byte-order mark (Excel, Notepad) is not part of the text."""
    import codecs

    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise TlzooError(f"Unknown encoding '{encoding}'; pass a Python codec name such as utf-8 or latin-1.") from None
    return "utf-8-sig" if name == "utf-8" else encoding


def read_text(path: Path, encoding: str) -> str:
    """A whole text file; a wrong encoding is a one-line error naming the file and --encoding."""
    try:
        return path.read_text(text_codec(encoding))
    except UnicodeDecodeError as exc:
        raise TlzooError(
            f"'{path}' is not valid {encoding} (byte {exc.start}); "
            "convert it or pass --encoding (e.g. --encoding latin-1)."
        ) from None
    except LookupError:
        raise TlzooError(f"Unknown encoding '{encoding}'; pass a Python codec name such as utf-8 or latin-1.") from None


def lines_of(text: str) -> list[str]:
    """The lines of a text file's content, split on line feeds only (CRLF and CR arrive as LF).

    Not ``str.splitlines``: it also splits on U+0085 (NEL), U+2028/U+2029, form feeds and
    other separators that occur inside one text (and raw inside a JSON string), turning one
    example into two."""
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def _column(path: Path, rows: list[dict[str, Any]], columns: list[str], column: str) -> list[str]:
    if column not in columns:
        from tlzoo.api.errors import suggest

        raise TlzooError(
            f"'{path}' has no column '{column}'.{suggest(column, columns)} "
            f"Columns: {', '.join(columns)}; choose one with --text-column."
        )
    return [str(r.get(column) or "") for r in rows]


@dataclass
class Table:
    """Rows of a CSV/TSV or JSONL file, with what a reader needs to report problems by line."""

    columns: list[str]
    rows: list[dict[str, Any]]
    lines: list[int]  # the line each row starts on
    duplicates: dict[str, str]  # column name -> where it repeats, e.g. "columns 1 and 3" or "line 4"

    def refuse_duplicates(self, name: str, wanted: dict[str, str]) -> None:
        """A repeated column the run reads is ambiguous: which copy is meant is the user's choice."""
        for option, col in wanted.items():
            if col in self.duplicates:
                raise TlzooError(
                    f"'{name}' has the column '{col}' twice ({self.duplicates[col]}); rename one of "
                    f"them, or choose another column with {option}."
                )


class _JSONObject(dict):
    """A parsed JSON object that remembers the keys it repeated."""

    repeated: tuple[str, ...] = ()


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` hook: keep the first value of a repeated key and remember the repeat."""
    out = _JSONObject()
    repeated = []
    for k, v in pairs:
        if k in out:
            repeated.append(k)
        else:
            out[k] = v
    out.repeated = tuple(repeated)
    return out


def read_jsonl_table(path: Path, encoding: str) -> Table:
    """One JSON object per non-empty line; a bad line is a one-line error naming it."""
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    duplicates: dict[str, str] = {}
    for n, line in enumerate(lines_of(read_text(path, encoding)), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise TlzooError(f"'{path}' line {n} is not valid JSON ({exc.msg}); fix that line.") from None
        except RecursionError:
            raise TlzooError(
                f"'{path}' line {n} is nested too deeply; each line needs flat text and label fields."
            ) from None
        if not isinstance(row, dict):
            raise TlzooError(f"'{path}' line {n} is not a JSON object; each line needs text and label fields.")
        for key in getattr(row, "repeated", ()):
            duplicates.setdefault(key, f"line {n}")
        rows.append(dict(row))
        lines.append(n)
    columns = sorted({k for r in rows for k in r})
    return Table(columns, rows, lines, duplicates)


def read_jsonl_rows(path: Path, encoding: str) -> list[dict[str, Any]]:
    """The rows of :func:`read_jsonl_table` (a repeated key keeps its first value)."""
    return read_jsonl_table(path, encoding).rows


def _raise_field_limit() -> None:
    """csv refuses fields over 131,072 characters by default; a long document is a fine example."""
    limit = sys.maxsize
    while True:  # sys.maxsize overflows a C long on some platforms
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 2


def read_csv_table(content: str, delimiter: str = ",", name: str = "the CSV") -> Table:
    """Rows of a CSV/TSV text; newlines inside quoted fields are kept.

    A row with fewer fields than the header lacks the missing keys (the caller counts
    them); a row with more non-empty fields than the header is refused, since an unquoted
    delimiter inside a text would otherwise shift the label silently.
    """
    _raise_field_limit()
    # strict: an unclosed quote is an error naming its line, not a field that swallows the rest of the file
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter, strict=True)
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    too_long: list[int] = []
    start = 1
    try:
        header = next(reader, [])
        first: dict[str, int] = {}
        duplicates: dict[str, str] = {}
        for i, col in enumerate(header, 1):
            if col in first:
                duplicates.setdefault(col, f"columns {first[col]} and {i}")
            else:
                first[col] = i
        start = reader.line_num + 1
        for fields in reader:
            line, start = start, reader.line_num + 1
            if not fields:
                continue  # a blank line
            if len(fields) > len(header) and any(f.strip() for f in fields[len(header) :]):
                too_long.append(line)
                continue
            row: dict[str, Any] = {}
            for col, value in zip(header, fields):
                row.setdefault(col, value)  # a repeated column keeps its first value
            rows.append(row)
            lines.append(line)
    except csv.Error as exc:
        kind = "TSV" if delimiter == "\t" else "CSV"
        raise TlzooError(
            f"{name} line {start} cannot be parsed as {kind} ({exc}); fix the quoting of the row "
            'that starts there (a quote inside a quoted field is written twice: "").'
        ) from None
    if too_long:
        more = f" (and {len(too_long) - 1} more rows)" if len(too_long) > 1 else ""
        raise TlzooError(
            f"{name} line {too_long[0]}{more} has more fields than the header's {len(header)}; a "
            f"{'tab' if delimiter == chr(9) else 'comma'} inside a text must be quoted: quote that "
            "field or fix the row."
        )
    return Table(list(header), rows, lines, duplicates)


def read_csv_rows(content: str, delimiter: str = ",", name: str = "the CSV") -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of :func:`read_csv_table`."""
    table = read_csv_table(content, delimiter, name)
    return table.columns, table.rows


def _table_texts(path: Path, opts: CorpusOptions) -> list[str]:
    name = path.name.lower()
    if name.endswith((".jsonl", ".ndjson")):
        table = read_jsonl_table(path, opts.encoding)
    else:
        table = read_csv_table(read_text(path, opts.encoding), "\t" if name.endswith(".tsv") else ",", f"'{path}'")
    table.refuse_duplicates(str(path), {"--text-column": opts.text_column})
    return _column(path, table.rows, table.columns, opts.text_column)


def _labelled_texts(location: str, opts: CorpusOptions, zoo: Any) -> list[str] | None:
    """Texts of a labelled dataset through the data sources; None if none reads it."""
    from tlzoo.api.interfaces import DataOptions

    if zoo is None:
        from tlzoo.engine.zoo import Zoo

        zoo = Zoo()
    if not any(s.can_load(location) and s.modality in ("", "text") for s in zoo.data_sources):
        return None
    from tlzoo.engine.data import read_dataset

    options = DataOptions(text_column=opts.text_column, label_column=opts.label_column, encoding=opts.encoding)
    ds, _ = read_dataset(location, "text", zoo, options)
    if opts.split:
        from tlzoo.engine.data import stratified_limit, stratified_split

        if opts.split != "train":
            raise TlzooError(f"Unknown corpus split '{opts.split}'; use 'train' (or nothing for all texts).")
        ds = stratified_limit(ds, opts.limit, opts.seed)
        ds = stratified_split(ds, opts.val_fraction, opts.test_fraction, opts.seed).train
        return [str(x) for x in ds.examples]
    if opts.limit:
        from tlzoo.engine.data import stratified_limit

        ds = stratified_limit(ds, opts.limit, opts.seed)
    return [str(x) for x in ds.examples]


def read_corpus(location: str, options: CorpusOptions | None = None, zoo: Any = None) -> list[str]:
    """The non-empty texts at ``location`` (see the module docstring), ``limit`` applied."""
    opts = options or CorpusOptions()
    if opts.limit < 0:
        raise TlzooError(f"--limit must be 0 (every text) or a positive number of texts, got {opts.limit}.")
    if not location:
        raise TlzooError(
            "No corpus given; pass --corpus FILE|DIR (text, CSV, JSONL, folder of .txt) or a dataset name."
        )
    path = Path(location)
    texts: list[str] | None = None
    limited = False
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file() and not p.name.startswith("."))
        if not files:
            texts = _labelled_texts(location, opts, zoo)  # e.g. a saved Hugging Face dataset
            limited = True
            if texts is None:
                raise TlzooError(
                    f"No .txt files found under '{path}'; put one text per file there, "
                    "or pass a .txt file with one text per line."
                )
        else:
            texts = [read_text(p, opts.encoding) for p in files]
    elif path.is_file() and path.name.lower().endswith((".csv", ".tsv", ".jsonl", ".ndjson")) and not opts.split:
        texts = _table_texts(path, opts)
    elif path.is_file() and (path.suffix.lower() in (".txt", ".text", "") or path.suffix.lower() == ".md"):
        texts = lines_of(read_text(path, opts.encoding))
    else:
        texts = _labelled_texts(location, opts, zoo)
        limited = True
        if texts is None:
            if not os.path.exists(location):
                raise TlzooError(
                    f"Corpus '{location}' does not exist; pass a .txt/CSV/JSONL file, a folder of .txt "
                    "files, or a dataset name (see `tl data list`)."
                )
            raise TlzooError(
                f"Don't know how to read corpus '{location}'; pass a .txt file (one text per line), "
                "a folder of .txt files, or a CSV/JSONL with a text column."
            )
    if opts.split and not limited:
        raise TlzooError(
            "--split train needs a labelled dataset (e.g. rotten-tomatoes or a CSV with labels); "
            "drop --split for a plain corpus."
        )
    texts = [t.strip() for t in texts if t and t.strip()]
    if opts.limit and not limited and len(texts) > opts.limit:
        import random

        keep = sorted(random.Random(opts.seed).sample(range(len(texts)), opts.limit))
        texts = [texts[i] for i in keep]
    if not texts:
        raise TlzooError(f"Corpus '{location}' holds no text; give a file or folder with some.")
    return texts
