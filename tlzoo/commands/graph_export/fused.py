"""``tl export --format onnx`` of a fused run: one ONNX graph per input's backbone, plus the fusion graph.

A fused run's model is a backbone per input column (image, text), the tabular columns, and a head on
their joined features.  The export writes ``input-<i>.onnx`` for each image or text input (its
preprocessed tensor to its pooled features), and ``fusion.onnx``: each input's features
L2-normalised, zeroed where a record lacks that input, concatenated, the missing-input flags
appended (as the fused backbone joins them), then the head and a softmax.  The tabular columns need
no graph: ``onnx_predict.py`` encodes them in numpy from the fitted state in ``graph.json``
(numbers standardised with a missing flag, categories one-hot), as the run's tabular encoder does.

``onnx_predict.py`` (onnxruntime, numpy, PIL, and `tokenizers` for texts) reads records, finds
which inputs each one lacks (an empty text or tabular row, a missing or unreadable image), runs each
input's graph on the records that have it (zeros stand in for the others), then the fusion graph.
The export is checked by running that very script on records (made-up ones of other batch sizes,
records lacking each input, and some of the run's test records) against the run's own model.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import Dataset
from tlzoo.commands.graph_export.tracing import GRAPH_TOLERANCE, run_onnx, tensor_inputs, trace_graph
from tlzoo.commands.templating import render
from tlzoo.engine import artifacts

TABULAR = "numpy in onnx_predict.py, from the fitted state below (no graph)"
PROBE_TEXTS = (
    "a short one",
    "an example sentence that is a good deal longer than the first, with punctuation!",
    "the film was great fun",
    "not good at all, and far too long for what it had to say",
    "a quixotic, perspicacious zymurgist's syzygy",
)  # rare words: out-of-vocabulary paths too


def is_fused(backbone: Any) -> bool:
    """Whether ``backbone`` is a fused run's (members per input, joined by the fusion plugin)."""
    return bool(getattr(backbone, "plugin", "") == "fusion" and backbone.feature_members())


class _Features(nn.Module):
    """One input's backbone: its tensors (the names of a dict batch, in order) to its pooled features."""

    def __init__(self, backbone: nn.Module, keys: list[str] | None) -> None:
        super().__init__()
        self.backbone, self.keys = backbone, keys

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        batch: Any = dict(zip(self.keys, inputs)) if self.keys is not None else inputs[0]
        return self.backbone(batch).float()


