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

Batch prediction (``tl predict RUN --data SOURCE``): :func:`read_records` reads what
``tl run --data`` reads (CSV/TSV/JSONL with a text column, class folders of images or
.txt files, built-in and Hugging Face datasets), plus what only prediction needs: a table
of texts without a label column (or with some labels blank) and a flat folder of images
or .txt files.  Tables of texts are read here with the same readers the CSV/JSONL data
sources use, so quoted multi-line fields stay one record; everything else (a CSV of image
paths included, which needs its labels) goes through the data source
``Zoo.data_source_for`` picks.  :func:`write_predictions` streams the records through the
model batch by batch (a progress bar on stderr) and writes one row per record.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch import nn

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import Backbone, BackboneFactory, BackboneRequest, FittedHead, Head, TorchHead
from tlzoo.engine.artifacts import damaged, first_line, load_model_files
from tlzoo.engine.loaders import example_loader
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
    def load(cls, run_dir: str | Path, zoo: Zoo | None = None) -> Predictor:
        folder = Path(run_dir)
        check_run_folder(folder, "predict")  # a --seeds folder, an ONNX export: say what to pass instead
        desc, tensors = load_model_files(folder)
        root = folder.resolve()
        desc_path = folder / "model.json"
        zoo = zoo or Zoo()
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
                desc_path, f"backbone.request does not rebuild: {type(exc).__name__}: {first_line(exc)}"
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
        head_state = {k[len("head.") :]: v for k, v in tensors.items() if k.startswith("head.")}
        classes = desc["classes"]
        kind = desc["head"]["kind"]
        try:
            if kind in ("torch", "linear"):
                if kind == "torch":
                    torch_head = _saved_head(zoo, desc["head"], TorchHead)
                    assert isinstance(torch_head, TorchHead)
                    module = torch_head.build(b["num_features"], len(classes))
                else:
                    module = nn.Linear(b["num_features"], len(classes))
                _load_state(module, head_state, folder)
                head: Any = module.eval()
            else:
                fitted = _saved_head(zoo, desc["head"], FittedHead)
                assert isinstance(fitted, FittedHead)
                fitted.load_state({k: v.numpy() for k, v in head_state.items()})
                head = fitted
        except TlzooError as exc:  # e.g. parameters the head does not take: the description is at fault
            raise damaged(desc_path, f"head: {str(exc).rstrip('.')}") from None
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            raise damaged(desc_path, f"the head does not rebuild: {type(exc).__name__}: {first_line(exc)}") from None
        return cls(backbone.eval(), head, classes, kind)

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
                    feats = self.backbone(_to(batch, device)).float()
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
                    "input": x if isinstance(x, str) else repr(x),
                    "label": self.classes[i],
                    "probability": float(p[i]),
                    "probabilities": {c: float(v) for c, v in zip(self.classes, p)},
                }
            )
        return out


def _same_weight_files(factory: BackboneFactory, request: BackboneRequest, saved: dict[str, Any]) -> bool:
    """Whether the weight files the backbone was built from now are those the run recorded (their digest,
    remembered per file version): then hashing every tensor for the fingerprint check is not needed."""
    from tlzoo.engine.features import feature_spec

    recorded = saved.get("weights_digest")
    if not recorded:
        return False
    spec = feature_spec(factory, request)
    return spec is not None and spec["weights_files"] == recorded


def _to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


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


# --------------------------------------------------------------------------- batch prediction
TABLE_SUFFIXES = (".csv", ".tsv", ".csv.gz", ".jsonl", ".ndjson")


def is_table_path(item: str) -> bool:
    """Whether ``item`` names a CSV/TSV/JSONL file by its suffix (what ``--data`` reads record by record)."""
    return str(item).strip().lower().endswith(TABLE_SUFFIXES)


@dataclass
class Records:
    """What ``tl predict --data`` classifies: raw inputs, their ids, and labels where the source has them."""

    inputs: list[Any]  # texts, image paths, or in-memory images (built-in datasets)
    ids: list[str]
    shown: list[str]  # the ``input`` column: the text, the image path, or the id of an in-memory image
    labels: list[str] | None = None  # None: no labels at all; "" for a record without one
    source: str = ""  # what read them, for the log
    notes: list[str] = field(default_factory=list)  # records skipped, for the log

    def __len__(self) -> int:
        return len(self.inputs)

    def head(self, limit: int) -> Records:
        """The first ``limit`` records (all of them for 0)."""
        if limit <= 0 or limit >= len(self):
            return self
        return Records(
            self.inputs[:limit],
            self.ids[:limit],
            self.shown[:limit],
            self.labels[:limit] if self.labels is not None else None,
            self.source,
            self.notes,
        )


