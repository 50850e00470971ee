"""The fused backbone: one backbone per input column, plus the tabular columns, in one network.

Each record (a dict of fields) is split per input: an image or text backbone transforms its
column, the tabular encoder the tabular columns.  ``forward`` L2-normalises each input's pooled
features, zeroes those of an input a record lacks, concatenates them and appends one flag per
input (1 = lacking).  Layer groups are the inputs' groups in order, so fine-tuning unfreezes the
top groups of the last inputs first.  A member that learns from the training split (the tabular
encoder, a fitted backbone) is fitted by :meth:`FusedBackbone.fit`; its state goes to the run's
``assets/input-<i>/`` and comes back from there at ``tl predict``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tlzoo.api.backbone import Backbone, FittableBackbone, Member
from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import BackboneRequest, Dataset

from .fusion_hooks import input_columns, tabular_columns
from .records import readable_image

_BLANK_SIZE = 32  # a stand-in image for a record without one (its features are zeroed anyway)


class TabularEncoder(FittableBackbone):
    """Tabular columns as numbers: a column whose training values all parse as numbers is standardised
    (mean 0, sd 1, from the training split) with a missing flag (an empty value: 0 and the flag set);
    any other column is one-hot over its training categories (at most 50, the most frequent; an unseen
    or empty value: all zeros)."""

    modality = "tabular"
    name = "tabular"
    weights_source = "fitted on the training split"
    MAX_CATEGORIES = 50

    def __init__(self, columns: list[str]) -> None:
        super().__init__()
        self.columns = list(columns)
        self.numeric: dict[str, tuple[float, float]] = {}
        self.categories: dict[str, list[str]] = {}
        self.doubts: dict[str, str] = {}  # a column read as categories though most of its values are numbers
        self.num_features = 0
        self.register_buffer("_state", torch.zeros(0))  # the fitted state's fingerprint travels in preprocessing

    def fit(self, train: Dataset) -> None:
        for col in self.columns:
            values = [_cell(ex.get(col) if isinstance(ex, dict) else None) for ex in train.examples]
            numbers = [_number(v) for v in values if v != ""]
            if numbers and all(n is not None for n in numbers):
                xs = [float(n) for n in numbers if n is not None]
                mean = sum(xs) / len(xs)
                sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs)) or 1.0
                self.numeric[col] = (mean, sd)
            else:
                counts: dict[str, int] = {}
                for v in values:
                    if v != "":
                        counts[v] = counts.get(v, 0) + 1
                top = sorted(counts, key=lambda c: (-counts[c], c))[: self.MAX_CATEGORIES]
                self.categories[col] = sorted(top)
                words = [v for v in values if v != "" and _number(v) is None]
                if len(words) * 10 <= len(numbers):  # 90 % numbers: a typo, not a category column
                    self.doubts[col] = (
                        f"{len(numbers) - len(words)} of {len(numbers)} values are numbers, not '{words[0]}'"
                    )
        self._width()

    def fit_summary(self) -> str:
        """Which columns were read as numbers and which as categories (and a doubt about each near-numeric one)."""
        parts = [f"{c} numeric (standardised, with a missing flag)" for c in self.columns if c in self.numeric]
        for c in (c for c in self.columns if c in self.categories):
            doubt = f"; {self.doubts[c]}: fix the cell to read it as numbers" if c in self.doubts else ""
            parts.append(f"{c} categorical ({len(self.categories[c])} categories{doubt})")
        return "tabular " + ", ".join(parts) if parts else ""

    def _width(self) -> None:
        self.num_features = 2 * len(self.numeric) + sum(len(c) for c in self.categories.values())

    def preprocessing(self) -> dict[str, Any]:
        return {"columns": self.columns, "numeric": self.numeric, "categories": self.categories}

    def transform(self, example: Any, train: bool) -> torch.Tensor:
        row = example if isinstance(example, dict) else {}
        out: list[float] = []
        for col in self.columns:
            v = _cell(row.get(col))
            if col in self.numeric:
                n = _number(v) if v != "" else None
                mean, sd = self.numeric[col]
                out += [0.0, 1.0] if n is None else [(n - mean) / sd, 0.0]
            elif col in self.categories:
                out += [1.0 if v == c else 0.0 for c in self.categories[col]]
        return torch.tensor(out, dtype=torch.float32)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return batch

    def layer_groups(self) -> list[nn.Module]:
        return []

    def save_assets(self, folder: str) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        state = {"columns": self.columns, "numeric": self.numeric, "categories": self.categories}
        (Path(folder) / "tabular.json").write_text(json.dumps(state), encoding="utf-8")

    def load_fitted(self, folder: str) -> None:
        state = json.loads((Path(folder) / "tabular.json").read_text(encoding="utf-8"))
        if state.get("columns") != self.columns:
            raise ValueError(f"the saved tabular columns {state.get('columns')} are not {self.columns}")
        self.numeric = {k: (float(v[0]), float(v[1])) for k, v in state["numeric"].items()}
        self.categories = {k: [str(c) for c in v] for k, v in state["categories"].items()}
        self._width()


def _cell(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _number(text: str) -> float | None:
    try:
        x = float(text)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


class FusedBackbone(FittableBackbone):
    """One backbone per input column and the tabular columns, fused by L2-normalised concatenation."""

    modality = "multimodal"

    def __init__(self, request: BackboneRequest) -> None:
        super().__init__()
        from tlzoo.engine.zoo import Zoo

        opts = request.options
        inputs, tabular = input_columns(opts), tabular_columns(opts)
        weights = opts.get("weights") or {}
        if request.weights or not isinstance(weights, dict):
            raise TlzooError(
                "In a fused run give each column's local weights as --weights COLUMN=PATH "
                "(model.options.weights = {COLUMN: PATH})."
            )
        zoo = Zoo()
        self.name = request.model or "concat"
        self.inputs: list[tuple[str, tuple[str, ...]]] = []  # (what, its columns) per member
        members: list[Backbone] = []
        self._built: list[tuple[Any, BackboneRequest | None]] = []  # (factory, request) per member: its cache key
        for i, (column, spec) in enumerate(inputs.items()):
            plugin, _, model = spec.partition(":")
            factory, model_name = zoo.resolve_backbone(plugin, model)
            if factory.modality in ("", "multimodal") or factory.fields:
                raise TlzooError(
                    f"Column '{column}': '{factory.name}' is a {factory.modality or 'multimodal'} backbone; "
                    "a fused run takes an image or a text backbone per column (or one of another single modality)."
                )
            member_request = BackboneRequest(
                model=model_name,
                weights=weights.get(column) or None,
                pretrained=request.pretrained,
                pooling=request.pooling if factory.modality == "text" else "",
                max_length=request.max_length,
                image_size=request.image_size if factory.modality == "vision" else 0,
                augment=request.augment,
                train_backbone=request.train_backbone,
                assets=str(Path(request.assets) / f"input-{i}") if request.assets else None,
            )
            members.append(factory.create(member_request))
            self._built.append((factory, member_request))
            self.inputs.append((column, (column,)))
        if tabular:
            members.append(TabularEncoder(tabular))  # fitted by fit(), or restored by load_fitted() at tl predict
            self.inputs.append(("tabular", tuple(tabular)))
            self._built.append((None, None))  # keyed by its fingerprint (its fitted state), as fitted backbones are
        self.members = nn.ModuleList(members)  # registered: their weights are the fused model's
        self.weights_source = "; ".join(f"{what}: {m.name} ({m.weights_source})" for (what, _), m in self._pairs())
        self._width()

    @property
    def fields(self) -> tuple[str, ...]:
        """The columns a record gives this backbone (``tl predict --data`` reads exactly these)."""
        return tuple(c for _, cols in self.inputs for c in cols)

    @property
    def field_modalities(self) -> dict[str, str]:
        """Each field's modality: its backbone's ("vision", "text", or a third party's), "tabular" for the
        tabular columns (the testing kit makes records of these)."""
        return {c: m.modality for (_, cols), m in self._pairs() for c in cols}

    def _backbones(self) -> list[Backbone]:
        return [m for m in self.members if isinstance(m, Backbone)]  # all of them: typed for mypy

    def _pairs(self) -> list[tuple[tuple[str, tuple[str, ...]], Backbone]]:
        return list(zip(self.inputs, self._backbones()))

    def _width(self) -> None:
        self.num_features = sum(int(m.num_features) for m in self._backbones()) + len(self.members)

    # ------------------------------------------------------------------ fitting
    def fit(self, train: Dataset) -> None:
        for (what, columns), member in self._pairs():
            if member.modality == "vision":
                _refuse_an_imageless_column(train, columns[0], member)
            if isinstance(member, FittableBackbone):
                member.fit(_project(train, what, columns, member))
        self._width()

    def fit_summary(self) -> str:
        fittable = [m for m in self._backbones() if isinstance(m, FittableBackbone)]
        return "; ".join(s for s in (m.fit_summary() for m in fittable) if s)

    def load_fitted(self, folder: str) -> None:
        """The tabular encoder's state (the other inputs' factories restored theirs from ``input-<i>``)."""
        for i, member in enumerate(self._backbones()):
            if isinstance(member, TabularEncoder):
                member.load_fitted(str(Path(folder) / f"input-{i}"))
        self._width()

    def save_assets(self, folder: str) -> None:
        for i, member in enumerate(self._backbones()):
            sub = Path(folder) / f"input-{i}"
            sub.mkdir(parents=True, exist_ok=True)
            member.save_assets(str(sub))
        # which input each input-<i> folder belongs to (also when no member has fitted state to save)
        inputs = [
            {"input": what, "columns": list(cols), "plugin": m.plugin, "model": m.name}
            for (what, cols), m in self._pairs()
        ]
        (Path(folder) / "fusion.json").write_text(json.dumps({"inputs": inputs}, indent=1), encoding="utf-8")

    # ------------------------------------------------------------------ features
    def transform(self, example: Any, train: bool) -> Any:
        record = example if isinstance(example, dict) else {}
        parts, lacking = [], []
        for (_, columns), member in self._pairs():
            if isinstance(member, TabularEncoder):
                values = {c: record.get(c) for c in columns}
                parts.append(member.transform(values, train))
                lacking.append(all(_cell(v) == "" for v in values.values()))
                continue
            value = record.get(columns[0])
            x, missing = _member_input(member, value, train)
            parts.append(x)
            lacking.append(missing)
        return parts, torch.tensor(lacking, dtype=torch.float32)

    def collate(self, items: list[Any]) -> dict[str, Any]:
        """``lacking`` first: the engine reads a dict batch's size from its first value."""
        batches = [member.collate([item[0][i] for item in items]) for i, member in enumerate(self._backbones())]
        return {"lacking": torch.stack([item[1] for item in items]), "inputs": batches}

    def forward(self, batch: Any) -> torch.Tensor:
        batches, lacking = batch["inputs"], batch["lacking"]
        outs = []
        for i, member in enumerate(self._backbones()):
            feats = member(batches[i]).float()
            feats = F.normalize(feats, dim=1) if feats.shape[1] else feats
            outs.append(feats * (1.0 - lacking[:, i : i + 1].to(feats.device)))
        outs.append(lacking.to(outs[0].device if outs else lacking.device))
        return torch.cat(outs, dim=1)

    def layer_groups(self) -> list[nn.Module]:
        """Every input's groups aligned from its top: the top group holds each input's top group, the
        next one down each input's second group from the top, and so on.  So ``--unfreeze N`` trains the
        top N groups of every backbone, and discriminative learning rates step down each backbone's own
        ladder (its top group at the phase's lr, ``lr_decay`` times less per group below), whatever depth
        each backbone has."""
        ladders = [member.layer_groups() for member in self._backbones()]
        levels: list[nn.Module] = []
        for k in range(max((len(g) for g in ladders), default=0), 0, -1):  # input side first
            level = [groups[len(groups) - k] for groups in ladders if len(groups) >= k]
            levels.append(level[0] if len(level) == 1 else nn.ModuleList(level))
        return levels

    def input_report(self, examples: Any) -> str:
        """How many records lack each input (a stand-in is used), and each input backbone's own report on its
        column (texts cut at --max-length ...).  A run extracts input by input, so its log has these from the
        data source and the inputs' backbones; ``tl predict`` asks the fused backbone."""
        rows = [ex if isinstance(ex, dict) else {} for ex in examples]
        data = Dataset(list(rows), [""] * len(rows), modality="multimodal")
        lacking, notes = [], []
        for (what, columns), member in self._pairs():
            count = sum(_lacks(member, row, columns) for row in rows)
            lacking += [f"{what} in {count}"] if count else []
            own = member.input_report(_view(data, what, columns, member).examples)
            notes += [f"{what}: {own}"] if own else []
        if lacking:
            notes.insert(
                0,
                f"records lacking an input (empty, or a missing or unreadable image): {', '.join(lacking)} of "
                f"{len(rows)}; a zero vector and a missing-input flag stand in",
            )
        return "; ".join(notes)

    def feature_blocks(self) -> list[tuple[str, list[int]]]:
        """Which feature columns each input gives (its features and its missing flag): the run's ablation."""
        blocks, start = [], 0
        flags = sum(int(m.num_features) for m in self._backbones())
        for i, ((what, _), member) in enumerate(self._pairs()):
            width = int(member.num_features)
            blocks.append((what, [*range(start, start + width), flags + i]))
            start += width
        return blocks

    def feature_members(self) -> list[Member]:
        """Each input's backbone with its view of the records (its column): the engine caches each one's
        features under the key a run of that backbone alone on that column uses, then :meth:`join_features`."""
        return [
            Member(member, functools.partial(_view, what=what, columns=columns, member=member), what, factory, req)
            for ((what, columns), member), (factory, req) in zip(self._pairs(), self._built)
        ]

    def join_features(self, parts: list[Any], dataset: Dataset) -> np.ndarray:
        """``forward`` from the members' features: each L2-normalised, zeroed where a record lacks its input,
        concatenated, then the missing-input flags."""
        lacking = np.array(
            [
                [_lacks(m, ex if isinstance(ex, dict) else {}, cols) for (_, cols), m in self._pairs()]
                for ex in dataset.examples
            ],
            dtype=np.float32,
        ).reshape(len(dataset), len(self.inputs))
        out = []
        for i, feats in enumerate(parts):
            x = np.asarray(feats, dtype=np.float32)
            if x.shape[1]:
                x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            out.append(x * (1.0 - lacking[:, i : i + 1]))
        return np.concatenate([*out, lacking], axis=1).astype(np.float32, copy=False)

    def preprocessing(self) -> dict[str, Any]:
        return {
            "fusion": "concat, each input L2-normalised, missing-input flags",
            "inputs": [
                {"input": what, "columns": list(cols), "plugin": m.plugin, "model": m.name, **m.preprocessing()}
                for (what, cols), m in self._pairs()
            ],
        }

    def fingerprint(self) -> str:
        h = hashlib.sha256(json.dumps(self.preprocessing(), sort_keys=True, default=str).encode())
        for member in self._backbones():
            h.update(member.fingerprint().encode())
        return h.hexdigest()[:20]


