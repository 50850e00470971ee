"""Say what a folder is when a command wanted a run folder and got something else.

``tl predict``, ``tl errors`` and ``tl report`` read the ``--out`` folder of one finished
``tl run``.  People also hand them the folder of a ``tl run --seeds N`` (which holds one run
folder per seed under ``seed-<s>/`` and ``seeds.json``), an ONNX export, or a path that does
not exist; each gets a one-line error naming what to pass instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from tlzoo.api.errors import TlzooError


def check_run_folder(folder: str | Path, command: str) -> None:
    """Raise a :class:`TlzooError` when ``folder`` is not a run folder of some kind ``command`` can read.

    ``command`` is the ``tl`` sub-command, used in the suggested command line.  A plain run
    folder (or a ``tl export --format folder`` folder) passes; anything damaged inside it is
    left to the command's own checks.
    """
    path = Path(folder)
    if not path.exists():
        raise TlzooError(f"'{folder}' does not exist; pass the --out folder of a finished `tl run`.")
    if not path.is_dir():
        raise TlzooError(f"'{folder}' is a file; pass the --out folder of a finished `tl run`.")
    if (path / "model.json").is_file() or (path / "metrics.json").is_file():
        if command == "errors" and not (path / "predictions.csv").is_file():
            check_test_split(path, "`tl errors` has no test predictions to show")
        return
    seeds = sorted(
        (p for p in path.glob("seed-*") if p.is_dir() and p.name[5:].isdigit()), key=lambda p: int(p.name[5:])
    )
    if (path / "seeds.json").is_file() or seeds:
        example = seeds[0] if seeds else path / "seed-0"
        raise TlzooError(
            f"'{folder}' is the folder of a `tl run --seeds` run (seeds.json and one run folder per seed); "
            f"pass one of its runs, e.g. `tl {command} {example}`."
        )
    export = path / "export.json"
    if export.is_file():
        try:
            fmt = json.loads(export.read_text(encoding="utf-8")).get("format")
        except (ValueError, UnicodeDecodeError, OSError, AttributeError):
            fmt = None
        onnx = fmt == "onnx" or (path / "model.onnx").is_file()
        if onnx or fmt == "torchscript" or (path / "model.pt").is_file():
            if command == "predict" and not onnx:
                raise TlzooError(
                    f"'{folder}' is a TorchScript export (`tl export --format torchscript`); load its model.pt "
                    "with torch.jit.load as its README.md shows, or export the run with `--format folder` "
                    "for `tl predict`."
                )
            if command == "predict":
                try:  # a fused run's script reads records (a table), not one text
                    fused = json.loads((path / "graph.json").read_text(encoding="utf-8")).get("fused") is True
                except (ValueError, UnicodeDecodeError, OSError, AttributeError):
                    fused = False
                given = "records.csv" if fused else '"a text"'
                raise TlzooError(
                    f"'{folder}' is an ONNX export (`tl export --format onnx`); classify with its own script, "
                    f"`python {path / 'onnx_predict.py'} {given}`, or export the run with `--format folder` "
                    "for `tl predict`."
                )
            raise TlzooError(
                f"'{folder}' is an export (`tl export`), which holds no test results; "
                f"pass the run folder it was exported from to `tl {command}`."
            )


def check_test_split(folder: Path, what: str) -> None:
    """A run made with ``--test-fraction 0 --cv K`` has no test split: one line saying so and ``what`` follows."""
    try:
        scored_by = json.loads((folder / "metrics.json").read_text(encoding="utf-8")).get("test", {}).get("scored_by")
    except (ValueError, UnicodeDecodeError, OSError, AttributeError):
        return
    if scored_by:
        raise TlzooError(
            f"'{folder}' has no test split (--test-fraction 0: scored by {scored_by.split(' (')[0]}), so {what}; "
            "rerun with a --test-fraction above 0 for test predictions."
        )
