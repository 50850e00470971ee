"""``tl predict``, ``tl export``, ``tl report`` and ``tl errors``: the commands that use a finished run."""

from __future__ import annotations

import json

import click

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
@click.option(
    "--no-feature-check",
    "no_feature_check",
    is_flag=True,
    help="Predict even when the backbone's features for the training examples stored with the run differ "
    "from the stored ones (refused by default: Python's hash(), unseeded randomness, another library version).",
)
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
    no_feature_check: bool,
) -> None:
    """Classify new texts or image files with a trained run (or a folder written by `tl export`).

    With --data, the text column, label column and encoding default to the ones the run was trained with.

    \b
      tl predict RUN "a new sentence"              a few inputs, one line each
      tl predict RUN --file texts.txt              one text (or image path) per line
      tl predict RUN --data new.csv --text-column review --out predictions.csv
      tl predict RUN --data photos/ --out predictions.csv
    """
    from tlzoo.facade import Engine

    rows = Engine(log=_log).predict(
        run_dir,
        list(inputs),
        data=data,
        file=input_file,
        text_column=text_column,
        label_column=label_column,
        encoding=encoding,
        limit=limit,
        batch_size=batch_size,
        device=device,
        out=out if out is not None or data is None else "-",  # --data without --out: the CSV to stdout
        as_json=as_json,
        check_features=not no_feature_check,
    )
    for row in rows:  # inputs without --out: one line each
        if as_json:
            click.echo(json.dumps({k: row[k] for k in ("input", "label", "probability", "probabilities")}))
        else:
            click.echo(printable(f"{row['label']}\t{row['probability']:.3f}\t{row['input']}"))


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
