"""What a run leaves behind, and how ``tl predict`` reads it back.

The trained model is ``model.safetensors`` plus ``model.json`` (a description that
rebuilds the architecture: plugin, model, weights source, head, classes).  No pickle:
the files load with any torch/safetensors version.  Feature-extraction runs leave the
backbone untouched, so they save only the head and record the backbone's fingerprint,
which is checked when the model is loaded again.

``load_model_files`` trusts nothing it reads: a run directory may come from someone
else or be damaged.  Invalid JSON (nested too deep included), missing keys, wrong types or
unreadable tensors give one line ("'RUN/model.json' is damaged (...); rerun `tl run`");
``model.json`` or ``model.safetensors`` that is a link is refused; which paths a description
may name is decided in ``predict.py``.  A folder written by ``tl export`` is checked against
the sha256 digests of its ``export.json`` first (``verify_export``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import re
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
    path = folder / "model.safetensors"
    try:
        save_file(clean, str(path), metadata={"format": "tlzoo", "version": str(FORMAT_VERSION)})
    except Exception as exc:  # safetensors' Rust IO errors are no OSError: a full disk would be "unexpected"
        code = re.search(r"os error (\d+)", str(exc))
        if isinstance(exc, OSError) or code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None
    path.chmod(0o666 & ~_umask())  # safetensors creates its files 0600: give it a new file's usual mode
    write_json(folder / "model.json", {"format_version": FORMAT_VERSION, **description})


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_export(folder: Path) -> None:
    """A folder ``tl export`` wrote: every file its ``export.json`` lists is there with that size and sha256,
    or one line naming the file (nothing to do for a run folder, which has no export.json)."""
    from tlzoo.api.errors import TlzooError

    manifest = folder / "export.json"
    if not manifest.is_file():
        return
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        listed = [(str(name), int(entry["bytes"]), str(entry["sha256"])) for name, entry in files.items()]
    except (ValueError, UnicodeDecodeError, OSError, RecursionError, KeyError, TypeError, AttributeError) as exc:
        raise damaged(manifest, f"{type(exc).__name__}: {first_line(exc)}") from None
    for name, size, digest in listed:
        path = folder / name
        if ".." in Path(name).parts or Path(name).is_absolute() or not path.resolve().is_relative_to(folder.resolve()):
            raise damaged(manifest, f"it lists '{name}', which is outside the folder")
        if not path.is_file():
            raise TlzooError(
                f"'{path}' is missing from the exported folder (export.json lists it); copy the export again "
                "whole, or export the run again with `tl export`."
            )
        if path.stat().st_size != size or sha256(path) != digest:
            raise TlzooError(
                f"'{path}' was changed after `tl export` (its sha256 differs from export.json's); restore it "
                "from the original export, or export the run again with `tl export`."
            )


def load_model_files(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    from tlzoo.api.errors import TlzooError

    desc_path, weights_path = folder / "model.json", folder / "model.safetensors"
    if not folder.is_dir():
        raise TlzooError(f"Run directory '{folder}' does not exist; pass the --out folder of a finished `tl run`.")
    if not desc_path.is_file() or not weights_path.is_file():
        raise TlzooError(
            f"'{folder}' holds no trained model (model.json + model.safetensors); "
            "was the run interrupted? Run `tl run` again."
        )
    for path in (desc_path, weights_path):
        if path.is_symlink():  # a run folder holds its own files: a link may lead anywhere
            raise TlzooError(
                f"'{path}' is a link (to '{path.resolve()}'); tlzoo reads only files inside a run directory: "
                "copy the file itself into it, or rerun `tl run`."
            )
    verify_export(folder)
    try:
        desc = json.loads(desc_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, OSError, RecursionError) as exc:  # RecursionError: nested too deep
        raise damaged(desc_path, f"{type(exc).__name__}: {first_line(exc)}") from None
    check_description(desc, desc_path)
    if desc.get("format_version", 0) > FORMAT_VERSION:
        raise TlzooError(f"'{folder}' was written by a newer tlzoo (format {desc['format_version']}); upgrade tlzoo.")
    try:
        tensors = load_file(str(weights_path))
    except Exception as exc:  # SafetensorError, OSError...: truncated, garbage, a pickle renamed
        raise damaged(weights_path, f"{type(exc).__name__}: {first_line(exc)}") from None
    return desc, tensors


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else "no details")[:160]


def damaged(path: Path, detail: str) -> Exception:
    from tlzoo.api.errors import TlzooError

    return TlzooError(f"'{path}' is damaged ({detail}); rerun `tl run`.")


# (key path, accepted types, required): what Predictor.load reads from model.json
_FIELDS: tuple[tuple[str, tuple[type, ...], bool], ...] = (
    ("format_version", (int,), False),
    ("backbone", (dict,), True),
    ("backbone.plugin", (str,), True),
    ("backbone.num_features", (int,), True),
    ("backbone.weights_saved", (bool,), False),
    ("backbone.fingerprint", (str, type(None)), False),
    ("backbone.weights_copy", (str, type(None)), False),
    ("backbone.request", (dict,), True),
    ("backbone.request.model", (str,), True),
    ("backbone.request.weights", (str, type(None)), False),
    ("backbone.request.pretrained", (bool,), False),
    ("backbone.request.options", (dict,), False),
    ("backbone.request.pooling", (str,), False),
    ("backbone.request.max_length", (int,), False),
    ("backbone.request.image_size", (int,), False),
    ("backbone.request.train_backbone", (bool,), False),
    ("backbone.fitted", (bool,), False),
    ("head", (dict,), True),
    ("head.name", (str,), True),
    ("head.params", (dict,), True),
    ("head.kind", (str,), True),
    ("classes", (list,), True),
)


def check_description(desc: Any, path: Path) -> None:
    """Every field ``tl predict`` uses is present with the right type, or a one-line 'damaged' error."""
    if not isinstance(desc, dict):
        raise damaged(path, "not a JSON object")
    for key, types, required in _FIELDS:
        node: Any = desc
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]  # parents come first in _FIELDS and were checked to be dicts
        if parts[-1] not in node:
            if required:
                raise damaged(path, f"no '{key}'")
            continue
        value = node[parts[-1]]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise damaged(path, f"'{key}' is a {type(value).__name__}")
    if desc["backbone"]["num_features"] < 1:
        raise damaged(path, "'backbone.num_features' is not positive")
    if desc["head"]["kind"] not in ("torch", "linear", "fitted"):
        raise damaged(path, f"unknown head kind '{desc['head']['kind']}'")
    classes = desc["classes"]
    if not classes or not all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in classes):
        raise damaged(path, "'classes' is not a list of class names")


def write_predictions(
    path: Path,
    ids: list[str],
    true: list[str] | None,
    pred: list[str],
    proba: np.ndarray,
    classes: list[str],
    inputs: list[str] | None = None,
) -> None:
    """One row per example: id, true, predicted, p_<class>..., then for error analysis the probability
    of the predicted class, the loss (-log p of the true class, when labels are known) and the input.
    Cells that hold data are written so that no spreadsheet runs them (``infra.safe_text``)."""
    from tlzoo.infra.safe_text import spreadsheet_cell as cell

    index = {c: k for k, c in enumerate(classes)}
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            ["id"]
            + (["true"] if true is not None else [])
            + ["predicted"]
            + [f"p_{c}" for c in classes]
            + ["probability"]
            + (["loss"] if true is not None else [])
            + (["input"] if inputs is not None else [])
        )
        for i, ident in enumerate(ids):
            row = [cell(ident)] + ([cell(true[i])] if true is not None else []) + [cell(pred[i])]
            extra = [f"{proba[i][index[pred[i]]]:.5f}"]
            if true is not None:
                extra.append(f"{-np.log(max(float(proba[i][index[true[i]]]), 1e-12)):.5f}")
            shown = [cell(inputs[i])] if inputs is not None else []
            w.writerow(row + [f"{p:.5f}" for p in proba[i]] + extra + shown)
