"""Load a finished run directory and classify new examples with it.

A run directory may come from someone else, so what its ``model.json`` names is
confined (``_weights_for_predict`` and ``_assets_folder``):

* ``request.assets`` is never taken from the file: it is always ``RUN/assets``, which
  must not be, or hold, a link leading out of the run directory.
* ``backbone.weights_copy`` (a backbone that keeps a copy of its ``--weights`` in
  ``assets/``: glove/word2vec/fasttext, elmo, ulmfit, transformer) replaces
  ``backbone.request.weights``; it must resolve inside the run directory, so these
  runs never read the original path again (it may have moved, or been forged).
* otherwise ``backbone.request.weights`` is None (the packaged default), a relative
  path resolved against the run directory (``..`` or links that lead out are
  refused), or a hub id such as ``org/model`` that is no file at all.
* an absolute path outside the run directory is what a run trained with ``--weights
  /abs/folder`` by a backbone that keeps no copy (bert, vision weight files) records.
  It is still used, because those runs need it (their feature-extraction weights are
  not in ``model.safetensors``), unless it lies inside a run directory (a folder
  holding ``model.json``): a forged description cannot point at files planted in
  another run.  This is a compromise, kept simple: every file tlzoo reads this way goes
  through loaders that never unpickle (safetensors, JSON, ``weights_only=True``).

Every refusal is a one-line ``TlzooError`` naming the ``model.json`` field.

Batch prediction (``tl predict RUN --data SOURCE``) lives in :mod:`tlzoo.commands.batch_predict`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import Backbone, BackboneFactory, BackboneRequest, FittedHead, Head, TorchHead
from tlzoo.commands.export_files import require_plugins
from tlzoo.engine.artifacts import damaged, first_line, load_model_files
from tlzoo.engine.loaders import example_loader
from tlzoo.engine.run import feature_sample
from tlzoo.engine.training import to_device
from tlzoo.engine.zoo import Zoo
from tlzoo.infra.run_folder import check_run_folder

# a Hugging Face / timm hub id: 'name' or 'org/name', never a path with '..' or a leading '/'
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def one_or_many(inputs: Any) -> list[Any]:
    """The inputs as a list: a ``str`` (a text or an image path) or ``bytes`` is one input, not its characters."""
    if isinstance(inputs, str | bytes | os.PathLike):
        return [inputs]
    return list(inputs)


class Predictor:
    def __init__(self, backbone: Backbone, head: Any, classes: list[str], head_kind: str) -> None:
        self.backbone, self.head, self.classes, self.head_kind = backbone, head, classes, head_kind

    @classmethod
    def load(cls, run_dir: str | Path, zoo: Zoo | None = None, *, check_features: bool = True) -> Predictor:
        """The model of a finished run (or of a folder ``tl export`` wrote), checked: confinement, damage,
        the backbone's fingerprint and, with ``check_features``, the features of the training examples
        stored with it (``tlzoo.engine.run.feature_sample``): a backbone that no longer computes them is refused."""
        folder = Path(run_dir)
        check_run_folder(folder, "predict")  # a --seeds folder, an ONNX export: say what to pass instead
        desc, tensors = load_model_files(folder)
        zoo = zoo or Zoo()
        require_plugins(folder, zoo)  # an export names the package of a plugin missing here
        backbone = _saved_backbone(folder, desc, tensors, zoo)
        head = _saved_model_head(folder, desc, tensors, zoo)
        if check_features:  # one batch of the stored examples: features that changed since the run are refused
            feature_sample.check_sample(folder, backbone, damaged)
        return cls(backbone.eval(), head, desc["classes"], desc["head"]["kind"])

    def predict_proba(self, inputs: str | Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """Class probabilities, one row per input (a ``str`` is one input, not a sequence of characters)."""
        parts = list(self.iter_proba(one_or_many(inputs), batch_size=batch_size))
        return np.concatenate(parts) if parts else np.zeros((0, len(self.classes)), np.float32)

    def iter_proba(
        self,
        inputs: list[Any],
        *,
        batch_size: int = 32,
        device: str | torch.device = "cpu",
        progress: bool = False,
        num_workers: int = 0,
    ) -> Iterator[np.ndarray]:
        """Class probabilities batch by batch (``progress``: a bar on stderr, counted in examples)."""
        from tqdm.auto import tqdm

        device = torch.device(device)
        self.backbone.to(device)
        torch_head = self.head_kind in ("torch", "linear")
        if torch_head:
            self.head.to(device)
        loader = example_loader(inputs, self.backbone, train=False, batch_size=batch_size, num_workers=num_workers)
        with tqdm(
            total=len(inputs),
            desc="predict",
            unit="example",
            leave=False,
            mininterval=1.0,
            disable=None if progress else True,
        ) as bar:
            for batch in loader:
                with torch.inference_mode():  # per batch: the caller runs between yields, in its own mode
                    feats = self.backbone(to_device(batch, device)).float()
                    if torch_head:
                        proba = torch.softmax(self.head(feats).float(), 1).cpu().numpy()
                    else:
                        proba = np.asarray(self.head.predict_proba(feats.cpu().numpy()))
                bar.update(len(proba))
                yield proba

    def predict(self, inputs: str | Sequence[Any]) -> list[dict[str, Any]]:
        """One dict per input: label, probability, all class probabilities; a ``str`` is one input."""
        inputs = one_or_many(inputs)
        proba = self.predict_proba(inputs)
        out = []
        for x, p in zip(inputs, proba):
            i = int(p.argmax())
            out.append(
                {
                    "input": x if isinstance(x, str) else _record_text(x),
                    "label": self.classes[i],
                    "probability": float(p[i]),
                    "probabilities": {c: float(v) for c, v in zip(self.classes, p)},
                }
            )
        return out


def _saved_backbone(folder: Path, desc: dict[str, Any], tensors: dict[str, torch.Tensor], zoo: Zoo) -> Backbone:
    """The run's backbone rebuilt from model.json (confined, see the module docstring): its saved weights loaded,
    or the weights found now checked against the run's fingerprint."""
    root = folder.resolve()
    b = desc["backbone"]
    factory, model = zoo.resolve_backbone(b["plugin"], b["request"]["model"])
    # a 0.1 model.json (engine settings inside options) reads too; the factory sets backbone.plugin and
    # restores a FittableBackbone's fitted state from request.assets (checked by the fingerprint below)
    assets = str(_assets_folder(root))  # first: a link in assets/ is reported as such
    try:
        request = BackboneRequest.from_json(
            b["request"], model=model, weights=_weights_for_predict(root, b), assets=assets
        )
        backbone = factory.create(request)
    except TlzooError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # options of the wrong type or shape
        raise damaged(
            folder / "model.json", f"backbone.request does not rebuild: {type(exc).__name__}: {first_line(exc)}"
        ) from None
    if b.get("weights_saved"):
        state = {k[len("backbone.") :]: v for k, v in tensors.items() if k.startswith("backbone.")}
        _load_state(backbone, state, folder)
    elif (
        b.get("fingerprint")
        and not _same_weight_files(factory, request, b)
        and backbone.fingerprint() != b["fingerprint"]
    ):
        raise TlzooError(
            f"The backbone weights found now ({backbone.weights_source}) differ from the ones this run was "
            f"trained on; restore those weights or retrain with `tl run`."
        )
    return backbone


