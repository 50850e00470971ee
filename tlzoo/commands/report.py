"""``report.html`` and a ``README.md`` model card for a run directory.

A run leaves numbers spread over several files (metrics.json, history.csv,
predictions.csv, config.toml, model.json, PNGs).  People want one page to read and to
send on, and a model card to ship with the weights.  The page is self-contained: PNGs
are inlined as base64 data URIs, CSS is inline, there is no script, and a
Content-Security-Policy forbids anything from the network, so it opens the same from
an e-mail attachment as from the run folder.  Every string that came from the user
(texts, class names, paths, config values) goes through :func:`html.escape`.

This module imports neither torch nor a plugin: ``tl report`` rewrites the page for an
existing run quickly.  Only when a vision run's test images are in-memory arrays (the
built-in digits) and not given by the caller are they reloaded through the data source.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.api.errors import TlzooError
from tlzoo.commands.errors_analysis import Confusion, Example, most_confused, read_predictions, top_losses
from tlzoo.evaluation.uncertainty import METHOD, bootstrap_ci
from tlzoo.infra.run_folder import check_run_folder

TOP_LOSSES = 20
TOP_PAIRS = 5
THUMB = 96  # px, the longer side of a top-loss thumbnail
TEXT_CHARS = 600  # longer texts are cut in the page (predictions.csv keeps them whole)
LOW_F1 = 0.5
SMALL_SUPPORT = 10
WIDE_INTERVAL = 0.10


# --------------------------------------------------------------------------- what a run left
@dataclass
class RunFiles:
    """Everything the report reads from one run directory."""

    folder: Path
    location: str  # the path shown in "how to load" (the final run folder)
    metrics: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    config_text: str = ""
    history: list[dict[str, str]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes

    @property
    def test(self) -> dict[str, Any]:
        return self.metrics.get("test", {})

    @property
    def run(self) -> dict[str, Any]:
        return self.metrics.get("run", {})

    @property
    def modality(self) -> str:
        return str(self.model.get("modality") or "")


def load_run(run_dir: str | Path, location: str | Path | None = None) -> RunFiles:
    folder = Path(run_dir)
    check_run_folder(folder, "report")  # missing, a --seeds folder, an export: say what to pass instead
    metrics_path = folder / "metrics.json"
    if not metrics_path.is_file():
        raise TlzooError(f"'{run_dir}' has no metrics.json; pass the --out folder of a finished `tl run`.")
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TlzooError(f"{metrics_path} is not valid JSON ({exc}); rerun `tl run` to write it again.") from None
    if "test" not in metrics or "confusion_matrix" not in metrics["test"]:
        raise TlzooError(f"{metrics_path} has no test results; rerun `tl run` to write them.")
    files = RunFiles(folder=folder, location=str(location or folder), metrics=metrics)
    if (folder / "model.json").is_file():
        try:
            files.model = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            files.model = {}  # the page still shows the results; the model sections say "?"
    if (folder / "config.toml").is_file():
        files.config_text = (folder / "config.toml").read_text(encoding="utf-8")
        try:
            files.config = tomllib.loads(files.config_text)
        except tomllib.TOMLDecodeError:
            files.config = {}
    if (folder / "history.csv").is_file():
        with (folder / "history.csv").open(newline="", encoding="utf-8") as f:
            files.history = list(csv.DictReader(f))
    if (folder / "predictions.csv").is_file():
        files.classes, files.examples = read_predictions(folder)
    if not files.classes:
        files.classes = list(files.test.get("classes", []))
    for name in ("history.png", "confusion.png", "augment.png"):
        if (folder / name).is_file():
            files.images[name] = (folder / name).read_bytes()
    return files


def intervals(files: RunFiles) -> dict[str, list[float]]:
    """The run's 95 % intervals, recomputed from the confusion matrix for runs that predate them."""
    t = files.test
    acc_ci, f1_ci = t.get("accuracy_ci"), t.get("macro_f1_ci")
    # a stored zero-width interval predates the Wilson fallback (see tlzoo.evaluation.uncertainty): recompute it
    if acc_ci and f1_ci and acc_ci[0] != acc_ci[1] and f1_ci[0] != f1_ci[1]:
        return {"accuracy": list(acc_ci), "macro_f1": list(f1_ci)}
    cm = np.asarray(t["confusion_matrix"], dtype=np.int64)
    if cm.size == 0:
        return {"accuracy": [0.0, 0.0], "macro_f1": [0.0, 0.0]}
    i, j = np.indices(cm.shape)
    y_true = np.repeat(i.ravel(), cm.ravel())
    y_pred = np.repeat(j.ravel(), cm.ravel())
    return bootstrap_ci(y_true, y_pred, cm.shape[0], seed=int(files.run.get("seed", 0) or 0))


