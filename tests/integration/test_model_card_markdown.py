"""The model card stays text whatever the labels say (issue 17 §9), and the templates behind it.

Labels and texts come from the user's CSV.  In README.md a class named ``[click](http://x)``
must not become a link, ``![img](http://y)`` an image, ``# head`` a heading, ``<script>`` HTML,
and a newline must not start a block of its own.  The card is rendered with markdown-it-py
(CommonMark plus tables, what the Hub and GitHub build on) and the HTML it gives is checked
for links, images, headings and tags that the card's own structure does not have.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tlzoo.commands.templating import TEMPLATES, fence, md, render

HOSTILE = [
    "[click](http://x)",
    "![img](http://y)",
    "# head",
    "<script>alert(1)</script>",
    "*bold* _it_ `code`",
    "two\nlines\n## sub",
    "a|b",
    "see www.example.com or https://z.example",
]
OUR_HEADINGS = {"h1": 1, "h2": 6}  # the run's name; the six card sections


def _html(markdown: str) -> str:
    from markdown_it import MarkdownIt

    body = markdown.split("---\n", 2)[2]  # the YAML front matter is metadata, not Markdown
    return MarkdownIt("commonmark").enable("table").render(body)


def _assert_inert(markdown: str) -> None:
    page = _html(markdown)
    assert "<a " not in page and "<img" not in page, page
    assert "<script" not in page.lower() and "<em>" not in page and "<strong>" not in page
    for tag, expected in OUR_HEADINGS.items():
        assert page.count(f"<{tag}>") == expected, (tag, page)
    assert not re.search(r"<h[3-6]>", page)
    assert "http://x" not in markdown and "https://z" not in markdown  # bare URLs broken: GFM links them


def test_md_escapes_every_inline_construct() -> None:
    assert md("[click](http://x)") == "\\[click\\](http\\://x)"
    assert md("![img](y)") == "\\!\\[img\\](y)"
    assert md("# head") == "\\# head"
    assert md("<b>&</b>") == "&lt;b&gt;&amp;&lt;/b&gt;"
    assert md("a\nb\r\nc\u2028d") == "a b c d"
    assert md("www.x.org WWW.y") == "www\\.x.org WWW\\.y"
    assert md("plain words, 0.5 (a-b)") == "plain words, 0.5 (a-b)"  # ordinary text is left as it was
    assert fence("x ``` y") == "````" and fence("print(1)") == "```"


def test_templates_are_package_files_and_strict(tmp_path: Path) -> None:
    names = {p.name for p in TEMPLATES.iterdir()}
    assert {"report.html.j2", "report.css", "model_card.md.j2"} <= names
    import jinja2

    with pytest.raises(jinja2.UndefinedError):  # a value the caller forgot is an error, not an empty string
        render("model_card.md.j2", task="text-classification")


def _hostile_csv(path: Path, text_csv: Path) -> Path:
    with text_csv.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["id", "text", "label"])
        w.writeheader()
        for i, r in enumerate(rows[:64]):
            w.writerow({"id": r["id"], "text": r["text"], "label": HOSTILE[i % 4]})
    return path


def test_card_of_a_hand_made_run_with_hostile_labels(tmp_path: Path) -> None:
    import json

    from tests.integration.test_report import make_run
    from tlzoo.commands.report import write_report

    run = make_run(tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    names = {"fresh": HOSTILE[0], "rot<ten>": HOSTILE[5]}
    test = metrics["test"]
    test["classes"] = [names[c] for c in test["classes"]]
    test["per_class"] = {names[c]: v for c, v in test["per_class"].items()}
    metrics["run"].update(model=HOSTILE[1], head=HOSTILE[4], strategy=HOSTILE[2], weights=HOSTILE[7])
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "config.toml").write_text('seed = 0\n[data]\npath = "[data](http://evil)"\nlimit = 0\n')
    page, card = write_report(run, location="runs/my run")
    markdown = card.read_text(encoding="utf-8")
    _assert_inert(markdown)
    assert "Classes: \\[click\\](http\\://x), two lines \\#\\# sub" in markdown
    assert "\\!\\[img\\](http\\://y) + \\*bold\\* \\_it\\_ \\`code\\` head (\\# head)" in markdown
    assert "\n#" not in markdown.replace("\n# run\n", "").replace("\n## ", "")  # our headings only
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert "<td>[click](http://x)</td>" in html  # the page shows the label as text (no Markdown there)


def test_a_real_run_on_hostile_labels_writes_an_inert_card(
    tiny_bert_dir: Path, text_csv: Path, tmp_path: Path, run_cli: Callable[..., Any]
) -> None:
    data = _hostile_csv(tmp_path / "hostile.csv", text_csv)
    out = tmp_path / "run"
    res = run_cli(
        "run", "--plugin", "bert", "--weights", tiny_bert_dir, "--data", data, "--head", "logreg",
        "--max-length", "16", "--out", out, "-q",
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    markdown = (out / "README.md").read_text(encoding="utf-8")
    _assert_inert(markdown)
    for label in HOSTILE[:4]:
        assert md(label) in markdown, label
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