def _project(data: Dataset, what: str, columns: tuple[str, ...], member: Backbone) -> Dataset:
    """The training split as ``member`` sees it: its column's values (all the tabular columns as dicts)."""
    examples: list[Any]
    if isinstance(member, TabularEncoder):
        examples = [{c: ex.get(c) for c in columns} for ex in data.examples]
    else:
        examples = [ex.get(columns[0]) or "" for ex in data.examples]
    return Dataset(
        examples, list(data.labels), modality=member.modality, ids=list(data.ids), name=f"{data.name}:{what}"
    )


def _view(data: Dataset, what: str, columns: tuple[str, ...], member: Backbone) -> Dataset:
    """The records as a run of ``member`` alone reads its column, so that the features share its cache
    entries: texts ("" where empty), image paths (a blank stand-in where missing or unreadable; its
    features are zeroed by :meth:`FusedBackbone.join_features`), the tabular columns as dicts."""
    rows = [ex if isinstance(ex, dict) else {} for ex in data.examples]
    examples: list[Any]
    if isinstance(member, TabularEncoder):
        examples = [{c: row.get(c) for c in columns} for row in rows]
    elif member.modality != "vision":  # a text, or a third party's kind: "" where empty, as _member_input gives it
        examples = ["" if row.get(columns[0]) is None else row.get(columns[0]) for row in rows]
        examples = [x if member.modality != "text" or isinstance(x, str) else str(x) for x in examples]
    else:
        examples = [row.get(columns[0]) if not _lacks(member, row, columns) else _blank() for row in rows]
    return Dataset(examples, list(data.labels), modality=member.modality, ids=list(data.ids), name=data.name)


