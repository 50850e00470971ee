"""A few training examples and the backbone's features for them, stored with every run and export,
so that loading the model again can tell whether the backbone still computes what it computed then.

Features can change between processes without any file changing: a backbone that uses Python's
``hash()`` of a string (salted per process), random numbers drawn at build time and never saved, or
a library whose new version computes differently.  The run then predicts with features its head never
saw, at chance, without a word.  :func:`write_sample` (step ``save_model``) keeps ``SAMPLE_SIZE``
training examples in ``RUN/feature_sample/``: ``sample.json`` (the inputs: texts inline, image files
copied, in-memory images as PNG, arrays and the features in ``sample.safetensors``; nothing pickled)
and the library versions.  The stored features are computed from the inputs as they are read back
from those files, so both sides see the very same input.  :func:`check_sample` (``Predictor.load``)
recomputes them in one batch and raises :class:`FeatureDrift`, one line naming the largest difference
and the likely causes, when an example's features moved by more than ``REL_TOL`` of their size
(float noise across threads or BLAS is about 1e-6; CPU against GPU, TF32 included, about 1e-3).  A run
saved before the sample existed has no folder and loads as before.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import Backbone

FOLDER = "feature_sample"
SAMPLE_SIZE = 8
REL_TOL = 1e-2  # per example: |now - then| <= REL_TOL * max(|now|, |then|) + ABS_TOL (L2 norms)
ABS_TOL = 1e-5
MAX_IMAGE_BYTES = 1 << 20  # an image file larger than this is not copied (another example is taken)
LIBRARIES = ("torch", "numpy", "transformers", "timm", "tokenizers", "gensim", "scikit-learn", "pillow")


class FeatureDrift(TlzooError):
    """The backbone's features for the stored sample differ from the ones stored with the run."""


class _Unstorable(Exception):
    """An example of a kind the sample cannot hold (it is skipped)."""


# --------------------------------------------------------------------------- writing
def write_sample(folder: Path, backbone: Backbone, examples: Sequence[Any], cached: Any = None) -> int:
    """Store up to ``SAMPLE_SIZE`` of ``examples`` and their features in ``folder/feature_sample``: the rows of
    ``cached`` (the features the head learnt from, one row per example) when given, else computed where the
    backbone is; the number stored (0: nothing written, e.g. no example could be stored)."""
    from tlzoo.api.backbone import UnbuiltBackbone

    usable = cached is not None and len(cached) == len(examples)
    if not usable and isinstance(backbone, UnbuiltBackbone):  # features from the cache, not kept: nothing to store
        return 0
    target = folder / FOLDER
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    arrays: dict[str, np.ndarray] = {}
    rows: list[Any] = []
    kept: list[int] = []
    for i, example in enumerate(examples[: SAMPLE_SIZE * 8]):
        try:
            rows.append(_encode(example, target, f"x{i}", arrays))
        except _Unstorable:
            continue
        kept.append(i)
        if len(rows) == SAMPLE_SIZE:
            break
    if not rows:
        shutil.rmtree(target)
        return 0
    if usable:
        feats = np.asarray(cached[kept], dtype=np.float32)
    else:
        inputs = [_decode(row, target, arrays) for row in rows]  # what a later load will feed the backbone
        try:
            feats = compute_features(backbone, inputs)
        except Exception:  # noqa: BLE001 - e.g. a fused backbone whose input's features came from the cache:
            shutil.rmtree(target)  # the model is saved; it goes without a sample, as runs of tlzoo 0.2 did
            return 0
    from safetensors.numpy import save_file

    tensors = {"features": feats, **{f"input.{k}": v for k, v in arrays.items()}}
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(target / "sample.safetensors"))
    mask = os.umask(0)
    os.umask(mask)
    (target / "sample.safetensors").chmod(0o666 & ~mask)  # safetensors makes it 0600: a new file's usual mode
    text = json.dumps({"format": 1, "inputs": rows, "versions": library_versions()}, indent=1)
    (target / "sample.json").write_text(text + "\n", encoding="utf-8")
    return len(rows)