class _Join(nn.Module):
    """The fused backbone's join, then the head and a softmax: inputs ``features_<i>`` and ``lacking``."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *parts, lacking = inputs
        outs = []
        for i, feats in enumerate(parts):
            feats = F.normalize(feats.float(), dim=1) if feats.shape[1] else feats.float()
            outs.append(feats * (1.0 - lacking[:, i : i + 1]))
        return torch.softmax(self.head(torch.cat([*outs, lacking], dim=1)).float(), 1)


def export_fused(
    run: Path, tmp: Path, dest: Path, predictor: Any, fmt: str, log: Callable[[str], None]
) -> tuple[float, int]:
    """Export the fused run ``run`` into ``tmp`` (shipped as ``dest``): (max abs difference, records checked)."""
    if fmt != "onnx":
        raise TlzooError(
            f"A fused run does not export as one {fmt} module; use --format onnx (one graph per input plus the "
            "fusion graph) or --format folder."
        )
    probes, folder = probe_records(run, predictor)
    with folder:
        spec, diff, n = export_fused_onnx(run, tmp, predictor, probes, log)
    example = {c: "path/to/image.png" if m["kind"] == "image" else "..." for m in spec["members"] for c in m["columns"]}
    text = render("export_fused_readme.md.j2", run_name=run.name, dest=dest, spec=spec,
                  example=shlex.quote(json.dumps(example)))  # fmt: skip
    (tmp / "README.md").write_text(text, encoding="utf-8")
    return diff, n


def export_fused_onnx(
    run: Path, tmp: Path, predictor: Any, probes: list[dict[str, Any]], log: Callable[[str], None]
) -> tuple[dict[str, Any], float, int]:
    """Write the graphs, graph.json, onnx_predict.py and the tokenizers into ``tmp``, then check them on
    ``probes`` (records): (graph.json, max abs difference, records checked)."""
    fused = predictor.backbone
    desc = json.loads((run / "model.json").read_text(encoding="utf-8"))
    saved = {i["input"]: i for i in desc["backbone"].get("preprocessing", {}).get("inputs", [])}
    records = Dataset(probes[:2], [""] * 2, modality="multimodal", ids=["0", "1"], name="probe")
    members = []
    for i, member in enumerate(fused.feature_members()):
        pre = saved.get(member.name, {})
        entry: dict[str, Any] = {"input": member.name, "columns": list(pre.get("columns", [member.name]))}
        if member.backbone.modality == "tabular" and "numeric" in pre:
            entry.update(kind="tabular", file=None, how=TABULAR, numeric=pre["numeric"], categories=pre["categories"])
        else:
            entry.update(_member_graph(run, tmp, i, member, member.view(records).examples))
        entry["width"] = int(member.backbone.num_features)
        members.append(entry)
    names = [f"features_{i}" for i in range(len(members))] + ["lacking"]
    example = tuple(torch.randn(2, max(m["width"], 1))[:, : m["width"]] for m in members) + (
        torch.tensor([[0.0] * len(members), [1.0] * len(members)]),
    )
    join = _Join(predictor.head).eval()
    trace_graph(join, example, tmp / "fusion.onnx", names, ["probabilities"], False, "fusion")
    spec = _spec(predictor, desc, members, names)
    artifacts.write_json(tmp / "graph.json", spec)
    (tmp / "onnx_predict.py").write_text(render("export_fused_predict.py.j2"), encoding="utf-8")
    check = probes[2:]
    diff = _check(tmp, predictor, check)
    spec["check"] = {"against": "PyTorch", "examples": len(check), "max_abs_diff": diff}
    artifacts.write_json(tmp / "graph.json", spec)
    log(f"  onnx graphs ({len(members)} inputs + fusion) checked against PyTorch on {len(check)} records: "
        f"max abs diff {diff:.2g}")  # fmt: skip
    return spec, diff, len(check)


def _member_graph(run: Path, tmp: Path, i: int, member: Any, examples: list[Any]) -> dict[str, Any]:
    """``input-<i>.onnx``: the member's preprocessed tensors to its features (its tokenizer copied for a text)."""
    backbone = member.backbone
    tokenizer = run / "assets" / f"input-{i}" / "tokenizer"
    keys, example = tensor_inputs(backbone, examples, tokenizer, member.name)
    names = keys or ["image"]
    plugin = getattr(backbone, "plugin", "") or "?"
    path = tmp / f"input-{i}.onnx"
    trace_graph(_Features(backbone, keys).eval(), example, path, names, ["features"], keys is not None, plugin)
    entry: dict[str, Any] = {"kind": "image" if keys is None else "text", "file": path.name}
    if keys is not None:
        shutil.copytree(tokenizer, tmp / "assets" / f"input-{i}" / "tokenizer")
        entry["tokenizer"] = f"assets/input-{i}/tokenizer"
    _, kept = run_onnx(path, names, example)  # onnxruntime's inputs (missing onnxruntime: one line)
    entry["inputs"] = [
        {"name": n, "dtype": str(t.dtype).replace("torch.", ""), "shape": _dims(t)}
        for n, t in zip(names, example)
        if n in kept  # the exporter drops inputs the graph never reads
    ]
    entry["preprocessing"] = backbone.preprocessing()
    entry["plugin"], entry["model"] = plugin, backbone.name
    return entry


def _dims(t: torch.Tensor) -> list[Any]:
    return ["batch", "sequence"] if t.dim() == 2 else ["batch", *(int(d) for d in t.shape[1:])]