def confused_pairs(files: RunFiles) -> list[Confusion]:
    return most_confused(files.test["confusion_matrix"], list(files.test.get("classes", files.classes)), TOP_PAIRS)


# --------------------------------------------------------------------------- the model card
@dataclass
class Block:
    """One piece of a card section, rendered to Markdown and to HTML alike (``text`` is plain)."""

    kind: str  # "p", "ul", "code" or "table"
    text: str = ""
    items: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)  # table: first row is the header


def _fmt(x: Any, digits: int = 4) -> str:
    try:
        return f"{float(x):.{digits}f}"
    except (TypeError, ValueError):
        return "–"


def _ci(ci: list[float]) -> str:
    return f"[{_fmt(ci[0], 3)}, {_fmt(ci[1], 3)}]"


def _data_name(files: RunFiles) -> str:
    return str(files.config.get("data", {}).get("path") or files.metrics.get("run", {}).get("data") or "the data")


def card_sections(files: RunFiles) -> list[tuple[str, list[Block]]]:
    """The Hugging Face model-card sections, as plain text: description, use, data, results, limits, loading."""
    r, t, b = files.run, files.test, files.model.get("backbone", {})
    ci = intervals(files)
    classes = list(t.get("classes", files.classes))
    head = files.model.get("head", {})
    strategy = r.get("strategy", "")
    frozen = strategy == "feature-extraction"
    task = "image" if files.modality == "vision" else "text"
    description = [
        f"{'An image' if task == 'image' else 'A text'} classifier over {len(classes)} classes trained with "
        "tlzoo by transfer learning.",
    ]
    items = [
        f"Backbone: {r.get('model', b.get('model', '?'))} (plugin {r.get('plugin', b.get('plugin', '?'))}, "
        f"{b.get('num_features', '?')} features)",
        f"Weights source: {r.get('weights', b.get('weights_source', '?'))}"
        + ("" if b.get("request", {}).get("pretrained", True) else " (random initialisation, no pretraining)"),
        f"Head: {r.get('head', head.get('name', '?'))}"
        + (f" ({json.dumps(head.get('params'), sort_keys=True)})" if head.get("params") else ""),
        f"Strategy: {strategy}"
        + (
            " (backbone frozen, head trained on its features)"
            if frozen
            else " (backbone layers updated)"
            if strategy
            else ""
        ),
        f"Classes: {', '.join(classes)}",
    ]
    if r.get("weights_fingerprint"):
        items.append(f"Backbone weights fingerprint: {r['weights_fingerprint']}")
    intended = [
        f"Classifying {task}s like those in {_data_name(files)} into: {', '.join(classes)}.",
        "Not evaluated on other domains, languages or image sources; measure it on your own labelled sample "
        "before relying on it, and do not use it for decisions about people without human review.",
    ]
    data = [
        f"Data: {_data_name(files)}"
        + (
            f" (stratified subset of {files.config['data']['limit']} examples)"
            if files.config.get("data", {}).get("limit")
            else ""
        ),
        f"Split (stratified, seed {r.get('seed', 0)}): {r.get('n_train', '?')} training, "
        f"{r.get('n_val', '?')} validation, {r.get('n_test', t.get('n', '?'))} test examples",
    ]
    results = [
        Block("p", f"On the held-out test set ({t.get('n', '?')} examples); intervals: {METHOD}."),
        Block(
            "table",
            rows=[
                ["metric", "value", "95 % interval"],
                ["accuracy", _fmt(t.get("accuracy")), _ci(ci["accuracy"])],
                ["macro-F1", _fmt(t.get("macro_f1")), _ci(ci["macro_f1"])],
            ],
        ),
        Block(
            "table",
            rows=[["class", "precision", "recall", "F1", "support"]]
            + [
                [
                    c,
                    _fmt(s.get("precision"), 3),
                    _fmt(s.get("recall"), 3),
                    _fmt(s.get("f1"), 3),
                    str(s.get("support", "")),
                ]
                for c, s in t.get("per_class", {}).items()
            ],
        ),
    ]
    limits = limitations(files, ci)
    run_path = files.location
    example = "a new example text" if task == "text" else "path/to/image.png"
    load = [
        Block("p", "From the command line:"),
        Block("code", f'tl predict {_shell_quote(run_path)} "{example}"'),
        Block("p", "From Python:"),
        Block(
            "code",
            "from tlzoo import Predictor\n\n"
            f"predictor = Predictor.load({run_path!r})\n"
            f"print(predictor.predict([{example!r}]))  # label, probability, all probabilities",
        ),
    ]
    if not b.get("weights_saved", True):
        load.append(
            Block(
                "p",
                "The backbone was frozen, so only the head is stored: loading needs the same "
                f"backbone weights ({r.get('weights', b.get('weights_source', '?'))}); their "
                "fingerprint is checked.",
            )
        )
    return [
        ("Model description", [Block("p", " ".join(description)), Block("ul", items=items)]),
        ("Intended use", [Block("p", intended[0]), Block("p", intended[1])]),
        ("Training data", [Block("ul", items=data)]),
        ("Evaluation results", results),
        ("Limitations", [Block("ul", items=limits)]),
        ("How to load", load),
    ]