def records_from_inputs(items: list[str]) -> Records:
    """Inputs given on the command line (or by ``--file``): unlabelled, numbered from 0."""
    return Records(list(items), [str(i) for i in range(len(items))], [str(x) for x in items], None, "arguments")


def read_records(
    location: str,
    modality: str,
    zoo: Zoo,
    *,
    text_column: str = "text",
    label_column: str | None = None,
    encoding: str = "utf-8",
    limit: int = 0,
    from_run: bool = False,
) -> Records:
    """Every record at ``location`` for a ``modality`` run (see the module docstring).

    ``label_column`` None: the ``label`` column when the table has one; named, it must exist.
    ``limit``: the first N records only (0 = all).
    ``from_run``: the columns are the ones the run was trained with (see :func:`run_data_defaults`),
    not the user's: a table without that text column falls back to ``text``, and one without that
    label column is read without labels.
    """
    from tlzoo.engine.data import IMAGE_SUFFIXES

    if limit < 0:
        raise TlzooError(f"--limit must be 0 (every record) or a positive number of records, got {limit}.")
    path = Path(location)
    if path.is_dir() and not any(c.is_dir() and not c.name.startswith(".") for c in path.iterdir()):
        files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
        images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
        texts = [f for f in files if f.suffix.lower() == ".txt"]
        if images and modality != "vision":
            raise TlzooError(
                f"'{path}' holds images, and this run classifies {modality}; use a run trained with a vision plugin."
            )
        if texts and modality != "text":
            raise TlzooError(f"'{path}' holds .txt files, and this run classifies images; pass a folder of images.")
        if images or texts:  # a flat folder: one unlabelled record per file
            chosen = images or texts
            from tlzoo.engine.corpus import read_text

            inputs: list[Any] = [str(f) for f in chosen] if images else [read_text(f, encoding).strip() for f in chosen]
            shown = [str(f) for f in chosen] if images else [str(x) for x in inputs]
            return Records(inputs, [f.name for f in chosen], shown, None, "a flat folder").head(limit)
    if path.is_file() and path.suffix.lower() in (".txt", ".text") and modality == "text":
        raise TlzooError(
            f"'{path}' is a plain text file; pass it with --file (one text per line), or give a "
            "CSV/JSONL with a text column to --data."
        )
    source = zoo.data_source_for(location, modality)  # the right errors for a missing path or the wrong modality
    if path.is_file() and is_table_path(location) and source.modality == "text":  # texts: labels optional
        return _table_records(path, text_column, label_column, encoding, source.name, from_run).head(limit)
    from tlzoo.api.interfaces import DataOptions

    ds = source.load(location, DataOptions(text_column, label_column or "label", encoding))
    shown = [ex if isinstance(ex, str) else ident for ex, ident in zip(ds.examples, ds.ids)]
    return Records(list(ds.examples), list(ds.ids), shown, list(ds.labels), source.name, list(ds.notes)).head(limit)


