"""Prediction with a finished run as one call: :func:`predict`, which ``Engine.predict`` and
``tl predict`` (a thin layer over it) both use.

It takes what ``tl predict`` takes: inputs one by one (a ``str`` is one input, a list of texts,
image paths or, for a fused run, dicts of named fields), lines of a file, or a data source
(``data=``: a CSV/TSV/JSONL file, gzipped too, a folder of images or texts, a dataset name, or a
pandas DataFrame) read by the one data path with labels optional.  It checks them the way the
command line does, classifies them, and returns :class:`Predictions`; ``out=`` writes them to a
file as ``tl predict --out`` does (atomically, formula-like cells escaped, never over the input).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlzoo.api.errors import TlzooError
from tlzoo.infra.safe_text import printable

if TYPE_CHECKING:
    import numpy as np

    from tlzoo.commands.batch_predict import Records, Summary
    from tlzoo.commands.predict import Predictor
    from tlzoo.engine.zoo import Zoo


class Predictions(list[dict[str, Any]]):
    """The result of ``Engine.predict``: one row (a dict) per input, in input order, plus a summary.

    Each row holds ``id``, ``input``, ``label`` (predicted), ``probability`` (of that label) and
    ``probabilities`` (every class); a record with a label also holds ``true`` and ``loss`` (None
    for a label the run does not know).  A list, as in tlzoo 0.2, with these attributes:
    ``classes``, ``n`` (records classified), ``labelled`` and ``correct`` (records whose label the
    run knows, and how many of them were right), ``accuracy`` (None without labels), ``unknown``
    (labels the run does not know, with their counts), ``notes`` (what reading skipped), ``source``
    (what read the records) and ``out`` (the file written, or None).  With ``out`` the rows go to the
    file and are not kept here (the summary is).  ``proba`` is the probabilities as an array;
    ``to_frame()`` the rows as a pandas DataFrame with the columns of the CSV.
    """

    def __init__(self, rows: list[dict[str, Any]], classes: list[str], summary: Summary, records: Records) -> None:
        super().__init__(rows)
        self.classes = [str(c) for c in classes]
        self.n, self.labelled, self.correct = summary.n, summary.labelled, summary.correct
        self.accuracy: float | None = summary.accuracy
        self.unknown = dict(summary.unknown)
        self.notes, self.source = list(records.notes), records.source
        self.out: Path | None = None

    @property
    def proba(self) -> np.ndarray:
        """The class probabilities, one row per kept row, columns in the order of ``classes``."""
        import numpy as np

        return np.array([[r["probabilities"][c] for c in self.classes] for r in self], np.float64).reshape(
            len(self), len(self.classes)
        )

    def to_frame(self) -> Any:
        """The rows as a pandas DataFrame: id, true (with labels), predicted, p_<class>..., probability,
        loss (with labels), input."""
        try:
            import pandas as pd  # type: ignore[import-untyped]
        except ImportError:
            raise TlzooError("Predictions.to_frame needs pandas; pip install pandas.") from None
        from tlzoo.commands.batch_predict import csv_header

        labelled = any("true" in r for r in self)
        table = [
            [r["id"], *([r.get("true", "")] if labelled else []), r["label"]]
            + [r["probabilities"][c] for c in self.classes]
            + [r["probability"], *([r.get("loss")] if labelled else []), r["input"]]
            for r in self
        ]
        return pd.DataFrame(table, columns=csv_header(self.classes, labelled))


def predict(
    run_dir: str | Path,
    inputs: Any = None,
    *,
    data: Any = None,
    file: str | Path | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    encoding: str | None = None,
    limit: int = 0,
    batch_size: int = 32,
    device: str = "cpu",
    out: str | Path | None = None,
    as_json: bool = False,
    zoo: Zoo | None = None,
    log: Callable[[str], None] | None = None,
    check_features: bool = True,
) -> Predictions:
    """Classify ``inputs`` (or the lines of ``file``, or the records of ``data``) with the run at
    ``run_dir``; see :class:`Predictions` for what comes back and the module docstring for what goes in.

    ``text_column``, ``label_column`` and ``encoding`` default to the ones the run was trained with;
    a label column is optional, and where records have labels, their accuracy is reported.
    ``out``: a CSV file (JSON lines with ``as_json``) to write, or ``"-"`` for standard output.
    Bad input raises a one-line ``TlzooError`` before anything is loaded or written.
    ``check_features=False`` skips recomputing the training examples stored with the run, which
    refuses a backbone whose features changed since (``tlzoo.engine.run.feature_sample``).
    """
    say = log or (lambda msg: None)
    if _is_frame(inputs):
        inputs, data = None, _refuse_both(data, inputs)
    given = [os.fspath(x) if isinstance(x, os.PathLike) else x for x in _as_list(inputs)]
    out_text = None if out is None else os.fspath(out)
    data_text = None if data is None or _is_frame(data) else os.fspath(data)
    file_text = None if file is None else os.fspath(file)
    check_out(out_text, data_text, file_text)
    _check_request(run_dir, given, data, file_text, text_column, label_column, batch_size, limit)
    items = given + (_read_lines(file_text, encoding) if file_text else [])
    if data is None and not items:
        raise TlzooError("Nothing to predict; pass texts or image paths after RUN_DIR, --file FILE, or --data SOURCE.")
    from tlzoo.commands.predict import Predictor
    from tlzoo.engine.zoo import Zoo

    zoo = zoo or Zoo()
    predictor = Predictor.load(run_dir, zoo, check_features=check_features)
    if data is None:
        items = _checked_inputs(predictor, items, given, run_dir)
        records = _inputs_records(items[:limit] if limit else items)
    else:
        records = _data_records(run_dir, predictor, zoo, data, text_column, label_column, encoding, limit)
        _log_records(say, records, data)  # and refused when it holds none
    report = predictor.backbone.input_report(records.inputs)  # texts cut, a fused record's missing inputs
    if report:
        say(f"  warning: {report}")
    result = _classify(predictor, records, out_text, as_json, batch_size, device, data is not None)
    if data is not None or out_text is not None:
        _log_summary(say, result, predictor)
    return result


def _as_list(inputs: Any) -> list[Any]:
    """The inputs as a list: a ``str`` (a text or an image path), ``bytes`` or a path is one input."""
    if inputs is None:
        return []
    if isinstance(inputs, str | bytes | os.PathLike | dict):
        return [inputs]
    return list(inputs)


def _is_frame(value: Any) -> bool:
    return type(value).__module__.startswith("pandas") and hasattr(value, "to_json")


def _refuse_both(data: Any, frame: Any) -> Any:
    if data is not None:
        raise TlzooError("Pass either data= or a DataFrame as the inputs, not both.")
    return frame


def _read_lines(path: str, encoding: str | None) -> list[str]:
    from tlzoo.commands.batch_predict import read_lines

    return read_lines(path, encoding or "utf-8")


def _check_request(
    run_dir: str | Path,
    items: list[Any],
    data: Any,
    file: str | None,
    text_column: str | None,
    label_column: str | None,
    batch_size: int,
    limit: int,
) -> None:
    """What is wrong with the request itself, before the run is loaded."""
    if data is not None and (items or file):
        raise TlzooError("Pass either --data SOURCE or inputs (arguments / --file), not both.")
    if data is None and (text_column or label_column):
        option = "--text-column" if text_column else "--label-column"
        raise TlzooError(f"{option} applies to --data; pass --data FILE with it.")
    if batch_size < 1:
        raise TlzooError(f"--batch-size must be at least 1, got {batch_size}.")
    if limit < 0:
        raise TlzooError(f"--limit must be 0 (every record) or a positive number, got {limit}.")
    for item in items:  # a path given where a text is expected is almost always a mistake
        if isinstance(item, str) and os.path.isdir(item):
            raise TlzooError(
                f"'{item}' is a folder; to classify what it holds, pass it with --data: "
                f"`tl predict {run_dir} --data {item} --out predictions.csv`."
            )


def _checked_inputs(predictor: Predictor, items: list[Any], given: list[Any], run_dir: str | Path) -> list[Any]:
    """The inputs, refused where they do not suit the run's modality; a fused run's parsed as records."""
    from tlzoo.commands.batch_predict import is_table_path, parse_records
    from tlzoo.engine.data import is_image_path

    modality = predictor.backbone.modality
    if modality == "multimodal":  # a fused run: each input is a record, a dict or a JSON object
        return parse_records(items, tuple(getattr(predictor.backbone, "fields", ())))
    paths = [i for i in items if isinstance(i, str)]
    if modality == "vision":
        missing = [i for i in paths if not os.path.isfile(i)]
        if missing and not is_image_path(missing[0]):
            hint = "; to classify the records of a table use --data" if is_table_path(missing[0]) else ""
            raise TlzooError(
                f"This run classifies images, and '{missing[0][:60]}' is not an image file; "
                f"pass paths of image files (or use a run trained on text){hint}."
            )
        if missing:
            raise TlzooError(f"Image '{missing[0]}' does not exist; pass paths of image files.")
        return items
    images = [i for i in paths if is_image_path(i) and os.path.isfile(i)]
    if images:
        raise TlzooError(
            f"This run classifies {modality}, and '{images[0]}' is an image "
            "file; pass the texts themselves (or --file with one text per line), or use a run "
            "trained with a vision plugin."
        )
    tables = [i for i in given if isinstance(i, str) and is_table_path(i) and os.path.isfile(i)]
    if tables:
        raise TlzooError(
            f"'{tables[0]}' is a file, and this would classify its name as a text; classify its "
            f"records with `tl predict {run_dir} --data {tables[0]} --out predictions.csv` "
            "(add --text-column if its text column is not 'text')."
        )
    return items


def _inputs_records(items: list[Any]) -> Records:
    from tlzoo.commands.batch_predict import records_from_inputs

    return records_from_inputs(items)


def _data_records(
    run_dir: str | Path,
    predictor: Predictor,
    zoo: Zoo,
    data: Any,
    text_column: str | None,
    label_column: str | None,
    encoding: str | None,
    limit: int,
) -> Records:
    """The records of ``data``, with the run's own column names and encoding unless the user names them."""
    from tlzoo.commands.batch_predict import read_records, run_data_defaults

    trained = run_data_defaults(run_dir)
    from_run = text_column is None and label_column is None
    modality = predictor.backbone.modality
    fields = tuple(getattr(predictor.backbone, "fields", ()))
    encoding = encoding or trained.get("encoding") or "utf-8"
    with tempfile.TemporaryDirectory(prefix="tlzoo-frame-") as tmp:
        location = _frame_file(data, modality, Path(tmp)) if _is_frame(data) else os.fspath(data)
        try:
            records = read_records(
                location,
                modality,
                zoo,
                text_column=text_column or trained.get("text_column") or "text",
                label_column=label_column or (trained.get("label_column") if from_run else None),
                encoding=encoding,
                limit=limit,
                from_run=from_run,
                fields=fields,
            )
        except TlzooError:  # a fused run's table without one of its inputs: say which columns it reads
            shown = "The DataFrame" if _is_frame(data) else f"'{location}'"
            _refuse_missing_inputs(location, fields, encoding, shown, trained.get("label_column") or "label")
            raise
    if _is_frame(data):
        records.source = "a DataFrame"
    return records