def _encode(example: Any, folder: Path, name: str, arrays: dict[str, np.ndarray]) -> Any:
    """One example as JSON (with files beside it), or ``_Unstorable``."""
    if isinstance(example, str):
        from tlzoo.engine.data import is_image_path

        if is_image_path(example) and os.path.isfile(example.strip()):
            source = Path(example.strip())
            if source.stat().st_size > MAX_IMAGE_BYTES:
                raise _Unstorable
            copy = f"{name}{source.suffix.lower()}"
            shutil.copyfile(source, folder / copy)
            return {"image_file": copy}
        return {"text": example}
    if example is None or isinstance(example, bool | int | float):
        return {"value": example}
    if isinstance(example, np.ndarray):
        if example.dtype.kind not in "biuf":
            raise _Unstorable
        arrays[name] = example
        return {"array": name}
    if type(example).__module__.startswith("PIL."):
        try:
            example.save(folder / f"{name}.png", format="PNG")
        except (OSError, ValueError, KeyError):  # a mode PNG cannot hold (CMYK...): take another example
            raise _Unstorable from None
        return {"png": f"{name}.png"}
    if isinstance(example, dict) and all(isinstance(k, str) for k in example):
        return {"record": {k: _encode(v, folder, f"{name}-{j}", arrays) for j, (k, v) in enumerate(example.items())}}
    raise _Unstorable


def _decode(row: Any, folder: Path, arrays: dict[str, np.ndarray]) -> Any:
    """The example ``row`` describes; KeyError/ValueError/TypeError/OSError when it is damaged."""
    if not isinstance(row, dict) or len(row) != 1:
        raise ValueError("an input is not a one-key object")
    ((kind, value),) = row.items()
    if kind in ("text", "value"):
        if not (value is None or isinstance(value, str | bool | int | float)):
            raise TypeError(f"a {kind} is a {type(value).__name__}")
        return value
    if kind == "array":
        return arrays[str(value)]
    if kind == "record":
        return {str(k): _decode(v, folder, arrays) for k, v in dict(value).items()}
    path = _inside(folder, str(value))
    if kind == "image_file":
        return str(path)
    if kind == "png":
        from PIL import Image

        with Image.open(path) as img:
            img.load()
            return img.copy()
    raise ValueError(f"unknown input kind '{kind}'")


def _inside(folder: Path, name: str) -> Path:
    path = folder / name
    if path.is_symlink() or not path.resolve().is_relative_to(folder.resolve()) or not path.is_file():
        raise ValueError(f"'{name}' is not a file inside {FOLDER}/")
    return path


def compute_features(backbone: Backbone, inputs: Sequence[Any], device: torch.device | None = None) -> np.ndarray:
    """The backbone's features for ``inputs`` in one batch, as ``tl predict`` computes them (eval mode)."""
    from tlzoo.engine.loaders import example_loader
    from tlzoo.engine.training import to_device

    if device is None:  # where the backbone is (a feature-extraction run may have left it on the CPU)
        first = next(iter([*backbone.parameters(), *backbone.buffers()]), None)
        device = first.device if first is not None else torch.device("cpu")
    was_training = backbone.training
    backbone.eval()
    try:
        loader = example_loader(list(inputs), backbone, train=False, batch_size=max(1, len(inputs)))
        with torch.inference_mode():
            parts = [backbone(to_device(batch, device)).float().cpu() for batch in loader]
    finally:
        backbone.train(was_training)
    return torch.cat(parts).numpy().astype(np.float32)


def library_versions() -> dict[str, str]:
    """The installed versions of the libraries that most often change features (those installed)."""
    from importlib import metadata

    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def copy_sample(run: Path, dest: Path) -> None:
    """The run's feature sample into an export folder ``dest`` (nothing for a run saved without one)."""
    source = run / FOLDER
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, dest / FOLDER, symlinks=True)


