"""``README.md``, the model card of a run: the Hugging Face sections, in Markdown and in the report.

:func:`card_sections` builds the sections once, as plain blocks (paragraphs, lists, code,
tables); ``model_card.md.j2`` lays them out as Markdown with YAML front matter, and
``report.html.j2`` shows the same blocks in the page.  Every value from the run (labels, names,
paths) reaches the Markdown through :func:`tlzoo.commands.templating.md`, so that a class named
``[click](http://x)``, ``![i](y)``, ``# head`` or ``<script>`` is text, never a link, an image,
a heading or HTML (issue 17).  The prose is tlzoo's own and needs no escaping.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tlzoo.commands.run_files import RunFiles, _ci, _data_name, _fmt, confused_pairs, intervals
from tlzoo.commands.templating import md, render
from tlzoo.evaluation.uncertainty import METHOD

LOW_F1 = 0.5
SMALL_SUPPORT = 10
WIDE_INTERVAL = 0.10


@dataclass
class Block:
    """One piece of a card section, rendered to Markdown and to HTML alike (values already escaped for its target)."""

    kind: str  # "p", "ul", "code" or "table"
    text: str = ""
    items: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)  # table: first row is the header


def _plain(value: Any) -> str:
    return str(value)


@dataclass(frozen=True)
class Scoring:
    """What the run's headline figures are: the held-out test split's, or (``--cv K --test-fraction 0``,
    no test split) the K folds' cross-validated figures, which the card and the page never call "test"."""

    cross_validated: bool
    label: str  # before "accuracy": "test" or "cross-validated (K folds)"
    examples: str  # "test examples" or "cross-validated examples"
    method: str  # how the 95 % intervals were made


def scoring(files: RunFiles) -> Scoring:
    """How ``files``' test figures were scored (metrics.json ``test.scored_by`` marks a run without a test split)."""
    t = files.test
    if not t.get("scored_by"):
        return Scoring(False, "test", "test examples", METHOD)
    folds = (files.metrics.get("cross_validation") or {}).get("folds", "K")
    method = str(t.get("ci_method") or "mean ± t(0.975, K-1) sd/sqrt(K) over the folds")
    return Scoring(True, f"cross-validated ({folds} folds)", "cross-validated examples", method)


def card_sections(files: RunFiles, esc: Callable[[Any], str] = _plain) -> list[tuple[str, list[Block]]]:
    """The Hugging Face model-card sections: description, use, data, results, limits, loading.

    The prose is tlzoo's; every value from the run (labels, names, paths, numbers read from its
    files) goes through ``esc``: :func:`tlzoo.commands.templating.md` for README.md, plain text for
    the HTML page, whose template escapes everything.  Code blocks are left as they are (fenced).
    """
    b = files.model.get("backbone", {})
    ci = intervals(files)
    classes = list(files.test.get("classes", files.classes))
    names = ", ".join(esc(c) for c in classes)
    noun = example_noun(files)
    data = esc(_data_name(files))
    weights = esc(files.run.get("weights", b.get("weights_source", "?")))
    inputs = ", ".join(esc(k) for k in example_record(files))
    what = f"{'An' if noun[0] in 'aeiou' else 'A'} {esc(noun)} classifier over {len(classes)} classes"
    if noun == "record":
        what = (
            f"A classifier over {len(classes)} classes of records with several inputs ({inputs}), their features fused,"
        )
    description = f"{what} trained with tlzoo by transfer learning."
    caution = (
        "Not evaluated on other domains, languages or image sources; measure it on your own labelled "
        "sample before relying on it, and do not use it for decisions about people without human review."
    )
    return [
        ("Model description", [Block("p", description), Block("ul", items=_model_items(files, esc, weights, names))]),
        (
            "Intended use",
            [Block("p", f"Classifying {esc(noun)}s like those in {data} into: {names}."), Block("p", caution)],
        ),
        ("Training data", [Block("ul", items=_data_items(files, esc, data))]),
        ("Evaluation results", _result_blocks(files, esc, ci)),
        ("Limitations", [Block("ul", items=limitations(files, ci, esc))]),
        ("How to load", _how_to_load(files, noun, weights)),
    ]


