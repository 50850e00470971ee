"""What a finished run left in its folder, read once for the report, the model card and ``tl export``.

metrics.json, model.json, config.toml, history.csv, predictions.csv and the PNGs, as one
:class:`RunFiles`; the 95 % intervals (recomputed for runs that predate them) and the most
confused pairs; the number formats the page and the card share.  No torch, no plugin.
"""

from __future__ import annotations

import csv
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.api.errors import TlzooError
from tlzoo.commands.errors_analysis import Confusion, Example, most_confused, read_predictions
from tlzoo.evaluation.uncertainty import bootstrap_ci
from tlzoo.infra.run_folder import check_run_folder

TOP_PAIRS = 5


@dataclass
class RunFiles:
    """Everything the report reads from one run directory."""

    folder: Path
    location: str  # the path shown in "how to load" (the final run folder)
    metrics: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    config_text: str = ""
    history: list[dict[str, str]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes

    @property
    def test(self) -> dict[str, Any]:
        return self.metrics.get("test", {})

    @property
    def run(self) -> dict[str, Any]:
        return self.metrics.get("run", {})

    @property
    def modality(self) -> str:
        return str(self.model.get("modality") or "")


def load_run(run_dir: str | Path, location: str | Path | None = None) -> RunFiles:
    folder = Path(run_dir)
    check_run_folder(folder, "report")  # missing, a --seeds folder, an export: say what to pass instead
    metrics_path = folder / "metrics.json"
    if not metrics_path.is_file():
        raise TlzooError(f"'{run_dir}' has no metrics.json; pass the --out folder of a finished `tl run`.")
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TlzooError(f"{metrics_path} is not valid JSON ({exc}); rerun `tl run` to write it again.") from None
    scored = "confusion_matrix" in metrics.get("test", {}) or "scored_by" in metrics.get("test", {})  # or --cv K
    if "test" not in metrics or not scored:
        raise TlzooError(f"{metrics_path} has no test results; rerun `tl run` to write them.")
    files = RunFiles(folder=folder, location=str(location or folder), metrics=metrics)
    if (folder / "model.json").is_file():
        try:
            files.model = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            files.model = {}  # the page still shows the results; the model sections say "?"
    if (folder / "config.toml").is_file():
        files.config_text = (folder / "config.toml").read_text(encoding="utf-8")
        try:
            files.config = tomllib.loads(files.config_text)
        except tomllib.TOMLDecodeError:
            files.config = {}
    if (folder / "history.csv").is_file():
        with (folder / "history.csv").open(newline="", encoding="utf-8") as f:
            files.history = list(csv.DictReader(f))
    if (folder / "predictions.csv").is_file():
        files.classes, files.examples = read_predictions(folder)
    if not files.classes:
        files.classes = list(files.test.get("classes", []))
    for name in ("history.png", "confusion.png", "augment.png"):
        if (folder / name).is_file():
            files.images[name] = (folder / name).read_bytes()
    return files


def intervals(files: RunFiles) -> dict[str, list[float]]:
    """The run's 95 % intervals, recomputed from the confusion matrix for runs that predate them."""
    t = files.test
    acc_ci, f1_ci = t.get("accuracy_ci"), t.get("macro_f1_ci")
    # a stored zero-width interval predates the Wilson fallback (see tlzoo.evaluation.uncertainty): recompute it
    if acc_ci and f1_ci and (acc_ci[0] != acc_ci[1] and f1_ci[0] != f1_ci[1] or "confusion_matrix" not in t):
        return {"accuracy": list(acc_ci), "macro_f1": list(f1_ci)}
    cm = np.asarray(t["confusion_matrix"], dtype=np.int64)
    if cm.size == 0:
        return {"accuracy": [0.0, 0.0], "macro_f1": [0.0, 0.0]}
    i, j = np.indices(cm.shape)
    y_true = np.repeat(i.ravel(), cm.ravel())
    y_pred = np.repeat(j.ravel(), cm.ravel())
    return bootstrap_ci(y_true, y_pred, cm.shape[0], seed=int(files.run.get("seed", 0) or 0))


def confused_pairs(files: RunFiles) -> list[Confusion]:
    if "confusion_matrix" not in files.test:  # no test split (--test-fraction 0 --cv K)
        return []
    return most_confused(files.test["confusion_matrix"], list(files.test.get("classes", files.classes)), TOP_PAIRS)


def _fmt(x: Any, digits: int = 4) -> str:
    try:
        return f"{float(x):.{digits}f}"
    except (TypeError, ValueError):
        return "–"


def _ci(ci: list[float]) -> str:
    return f"[{_fmt(ci[0], 3)}, {_fmt(ci[1], 3)}]"


def _data_name(files: RunFiles) -> str:
    return str(files.config.get("data", {}).get("path") or files.metrics.get("run", {}).get("data") or "the data")