def _refuse_missing_inputs(location: str, fields: tuple[str, ...], encoding: str, shown: str, label: str) -> None:
    """A fused run's table that lacks an input column: one line naming the columns the run reads and the fix
    (a record may lack an input, as an empty cell), in place of the data source's bare "has no column"."""
    from tlzoo.engine.corpus import read_csv_table, read_jsonl_table, read_text

    path = Path(location)
    if not fields or not path.is_file():
        return
    try:
        if path.name.lower().endswith((".jsonl", ".ndjson")):
            columns = read_jsonl_table(path, encoding).columns
        else:
            text = read_text(path, encoding)
            columns = read_csv_table(text, "\t" if path.name.lower().endswith(".tsv") else ",", shown).columns
    except TlzooError:
        return  # unreadable as a table: the source's own error says why
    missing = [f for f in fields if f not in columns]
    if not missing:
        return
    names = ", ".join(f"'{printable(m)}'" for m in missing)
    add = "it" if len(missing) == 1 else "them"
    raise TlzooError(
        f"{shown} has no column {names}: this run reads the input columns {', '.join(printable(f) for f in fields)} "
        f"(and '{printable(label)}', where present, to score the predictions); add {add}, "
        "leaving a cell empty where a record lacks that input (a zero vector and a missing-input flag stand in, "
        "as in training)."
    )