def _model_items(files: RunFiles, esc: Callable[[Any], str], weights: str, names: str) -> list[str]:
    """Backbone, weights, head, strategy and classes of the run, one list item each."""
    r, b, head = files.run, files.model.get("backbone", {}), files.model.get("head", {})
    strategy = r.get("strategy", "")
    params = f" ({esc(json.dumps(head.get('params'), sort_keys=True))})" if head.get("params") else ""
    how = " (backbone layers updated)" if strategy else ""
    how = " (backbone frozen, head trained on its features)" if strategy == "feature-extraction" else how
    items = [
        f"Backbone: {esc(r.get('model', b.get('model', '?')))} (plugin {esc(r.get('plugin', b.get('plugin', '?')))}, "
        f"{esc(b.get('num_features', '?'))} features)",
        f"Weights source: {weights}"
        + ("" if b.get("request", {}).get("pretrained", True) else " (random initialisation, no pretraining)"),
        f"Head: {esc(r.get('head', head.get('name', '?')))}{params}",
        f"Strategy: {esc(strategy)}{how}",
        f"Classes: {names}",
    ]
    if r.get("weights_fingerprint"):
        items.append(f"Backbone weights fingerprint: {esc(r['weights_fingerprint'])}")
    return items


def _data_items(files: RunFiles, esc: Callable[[Any], str], data: str) -> list[str]:
    """Where the examples came from and how they were split."""
    r, t = files.run, files.test
    limit = files.config.get("data", {}).get("limit")
    no_test = (
        " (--test-fraction 0: no test split; cross-validation scores the run)" if scoring(files).cross_validated else ""
    )
    return [
        f"Data: {data}" + (f" (stratified subset of {esc(limit)} examples)" if limit else ""),
        f"Split (stratified, seed {esc(r.get('seed', 0))}): {esc(r.get('n_train', '?'))} training, "
        f"{esc(r.get('n_val', '?'))} validation, {esc(r.get('n_test', t.get('n', '?')))} test examples{no_test}",
        *_trained_on(files, esc),
    ]


def _trained_on(files: RunFiles, esc: Callable[[Any], str]) -> list[str]:
    """What the saved model learnt from (metrics.json ``trained_on``), and --cv K's figures."""
    on, cv = files.metrics.get("trained_on") or {}, files.metrics.get("cross_validation") or {}
    out = []
    if on:
        splits = " + ".join("validation" if s == "val" else s for s in on.get("splits", []))
        out.append(
            f"The saved model was trained on {esc(splits)} ({esc(on.get('rows', '?'))} examples): "
            f"{esc(on.get('why', ''))}"
        )
    if cv:
        a, f = cv.get("accuracy", {}), cv.get("macro_f1", {})
        on = "all the data" if scoring(files).cross_validated else "train + validation"
        out.append(
            f"{esc(cv.get('folds'))}-fold cross-validation on {on} ({esc(cv.get('rows'))} examples): "
            f"accuracy {_fmt(a.get('mean'))} ± {_fmt(a.get('sd'))} (95 % interval {_ci(a.get('ci') or [None, None])}), "
            f"macro-F1 {_fmt(f.get('mean'))} ± {_fmt(f.get('sd'))} (95 % interval {_ci(f.get('ci') or [None, None])})"
        )
    return out


