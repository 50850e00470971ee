"""``report.html`` and a ``README.md`` model card for a run directory.

A run leaves numbers spread over several files (metrics.json, history.csv,
predictions.csv, config.toml, model.json, PNGs).  People want one page to read and to
send on, and a model card to ship with the weights.  The page is self-contained: PNGs
are inlined as base64 data URIs, CSS is inline, there is no script, and a
Content-Security-Policy forbids anything from the network, so it opens the same from
an e-mail attachment as from the run folder.  Both are jinja2 templates in
``tlzoo/templates`` (``report.html.j2`` with ``report.css``, ``model_card.md.j2``); this
module gathers what they show.  The page is autoescaped: every string that came from the
user (texts, class names, paths, config values) is text, never markup.  In the Markdown card
each such value goes through :func:`tlzoo.commands.templating.md`, so that a label such as
``[click](http://x)``, ``![i](y)``, ``# head`` or ``<script>`` stays text there too.

This module imports neither torch nor a plugin: ``tl report`` rewrites the page for an
existing run quickly.  Only when a vision run's test images are in-memory arrays (the
built-in digits) and not given by the caller are they reloaded through the data source.
"""

from __future__ import annotations

import base64
import io
import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.commands.errors_analysis import input_columns, record_fields, run_records, top_losses
from tlzoo.commands.model_card import LOW_F1, ablation_blocks, card_sections, limitations, model_card, scoring
from tlzoo.commands.run_files import RunFiles, _ci, _fmt, confused_pairs, intervals, load_run
from tlzoo.commands.templating import render
from tlzoo.infra.safe_text import printable

__all__ = ["card_sections", "intervals", "limitations", "load_run", "model_card", "render_html", "write_report"]

TOP_LOSSES = 20
THUMB = 96  # px, the longer side of a top-loss thumbnail
TEXT_CHARS = 600  # longer texts are cut in the page (predictions.csv keeps them whole)