def limitations(files: RunFiles, ci: dict[str, list[float]]) -> list[str]:
    """What a reader should know before trusting the figures, worked out from the results."""
    t, r = files.test, files.run
    out = []
    n = int(t.get("n", 0) or 0)
    width = ci["accuracy"][1] - ci["accuracy"][0]
    if width > WIDE_INTERVAL:
        out.append(
            f"Small test set: {n} examples give a 95 % accuracy interval {width * 100:.0f} points wide "
            f"{_ci(ci['accuracy'])}; differences smaller than that between runs are not evidence."
        )
    else:
        out.append(f"The accuracy interval is {width * 100:.1f} points wide on {n} test examples.")
    per = t.get("per_class", {})
    weak = [f"{c} (F1 {s['f1']:.2f})" for c, s in per.items() if float(s.get("f1", 0)) < LOW_F1]
    if weak:
        out.append(f"Classes with low F1 (below {LOW_F1}): {', '.join(weak)}.")
    supports = {c: int(s.get("support", 0)) for c, s in per.items()}
    rare = [f"{c} ({n})" for c, n in supports.items() if n < SMALL_SUPPORT]
    if rare and len(rare) == len(supports):
        out.append(
            f"Every class has fewer than {SMALL_SUPPORT} test examples ({min(supports.values())} to "
            f"{max(supports.values())}): the per-class scores are rough."
        )
    elif rare:
        out.append(f"Classes with fewer than {SMALL_SUPPORT} test examples, whose scores are rough: {', '.join(rare)}.")
    pairs = confused_pairs(files)
    if pairs:
        p = pairs[0]
        out.append(
            f"Most frequent confusion: {p.true} predicted as {p.predicted} ({p.count} times, "
            f"{p.share:.0%} of {p.true})."
        )
    if not files.model.get("backbone", {}).get("request", {}).get("pretrained", True):
        out.append("The backbone started from random weights: this is a from-scratch baseline, not transfer learning.")
    out.append(f"Trained on {r.get('n_train', '?')} examples of one data set; accuracy on other sources may be lower.")
    return out


def _shell_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_|"})


def _md(text: str) -> str:
    """Plain text for Markdown: HTML-escaped (Hub cards render HTML) and Markdown-escaped."""
    return html.escape(str(text), quote=False).translate(_MD_SPECIAL)


