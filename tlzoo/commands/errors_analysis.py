"""Which test examples a run gets wrong: the most-confused class pairs and the highest-loss examples.

fastai users look at ``most_confused`` and ``plot_top_losses`` first; this is the same
reading of a run directory's ``predictions.csv``, with no torch import so ``tl errors``
answers at once.  Runs written before predictions.csv carried ``loss`` and ``input``
still work: the loss is recomputed from the ``p_<class>`` columns and the id stands in
for the input.  The cells a spreadsheet would run are read back without their leading ``'``,
and the listing goes through ``infra.safe_text.printable``: a label or a text cannot send
escape sequences to the terminal.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tlzoo.api.errors import TlzooError
from tlzoo.engine.data import is_image_path
from tlzoo.infra.run_folder import check_run_folder
from tlzoo.infra.safe_text import printable, spreadsheet_value

MIN_P = 1e-12  # the probability floor of the loss, as in the runner's fitted-head losses


@dataclass
class Confusion:
    """``count`` test examples of class ``true`` predicted as ``predicted``."""

    true: str
    predicted: str
    count: int
    share: float  # of the true class's test examples


@dataclass
class Example:
    """One test prediction, as predictions.csv holds it."""

    id: str
    input: str
    true: str
    predicted: str
    probability: float  # of the predicted class
    p_true: float
    loss: float  # -log p_true


def read_predictions(run_dir: str | Path) -> tuple[list[str], list[Example]]:
    """The classes (from the ``p_<class>`` columns) and every row of ``predictions.csv``."""
    check_run_folder(run_dir, "errors")  # missing, a --seeds folder, an export: say what to pass instead
    path = Path(run_dir) / "predictions.csv"
    if not path.is_file():
        raise TlzooError(f"'{run_dir}' has no predictions.csv; pass the --out folder of a finished `tl run`.")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = [spreadsheet_value(h) for h in reader.fieldnames or []]
            reader.fieldnames = header
            rows = [{k: spreadsheet_value(v) if isinstance(v, str) else v for k, v in r.items()} for r in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise TlzooError(f"{path} cannot be read ({exc}); rerun `tl run` to write it again.") from None
    if "true" not in header:
        raise TlzooError(
            f"{path} has no 'true' column, so nothing says which predictions are wrong; it was not written by `tl run`."
        )
    classes = [h[2:] for h in header if h.startswith("p_")]
    out = []
    for r in rows:
        if not r.get("true") or not r.get("predicted"):
            continue  # a blank or cut-off line
        p_true = _float(r.get(f"p_{r['true']}"), 0.0)
        p_pred = _float(r.get("probability"), _float(r.get(f"p_{r['predicted']}"), 0.0))
        loss = _float(r.get("loss"), -math.log(max(p_true, MIN_P)))
        out.append(
            Example(
                id=r["id"],
                input=r.get("input") or r["id"],
                true=r["true"],
                predicted=r["predicted"],
                probability=p_pred,
                p_true=p_true,
                loss=loss,
            )
        )
    return classes, out


def input_columns(run_dir: str | Path) -> list[tuple[str, list[str]]]:
    """A fused run's inputs and their columns, from model.json ([] for a run of one input)."""
    try:
        desc = json.loads((Path(run_dir) / "model.json").read_text(encoding="utf-8"))
        inputs = desc["backbone"]["preprocessing"]["inputs"] if desc.get("modality") == "multimodal" else []
        return [(str(i["input"]), [str(c) for c in i["columns"]]) for i in inputs]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def run_records(run_dir: str | Path, ids: list[str]) -> dict[str, dict[str, Any]]:
    """A fused run's records with these ids, read again from its data (config.toml's data path) through the
    one data path; {} where the data cannot be read now (moved, removed)."""
    inputs = input_columns(run_dir)
    if not inputs or not ids:
        return {}
    try:
        from tlzoo.api.interfaces import DataOptions
        from tlzoo.engine.config import RunConfig
        from tlzoo.engine.data import read_dataset
        from tlzoo.engine.zoo import Zoo

        cfg = RunConfig.from_toml(Path(run_dir) / "config.toml")
        fields = tuple(c for _, cols in inputs for c in cols)
        options = DataOptions(
            cfg.data.text_column, cfg.data.label_column, cfg.data.encoding, require_labels=False, fields=fields
        )
        ds, _ = read_dataset(cfg.data.path, "multimodal", Zoo(), options)
    except Exception:  # noqa: BLE001 - the listing still shows each example's id
        return {}
    wanted = set(ids)
    return {i: ex for i, ex in zip(ds.ids, ds.examples) if i in wanted and isinstance(ex, dict)}


def record_fields(record: dict[str, Any], inputs: list[tuple[str, list[str]]]) -> list[dict[str, str]]:
    """A record's fields to show: column, kind (image: a path; text; tabular) and value ("" where empty)."""
    fields = []
    for what, cols in inputs:
        for c in cols:
            value = record.get(c)
            text = "" if value is None else str(value)
            kind = "tabular" if what == "tabular" else "image" if is_image_path(text) else "text"
            fields.append({"column": c, "kind": kind, "value": text})
    return fields