# --------------------------------------------------------------------------- checking
def check_sample(folder: Path, backbone: Backbone, damaged: Callable[[Path, str], Exception]) -> float | None:
    """Recompute the stored sample's features with ``backbone`` (as loaded for prediction) and raise
    :class:`FeatureDrift` when they moved; the largest relative difference, or None without a sample.
    ``damaged(path, detail)`` makes the error for a sample that cannot be read."""
    target = folder / FOLDER
    if not target.exists() and not target.is_symlink():
        return None  # saved before runs kept a sample, or by hand: nothing to compare
    stored, inputs, versions = _read_sample(target, damaged)
    now = compute_features(backbone, inputs, torch.device("cpu"))
    if now.shape != stored.shape:
        raise FeatureDrift(
            f"The backbone now gives features of shape {now.shape[1:]} for the examples stored with the run in "
            f"'{target}', which were of shape {stored.shape[1:]}: {_causes(versions)}."
        )
    a, b = stored.astype(np.float64), now.astype(np.float64)
    same_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(same_nan, 0.0, np.nan_to_num(np.abs(a - b), nan=np.inf))
    size = np.maximum(np.linalg.norm(np.nan_to_num(a), axis=1), np.linalg.norm(np.nan_to_num(b), axis=1))
    rel = np.linalg.norm(diff, axis=1) / np.maximum(size, 1e-12)
    bad = np.linalg.norm(diff, axis=1) > REL_TOL * size + ABS_TOL
    if bad.any():
        row, col = np.unravel_index(int(np.argmax(diff)), diff.shape)
        raise FeatureDrift(
            f"The backbone's features differ from the ones stored with the run: largest difference "
            f"{diff[row, col]:.3g} (feature {col} of {_shown(inputs[row])}; {int(bad.sum())} of {len(bad)} stored "
            f"examples moved by up to {float(rel.max()):.0%} of their size, tolerance {REL_TOL:.0%}), so its "
            f"predictions would not be the run's; {_causes(versions)}."
        )
    return float(rel.max()) if len(rel) else 0.0


def _read_sample(
    target: Path, damaged: Callable[[Path, str], Exception]
) -> tuple[np.ndarray, list[Any], dict[str, Any]]:
    from safetensors.numpy import load_file

    desc, tensors = target / "sample.json", target / "sample.safetensors"
    try:
        if target.is_symlink() or desc.is_symlink() or tensors.is_symlink():
            raise ValueError("a link; a run folder holds its own files")
        meta = json.loads(desc.read_text(encoding="utf-8"))
        loaded = load_file(str(tensors))
        arrays = {k[len("input.") :]: v for k, v in loaded.items() if k.startswith("input.")}
        inputs = [_decode(row, target, arrays) for row in meta["inputs"]]
        stored = loaded["features"]
        if stored.ndim != 2 or len(stored) != len(inputs) or not inputs:
            raise ValueError(f"{len(inputs)} inputs and features of shape {stored.shape}")
        versions = meta.get("versions") if isinstance(meta.get("versions"), dict) else {}
    except Exception as exc:  # noqa: BLE001 - JSON, safetensors, PIL and shape errors alike: the folder is damaged
        text = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else "no details"
        raise damaged(target, f"{type(exc).__name__}: {text}") from None
    return stored, inputs, versions


def _shown(example: Any) -> str:
    if isinstance(example, str):
        from tlzoo.infra.safe_text import printable

        short = printable(example.replace("\n", " "))
        return f"training example '{short[:40]}{'…' if len(short) > 40 else ''}'"
    return f"a stored training example ({type(example).__name__})"


def _causes(versions: dict[str, Any]) -> str:
    now = library_versions()
    changed = [f"{k} {v} -> {now.get(k, 'not installed')}" for k, v in versions.items() if now.get(k) != v]
    library = f"a library that changed since the run ({', '.join(changed)})" if changed else "a changed library version"
    return (
        "likely causes: Python's hash() in the backbone (salted per process), random numbers it does not save "
        f"(an unseeded projection), or {library}; fix the backbone and rerun `tl run`, or pass "
        "--no-feature-check (check_features=False) to predict anyway"
    )