def _result_blocks(files: RunFiles, esc: Callable[[Any], str], ci: dict[str, list[float]]) -> list[Block]:
    """The test figures (or, without a test split, the cross-validated ones) with their intervals, the
    per-class table, and any ablation."""
    t, how = files.test, scoring(files)
    per_class = [
        [esc(c), _fmt(s.get("precision"), 3), _fmt(s.get("recall"), 3), _fmt(s.get("f1"), 3), esc(s.get("support", ""))]
        for c, s in t.get("per_class", {}).items()
    ]
    where = f"On the held-out test set ({esc(t.get('n', '?'))} examples); intervals: {how.method}."
    if how.cross_validated:
        where = (
            f"{how.label.capitalize()} on all {esc(t.get('n', '?'))} examples: there is no test split "
            f"(--test-fraction 0), so each fold is scored by a head fitted on the other folds; intervals: {how.method}."
        )
    return [
        Block("p", where),
        Block(
            "table",
            rows=[
                ["metric", "value", "95 % interval"],
                ["accuracy", _fmt(t.get("accuracy")), _ci(ci["accuracy"])],
                ["macro-F1", _fmt(t.get("macro_f1")), _ci(ci["macro_f1"])],
            ],
        ),
        *([Block("table", rows=[["class", "precision", "recall", "F1", "support"], *per_class])] if per_class else []),
        *ablation_blocks(files, esc),
    ]


def ablation_blocks(files: RunFiles, esc: Callable[[Any], str] = _plain) -> list[Block]:
    """What each input adds (a fused run's ``ablation`` in metrics.json): each alone, all but one, all."""
    table = files.metrics.get("ablation")
    if not isinstance(table, dict) or not table.get("rows"):
        return []
    rows = [
        [
            esc(" + ".join(str(i) for i in r.get("inputs", []))),
            esc(r.get("kind", "")),
            _fmt(r.get("accuracy")),
            _ci(r["accuracy_ci"]) if r.get("accuracy_ci") else "",
            _fmt(r.get("macro_f1")),
            _ci(r["macro_f1_ci"]) if r.get("macro_f1_ci") else "",
        ]
        for r in table["rows"]
    ]
    return [
        Block(
            "p",
            f"What each input adds: a {esc(table.get('head', '?'))} head fitted on each input's cached features alone, "
            f"on all but one, and on all, scored on the same {esc(table.get('n_test', '?'))} test examples.",
        ),
        Block("table", rows=[["inputs", "kind", "accuracy", "95 % interval", "macro-F1", "95 % interval"], *rows]),
    ]


def example_noun(files: RunFiles) -> str:
    """What one example of the run is: an image, a text, a record (several inputs), or the modality's name."""
    modality = files.modality
    return {"vision": "image", "text": "text", "multimodal": "record", "": "text"}.get(modality, modality)


def example_record(files: RunFiles) -> dict[str, str]:
    """A placeholder record of a fused run: each input column and tabular column with a value of its kind."""
    backbone = files.model.get("backbone", {})
    record: dict[str, str] = {}
    for part in backbone.get("preprocessing", {}).get("inputs", []):
        value = "path/to/image.png" if "input_size" in part else "a new example text" if "tokenizer" in part else "..."
        numeric, categories = part.get("numeric") or {}, part.get("categories") or {}
        for column in part.get("columns", []):
            if column in numeric:  # the tabular encoder: its training mean, or a category it knows
                record[str(column)] = f"{float(numeric[column][0]):g}"
            elif categories.get(column):
                record[str(column)] = str(categories[column][0])
            else:
                record[str(column)] = value
    return record


def _how_to_load(files: RunFiles, noun: str, weights: str) -> list[Block]:
    run_path = files.location
    example: Any = {"text": "a new example text", "image": "path/to/image.png"}.get(noun, "...")
    shown = f'"{example}"'
    if noun == "record":
        example = example_record(files)
        shown = shlex.quote(json.dumps(example))
    load = [
        Block("p", "From the command line:"),
        Block("code", f"tl predict {shlex.quote(run_path)} {shown}"),
        Block("p", "From Python:"),
        Block(
            "code",
            "from tlzoo import Engine\n\n"
            f"for row in Engine().predict({run_path!r}, [{example!r}]):\n"
            '    print(row["label"], row["probability"])  # row["probabilities"]: every class',
        ),
    ]
    if not files.model.get("backbone", {}).get("weights_saved", True):
        load.append(
            Block(
                "p",
                f"The backbone was frozen, so only the head is stored: loading needs the same backbone weights "
                f"({weights}); their fingerprint is checked.",
            )
        )
    return load


