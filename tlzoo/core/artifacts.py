"""What a run leaves behind, and how ``tl predict`` reads it back.

The trained model is ``model.safetensors`` plus ``model.json`` (a description that
rebuilds the architecture: plugin, model, weights source, head, classes).  No pickle:
the files load with any torch/safetensors version.  Feature-extraction runs leave the
backbone untouched, so they save only the head and record the backbone's fingerprint,
which is checked when the model is loaded again.
"""
from __future__ import annotations

import csv
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT_VERSION = 1


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    tmp.replace(path)


def _jsonable(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def versions(plugin_version: str | None = None) -> dict[str, str]:
    from importlib import metadata

    def v(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    out = {"tlzoo": v("tlzoo"), "torch": torch.__version__, "python": platform.python_version()}
    if plugin_version:
        out["plugin"] = plugin_version
    return out


def save_model(folder: Path, tensors: dict[str, torch.Tensor], description: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(clean, str(folder / "model.safetensors"), metadata={"format": "tlzoo", "version": str(FORMAT_VERSION)})
    write_json(folder / "model.json", {"format_version": FORMAT_VERSION, **description})


def load_model_files(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    from .errors import TlzooError

    desc_path, weights_path = folder / "model.json", folder / "model.safetensors"
    if not folder.is_dir():
        raise TlzooError(f"Run directory '{folder}' does not exist; pass the --out folder of a finished `tl run`.")
    if not desc_path.is_file() or not weights_path.is_file():
        raise TlzooError(f"'{folder}' holds no trained model (model.json + model.safetensors); "
                         "was the run interrupted? Run `tl run` again.")
    desc = json.loads(desc_path.read_text())
    if desc.get("format_version", 0) > FORMAT_VERSION:
        raise TlzooError(f"'{folder}' was written by a newer tlzoo (format {desc['format_version']}); upgrade tlzoo.")
    return desc, load_file(str(weights_path))


def write_predictions(path: Path, ids: list[str], true: list[str] | None, pred: list[str],
                      proba: np.ndarray, classes: list[str]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id"] + (["true"] if true is not None else []) + ["predicted"] + [f"p_{c}" for c in classes])
        for i, ident in enumerate(ids):
            row = [ident] + ([true[i]] if true is not None else []) + [pred[i]]
            w.writerow(row + [f"{p:.5f}" for p in proba[i]])