def _frame_file(frame: Any, modality: str, folder: Path) -> str:
    """A DataFrame as the file the one data path reads: JSON Lines (a CSV of image paths for a vision
    run), image paths made absolute against the current folder as the user meant them."""
    from tlzoo.engine.data import is_image_path

    def absolute(value: Any) -> Any:
        if isinstance(value, str) and is_image_path(value) and not os.path.isabs(value.strip()):
            return os.path.abspath(value.strip())
        return value

    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    if modality != "text":
        for column in frame.columns:
            if frame[column].dtype.kind not in "biufcmM":  # text columns (object or str dtype), not numbers
                frame[column] = frame[column].map(absolute)
    if modality == "vision":
        path = folder / "frame.csv"
        frame.to_csv(path, index=False)
    else:
        path = folder / "frame.jsonl"
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    return str(path)


def _log_records(say: Callable[[str], None], records: Records, data: Any) -> None:
    for note in records.notes:
        say(f"warning: {note}")
    shown = "a DataFrame" if _is_frame(data) else data
    if not len(records):
        raise TlzooError(f"'{shown}' holds no records to classify.")
    labels = "with labels" if records.labels is not None else "without labels"
    say(f"{len(records)} records {labels} from {records.source}: {shown}")


def _classify(
    predictor: Predictor, records: Records, out: str | None, as_json: bool, batch_size: int, device: str, bar: bool
) -> Predictions:
    """The records through the model: kept as rows, or written to ``out`` (a file, or ``-``: stdout)."""
    from tlzoo.commands import batch_predict
    from tlzoo.engine.runner import pick_device

    dev = pick_device(device)
    if out is None:
        rows: list[dict[str, Any]] = []
        summary = batch_predict.Summary()
        for batch in batch_predict.predicted_rows(
            predictor, records, summary, batch_size=batch_size, device=dev, progress=bar
        ):
            rows.extend(batch)
        return Predictions(rows, predictor.classes, summary, records)
    if out == "-":
        stdout: Any = _Printable(sys.stdout) if sys.stdout.isatty() else sys.stdout
        summary = batch_predict.write_predictions(
            predictor, records, stdout, as_json=as_json, batch_size=batch_size, device=dev
        )
        return Predictions([], predictor.classes, summary, records)
    target = Path(out)
    # a temporary file of this process's own beside --out, renamed over it at the end: two runs writing
    # one --out each replace it whole, and an interrupted run leaves the old file as it was
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with open(fd, "w", newline="", encoding="utf-8") as f:
            summary = batch_predict.write_predictions(
                predictor, records, f, as_json=as_json, batch_size=batch_size, device=dev
            )
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600: give it a new file's usual mode
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    result = Predictions([], predictor.classes, summary, records)
    result.out = target
    return result


