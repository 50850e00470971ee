"""``tl predict``, ``tl export``, ``tl report`` and ``tl errors``: the commands that use a finished run."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from tlzoo.api.errors import TlzooError
from tlzoo.cli.app import cli
from tlzoo.cli.errors import friendly, offline_option
from tlzoo.cli.train import _log
from tlzoo.infra.safe_text import printable


# ---------------------------------------------------------------------------- predict
@cli.command()
@click.argument("run_dir", type=click.Path())
@click.argument("inputs", nargs=-1)
@click.option(
    "--data",
    "-d",
    "data",
    help="Classify every record of a data source, as `tl run --data` reads it: a "
    "CSV/JSONL (labels optional), a folder of images or .txt files (flat, or one sub-folder per class), "
    "or a dataset name.",
)
@click.option("--text-column", help="With --data: the column holding the text [text].")
@click.option(
    "--label-column", help="With --data: the column of true labels, for a loss and accuracy [label, when present]."
)
@click.option("--limit", type=int, default=0, help="Only the first N records [all].")
@click.option(
    "--out",
    "-o",
    "out",
    help="Write one CSV row per record here (id, true, predicted, p_<class>, "
    "probability, loss, input); with --data the default is stdout.",
)
@click.option("--file", "input_file", type=click.Path(dir_okay=False), help="Read inputs from a file, one per line.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines with all class probabilities.")
@click.option(
    "--encoding", help="Encoding of the --file or --data file [utf-8; with --data, the one the run was trained with]."
)
@click.option("--batch-size", "-b", type=int, default=32, show_default=True, help="Examples per batch.")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu or cuda.")
@offline_option
@friendly
def predict(
    run_dir: str,
    inputs: tuple[str, ...],
    data: str | None,
    text_column: str | None,
    label_column: str | None,
    limit: int,
    out: str | None,
    input_file: str | None,
    as_json: bool,
    encoding: str | None,
    batch_size: int,
    device: str,
) -> None:
    """Classify new texts or image files with a trained run (or a folder written by `tl export`).

    With --data, the text column, label column and encoding default to the ones the run was trained with.

    \b
      tl predict RUN "a new sentence"              a few inputs, one line each
      tl predict RUN --file texts.txt              one text (or image path) per line
      tl predict RUN --data new.csv --text-column review --out predictions.csv
      tl predict RUN --data photos/ --out predictions.csv
    """
    items = list(inputs)
    check_out(out, data, input_file)
    if data is not None and (items or input_file):
        raise TlzooError("Pass either --data SOURCE or inputs (arguments / --file), not both.")
    if data is None and (text_column or label_column):
        option = "--text-column" if text_column else "--label-column"
        raise TlzooError(f"{option} applies to --data; pass --data FILE with it.")
    if batch_size < 1:
        raise TlzooError(f"--batch-size must be at least 1, got {batch_size}.")
    if limit < 0:
        raise TlzooError(f"--limit must be 0 (every record) or a positive number, got {limit}.")
    for item in items:  # a path given where a text is expected is almost always a mistake
        if os.path.isdir(item):
            raise TlzooError(
                f"'{item}' is a folder; to classify what it holds, pass it with --data: "
                f"`tl predict {run_dir} --data {item} --out predictions.csv`."
            )
    if input_file:
        from tlzoo.commands.batch_predict import is_table_path

        if is_table_path(input_file):
            raise TlzooError(
                f"--file reads one input per line, and '{input_file}' is a table; classify its "
                f"records with --data {input_file} (and --text-column if its text column is not "
                "'text')."
            )
        items += _read_lines(input_file, encoding or "utf-8")
    if data is None and not items:
        raise TlzooError("Nothing to predict; pass texts or image paths after RUN_DIR, --file FILE, or --data SOURCE.")
    from tlzoo.commands.batch_predict import is_table_path
    from tlzoo.commands.predict import Predictor
    from tlzoo.engine.zoo import Zoo

    zoo = Zoo()
    predictor = Predictor.load(run_dir, zoo)
    modality = predictor.backbone.modality
    from tlzoo.engine.data import is_image_path

    if modality == "multimodal":  # a fused run: each input is a record, given as a JSON object
        from tlzoo.commands.batch_predict import parse_records

        items = parse_records(items, getattr(predictor.backbone, "fields", ()))
    elif modality == "vision":
        missing = [i for i in items if not os.path.isfile(i)]
        if missing and not is_image_path(missing[0]):
            hint = "; to classify the records of a table use --data" if is_table_path(missing[0]) else ""
            raise TlzooError(
                f"This run classifies images, and '{missing[0][:60]}' is not an image file; "
                f"pass paths of image files (or use a run trained on text){hint}."
            )
        if missing:
            raise TlzooError(f"Image '{missing[0]}' does not exist; pass paths of image files.")
    else:
        images = [i for i in items if is_image_path(i) and os.path.isfile(i)]
        if images:
            raise TlzooError(
                f"This run classifies {modality}, and '{images[0]}' is an image "
                "file; pass the texts themselves (or --file with one text per line), or use a run "
                "trained with a vision plugin."
            )
        tables = [i for i in inputs if is_table_path(i) and os.path.isfile(i)]
        if tables:
            raise TlzooError(
                f"'{tables[0]}' is a file, and this would classify its name as a text; classify its "
                f"records with `tl predict {run_dir} --data {tables[0]} --out predictions.csv` "
                "(add --text-column if its text column is not 'text')."
            )
    from_run = False
    if data is not None:  # the run's own column names and encoding, unless the user names them
        from tlzoo.commands.batch_predict import run_data_defaults

        trained = run_data_defaults(run_dir)
        from_run = text_column is None and label_column is None
        text_column = text_column or trained.get("text_column")
        label_column = label_column or (trained.get("label_column") if from_run else None)
        encoding = encoding or trained.get("encoding")
    if data is None and out is None:
        for row in predictor.predict(items[:limit] if limit else items):
            if as_json:
                click.echo(json.dumps(row))
            else:
                click.echo(printable(f"{row['label']}\t{row['probability']:.3f}\t{row['input']}"))
        return
    _predict_to_file(
        predictor,
        zoo,
        data,
        items,
        modality,
        text_column,
        label_column,
        limit,
        out,
        as_json,
        encoding or "utf-8",
        batch_size,
        device,
        from_run,
    )


def _predict_to_file(
    predictor: Any,
    zoo: Any,
    data: str | None,
    items: list[str],
    modality: str,
    text_column: str | None,
    label_column: str | None,
    limit: int,
    out: str | None,
    as_json: bool,
    encoding: str,
    batch_size: int,
    device: str,
    from_run: bool = False,
) -> None:
    """`tl predict --data` / `--out`: stream the records through the model, one CSV row (or JSON line) each."""
    from tlzoo.commands.batch_predict import read_records, records_from_inputs, write_predictions
    from tlzoo.engine.runner import pick_device

    dev = pick_device(device)
    if data is not None:
        records = read_records(
            data,
            modality,
            zoo,
            text_column=text_column or "text",
            label_column=label_column,
            encoding=encoding,
            limit=limit,
            from_run=from_run,
            fields=tuple(getattr(predictor.backbone, "fields", ())),
        )
    else:
        records = records_from_inputs(items[:limit] if limit else items)
    for note in records.notes:
        _log(f"warning: {note}")
    if not len(records):
        raise TlzooError(f"'{data}' holds no records to classify.")
    if data is not None:
        labels = "with labels" if records.labels is not None else "without labels"
        _log(f"{len(records)} records {labels} from {records.source}: {data}")
    target = Path(out) if out and out != "-" else None
    if target is not None:
        # a temporary file of this process's own beside --out, renamed over it at the end: two runs writing
        # one --out each replace it whole, and an interrupted run leaves the old file as it was
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        tmp = Path(name)
        try:
            with open(fd, "w", newline="", encoding="utf-8") as f:
                summary = write_predictions(predictor, records, f, as_json=as_json, batch_size=batch_size, device=dev)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600: give it a new file's usual mode
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    else:
        stdout: Any = _Printable(sys.stdout) if sys.stdout.isatty() else sys.stdout
        summary = write_predictions(predictor, records, stdout, as_json=as_json, batch_size=batch_size, device=dev)
    where = f" to {target}" if target is not None else ""
    score = (
        f"; accuracy {summary.accuracy:.4f} on {summary.labelled} labelled records"
        if summary.accuracy is not None
        else ""
    )
    _log(f"wrote {summary.n} predictions{where}{score}")
    if summary.unknown:
        names = ", ".join(f"'{k}'" for k in list(summary.unknown)[:5])
        _log(
            f"warning: {sum(summary.unknown.values())} records have labels this run does not know ({names}); "
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


def _read_lines(path: str, encoding: str) -> list[str]:
    """The non-blank lines of ``tl predict --file``; a wrong encoding is one line saying what to pass."""
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


# ---------------------------------------------------------------------------- export
@cli.command(name="export")
@click.argument("run_dir", type=click.Path())
@click.option("--to", "to", required=True, help="The new folder to write (it must not exist, or be empty).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["folder", "onnx", "torchscript"]),
    default="folder",
    show_default=True,
    help="folder: what `tl predict` and a plain-Python loader read on another machine; "
    "onnx / torchscript: backbone + head as one graph from tensors to probabilities.",
)
@offline_option
@friendly
def export_cmd(run_dir: str, to: str, fmt: str) -> None:
    """Export a finished run to ship: a self-contained folder, ONNX or TorchScript.

    Every export is checked against the run's own model before it is kept: the folder
    must predict the same probabilities (1e-5), a graph must agree with PyTorch (1e-4).
    """
    from tlzoo.commands.export import export_run

    result = export_run(run_dir, to, fmt, log=_log)
    needs = f"; loading also needs {result.needs}" if result.needs else ""
    against = "the run's model" if fmt == "folder" else "PyTorch"
    _log(
        f"exported {fmt} ({len(result.files)} files{', self-contained' if result.self_contained else ''}{needs}); "
        f"checked against {against} on {result.checked_examples} examples: max abs diff {result.max_abs_diff:.2g}"
    )
    click.echo(str(result.folder))


# ---------------------------------------------------------------------------- report, errors
@cli.command()
@click.argument("run_dir", type=click.Path())
@friendly
def report(run_dir: str) -> None:
    """(Re)write report.html and the README.md model card of a finished run."""
    from tlzoo.commands.report import write_report

    page, card = write_report(run_dir)
    click.echo(f"{page}\n{card}")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--top", type=int, default=20, show_default=True, help="How many of the worst examples to list.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@friendly
def errors(run_dir: str, top: int, as_json: bool) -> None:
    """The most-confused class pairs and the test examples with the highest loss."""
    import shutil

    from tlzoo.commands.errors_analysis import analyse, format_analysis, to_json

    result = analyse(run_dir, top=top)
    width = max(60, min(160, shutil.get_terminal_size((100, 24)).columns))
    click.echo(to_json(result) if as_json else format_analysis(result, width))
