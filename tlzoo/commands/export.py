"""``tl export RUN --to DIR``: a trained run as something to ship.

Three formats:

* ``folder`` (default): a run-directory-like folder that ``tl predict DIR`` and
  ``tlzoo.Predictor.load(DIR)`` load on another machine: ``model.safetensors`` (the head,
  and the backbone's weights too, also for feature-extraction runs whose run directory
  holds only the head), ``model.json`` (architecture and preprocessing), ``assets/``
  (tokenizer, vocabulary, and a copy of a local ``--weights`` file or folder the backbone
  is rebuilt from), ``load.py`` (a plain-Python loader that prints JSON lines),
  ``README.md`` (the model card with how to load it), ``export.json`` (what it needs, the
  check below, and the sha256 digest of every file), plus the run's ``metrics.json`` and
  ``config.toml``.  Where the architecture can be rebuilt from tlzoo's own code with the
  same preprocessing, the folder needs nothing else (``self_contained``); otherwise (a
  hub model, weights whose preprocessing comes from their package) ``export.json`` names
  the source it pins, whose weights are still stored in the folder.
* ``onnx``: backbone and head as one graph from the model's tensor input to class
  probabilities: images as NCHW float after preprocessing, texts as the token ids and
  attention mask of a Hugging Face tokenizer (the ``bert`` plugin; the tokenizer is in
  ``assets/tokenizer``).  Checked against PyTorch with onnxruntime on examples of other
  batch sizes (and lengths) than the traced ones; the max abs difference is reported.
  ``onnx_predict.py`` classifies image files or texts with onnxruntime and numpy only
  (plus PIL, or the `tokenizers` library for texts).  A fused run exports one graph per
  image or text input plus the fusion graph, its tabular columns encoded in numpy
  (``graph_export/fused.py``).
* ``torchscript``: ``torch.jit.trace`` of the same graph, checked the same way.

A fitted non-linear head (svm, rf, knn, tree, nb) is a scikit-learn model: it cannot join
the backbone in one graph, so ``onnx``/``torchscript`` refuse it in one line (logreg is
stored as a linear layer and exports).  Every export is written to a temporary folder,
checked, and only then renamed to ``DIR``.  onnx/onnxruntime are imported only in the
functions that need them (tracing and the checks: ``graph_export/``).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tlzoo.api.errors import TlzooError
from tlzoo.commands.export_files import copy_source, move_into_place, plugin_origins, write_error
from tlzoo.commands.graph_export.fused import export_fused, is_fused
from tlzoo.commands.graph_export.tracing import GRAPH_TOLERANCE, SUPPORTED_GRAPHS, run_onnx, tensor_inputs, trace_graph
from tlzoo.commands.predict import Predictor, _weights_for_predict
from tlzoo.commands.templating import render
from tlzoo.engine import artifacts
from tlzoo.engine.run import feature_sample
from tlzoo.engine.zoo import Zoo
from tlzoo.infra.safe_text import spreadsheet_value

FORMATS = ("folder", "onnx", "torchscript")
FOLDER_TOLERANCE = 1e-5  # the exported folder runs the same code: its probabilities must match the run's
PROBE_TEXTS = (
    "a short one",
    "an example sentence that is a good deal longer than the first, with punctuation!",
    "",
    "the film was great fun",
    "not good at all, and far too long for what it had to say",
    "a quixotic, perspicacious zymurgist's syzygy",
)  # rare words: out-of-vocabulary paths too


@dataclass
class ExportResult:
    """What ``export_run`` wrote and how well the export matched the run's own model."""

    folder: Path
    format: str
    self_contained: bool
    needs: str  # what loading needs besides tlzoo (folder) or onnxruntime (onnx); "" for nothing
    max_abs_diff: float
    checked_examples: int
    files: list[str] = field(default_factory=list)