def _saved_model_head(folder: Path, desc: dict[str, Any], tensors: dict[str, torch.Tensor], zoo: Zoo) -> Any:
    """The run's head rebuilt from model.json and its tensors: an ``nn.Module`` in eval mode, or a FittedHead."""
    desc_path = folder / "model.json"
    head_state = {k[len("head.") :]: v for k, v in tensors.items() if k.startswith("head.")}
    classes, kind = desc["classes"], desc["head"]["kind"]
    try:
        if kind in ("torch", "linear"):
            num_features = desc["backbone"]["num_features"]
            if kind == "torch":
                torch_head = _saved_head(zoo, desc["head"], TorchHead)
                assert isinstance(torch_head, TorchHead)
                module = torch_head.build(num_features, len(classes))
            else:
                module = nn.Linear(num_features, len(classes))
            _load_state(module, head_state, folder)
            return module.eval()
        fitted = _saved_head(zoo, desc["head"], FittedHead)
        assert isinstance(fitted, FittedHead)
        fitted.load_state({k: v.numpy() for k, v in head_state.items()})
        return fitted
    except TlzooError as exc:  # e.g. parameters the head does not take: the description is at fault
        raise damaged(desc_path, f"head: {str(exc).rstrip('.')}") from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        raise damaged(desc_path, f"the head does not rebuild: {type(exc).__name__}: {first_line(exc)}") from None