def limitations(files: RunFiles, ci: dict[str, list[float]], esc: Callable[[Any], str] = _plain) -> list[str]:
    """What a reader should know before trusting the figures, worked out from the results (values through ``esc``)."""
    t, r, how = files.test, files.run, scoring(files)
    out = []
    n = int(t.get("n", 0) or 0)
    width = ci["accuracy"][1] - ci["accuracy"][0]
    if width > WIDE_INTERVAL:
        few = "Few cross-validated examples" if how.cross_validated else "Small test set"
        out.append(
            f"{few}: {n} examples give a 95 % accuracy interval {width * 100:.0f} points wide "
            f"{_ci(ci['accuracy'])}; differences smaller than that between runs are not evidence."
        )
    else:
        out.append(f"The accuracy interval is {width * 100:.1f} points wide on {n} {how.examples}.")
    if how.cross_validated:
        out.append(
            "No test split: the figures are the folds' (each scored by a head fitted on the other folds), not a "
            "held-out set's; the saved model learnt from every example, so no held-out example scores it."
        )
    per = t.get("per_class", {})
    weak = [f"{esc(c)} (F1 {s['f1']:.2f})" for c, s in per.items() if float(s.get("f1", 0)) < LOW_F1]
    if weak:
        out.append(f"Classes with low F1 (below {LOW_F1}): {', '.join(weak)}.")
    supports = {c: int(s.get("support", 0)) for c, s in per.items()}
    rare = [f"{esc(c)} ({n})" for c, n in supports.items() if n < SMALL_SUPPORT]
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
            f"Most frequent confusion: {esc(p.true)} predicted as {esc(p.predicted)} ({p.count} times, "
            f"{p.share:.0%} of {esc(p.true)})."
        )
    for where, text in (files.metrics.get("input_reports") or {}).items():  # e.g. texts cut at --max-length
        out.append(f"Inputs ({esc(where)}): {esc(text)}")
    if not files.model.get("backbone", {}).get("request", {}).get("pretrained", True):
        out.append("The backbone started from random weights: this is a from-scratch baseline, not transfer learning.")
    n_train = esc((files.metrics.get("trained_on") or {}).get("rows", r.get("n_train", "?")))
    out.append(f"Trained on {n_train} examples of one data set; accuracy on other sources may be lower.")
    return out


def model_card(files: RunFiles) -> str:
    """``README.md``: YAML front matter (tags, metrics, model-index) and the card sections in Markdown."""
    r, t, how = files.run, files.test, scoring(files)
    ci = intervals(files)
    noun = example_noun(files)
    pipeline = {"image": "image-classification", "text": "text-classification"}.get(noun, "")
    task = pipeline or f"{files.modality}-classification"  # the model-index's task: no pipeline fits several inputs
    tags = ["tlzoo", "transfer-learning", task, str(r.get("plugin", "")), str(r.get("strategy", ""))]
    text = render(
        "model_card.md.j2",
        task=task,
        pipeline=pipeline,
        tags=[tag for tag in dict.fromkeys(tags) if tag],
        name=files.folder.name.removesuffix(".incomplete"),
        data=_data_name(files),
        accuracy=f"{float(t.get('accuracy', 0)):.4f}",
        macro_f1=f"{float(t.get('macro_f1', 0)):.4f}",
        accuracy_text=_fmt(t.get("accuracy")),
        macro_f1_text=_fmt(t.get("macro_f1")),
        accuracy_ci=_ci(ci["accuracy"]),
        macro_f1_ci=_ci(ci["macro_f1"]),
        scored=how.label,
        split="test" if not how.cross_validated else how.label.replace("-validated", "-validation"),
        model=r.get("model", "?"),
        head=r.get("head", "?"),
        strategy=r.get("strategy", "?"),
        sections=card_sections(files, md),
    )
    return text.rstrip() + "\n"