def _float(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def confusion_from_examples(examples: list[Example], classes: list[str]) -> list[list[int]]:
    index = {c: i for i, c in enumerate(classes)}
    cm = [[0] * len(classes) for _ in classes]
    for e in examples:
        if e.true in index and e.predicted in index:
            cm[index[e.true]][index[e.predicted]] += 1
    return cm


def most_confused(cm: list[list[int]], classes: list[str], top: int = 5) -> list[Confusion]:
    """The ``top`` largest off-diagonal cells, largest first (ties: in class order)."""
    pairs = []
    for i, row in enumerate(cm):
        support = sum(row)
        for j, count in enumerate(row):
            if i != j and count > 0:
                pairs.append(Confusion(classes[i], classes[j], int(count), round(count / support, 4)))
    pairs.sort(key=lambda p: -p.count)  # stable: ties keep class order
    return pairs[:top]


def top_losses(examples: list[Example], top: int = 20) -> list[Example]:
    """The ``top`` examples with the highest loss (the surest mistakes first)."""
    return sorted(examples, key=lambda e: -e.loss)[:top]


def analyse(run_dir: str | Path, top: int = 20, pairs: int = 5) -> dict[str, Any]:
    """What ``tl errors`` prints: counts, the most-confused pairs and the worst examples."""
    if top < 1:
        raise TlzooError(f"--top must be at least 1, got {top}.")
    classes, examples = read_predictions(run_dir)
    cm = confusion_from_examples(examples, classes)
    wrong = sum(e.true != e.predicted for e in examples)
    worst = [asdict(e) for e in top_losses(examples, top)]
    inputs = input_columns(run_dir)
    if inputs:  # a fused run: predictions.csv names each record by its id; its fields come from the data
        records = run_records(run_dir, [e["id"] for e in worst])
        for e in worst:
            e["fields"] = record_fields(records[e["id"]], inputs) if e["id"] in records else []
    return {
        "run_dir": str(run_dir),
        "n": len(examples),
        "wrong": wrong,
        "classes": classes,
        "most_confused": [asdict(p) for p in most_confused(cm, classes, pairs)],
        "top_losses": worst,
    }


def one_line(text: str, width: int) -> str:
    """``text`` on one line (newlines and tabs shown as spaces, escape sequences removed), cut to ``width``
    characters with an ellipsis."""
    flat = " ".join(printable(text).split())
    return flat if len(flat) <= width else flat[: max(0, width - 1)] + "…"


def format_analysis(result: dict[str, Any], width: int = 100) -> str:
    """The plain-text listing of ``tl errors`` (every value from the run made printable)."""
    result = _printable(result)
    lines = [f"{result['wrong']} of {result['n']} test examples wrong ({result['run_dir']})", ""]
    pairs = result["most_confused"]
    lines.append("most confused (true -> predicted: count, share of the true class):")
    if not pairs:
        lines.append("  none: every test example is right")
    w = max([len(p["true"]) for p in pairs] + [4])
    for p in pairs:
        lines.append(f"  {p['true']:<{w}} -> {p['predicted']}: {p['count']} ({p['share']:.0%})")
    lines.append("")
    worst = result["top_losses"]
    lines.append(f"top {len(worst)} losses (-log p of the true class):")
    tw = max([len(e["true"]) for e in worst] + [4])
    pw = max([len(e["predicted"]) for e in worst] + [9])
    lines.append(f"  {'loss':>6}  {'true':<{tw}}  {'predicted':<{pw}}  {'p':>5}  input")
    for e in worst:
        head = f"  {e['loss']:>6.3f}  {e['true']:<{tw}}  {e['predicted']:<{pw}}  {e['probability']:>5.3f}  "
        lines.append(head + one_line(e["input"], max(20, width - len(head))))
        lines += _field_lines(e.get("fields"), " " * len(head), width)
    return "\n".join(lines)


def _field_lines(fields: list[dict[str, str]] | None, indent: str, width: int) -> list[str]:
    """A fused record's fields under its line: the image's path, each text, the tabular columns on one line."""
    if fields is None:
        return []
    if not fields:
        return [indent + "(its record is not in the run's data now)"]
    room = max(20, width - len(indent))
    lines = [
        indent + one_line(f"{f['column']}: {f['value'] or '(empty)'}", room) for f in fields if f["kind"] != "tabular"
    ]
    tabular = [f"{f['column']}={f['value'] or '(empty)'}" for f in fields if f["kind"] == "tabular"]
    if tabular:
        lines.append(indent + one_line("tabular: " + ", ".join(tabular), room))
    return lines


def _printable(value: Any) -> Any:
    """``value`` with every string in it passed through :func:`printable` (dicts and lists walked)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {k: _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    return value


def to_json(result: dict[str, Any]) -> str:
    """``tl errors --json``: the data exact, non-ASCII text as it is; json escapes C0 controls (ESC included)
    itself, and DEL and the C1 controls (0x9b is CSI on some terminals) are escaped here too."""
    text = json.dumps(result, indent=2, ensure_ascii=False)
    return re.sub("[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text)