def _yaml_str(s: str) -> str:
    return json.dumps(str(s), ensure_ascii=False)  # a JSON string is a valid YAML double-quoted scalar


def model_card(files: RunFiles) -> str:
    """``README.md``: YAML front matter (tags, metrics, model-index) and the card sections in Markdown."""
    r, t = files.run, files.test
    ci = intervals(files)
    task = "image-classification" if files.modality == "vision" else "text-classification"
    name = files.folder.name.removesuffix(".incomplete")
    data = _data_name(files)
    tags = ["tlzoo", "transfer-learning", task, str(r.get("plugin", "")), str(r.get("strategy", ""))]
    front = [
        "---",
        "library_name: tlzoo",
        f"pipeline_tag: {task}",
        "tags:",
        *[f"- {_yaml_str(tag)}" for tag in dict.fromkeys(tags) if tag],
        "metrics:",
        "- accuracy",
        "- f1",
        "model-index:",
        f"- name: {_yaml_str(name)}",
        "  results:",
        "  - task:",
        f"      type: {task}",
        "    dataset:",
        f"      name: {_yaml_str(data)}",
        f"      type: {_yaml_str(data)}",
        "      split: test",
        "    metrics:",
        "    - type: accuracy",
        f"      value: {float(t.get('accuracy', 0)):.4f}",
        f"      name: {_yaml_str('test accuracy, 95% CI ' + _ci(ci['accuracy']))}",
        "    - type: f1",
        f"      value: {float(t.get('macro_f1', 0)):.4f}",
        f"      name: {_yaml_str('test macro-F1, 95% CI ' + _ci(ci['macro_f1']))}",
        "---",
        "",
        f"# {_md(name)}",
        "",
        f"{_md(r.get('model', '?'))} + {_md(r.get('head', '?'))} head ({_md(r.get('strategy', '?'))}), "
        f"trained with tlzoo: test accuracy {_fmt(t.get('accuracy'))} {_ci(ci['accuracy'])}, "
        f"macro-F1 {_fmt(t.get('macro_f1'))} {_ci(ci['macro_f1'])}.",
        "",
    ]
    body = []
    for title, blocks in card_sections(files):
        body += [f"## {title}", ""]
        for block in blocks:
            body += [*_block_md(block), ""]
    return "\n".join(front + body).rstrip() + "\n"


def _block_md(block: Block) -> list[str]:
    if block.kind == "p":
        return [_md(block.text)]
    if block.kind == "ul":
        return [f"- {_md(item)}" for item in block.items]
    if block.kind == "code":
        fence = "```"
        while fence in block.text:
            fence += "`"
        return [fence + ("bash" if block.text.startswith("tl ") else "python"), block.text, fence]
    header, *rows = block.rows
    return ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(_md(c) for c in row) + " |" for row in rows
    ]


def _block_html(block: Block) -> str:
    e = html.escape
    if block.kind == "p":
        return f"<p>{e(block.text)}</p>"
    if block.kind == "ul":
        return "<ul>" + "".join(f"<li>{e(i)}</li>" for i in block.items) + "</ul>"
    if block.kind == "code":
        return f"<pre><code>{e(block.text)}</code></pre>"
    header, *rows = block.rows
    return _table(header, rows)


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
        from tlzoo.engine.zoo import Zoo

        cfg = RunConfig.from_toml(files.folder / "config.toml")
        source = Zoo().data_source_for(cfg.data.path, files.modality or "vision")
        ds = source.load(cfg.data.path, DataOptions(cfg.data.text_column, cfg.data.label_column, cfg.data.encoding))
    except Exception:  # noqa: BLE001 - thumbnails are optional; the page says when one is missing
        return {}
    wanted = set(ids)
    return {i: ex for i, ex in zip(ds.ids, ds.examples) if i in wanted}


# --------------------------------------------------------------------------- HTML
CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg2:#f6f8fa; --accent:#0969da; --bad:#cf222e; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; color: var(--fg);
       margin: 0; background: #fff; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 20px 0 8px; }
p.sub { color: var(--muted); margin: 0 0 14px; word-break: break-all; }
nav { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 14px; padding: 8px 0;
      border-bottom: 1px solid var(--line); }