def _log_summary(say: Callable[[str], None], result: Predictions, predictor: Predictor) -> None:
    where = f" to {result.out}" if result.out is not None else ""
    score = (
        f"; accuracy {result.accuracy:.4f} on {result.labelled} labelled records" if result.accuracy is not None else ""
    )
    verb = "wrote" if result.out is not None or not len(result) else "predicted"
    say(f"{verb} {result.n} predictions{where}{score}")
    if result.unknown:
        names = ", ".join(f"'{k}'" for k in list(result.unknown)[:5])
        say(
            f"warning: {sum(result.unknown.values())} records have labels this run does not know ({names}); "
            f"they have no loss and are not scored (classes: {', '.join(map(str, predictor.classes[:12]))})."
        )


def check_out(out: str | None, data: str | None, input_file: str | None) -> None:
    """Refuse an ``--out`` that is a folder, lies in no folder, or is the file the inputs come from,
    before the model is loaded: nothing is written, nothing is replaced."""
    if not out or out == "-":
        return
    target = Path(out)
    if target.is_dir() or not target.name or target.name in (".", ".."):
        raise TlzooError(f"--out '{out}' is a folder; pass a file name such as {target / 'predictions.csv'}.")
    if not target.parent.is_dir():
        raise TlzooError(f"--out '{out}': the folder '{target.parent}' does not exist; create it or choose another.")
    for option, source in (("--data", data), ("--file", input_file)):
        if source and os.path.exists(source) and target.exists() and os.path.samefile(source, target):
            raise TlzooError(
                f"--out '{out}' is the {option} file it reads; write the predictions to another file, "
                "e.g. --out predictions.csv."
            )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Printable:
    """A terminal as ``tl predict --data``'s output: what is written goes through ``printable`` (the records
    are data, and a text may hold escape sequences); piped or redirected, the output is left exact."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return int(self.stream.write(printable(text.replace("\r\n", "\n"))))

    def flush(self) -> None:
        self.stream.flush()