def run_data_defaults(run_dir: str | Path) -> dict[str, str]:
    """The text column, label column and encoding a run was trained with (its config.toml ``[data]``).

    ``tl predict RUN --data new.csv`` uses them when the user names none; a folder without a
    readable config.toml (an older run, a hand-made folder) gives ``{}``.
    """
    import tomllib

    try:
        data = tomllib.loads((Path(run_dir) / "config.toml").read_text(encoding="utf-8")).get("data", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    keys = ("text_column", "label_column", "encoding")
    return {k: data[k] for k in keys if isinstance(data, dict) and isinstance(data.get(k), str) and data[k]}


def _table_records(
    path: Path, text_column: str, label_column: str | None, encoding: str, source: str, from_run: bool = False
) -> Records:
    """The records of a CSV/TSV/JSONL file: the labels are optional (a blank one leaves that record unlabelled)."""
    from tlzoo.api.errors import suggest
    from tlzoo.engine.corpus import read_csv_table, read_jsonl_table, read_text, text_codec
    from tlzoo.engine.data import RowReport, label_text

    name = path.name.lower()
    if name.endswith((".jsonl", ".ndjson")):
        table = read_jsonl_table(path, encoding)
    else:
        if name.endswith(".gz"):
            import gzip

            try:
                content = gzip.decompress(path.read_bytes()).decode(text_codec(encoding))
            except UnicodeDecodeError:
                raise TlzooError(f"'{path}' is not valid {encoding}; pass --encoding.") from None
            except (OSError, EOFError) as exc:
                raise TlzooError(
                    f"'{path}' is not a readable gzip file ({exc}); recompress it or pass the plain CSV."
                ) from None
        else:
            content = read_text(path, encoding)
        table = read_csv_table(content, "\t" if name.endswith(".tsv") else ",", f"'{path}'")
    if not table.rows:
        raise TlzooError(
            f"'{path}' holds no records; give a header row and one record per row (CSV) or one "
            "JSON object per line (JSONL)."
        )
    if from_run and text_column not in table.columns and "text" in table.columns:
        text_column = "text"  # the run's column is not there: the usual default is
    if from_run and label_column is not None and label_column not in table.columns:
        label_column = None  # the run's label column is not there: predict without labels
    if text_column not in table.columns:
        raise TlzooError(
            f"'{path}' has no column '{text_column}'.{suggest(text_column, table.columns)} "
            f"Columns: {', '.join(table.columns)}; choose one with --text-column."
        )
    column = label_column or "label"
    if label_column is not None and column not in table.columns:
        raise TlzooError(
            f"'{path}' has no column '{column}'.{suggest(column, table.columns)} "
            f"Columns: {', '.join(table.columns)}; choose one with --label-column, or leave it out "
            "to predict without labels."
        )
    labelled = column in table.columns and column != text_column
    wanted = {"--text-column": text_column, **({"--label-column": column} if labelled else {})}
    table.refuse_duplicates(str(path), wanted)
    texts: list[str] = []
    labels: list[str] = []
    ids: list[str] = []
    report = RowReport(path.name)
    for i, (row, line) in enumerate(zip(table.rows, table.lines)):
        report.total += 1
        text = row.get(text_column)
        if text is None:
            report.drop(f"missing the '{text_column}' field", line)
            continue
        label = ""
        if labelled:
            try:
                label = label_text(row.get(column)) or ""
            except ValueError as exc:
                raise TlzooError(
                    f"'{path}' line {line}: the label is not a class name ({exc}); use a string or "
                    "a number, or leave --label-column out."
                ) from None
        texts.append(
            text if isinstance(text, str) else json.dumps(text) if isinstance(text, (list, dict)) else str(text)
        )
        labels.append(label)
        ids.append(str(row.get("id", i)))
    has_labels = labelled and any(labels)
    return Records(list(texts), ids, texts, labels if has_labels else None, source, report.notes())


@dataclass
class Summary:
    """What :func:`write_predictions` wrote."""

    n: int = 0
    labelled: int = 0  # records whose label is one of the run's classes
    correct: int = 0
    unknown: dict[str, int] = field(default_factory=dict)  # labels the run does not know -> records

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None


def write_predictions(
    predictor: Predictor,
    records: Records,
    out: TextIO,
    *,
    as_json: bool = False,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> Summary:
    """Classify ``records`` batch by batch, writing each batch's rows to ``out`` as it is done.

    CSV columns (those of a run's predictions.csv): id, true (with labels), predicted,
    p_<class>..., probability (of the predicted class), loss (-log p of the true class,
    with labels), input.  ``as_json``: one JSON object per record instead.
    """
    classes = [str(c) for c in predictor.classes]
    index = {c: k for k, c in enumerate(classes)}
    labels = records.labels
    writer = None if as_json else csv.writer(out)
    if writer is not None:
        writer.writerow(
            ["id"]
            + (["true"] if labels is not None else [])
            + ["predicted"]
            + [f"p_{c}" for c in classes]
            + ["probability"]
            + (["loss"] if labels is not None else [])
            + ["input"]
        )
    summary = Summary()
    start = 0
    for proba in predictor.iter_proba(records.inputs, batch_size=batch_size, device=device, progress=progress):
        for k, p in enumerate(proba):
            i = start + k
            best = int(p.argmax())
            true = labels[i] if labels is not None else None
            loss = None
            if true:
                if true in index:
                    loss = float(-np.log(max(float(p[index[true]]), 1e-12)))
                    summary.labelled += 1
                    summary.correct += int(best == index[true])
                else:
                    summary.unknown[true] = summary.unknown.get(true, 0) + 1
            if writer is not None:
                writer.writerow(
                    [records.ids[i]]
                    + ([true] if labels is not None else [])
                    + [classes[best]]
                    + [f"{v:.5f}" for v in p]
                    + [f"{p[best]:.5f}"]
                    + ([f"{loss:.5f}" if loss is not None else ""] if labels is not None else [])
                    + [records.shown[i]]
                )
            else:
                row: dict[str, Any] = {
                    "id": records.ids[i],
                    "input": records.shown[i],
                    "label": classes[best],
                    "probability": float(p[best]),
                    "probabilities": {c: float(v) for c, v in zip(classes, p)},
                }
                if true:
                    row.update(true=true, loss=loss)
                out.write(json.dumps(row) + "\n")
        start += len(proba)
        summary.n = start
        out.flush()
    return summary