nav a { color: var(--accent); text-decoration: none; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(190px, 1fr)); gap: 12px; margin: 16px 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; background: var(--bg2); }
.card .k { color: var(--muted); font-size: 13px; }
.card .v { font-size: 24px; font-weight: 600; }
.card .ci { color: var(--muted); font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 14px; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--bg2); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.low { color: var(--bad); font-weight: 600; }
td.text { max-width: 560px; overflow-wrap: anywhere; }
figure { margin: 8px 0 16px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figure.confusion { flex: 0 1 600px; min-width: 0; }
.pairs { flex: 1 1 320px; }
figcaption { color: var(--muted); font-size: 13px; }
pre { background: var(--bg2); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; overflow-x: auto;
      font-size: 13px; line-height: 1.45; }
.two { display: flex; flex-wrap: wrap; gap: 8px 28px; align-items: flex-start; }
table.kv th { width: 190px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(128px, 1fr)); gap: 10px; margin: 10px 0; }
.tile { border: 1px solid var(--line); border-radius: 6px; padding: 6px; font-size: 12.5px; line-height: 1.35;
        background: var(--bg2); }
.tile img { display: block; margin: 0 auto 4px; image-rendering: pixelated; background: #fff; }
.tile .wrong { color: var(--bad); font-weight: 600; }
.muted { color: var(--muted); }
section.card-md { border: 1px solid var(--line); border-radius: 8px; padding: 4px 18px 8px; }
"""

# no script, no fetch: images come only from data: URIs, styles only from the <style> element
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _table(
    header: list[str],
    rows: list[list[str]],
    num: set[int] | None = None,
    classes: dict[tuple[int, int], str] | None = None,
) -> str:
    """An HTML table of plain-text cells (escaped here); ``num`` columns are right-aligned."""
    num = num or set()
    classes = classes or {}
    e = html.escape
    out = ["<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cells = []
        for j, cell in enumerate(row):
            cls = " ".join(filter(None, ["num" if j in num else "", classes.get((i, j), "")]))
            cells.append(f'<td class="{cls}">{e(str(cell))}</td>' if cls else f"<td>{e(str(cell))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _kv(rows: list[tuple[str, Any]]) -> str:
    """A two-column table of names and plain-text values (both escaped)."""
    e = html.escape
    body = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _figure(files: RunFiles, name: str, alt: str, caption: str, cls: str = "") -> str:
    png = files.images.get(name)
    if png is None:
        return f'<p class="muted">{html.escape(name)} was not written for this run.</p>'
    attr = f' class="{cls}"' if cls else ""
    return (
        f'<figure{attr}><img src="{_data_uri(png)}" alt="{html.escape(alt)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _curves_caption(files: RunFiles) -> str:
    if files.history and all(r.get("phase") == "fit" for r in files.history):
        return (
            "The head is fitted in one step, not over epochs: the two points are the fitted head's training "
            "and validation accuracy and loss (history.csv)."
        )
    return "Accuracy and loss per epoch, training and validation, phases marked (history.csv)."


def _summary(files: RunFiles, ci: dict[str, list[float]]) -> str:
    r, t = files.run, files.test
    e = html.escape
    cards = [
        ("test accuracy", _fmt(t.get("accuracy")), f"95 % CI {_ci(ci['accuracy'])}"),
        ("macro-F1", _fmt(t.get("macro_f1")), f"95 % CI {_ci(ci['macro_f1'])}"),
        ("test examples", str(t.get("n", r.get("n_test", "?"))), f"of {_total(r)} in all"),
        ("seconds", _fmt(files.metrics.get("seconds"), 1), "whole run, wall clock"),
    ]
    html_cards = "".join(
        f'<div class="card"><div class="k">{e(k)}</div><div class="v">{e(v)}</div><div class="ci">{e(c)}</div></div>'
        for k, v, c in cards
    )
    rows = [
        ("plugin", r.get("plugin", "?")),
        ("model", r.get("model", "?")),
        ("weights", r.get("weights", "?")),
        ("head", r.get("head", "?")),
        ("strategy", r.get("strategy", "?")),
        ("seed", r.get("seed", "?")),
        ("intervals", METHOD),
    ]
    return f'<div class="cards">{html_cards}</div>' + _kv(rows)


def _total(r: dict[str, Any]) -> str:
    try:
        return str(int(r["n_train"]) + int(r["n_val"]) + int(r["n_test"]))
    except (KeyError, TypeError, ValueError):
        return "?"


def _per_class(files: RunFiles) -> str:
    per = files.test.get("per_class", {})
    rows, marks = [], {}
    for i, (c, s) in enumerate(per.items()):
        rows.append(
            [c, _fmt(s.get("precision"), 3), _fmt(s.get("recall"), 3), _fmt(s.get("f1"), 3), str(s.get("support", ""))]
        )
        if float(s.get("f1", 0)) < LOW_F1:
            marks[(i, 3)] = "low"
    note = f'<p class="muted">F1 below {LOW_F1} in red. Support = test examples of the class.</p>'
    return _table(["class", "precision", "recall", "F1", "support"], rows, num={1, 2, 3, 4}, classes=marks) + note


def _pairs(files: RunFiles) -> str:
    pairs = confused_pairs(files)
    if not pairs:
        return "<p>No test example was confused: the confusion matrix has no off-diagonal cell.</p>"
    rows = [[p.true, p.predicted, str(p.count), f"{p.share:.0%}"] for p in pairs]
    return _table(["true class", "predicted as", "count", "share of true class"], rows, num={2, 3})


def _losses(files: RunFiles, examples: Mapping[str, Any] | None, reload: bool) -> str:
    if not files.examples:
        return '<p class="muted">predictions.csv is missing: no per-example losses.</p>'
    worst = top_losses(files.examples, TOP_LOSSES)
    e = html.escape
    wrong = sum(x.true != x.predicted for x in files.examples)
    intro = (
        f"<p>The {len(worst)} test examples with the highest loss (−log of the probability given to the true "
        f"class), the model's surest mistakes first. {wrong} of {len(files.examples)} test examples are wrong; "
        f"<code>tl errors {e(_shell_quote(files.location))}</code> lists them in the terminal.</p>"
    )
    if files.modality == "vision":
        return intro + _loss_tiles(files, worst, examples, reload)
    out = [
        "<table><thead><tr><th>#</th><th>text</th><th>true</th><th>predicted</th><th>p(predicted)</th>"
        "<th>p(true)</th><th>loss</th></tr></thead><tbody>"
    ]
    for rank, x in enumerate(worst, 1):
        text = x.input if len(x.input) <= TEXT_CHARS else x.input[:TEXT_CHARS] + "…"
        mark = ' class="low"' if x.true != x.predicted else ""
        out.append(
            f'<tr><td class="num">{rank}</td><td class="text">{e(text)}</td><td>{e(x.true)}</td>'
            f'<td{mark}>{e(x.predicted)}</td><td class="num">{x.probability:.3f}</td>'
            f'<td class="num">{x.p_true:.3f}</td><td class="num">{x.loss:.3f}</td></tr>'
        )
    out.append("</tbody></table>")
    return intro + "".join(out)


def _loss_tiles(files: RunFiles, worst: list[Example], examples: Mapping[str, Any] | None, reload: bool) -> str:
    """One tile per image: thumbnail, id, true and predicted class, probabilities and loss."""
    found = dict(examples or {})
    missing = [x.id for x in worst if x.id not in found and not Path(x.input).is_file()]
    if missing and examples is None and reload:
        found.update(reload_examples(files, missing))
    e = html.escape
    tiles = []
    for rank, x in enumerate(worst, 1):
        source = found.get(x.id, x.input if Path(x.input).is_file() else None)
        png = thumbnail(source) if source is not None else None
        picture = (
            f'<img src="{_data_uri(png)}" alt="{e(x.id)}" title="{e(x.input)}">'
            if png
            else '<div class="muted">(image not readable here)</div>'
        )
        verdict = (
            f'<span class="wrong">predicted {e(x.predicted)}</span>'
            if x.true != x.predicted
            else f"predicted {e(x.predicted)}"
        )
        tiles.append(
            f'<div class="tile">{picture}<div>#{rank} <span class="muted">{e(x.id)}</span></div>'
            f"<div>true {e(x.true)} · {verdict}</div>"
            f"<div>p {x.probability:.3f} · p(true) {x.p_true:.3f}</div><div>loss {x.loss:.3f}</div></div>"
        )
    return f'<div class="tiles">{"".join(tiles)}</div>'


def _plan(files: RunFiles) -> str:
    b, head = files.model.get("backbone", {}), files.model.get("head", {})
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
    phase_table = (
        _table(
            ["phase", "epochs", "best val loss", "at epoch", "last train acc", "last val acc"],
            rows,
            num={1, 2, 3, 4, 5},
        )
        if rows
        else '<p class="muted">history.csv is missing.</p>'
    )
    info: list[tuple[str, Any]] = [
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
    return "<h3>Phases</h3>" + phase_table + "<h3>Model</h3>" + _kv(info)


def _isnum(x: Any) -> bool:
    try:
        float(x)
        return True
    except (TypeError, ValueError):
        return False


def _data(files: RunFiles) -> str:
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
            ", ".join(f"{c} {s.get('support', '?')}" for c, s in t.get("per_class", {}).items()),
        ),
    ]
    if files.modality == "text":
        rows.insert(1, ("columns", f"text {d.get('text_column', 'text')}, label {d.get('label_column', 'label')}"))
    return _kv(rows)


def render_html(files: RunFiles, examples: Mapping[str, Any] | None = None, reload: bool = True) -> str:
    e = html.escape
    ci = intervals(files)
    r = files.run
    title = f"{r.get('model', '?')} · {r.get('head', '?')} · {r.get('strategy', '?')}"
    sections = [
        ("summary", "Summary", _summary(files, ci)),
        ("classes", "Per-class results", _per_class(files)),
        (
            "curves",
            "Training curves",
            _figure(files, "history.png", "training and validation curves", _curves_caption(files)),
        ),
        (
            "confusion",
            "Confusion matrix",
            '<div class="two">'
            + _figure(
                files,
                "confusion.png",
                "confusion matrix",
                "Rows: true class; columns: predicted; cells coloured by the share of the row.",
                "confusion",
            )
            + '<div class="pairs"><h3 id="confused">Most-confused pairs</h3>'
            + _pairs(files)
            + "</div></div>",
        ),
        ("losses", "Top losses", _losses(files, examples, reload)),
    ]
    if "augment.png" in files.images:
        sections.append(
            (
                "augment",
                "Augmentation",
                _figure(
                    files,
                    "augment.png",
                    "augmented training samples",
                    "Left: as evaluated; right: training-time draws.",
                ),
            )
        )
    card = "".join(f"<h3>{e(t)}</h3>" + "".join(_block_html(b) for b in blocks) for t, blocks in card_sections(files))
    sections += [
        ("plan", "Plan and run", _plan(files)),
        ("data", "Data", _data(files)),
        (
            "config",
            "Configuration",
            f'<p class="muted">config.toml: rerun with <code>tl run --config '
            f"config.toml --out NEW_FOLDER</code>.</p><pre>{e(files.config_text or '(config.toml missing)')}</pre>",
        ),
        (
            "card",
            "Model card",
            '<p class="muted">Also written as README.md beside this page.</p>'
            f'<section class="card-md">{card}</section>',
        ),
    ]
    nav = "".join(f'<a href="#{sid}">{e(name)}</a>' for sid, name, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{e(name)}</h2>{content}</section>' for sid, name, content in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e('tlzoo report: ' + files.folder.name.removesuffix('.incomplete'))}</title>"
        f"<style>{CSS}</style></head><body><main>"
        f'<h1>{e(title)}</h1><p class="sub">{e(files.location)}</p><nav>{nav}</nav>{body}'
        '<p class="muted">Written by tlzoo ' + e(str(r.get("versions", {}).get("tlzoo", ""))) + ".</p>"
        "</main></body></html>\n"
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