# --------------------------------------------------------------------------- images
def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def thumbnail(example: Any, size: int = THUMB) -> bytes | None:
    """A small PNG of one image example (path, PIL image, array or lazy row), or None if it cannot be read."""
    from PIL import Image

    try:
        if isinstance(example, (str, Path)):
            with Image.open(example) as im:
                im.load()
                img = im.copy()
        elif isinstance(example, Image.Image):
            img = example.copy()
        elif callable(getattr(example, "open_image", None)):
            img = example.open_image()
        else:
            arr = np.asarray(example)
            if arr.ndim == 3 and arr.shape[-1] == 1:
                arr = arr[..., 0]
            if arr.ndim not in (2, 3) or arr.size == 0:
                return None
            if arr.dtype != np.uint8:
                lo, hi = float(arr.min()), float(arr.max())
                arr = (255 * (arr - lo) / max(1e-8, hi - lo)).round().astype(np.uint8)
            img = Image.fromarray(arr)
    except Exception:  # noqa: BLE001 - unreadable, damaged or oversized: the page says no preview
        return None
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGBA").convert("RGB") if "A" in img.mode or img.mode == "P" else img.convert("RGB")
    scale = size / max(img.size)
    new = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    # tiny images (8x8 digits) are enlarged with hard pixel edges, large ones shrunk smoothly
    img = img.resize(new, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def reload_examples(files: RunFiles, ids: list[str]) -> dict[str, Any]:
    """The examples with these ids, loaded again through the run's data source (for in-memory images)."""
    try:
        from tlzoo.api.interfaces import DataOptions
        from tlzoo.engine.config import RunConfig
        from tlzoo.engine.data import read_dataset
        from tlzoo.engine.zoo import Zoo

        cfg = RunConfig.from_toml(files.folder / "config.toml")
        options = DataOptions(cfg.data.text_column, cfg.data.label_column, cfg.data.encoding)
        ds, _ = read_dataset(cfg.data.path, files.modality or "vision", Zoo(), options)
    except Exception:  # noqa: BLE001 - thumbnails are optional; the page says when one is missing
        return {}
    wanted = set(ids)
    return {i: ex for i, ex in zip(ds.ids, ds.examples) if i in wanted}


# --------------------------------------------------------------------------- HTML
def _figure(files: RunFiles, name: str, alt: str, caption: str, cls: str = "") -> dict[str, Any]:
    png = files.images.get(name)
    return {"name": name, "uri": None if png is None else _data_uri(png), "alt": alt, "caption": caption, "cls": cls}


def _curves_caption(files: RunFiles) -> str:
    if files.history and all(r.get("phase") == "fit" for r in files.history):
        scored = ["training"] + ["validation"] * any(r.get("val_accuracy") not in (None, "") for r in files.history)
        what = " and ".join(scored)
        bars = "bars are" if len(scored) > 1 else "bar is"
        return (
            f"The head is fitted in one step, not over epochs: the {bars} the fitted head's {what} accuracy and "
            "loss (history.csv)."
            + ("" if len(scored) > 1 else " It learnt from the validation split too, so that split has no score.")
        )
    return "Accuracy and loss per epoch, training and validation, phases marked (history.csv)."


def _total(r: dict[str, Any]) -> str:
    try:
        return str(int(r["n_train"]) + int(r["n_val"]) + int(r["n_test"]))
    except (KeyError, TypeError, ValueError):
        return "?"


def _summary(files: RunFiles, ci: dict[str, list[float]]) -> dict[str, Any]:
    r, t, how = files.run, files.test, scoring(files)
    cards = [
        (f"{how.label} accuracy", _fmt(t.get("accuracy")), f"95 % CI {_ci(ci['accuracy'])}"),
        ("macro-F1", _fmt(t.get("macro_f1")), f"95 % CI {_ci(ci['macro_f1'])}"),
        (how.examples, str(t.get("n", r.get("n_test", "?"))), f"of {_total(r)} in all"),
        ("seconds", _fmt(files.metrics.get("seconds"), 1), "whole run, wall clock"),
    ]
    keys = ("plugin", "model", "weights", "head", "strategy", "seed")
    rows = [(k, r.get(k, "?")) for k in keys] + [("intervals", how.method)]
    if how.cross_validated:
        rows.append(("scored by", t["scored_by"]))
    return {"cards": cards, "summary_rows": rows, "cross_validated": how.cross_validated}


def _per_class(files: RunFiles) -> dict[str, Any]:
    rows, marks = [], {}
    for i, (c, s) in enumerate(files.test.get("per_class", {}).items()):
        rows.append(
            [c, _fmt(s.get("precision"), 3), _fmt(s.get("recall"), 3), _fmt(s.get("f1"), 3), str(s.get("support", ""))]
        )
        if float(s.get("f1", 0)) < LOW_F1:
            marks[(i, 3)] = "low"
    return {"rows": rows, "marks": marks}


def _losses(files: RunFiles, examples: Mapping[str, Any] | None, reload: bool) -> dict[str, Any] | None:
    """The top-loss examples as the page shows them: a table of texts, or image tiles with thumbnails."""
    if not files.examples:
        return None
    worst = top_losses(files.examples, TOP_LOSSES)
    if files.modality == "multimodal":
        return _record_losses(files, worst, examples, reload)
    tiles = files.modality == "vision"
    found: dict[str, Any] = {}
    if tiles:
        found = dict(examples or {})
        missing = [x.id for x in worst if x.id not in found and not Path(x.input).is_file()]
        if missing and examples is None and reload:
            found.update(reload_examples(files, missing))
    rows = []
    for x in worst:
        row = {
            "id": x.id,
            "input": x.input if tiles or len(x.input) <= TEXT_CHARS else x.input[:TEXT_CHARS] + "…",
            "true": x.true,
            "predicted": x.predicted,
            "wrong": x.true != x.predicted,
            "probability": f"{x.probability:.3f}",
            "p_true": f"{x.p_true:.3f}",
            "loss": f"{x.loss:.3f}",
        }
        if tiles:
            source = found.get(x.id, x.input if Path(x.input).is_file() else None)
            png = thumbnail(source) if source is not None else None
            row["png"] = _data_uri(png) if png else None
        rows.append(row)
    wrong = sum(x.true != x.predicted for x in files.examples)
    where = shlex.quote(files.location)
    return {
        "tiles": tiles,
        "records": False,
        "rows": rows,
        "wrong": wrong,
        "total": len(files.examples),
        "where": where,
    }


def _record_losses(
    files: RunFiles, worst: list[Any], examples: Mapping[str, Any] | None, reload: bool
) -> dict[str, Any]:
    """A fused run's top losses as tiles: a thumbnail of each image input, each text and the tabular fields of the
    record (given by the run, or read again from its data)."""
    inputs = input_columns(files.folder)
    found = {k: v for k, v in (examples or {}).items() if isinstance(v, dict)}
    missing = [x.id for x in worst if x.id not in found]
    if missing and reload:
        found.update(run_records(files.folder, missing))
    rows = []
    for x in worst:
        fields = record_fields(found[x.id], inputs) if x.id in found else []
        images = [f for f in fields if f["kind"] == "image"]
        pngs = [(f["column"], thumbnail(f["value"]) if Path(f["value"]).is_file() else None) for f in images]
        rows.append(
            {
                "id": x.id,
                "input": x.id,
                "images": [
                    {"column": c, "path": f["value"], "png": _data_uri(png) if png else None}
                    for (c, png), f in zip(pngs, images)
                ],  # fmt: skip
                "fields": [
                    (f["column"], _cut(printable(f["value"])) or "(empty)") for f in fields if f["kind"] != "image"
                ],
                "known": bool(fields),
                "true": x.true,
                "predicted": x.predicted,
                "wrong": x.true != x.predicted,
                "probability": f"{x.probability:.3f}",
                "p_true": f"{x.p_true:.3f}",
                "loss": f"{x.loss:.3f}",
            }
        )
    wrong = sum(x.true != x.predicted for x in files.examples)
    where = shlex.quote(files.location)
    return {"tiles": True, "records": True, "rows": rows, "wrong": wrong, "total": len(files.examples), "where": where}


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + "…"


def _phases(files: RunFiles) -> list[list[str]]:
    phases: dict[str, list[dict[str, str]]] = {}
    for row in files.history:
        phases.setdefault(row.get("phase", ""), []).append(row)
    rows = []
    for name, part in phases.items():
        losses = [(float(p["val_loss"]), int(float(p.get("epoch") or 0))) for p in part if _isnum(p.get("val_loss"))]
        best = min(losses) if losses else None
        last = part[-1]
        rows.append(
            [
                name,
                str(len(part)),
                _fmt(best[0], 4) if best else "–",
                str(best[1]) if best else "–",
                _fmt(last.get("train_accuracy"), 3),
                _fmt(last.get("val_accuracy"), 3),
            ]
        )
    return rows


def _model_rows(files: RunFiles) -> list[tuple[str, Any]]:
    b, head = files.model.get("backbone", {}), files.model.get("head", {})
    return [
        ("backbone", f"{b.get('model', '?')} ({b.get('plugin', '?')}), {b.get('num_features', '?')} features"),
        ("weights source", b.get("weights_source", files.run.get("weights", "?"))),
        (
            "backbone weights saved",
            "yes (trained or random)"
            if b.get("weights_saved")
            else "no (frozen; rebuilt from the weights source and checked by fingerprint)",
        ),
        ("fingerprint", files.run.get("weights_fingerprint") or b.get("fingerprint") or "–"),
        (
            "head",
            f"{head.get('name', files.run.get('head', '?'))} ({head.get('kind', '?')})"
            + (f" {json.dumps(head.get('params'), sort_keys=True)}" if head.get("params") else ""),
        ),
        ("preprocessing", json.dumps(b.get("preprocessing", {}), sort_keys=True)),
        ("versions", ", ".join(f"{k} {v}" for k, v in files.run.get("versions", {}).items())),
    ]


def _isnum(x: Any) -> bool:
    try:
        float(x)
        return True
    except (TypeError, ValueError):
        return False


def _data_rows(files: RunFiles) -> list[tuple[str, Any]]:
    r, t = files.run, files.test
    d = files.config.get("data", {})
    rows: list[tuple[str, Any]] = [
        ("source", d.get("path", "?")),
        ("limit", d.get("limit") or "all examples"),
        (
            "split",
            f"{r.get('n_train', '?')} training / {r.get('n_val', '?')} validation / "
            f"{r.get('n_test', '?')} test (stratified, seed {r.get('seed', '?')})",
        ),
        ("classes", f"{len(t.get('classes', []))}: " + ", ".join(t.get("classes", []))),
        (
            "test examples per class",
            ", ".join(f"{c} {s.get('support', '?')}" for c, s in t.get("per_class", {}).items())
            or "none (no test split: --test-fraction 0)",
        ),
    ]
    if files.modality == "text":
        rows.insert(1, ("columns", f"text {d.get('text_column', 'text')}, label {d.get('label_column', 'label')}"))
    return rows


def render_html(files: RunFiles, examples: Mapping[str, Any] | None = None, reload: bool = True) -> str:
    """``report.html``: the template ``report.html.j2`` filled in with what the run left (escaped there)."""
    ci = intervals(files)
    r = files.run
    confusion_caption = "Rows: true class; columns: predicted; cells coloured by the share of the row."
    augment = "Left: as evaluated; right: training-time draws."
    return render(
        "report.html.j2",
        name=files.folder.name.removesuffix(".incomplete"),
        title=f"{r.get('model', '?')} · {r.get('head', '?')} · {r.get('strategy', '?')}",
        location=files.location,
        version=str(r.get("versions", {}).get("tlzoo", "")),
        **_summary(files, ci),
        per_class=_per_class(files),
        low_f1=LOW_F1,
        history=_figure(files, "history.png", "training and validation curves", _curves_caption(files)),
        confusion_fig=_figure(files, "confusion.png", "confusion matrix", confusion_caption, "confusion"),
        pairs=[[p.true, p.predicted, str(p.count), f"{p.share:.0%}"] for p in confused_pairs(files)],
        losses=_losses(files, examples, reload),
        augment=_figure(files, "augment.png", "augmented training samples", augment)
        if "augment.png" in files.images
        else None,
        phases=_phases(files),
        model_rows=_model_rows(files),
        data_rows=_data_rows(files),
        config_text=files.config_text or "(config.toml missing)",
        card=card_sections(files),
        inputs=ablation_blocks(files),
    )


def write_report(
    run_dir: str | Path,
    examples: Mapping[str, Any] | None = None,
    location: str | Path | None = None,
    reload: bool = True,
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``README.md`` into ``run_dir``; returns their paths.

    ``examples`` maps test ids to raw examples (the runner passes its test split, so
    in-memory images get thumbnails); ``location`` is the folder named in "how to load"
    (the run's final folder while it is still ``<out>.incomplete``); ``reload`` lets
    the report load in-memory images again through the data source when not given.
    """
    files = load_run(run_dir, location)
    page = render_html(files, examples, reload)
    card = model_card(files)
    folder = Path(run_dir)
    out_html, out_md = folder / "report.html", folder / "README.md"
    for path, text in ((out_html, page), (out_md, card)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return out_html, out_md


def write_report_safely(
    run_dir: str | Path, log: Any, examples: Mapping[str, Any] | None = None, location: str | Path | None = None
) -> None:
    """The runner's call: a report that cannot be written costs a warning line, never the run."""
    try:
        write_report(run_dir, examples, location, reload=False)
    except Exception as exc:  # noqa: BLE001 - the trained model and metrics matter more than the page
        where = location or run_dir
        log(f"  warning: report.html not written ({type(exc).__name__}: {exc}); retry with `tl report {where}`")
