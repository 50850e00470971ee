"""The checks that build the backbone again: in this process (:func:`check_build_determinism`)
and in a fresh one with another hash seed (:func:`check_cross_process_determinism`), whose child
runs :func:`_child_main`."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from tlzoo.api.interfaces import Backbone, BackboneFactory, BackboneRequest

from ._rules import (
    default_zoo,
    rule,
    skip,
)
from .backbone_case import (
    _HASH_PROBE,
    SUBPROCESS_TIMEOUT_S,
    _case_for,
    _create,
    _describe_row,
    _engine_request,
    _features,
    _fittable,
    _import,
    _reproducible_features,
)


@rule
def check_build_determinism(backbone: Backbone, examples: Sequence[Any], rebuild: Any = None) -> None:
    """Two fresh builds from the same request, given the same weights, give the same features.

    Catches an unseeded random map: a projection drawn with ``np.random``, ``random`` or an
    unseeded torch generator at build time and kept outside the state dict, so neither
    the feature cache nor ``tl predict`` can reproduce it.  ``rebuild`` says how to build
    (see :class:`BackboneCase`); skipped when the backbone cannot be rebuilt.
    """
    case = _case_for(backbone, rebuild)
    # torch seeded differently, numpy's and Python's global random state moved on: only what the
    # state dict carries (loaded below) may make the two alike
    first = case.build("check_build_determinism", seed=case.seed)
    second = case.build("check_build_determinism", seed=case.seed + 1)
    state = first.state_dict()
    try:
        second.load_state_dict(state)
    except Exception as exc:
        raise AssertionError(f"a second build does not accept the first one's state dict: {exc}") from exc
    a, b = _reproducible_features(first, examples), _features(second, examples)
    assert a.shape == b.shape, f"two builds give features of shapes {tuple(a.shape)} and {tuple(b.shape)}"
    if not (torch.allclose(a, b, rtol=1e-5, atol=1e-5) or torch.equal(a.nan_to_num(), b.nan_to_num())):
        diff = (a - b).abs().nan_to_num(float("inf")).max().item()
        raise AssertionError(
            f"two fresh builds from the same request give different features with the same weights loaded "
            f"(max difference {diff:.3g}): the build draws from random state (np.random, random, torch) that "
            "is not in the state dict; derive it from a fixed seed or register it as a buffer"
        )


@rule
def check_cross_process_determinism(backbone: Backbone, examples: Sequence[Any], rebuild: Any = None) -> None:
    """Features recomputed in a fresh Python process equal these (atol 1e-5).

    The child process (``sys.executable``, a different ``PYTHONHASHSEED``, torch seeded
    differently, ``PYTHONPATH`` = this process's ``sys.path``) rebuilds the backbone
    through its factory by plugin name or through an importable ``module:attr``, loads
    this backbone's state dict and saved assets, as ``tl predict`` would, and computes
    the features of the same examples.  Catches features that use Python's ``hash()``
    or set order of strings (both vary per process) and random maps outside the state
    dict.  ``rebuild`` says how to build (see :class:`BackboneCase`); skipped with the
    reason when the backbone cannot be rebuilt in another process.
    """
    name = "check_cross_process_determinism"
    case = _case_for(backbone, rebuild)
    recipe = case.recipe(name)
    reference = _reproducible_features(backbone, examples).double().numpy()
    with tempfile.TemporaryDirectory(prefix="tlzoo-check-") as tmp:
        folder = Path(tmp)
        _write_examples(folder, examples, name)
        state = {k: v.detach().cpu().contiguous().clone() for k, v in backbone.state_dict().items()}
        if state:
            from safetensors.torch import save_file

            save_file(state, str(folder / "state.safetensors"))
        assets = folder / "assets"
        assets.mkdir()
        backbone.save_assets(str(assets))
        saved = str(assets) if any(assets.iterdir()) else None
        if recipe["request"] is not None and saved:
            request = _engine_request(BackboneRequest(**recipe["request"]), assets=saved)
            recipe = {**recipe, "request": json.loads(json.dumps(dataclasses.asdict(request), default=str))}
        for hash_seed in _other_hash_seeds():
            child = _run_child(folder, {**recipe, "assets": saved}, hash_seed, name)
            if child["hash"] != hash(_HASH_PROBE):
                break
        else:  # pragma: no cover - needs two seed collisions in a row
            skip(name, "could not start a process with a different string hash seed")
        theirs = np.load(folder / "features.npy", allow_pickle=False).astype(np.float64)
    assert theirs.shape == reference.shape, (
        f"features have shape {reference.shape} here and {theirs.shape} in a fresh process"
    )
    both_nan = np.isnan(theirs) & np.isnan(reference)
    close = np.isclose(theirs, reference, rtol=1e-5, atol=1e-5) | both_nan
    if not close.all():
        rows = np.flatnonzero(~close.all(axis=1))
        diff = np.nan_to_num(np.abs(theirs - reference), nan=np.inf).max()
        raise AssertionError(
            f"features differ between processes: max difference {diff:.3g}, on {len(rows)} of {len(reference)} "
            f"examples (first: {_describe_row(examples, int(rows[0]))}); does the backbone use Python's hash() "
            "(PYTHONHASHSEED differs per process), the iteration order of a set of strings, or random "
            "numbers outside the state dict? tl predict would disagree with the run"
        )


def _other_hash_seeds() -> list[str]:
    """Two PYTHONHASHSEED values differing from this process's."""
    mine = os.environ.get("PYTHONHASHSEED", "")
    base = int(mine) if mine.isdigit() else 0
    return [str((base + k) % 4294967296) for k in (1, 2)]


def _write_examples(folder: Path, examples: Sequence[Any], check: str) -> None:
    """Examples as files a child process reads back: JSON for texts, PNG for images, .npy for arrays;
    a record of named fields (a fused backbone's) as a JSON object of those, field by field."""
    rows = [_encode(ex, folder, f"example{i}", check) for i, ex in enumerate(examples)]
    (folder / "examples.json").write_text(json.dumps(rows))


def _encode(ex: Any, folder: Path, name: str, check: str) -> dict[str, Any]:
    if isinstance(ex, str):
        return {"text": ex}
    if ex is None:
        return {"none": True}
    if isinstance(ex, np.ndarray):
        np.save(folder / f"{name}.npy", ex, allow_pickle=False)
        return {"array": f"{name}.npy"}
    if type(ex).__module__.startswith("PIL."):
        ex.save(folder / f"{name}.png", format="PNG")
        return {"image": f"{name}.png"}
    if isinstance(ex, dict) and all(isinstance(k, str) for k in ex):
        return {"record": {k: _encode(v, folder, f"{name}-{j}", check) for j, (k, v) in enumerate(ex.items())}}
    skip(
        check,
        f"examples of type {type(ex).__name__} cannot be sent to another process "
        "(give texts, PIL images, numpy arrays or records of those)",
    )
    raise AssertionError("unreachable")  # skip() raises


def _read_examples(folder: Path) -> list[Any]:
    return [_decode(row, folder) for row in json.loads((folder / "examples.json").read_text())]


def _decode(row: dict[str, Any], folder: Path) -> Any:
    if "text" in row:
        return row["text"]
    if "none" in row:
        return None
    if "array" in row:
        return np.load(folder / row["array"], allow_pickle=False)
    if "record" in row:
        return {k: _decode(v, folder) for k, v in row["record"].items()}
    from PIL import Image

    with Image.open(folder / row["image"]) as img:
        img.load()
        return img.copy()


def _run_child(folder: Path, recipe: dict[str, Any], hash_seed: str, check: str) -> dict[str, Any]:
    spec = {"recipe": recipe, "threads": torch.get_num_threads(), "seed": 12345}
    (folder / "spec.json").write_text(json.dumps(spec))
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = hash_seed
    if "plugin" in recipe:  # load only the plugin that registered the factory: a lighter start
        owner = default_zoo().backbones.owner.get(recipe["plugin"])
        if owner and not default_zoo().backbones.get(recipe["plugin"]).fields:  # a fused one builds others' too
            env["TLZOO_PLUGINS"] = owner
    env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    code = "import sys; from tlzoo.testing.backbone_process import _child_main; _child_main(sys.argv[1])"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(folder)],
            env=env,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_S,
            cwd=os.getcwd(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the fresh process did not finish within {SUBPROCESS_TIMEOUT_S} s") from None
    if done.returncode != 0 or not (folder / "features.npy").is_file():
        tail = "\n".join(done.stderr.strip().splitlines()[-12:])
        how = recipe.get("plugin") or recipe.get("import")
        raise AssertionError(f"the backbone could not be rebuilt in a fresh process (through {how!r}):\n{tail}")
    return json.loads((folder / "probe.json").read_text())


def _build_from_recipe(recipe: dict[str, Any]) -> Backbone:
    request = BackboneRequest(**recipe["request"]) if recipe.get("request") is not None else None
    if "plugin" in recipe:
        from tlzoo.engine.zoo import Zoo

        factory: Any = Zoo().backbones.get(recipe["plugin"])
    else:
        factory = _import(recipe["import"])
    if request is None:
        return factory()
    backbone = _create(factory, request)
    if not backbone.plugin and isinstance(factory, BackboneFactory):
        backbone.plugin = factory.name
    return backbone


def _child_main(folder: str) -> None:
    """Entry point of the fresh process of :func:`check_cross_process_determinism`."""
    where = Path(folder)
    spec = json.loads((where / "spec.json").read_text())
    torch.set_num_threads(int(spec["threads"]))
    torch.manual_seed(int(spec["seed"]))  # deliberately not the parent's seed: the weights come from the state file
    backbone = _build_from_recipe(spec["recipe"])
    if _fittable(backbone) and spec["recipe"].get("assets"):  # as tl predict restores a fitted backbone
        cast(Any, backbone).load_fitted(spec["recipe"]["assets"])
    if (where / "state.safetensors").is_file():
        from safetensors.torch import load_file

        backbone.load_state_dict(load_file(str(where / "state.safetensors")))
    out = _features(backbone, _read_examples(where))
    np.save(where / "features.npy", out.double().numpy(), allow_pickle=False)
    (where / "probe.json").write_text(json.dumps({"hash": hash(_HASH_PROBE)}))