def _same_weight_files(factory: BackboneFactory, request: BackboneRequest, saved: dict[str, Any]) -> bool:
    """Whether the weight files the backbone was built from now are those the run recorded (their digest,
    remembered per file version): then hashing every tensor for the fingerprint check is not needed."""
    from tlzoo.engine.features import feature_spec

    recorded = saved.get("weights_digest")
    if not recorded:
        return False
    spec = feature_spec(factory, request)
    return spec is not None and spec["weights_files"] == recorded


def _saved_head(zoo: Any, saved: dict[str, Any], kind: type[Head]) -> Head:
    """The saved head rebuilt from its name and options; a TlzooError unless it is a ``kind``."""
    head: Head = zoo.heads.get(saved["name"])(**saved["params"])
    if not isinstance(head, kind):
        raise TlzooError(f"'{saved['name']}' was saved as a {kind.__name__}, and the head of that name now is not one")
    return head


def _load_state(module: nn.Module, state: dict[str, torch.Tensor], folder: Path) -> None:
    """load_state_dict, with a tensor file that does not fit its description reported as damaged."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        detail = first_line(exc).replace("Error(s) in loading state_dict for ", "")
        raise damaged(folder / "model.safetensors", f"its tensors do not fit model.json: {detail}") from None


# --------------------------------------------------------------------------- confinement
def _outside(field: str, value: str, root: Path, why: str) -> TlzooError:
    return TlzooError(
        f"'{root / 'model.json'}' field {field} = '{value}' {why}; tlzoo reads only files inside a run "
        "directory (or a catalogued source), so rerun `tl run` on weights you trust."
    )


def _inside_run(root: Path, value: str, field: str) -> Path:
    """``value`` resolved against the run directory ``root``; refused if it (or a link on the way) leads out."""
    target = (root / value).resolve()
    if not target.is_relative_to(root):
        raise _outside(field, value, root, f"leads out of the run directory (to '{target}')")
    return target


def _run_directory_holding(path: Path) -> Path | None:
    """The run directory (a folder with model.json) that ``path`` lies in, if any."""
    for parent in (path, *path.parents):
        if (parent / "model.json").is_file():
            return parent
    return None


def _weights_for_predict(root: Path, backbone: dict[str, Any]) -> str | None:
    """The weights the backbone may read at predict time (see the module docstring for the rules)."""
    copy = backbone.get("weights_copy")
    if copy:
        target = _inside_run(root, copy, "backbone.weights_copy")
        if not target.exists():
            raise TlzooError(
                f"'{root / 'model.json'}' names backbone.weights_copy '{copy}', which is missing from the "
                "run directory; copy the run again whole, or rerun `tl run`."
            )
        return str(target)
    weights = backbone["request"].get("weights")
    if not weights:
        return None
    field = "backbone.request.weights"
    given = Path(weights)
    if not given.is_absolute():
        in_run = root / given
        if in_run.exists() or in_run.is_symlink() or ".." in given.parts:
            return str(_inside_run(root, weights, field))
        if HUB_ID.fullmatch(weights) and not given.exists():
            return weights  # a hub id ('org/model'), not a file
    # an absolute path, or one relative to where `tl run` was started (as older runs recorded it)
    target = given.resolve()
    if target.is_relative_to(root):
        return str(target)
    owner = _run_directory_holding(target)
    if owner is not None:
        raise _outside(field, weights, root, f"points into another run directory ('{owner}')")
    return str(target)


def _assets_folder(root: Path) -> Path:
    """``RUN/assets``, after checking that neither it nor anything in it links out of the run directory."""
    assets = root / "assets"
    if not assets.exists() and not assets.is_symlink():
        return assets
    if not assets.resolve().is_relative_to(root):
        raise _outside(
            "assets", "assets", root, f"is a link leading out of the run directory (to '{assets.resolve()}')"
        )
    for dirpath, dirnames, filenames in os.walk(assets):  # links are not followed, only checked
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink() and not p.resolve().is_relative_to(root):
                raise _outside(
                    "assets",
                    str(p.relative_to(root)),
                    root,
                    f"is a link leading out of the run directory (to '{p.resolve()}')",
                )
    return assets


def _record_text(x: Any) -> str:
    """How a non-text input is shown: a fused run's record as JSON, anything else (an image) as its repr."""
    return json.dumps(x, ensure_ascii=False, sort_keys=True) if isinstance(x, dict) else repr(x)