def _spec(predictor: Any, desc: dict[str, Any], members: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """``graph.json``: each input's graph (or tabular state), the fusion graph, classes and the head."""
    return {
        "format": "onnx",
        "fused": True,
        "members": members,
        "fusion": {
            "file": "fusion.onnx",
            "inputs": names,
            "how": "each input's features L2-normalised, zeroed where the record lacks the input (lacking = 1), "
            "concatenated, the lacking flags appended; then the head and a softmax",
        },
        "output": {"name": "probabilities", "shape": ["batch", len(predictor.classes)]},
        "classes": [str(c) for c in predictor.classes],
        "modality": "multimodal",
        "backbone": {k: desc["backbone"].get(k) for k in ("plugin", "model", "weights_source")},
        "head": desc["head"],
        "versions": artifacts.versions(),
    }


def _check(tmp: Path, predictor: Any, records: list[dict[str, Any]]) -> float:
    """The largest difference between the written ``onnx_predict.py`` and the run's model on ``records``."""
    module_spec = importlib.util.spec_from_file_location("_tlzoo_onnx_predict", tmp / "onnx_predict.py")
    assert module_spec is not None and module_spec.loader is not None
    script = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(script)  # the script this export just wrote
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = predictor.predict_proba(records)
    got = script.predict(records)
    diff = float(np.abs(np.asarray(got) - expected).max())
    if not diff <= GRAPH_TOLERANCE:
        raise TlzooError(
            f"The ONNX graphs of the fused run differ from PyTorch by {diff:.2g} (over {GRAPH_TOLERANCE:g}) on "
            f"{len(records)} records; use --format folder."
        )
    return diff


def fused_probes(predictor: Any, real: list[dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
    """Records to trace and check a fused export on: two full made-up records (traced), then made-up records of
    other sizes and lengths, one lacking each input, one lacking all, and ``real`` ones (the run's test records).
    Made-up images are written into ``folder``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = ((40, 48, 3), (64, 32), (33, 33, 3), (50, 70, 3), (24, 24, 3), (36, 20, 3))
    made: list[dict[str, Any]] = [{} for _ in sizes]
    for member in predictor.backbone.feature_members():
        b, cols = member.backbone, _columns(predictor, member.name)
        for n, record in enumerate(made):
            if b.modality == "vision":
                path = folder / f"{member.name}-{n}.png"
                Image.fromarray(rng.integers(0, 256, sizes[n], dtype=np.uint8)).save(path)
                record[cols[0]] = str(path)
            elif b.modality == "tabular":
                record.update({c: _tabular_value(b, c, n) for c in cols})
            else:
                record[cols[0]] = PROBE_TEXTS[n % len(PROBE_TEXTS)]
    lacking = []
    for member in predictor.backbone.feature_members():
        cols = _columns(predictor, member.name)
        lacking.append({k: v for k, v in made[3].items() if k not in cols})
    return [*made, *lacking, {}, *real]


def _columns(predictor: Any, what: str) -> list[str]:
    return next(list(cols) for name, cols in predictor.backbone.inputs if name == what)


def _tabular_value(encoder: Any, column: str, n: int) -> str:
    """A value of a tabular column: numbers around the training mean (one empty, one not a number), categories
    seen in training, one unseen and one empty."""
    if column in getattr(encoder, "numeric", {}):
        mean, sd = encoder.numeric[column]
        return ["", f"{mean + sd * (n - 2):.3f}", "n/a"][n % 3] if n % 2 else f"{mean - sd * n / 3:.4f}"
    seen = list(getattr(encoder, "categories", {}).get(column, [])) + ["never seen", ""]
    return seen[n % len(seen)]


def probe_records(run: Path, predictor: Any, n_real: int = 6) -> tuple[list[dict[str, Any]], Any]:
    """(probe records, the temporary folder of their images: clean it up after the check)."""
    from tlzoo.commands.errors_analysis import read_predictions, run_records

    try:
        _, examples = read_predictions(run)
        ids = [e.id for e in examples[:n_real]]
    except TlzooError:
        ids = []
    found = run_records(run, ids) if ids else {}
    folder = tempfile.TemporaryDirectory(prefix="tlzoo-probe-")
    return fused_probes(predictor, [found[i] for i in ids if i in found], Path(folder.name)), folder