def export_run(
    run_dir: str | Path,
    to: str | Path,
    fmt: str = "folder",
    zoo: Zoo | None = None,
    log: Callable[[str], None] = lambda msg: None,
) -> ExportResult:
    """Export the finished run ``run_dir`` into the new folder ``to`` (see the module docstring)."""
    if fmt not in FORMATS:
        from tlzoo.api.errors import suggest

        raise TlzooError(f"Unknown export format '{fmt}'.{suggest(fmt, FORMATS)} Use one of {', '.join(FORMATS)}.")
    run = Path(run_dir)
    dest = Path(to)
    zoo = zoo or Zoo()
    predictor = Predictor.load(run, zoo)  # every check of tl predict: confinement, damage, fingerprint
    if fmt != "folder" and predictor.head_kind == "fitted":
        name = json.loads((run / "model.json").read_text(encoding="utf-8"))["head"]["name"]
        raise TlzooError(
            f"The '{name}' head is a fitted scikit-learn model, which cannot join the backbone in one "
            f"{'ONNX graph' if fmt == 'onnx' else 'TorchScript module'}; export --format folder, or "
            "retrain with --head logreg (stored as a linear layer) or --head fc."
        )
    tmp = _prepare(run, dest)
    try:
        if fmt == "folder":
            result = _export_folder(run, tmp, dest, predictor, zoo, log)
        else:
            result = _export_graph(run, tmp, dest, predictor, fmt, log)
        _write_manifest(tmp, result, plugin_origins(json.loads((run / "model.json").read_text("utf-8")), zoo))
        move_into_place(tmp, dest)
    except Exception as exc:
        problem = write_error(exc, dest)
        if problem is None:
            raise
        raise problem from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.folder = dest
    return result