def _refuse_an_imageless_column(train: Dataset, column: str, member: Backbone) -> None:
    """An image backbone whose column holds no readable image in the whole training split was bound to the
    wrong column (a text column, a column of folders): every record would get a placeholder."""
    rows = [ex if isinstance(ex, dict) else {} for ex in train.examples]
    if not rows or any(not _lacks(member, row, (column,)) for row in rows):
        return
    shown = next((str(r.get(column)) for r in rows if str(r.get(column) or "").strip()), "")
    example = f" (e.g. '{shown[:60]}')" if shown else ""
    raise TlzooError(
        f"Column '{column}' holds no readable image in the {len(rows)} training records{example}, and "
        f"'{member.name}' reads images; bind it to a backbone of what it holds (e.g. --plugin {column}=bert "
        "for texts), or fix the image paths (relative to the data file)."
    )


def _lacks(member: Backbone, record: dict[str, Any], columns: tuple[str, ...]) -> bool:
    """Whether ``record`` lacks this member's input: an empty text or tabular row, a missing or unreadable image."""
    if isinstance(member, TabularEncoder):
        return all(_cell(record.get(c)) == "" for c in columns)
    value = record.get(columns[0])
    if member.modality != "vision":  # a text, or a third party's kind (numbers in a cell ...)
        return not ("" if value is None else str(value)).strip()
    if isinstance(value, str):
        return not value.strip() or not _readable(value)
    return value is None  # an image given as such (a PIL image in a record)


def _readable(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return _readable_version(path, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=65536)
def _readable_version(path: str, size: int, mtime_ns: int) -> bool:
    """:func:`readable_image`, once per file version (the view, the join and the flags all ask)."""
    return readable_image(path)


def _blank() -> Any:
    from PIL import Image

    return Image.new("RGB", (_BLANK_SIZE, _BLANK_SIZE))


def _member_input(member: Backbone, value: Any, train: bool) -> tuple[Any, bool]:
    """The member's transformed input, and whether the record lacks it (then a stand-in is transformed)."""
    if member.modality == "text":
        text = "" if value is None else str(value)
        return member.transform(text, train), not text.strip()
    if member.modality != "vision":  # a third party's kind (numbers in a cell ...): an empty cell stands in
        present = value is not None and bool(str(value).strip())
        return member.transform(value if present else "", train), not present
    if not _lacks(member, {"value": value}, ("value",)):
        try:
            return member.transform(value, train), False
        except (OSError, ValueError, TlzooError):  # unreadable past its header: a placeholder, never fatal
            pass
    return member.transform(_blank(), False), True