def _prepare(run: Path, dest: Path) -> Path:
    """Check ``dest`` (new, or an empty folder, outside the run) and make the temporary folder beside it
    (inside it for a mount point, which cannot be replaced by a rename)."""
    if dest.exists() and not dest.is_dir():
        raise TlzooError(f"--to '{dest}' is an existing file; choose a new folder.")
    if dest.is_dir() and any(dest.iterdir()):
        raise TlzooError(f"--to '{dest}' already exists and is not empty; choose a new folder or remove it.")
    if dest.resolve().is_relative_to(run.resolve()):
        raise TlzooError(f"--to '{dest}' is inside the run directory '{run}'; choose a folder outside it.")
    existing = next(p for p in (dest, *dest.absolute().parents) if p.exists())
    if not os.access(existing, os.W_OK):  # a read-only file system (root too) or no permission
        raise TlzooError(
            f"--to '{dest}': '{existing}' is not writable (a read-only file system, or no permission); "
            "choose another --to."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest / ".export-tmp" if os.path.ismount(dest) else dest.with_name(f".{dest.name}.export-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


# --------------------------------------------------------------------------- probes
def _probes(predictor: Predictor, run: Path, n_real: int = 6) -> list[Any]:
    """Examples to compare the export with the run's model: made-up ones, then a few of the run's test inputs."""
    import csv

    vision = predictor.backbone.modality == "vision"
    if vision:
        rng = np.random.default_rng(0)
        made: list[Any] = [
            rng.integers(0, 256, size, dtype=np.uint8) for size in ((40, 48, 3), (64, 32), (33, 33, 3), (50, 70, 3))
        ]
    else:
        made = list(PROBE_TEXTS)
    real: list[Any] = []
    path = run / "predictions.csv"
    if path.is_file():
        try:
            with path.open(newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    x = row.get("input")
                    x = spreadsheet_value(x) if x is not None else None  # written with a leading ' where needed
                    if x is not None and (not vision or os.path.isfile(x)):
                        real.append(x)
                    if len(real) >= n_real:
                        break
        except (OSError, csv.Error, UnicodeDecodeError):
            real = []
    return made + real


# --------------------------------------------------------------------------- folder
def _local_path(value: Any) -> Path | None:
    """``value`` as an existing absolute path (a hub id such as 'org/model' is none)."""
    if not isinstance(value, str) or not value:
        return None
    p = Path(value)
    return p if p.is_absolute() and p.exists() else None


@dataclass
class _Folder:
    """What the folder export tries: descriptions of the backbone (each with what loading needs besides the
    folder), the tensors to store, and the backbone's local source when it is copied (``slim``: without its
    weight files, which model.safetensors holds)."""

    tries: list[tuple[dict[str, Any], str]]
    tensors: dict[str, Any]
    source: Path | None
    slim: bool


def _export_folder(
    run: Path, tmp: Path, dest: Path, predictor: Predictor, zoo: Zoo, log: Callable[[str], None]
) -> ExportResult:
    desc, tensors = artifacts.load_model_files(run)
    if (run / "assets").is_dir():
        shutil.copytree(run / "assets", tmp / "assets")  # predict.py checked that no link in it leads out of the run
    else:
        (tmp / "assets").mkdir()
    feature_sample.copy_sample(run, tmp)  # loading the export recomputes these features, as tl predict RUN does
    plan = _folder_plan(run, tmp / "assets", predictor, desc, dict(tensors), log)
    probes = _probes(predictor, run)
    described, needs, diff = _first_that_predicts(run, tmp, plan, predictor, probes, zoo, log)
    for name in ("metrics.json", "config.toml"):
        if (run / name).is_file():
            shutil.copy2(run / name, tmp / name)
    shown = Path(dest.name)  # the docs name the folder as it is shipped, not where it was written
    (tmp / "load.py").write_text(_load_py(shown, predictor, needs), encoding="utf-8")
    (tmp / "README.md").write_text(_folder_readme(run, shown, described, needs, predictor), encoding="utf-8")
    return ExportResult(dest, "folder", not needs, needs, diff, len(probes))


def _folder_plan(
    run: Path,
    assets: Path,
    predictor: Predictor,
    desc: dict[str, Any],
    tensors: dict[str, Any],
    log: Callable[[str], None],
) -> _Folder:
    """The descriptions to try, self-contained ones first: the backbone's local source copied into ``assets``
    (without its weight files where model.safetensors holds them), or the frozen backbone's weights stored."""
    root = run.resolve()
    new = copy.deepcopy(desc)
    b = new["backbone"]
    source = None
    # what the backbone was just built from here (never a path model.json merely names): the weights given to
    # it, else the checkpoint folder it reports (bert: a --weights or package folder)
    built_from = predictor.backbone.spec().get("source")
    if not b.get("weights_copy"):  # backbones that keep a copy of their weights in assets/ are complete already
        weights = _weights_for_predict(root, desc["backbone"])
        source = _local_path(weights) or _local_path(built_from)
        if source is not None and source.resolve().is_relative_to(root):
            source = None  # already inside the run directory: copied with it (assets) or not needed
    # model.safetensors holds the whole backbone (fine-tuned): the source folder's weight files are not needed
    slim = source is not None and source.is_dir() and bool(b.get("weights_saved"))
    if source is not None:
        b["weights_copy"] = copy_source(source, assets, "other" if slim else "all")
        log(f"  copied the backbone's source {source} into {b['weights_copy']}{' (no weights)' * slim}")
    tries: list[tuple[dict[str, Any], str]] = [(new, "")]  # (description, what loading needs besides the folder)
    if slim:  # the architecture from the copied config, every weight from model.safetensors
        alone = copy.deepcopy(new)
        alone["backbone"]["request"]["pretrained"] = False
        tries.insert(0, (alone, ""))  # kept only if it predicts as the run does (the check below)
    if source is None and not b.get("weights_copy"):
        if not b.get("weights_saved"):  # feature extraction: store the frozen backbone's weights too
            tensors.update(
                {f"backbone.{k}": v.detach().cpu().contiguous() for k, v in predictor.backbone.state_dict().items()}
            )
            b["weights_saved"] = True
        from_hub = bool(built_from) and _local_path(built_from) is None  # e.g. a hub id: its config is there
        pinned = f"the backbone's source as when it was trained: {b.get('weights_source', '?')}"
        needs = pinned if b["request"].get("pretrained", True) or from_hub else ""
        tries = [(new, needs)]
        if needs and not from_hub:  # try the architecture from tlzoo's code, every weight from this folder
            alone = copy.deepcopy(new)
            alone["backbone"]["request"].update(pretrained=False, weights=None)
            tries.insert(0, (alone, ""))  # kept only if it predicts as the run does (the check below)
    return _Folder(tries, tensors, source, slim)


def _first_that_predicts(
    run: Path, tmp: Path, plan: _Folder, predictor: Predictor, probes: list[Any], zoo: Zoo, log: Callable[[str], None]
) -> tuple[dict[str, Any], str, float]:
    """Write each description in turn until the folder predicts as the run does: (description, needs, max diff)."""
    expected = predictor.predict_proba(probes)
    diff = float("inf")
    slim, source = plan.slim, plan.source
    for n, (described, needs) in enumerate(plan.tries, 1):
        if slim and n == 2:  # the slim copy did not predict as the run does: store the source whole
            log("  the backbone does not rebuild without its source's weight files: copying them too")
            copy_source(source, tmp / "assets", "weights")  # type: ignore[arg-type]  # slim: source is a folder
        described["exported"] = {
            "from": str(run.resolve()),
            "format": "folder",
            "self_contained": not needs,
            "versions": artifacts.versions(),
        }
        artifacts.save_model(tmp, plan.tensors, described)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                diff = float(np.abs(Predictor.load(tmp, zoo).predict_proba(probes) - expected).max())
        except Exception as exc:  # noqa: BLE001 - only the self-contained attempt may fail: then pin the source
            if n == len(plan.tries):
                raise
            if not slim:
                log(f"  the backbone does not rebuild without its source ({type(exc).__name__}): pinning the source")
            continue
        if diff <= FOLDER_TOLERANCE:
            break
        if n < len(plan.tries) and not slim:
            log(
                f"  rebuilt without its source, the backbone predicts differently (max abs diff {diff:.2g}): "
                "pinning the source"
            )
    if not diff <= FOLDER_TOLERANCE:
        raise TlzooError(
            f"The exported folder predicts differently from the run (max abs difference {diff:.2g} on "
            f"{len(probes)} examples); please report this with the run's model.json."
        )
    return described, needs, diff


def _load_py(dest: Path, predictor: Predictor, needs: str) -> str:
    """``load.py``: a plain-Python loader (the template ``export_load.py.j2``)."""
    example = "a new example text" if predictor.backbone.modality == "text" else "path/to/image.png"
    return render("export_load.py.j2", example=example, dest=str(dest), needs=needs)


def _folder_readme(run: Path, dest: Path, desc: dict[str, Any], needs: str, predictor: Predictor) -> str:
    text = predictor.backbone.modality == "text"
    example = "a new example text" if text else "path/to/image.png"
    card = ""
    try:
        from tlzoo.commands.report import load_run, model_card

        files = load_run(run, dest)
        files.model = desc
        card = model_card(files).rstrip() + "\n\n"
    except Exception:  # noqa: BLE001 - a run without readable metrics still exports, with a short README
        card = (
            f"# {run.name}\n\nA tlzoo {predictor.backbone.modality} classifier over "
            f"{len(predictor.classes)} classes.\n\n"
        )
    lines = render("export_folder_readme.md.j2", run_name=run.name, needs=needs, dest=dest, example=example, text=text)
    return card + lines


# --------------------------------------------------------------------------- onnx / torchscript
class _Graph(nn.Module):
    """Backbone + head + softmax over positional tensors (the names of a dict batch, in order)."""

    def __init__(self, backbone: nn.Module, head: nn.Module, keys: list[str] | None) -> None:
        super().__init__()
        self.backbone, self.head, self.keys = backbone, head, keys

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        batch: Any = dict(zip(self.keys, inputs)) if self.keys is not None else inputs[0]
        return torch.softmax(self.head(self.backbone(batch).float()).float(), 1)


def _batch(predictor: Predictor, examples: list[Any]) -> Any:
    b = predictor.backbone
    return b.collate([b.transform(x, False) for x in examples])


def _graph_inputs(
    predictor: Predictor, examples: list[Any], run: Path
) -> tuple[list[str] | None, tuple[torch.Tensor, ...]]:
    """(dict keys or None, positional tensors) of a batch, or a one-line refusal for inputs no graph takes."""
    return tensor_inputs(predictor.backbone, examples, run / "assets" / "tokenizer")


def _export_graph(
    run: Path, tmp: Path, dest: Path, predictor: Predictor, fmt: str, log: Callable[[str], None]
) -> ExportResult:
    if is_fused(predictor.backbone):  # one graph per input plus the fusion graph
        diff, n = export_fused(run, tmp, Path(dest.name), predictor, fmt, log)
        return ExportResult(dest, fmt, True, "", diff, n)
    probes = _probes(predictor, run)
    trace_examples, check_examples = probes[:2], probes[2:]  # different batch sizes (and text lengths)
    keys, example = _graph_inputs(predictor, trace_examples, run)
    _, check = _graph_inputs(predictor, check_examples, run)
    graph = _Graph(predictor.backbone, predictor.head, keys).eval()
    with torch.inference_mode():
        expected = graph(*check).numpy()
    names = keys or ["image"]
    plugin = getattr(predictor.backbone, "plugin", "") or "?"
    path = tmp / ("model.onnx" if fmt == "onnx" else "model.pt")
    traced = trace_graph(graph, example, path, names, ["probabilities"], keys is not None, plugin)
    if fmt == "onnx":
        got, feeds = run_onnx(path, names, check)
    else:
        with torch.inference_mode():
            got = traced(*check).numpy()  # the module just traced in memory: nothing is read back from disk
        feeds = names
    diff = float(np.abs(got - expected).max())
    if not diff <= GRAPH_TOLERANCE:
        raise TlzooError(
            f"The {fmt} graph of the '{plugin}' backbone differs from PyTorch by {diff:.2g} (over "
            f"{GRAPH_TOLERANCE:g}) on inputs of another size than the traced ones; it supports "
            f"{SUPPORTED_GRAPHS}; use --format folder."
        )
    desc = json.loads((run / "model.json").read_text(encoding="utf-8"))
    if keys is not None:
        shutil.copytree(run / "assets" / "tokenizer", tmp / "assets" / "tokenizer")
    spec = _graph_spec(predictor, desc, fmt, dict(zip(names, check)), feeds, diff, len(check_examples))
    artifacts.write_json(tmp / "graph.json", spec)
    if fmt == "onnx":
        (tmp / "onnx_predict.py").write_text(_onnx_script(keys is not None), encoding="utf-8")
    (tmp / "README.md").write_text(_graph_readme(run, Path(dest.name), fmt, spec, keys is not None), encoding="utf-8")
    log(f"  {fmt} graph checked against PyTorch on {len(check_examples)} examples: max abs diff {diff:.2g}")
    return ExportResult(dest, fmt, True, "", diff, len(check_examples))


def _graph_spec(
    predictor: Predictor,
    desc: dict[str, Any],
    fmt: str,
    tensors: dict[str, torch.Tensor],
    feeds: list[str],
    diff: float,
    n: int,
) -> dict[str, Any]:
    """``graph.json``: the inputs the graph takes (name, dtype, shape), its output, classes and preprocessing."""
    b = desc["backbone"]
    inputs = []
    for name in feeds:
        t = tensors[name]
        dims: list[Any] = ["batch", "sequence"] if t.dim() == 2 else ["batch", *(int(d) for d in t.shape[1:])]
        inputs.append({"name": name, "dtype": str(t.dtype).replace("torch.", ""), "shape": dims})
    spec: dict[str, Any] = {
        "format": fmt,
        "file": "model.onnx" if fmt == "onnx" else "model.pt",
        "inputs": inputs,
        "output": {"name": "probabilities", "shape": ["batch", len(predictor.classes)]},
        "classes": [str(c) for c in predictor.classes],
        "modality": predictor.backbone.modality,
        "backbone": {k: b.get(k) for k in ("plugin", "model", "weights_source")},
        "head": desc["head"],
        "preprocessing": b.get("preprocessing", {}),
        "check": {"against": "PyTorch", "examples": n, "max_abs_diff": diff},
        "versions": artifacts.versions(),
    }
    return spec


def _graph_readme(run: Path, dest: Path, fmt: str, spec: dict[str, Any], text: bool) -> str:
    """``README.md`` of a graph export (the template ``export_graph_readme.md.j2``)."""
    inputs = ", ".join(f"`{i['name']}` {i['dtype']} {i['shape']}" for i in spec["inputs"])
    return render(
        "export_graph_readme.md.j2", run_name=run.name, dest=dest, fmt=fmt, spec=spec, text=text, inputs=inputs
    )


def _onnx_script(text: bool) -> str:
    """``onnx_predict.py``: the graph with onnxruntime, preprocessing in numpy (images: PIL; texts: `tokenizers`)."""
    return render("export_onnx_predict.py.j2", text=text)


# --------------------------------------------------------------------------- manifest
def _write_manifest(folder: Path, result: ExportResult, plugins: list[dict[str, Any]] | None = None) -> None:
    """``export.json``: format, what loading needs, the check, and every file's size and sha256
    (``Predictor.load`` checks them: ``artifacts.verify_export``)."""
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "export.json":
            rel = p.relative_to(folder).as_posix()
            files[rel] = {"bytes": p.stat().st_size, "sha256": artifacts.sha256(p)}
    result.files = list(files)
    artifacts.write_json(
        folder / "export.json",
        {
            "format": result.format,
            "self_contained": result.self_contained,
            "needs": result.needs,
            "plugins": plugins or [],  # each plugin's package and version (export_files.plugin_origins)
            "check": {"examples": result.checked_examples, "max_abs_diff": result.max_abs_diff},
            "versions": artifacts.versions(),
            "files": files,
        },
    )
