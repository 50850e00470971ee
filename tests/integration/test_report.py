"""The run report, the model card, error analysis and bootstrap intervals.

Unit tests build run folders by hand (no torch) to check each section, that every
inlined image decodes, that user text is escaped, and what ``tl errors`` prints.  Two
tiny real runs (tiny BERT + logreg on snippets carrying ``<script>``, LeNet on the
built-in digits) check predictions.csv, metrics.json and the page a run writes itself,
and headless Chromium (Debian's package) renders both pages: no console message, every
image in the DOM, a non-blank screenshot.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tlzoo.evaluation.metrics import classification_report
from tlzoo.evaluation.uncertainty import batched_scores, bootstrap_ci

pytestmark = pytest.mark.xdist_group("report")  # one worker makes the shared runs

SCRIPT = '<script>alert("x")</script>'
DATA_URI = re.compile(r'<img[^>]*\ssrc="data:image/png;base64,([A-Za-z0-9+/=]+)"')
SECTIONS = ["summary", "classes", "curves", "confusion", "losses", "plan", "data", "config", "card"]
CARD_HEADINGS = [
    "Model description",
    "Intended use",
    "Training data",
    "Evaluation results",
    "Limitations",
    "How to load",
]


# --------------------------------------------------------------------------- bootstrap intervals
def _predictions(n: int, accuracy: float, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` labels in equal shares; exactly ``round(accuracy * n)`` predictions right, the rest off by one."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    right = np.zeros(n, bool)
    right[rng.permutation(n)[: round(accuracy * n)]] = True
    return y, np.where(right, y, (y + 1) % classes)


def _point(y: np.ndarray, p: np.ndarray, classes: int) -> dict[str, Any]:
    return classification_report(y, p, [str(i) for i in range(classes)])


def test_interval_contains_the_point_estimate() -> None:
    y, p = _predictions(150, 0.7)
    point = _point(y, p, 3)
    ci = bootstrap_ci(y, p, 3)
    for key in ("accuracy", "macro_f1"):
        lo, hi = ci[key]
        assert lo < point[key] < hi, (key, ci[key], point[key])
        assert lo >= 0 and hi <= 1 and hi - lo > 0.05


def test_interval_narrows_as_the_test_set_grows() -> None:
    widths = []
    for n in (60, 600, 6000):
        ci = bootstrap_ci(*_predictions(n, 0.8), 3)
        widths.append((ci["accuracy"][1] - ci["accuracy"][0], ci["macro_f1"][1] - ci["macro_f1"][0]))
    for small, large in zip(widths, widths[1:]):
        assert large[0] < small[0] / 2 and large[1] < small[1] / 2, widths


def test_interval_is_deterministic_by_seed() -> None:
    y, p = _predictions(200, 0.75)
    assert bootstrap_ci(y, p, 3, seed=3) == bootstrap_ci(y, p, 3, seed=3)
    others = [bootstrap_ci(y, p, 3, n_boot=200, seed=s) for s in range(4)]
    assert len({json.dumps(o) for o in others}) > 1, "the seed does not change the resamples"


def test_batched_macro_f1_matches_classification_report() -> None:
    # class 3 is never predicted and class 4 never occurs: both count as F1 0, as in metrics.py
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3, 0, 1])
    p = np.array([0, 1, 1, 1, 2, 0, 2, 0, 0, 1])
    report = classification_report(y, p, ["a", "b", "c", "d", "e"])
    acc, f1 = batched_scores(np.array([report["confusion_matrix"]]))
    assert acc[0] == pytest.approx(report["accuracy"], abs=1e-4)
    assert f1[0] == pytest.approx(report["macro_f1"], abs=1e-4)


def test_perfect_and_empty_predictions() -> None:
    y = np.arange(30) % 3
    # every resample scores 1.0: the Wilson score interval for 30/30, not a zero-width [1.0, 1.0]
    assert bootstrap_ci(y, y, 3) == {"accuracy": [0.8865, 1.0], "macro_f1": [0.8865, 1.0]}
    assert bootstrap_ci(np.array([], int), np.array([], int), 3) == {"accuracy": [0.0, 0.0], "macro_f1": [0.0, 0.0]}
    with pytest.raises(ValueError):
        bootstrap_ci(np.array([0, 5]), np.array([0, 1]), 3)


def test_small_test_set_keeps_every_class_in_the_resamples() -> None:
    # 20 examples of 10 classes, all right but one: a class left out of a resample would score F1 0
    y = np.arange(20) % 10
    p = y.copy()
    p[0] = 1
    ci = bootstrap_ci(y, p, 10)
    assert ci["macro_f1"][0] > 0.8, ci


# --------------------------------------------------------------------------- a run folder made by hand
def _png(path: Path, size: tuple[int, int], seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def make_run(folder: Path, modality: str = "text") -> Path:
    """metrics.json, history.csv, predictions.csv, config.toml, model.json and PNGs as a run leaves them."""
    folder.mkdir(parents=True)
    classes = ["fresh", "rot<ten>"] if modality == "text" else ["cat", "dog"]
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    y_pred = np.array([0, 0, 0, 1, 1, 1, 0, 0])
    report = classification_report(y_true, y_pred, classes)
    report.update(accuracy_ci=[0.25, 0.875], macro_f1_ci=[0.2, 0.86])
    metrics = {
        "test": report,
        "seconds": 12.5,
        "run": {
            "plugin": "bert" if modality == "text" else "efficientnet",
            "model": "tiny",
            "weights": "w",
            "head": "logreg",
            "strategy": "feature-extraction",
            "seed": 0,
            "n_train": 30,
            "n_val": 8,
            "n_test": 8,
            "versions": {"tlzoo": "0.1.0"},
            "weights_fingerprint": "abc123",
        },
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "model.json").write_text(
        json.dumps(
            {
                "modality": modality,
                "classes": classes,
                "head": {"name": "logreg", "params": {}, "kind": "linear"},
                "backbone": {
                    "plugin": "bert",
                    "model": "tiny",
                    "weights_source": "w",
                    "num_features": 32,
                    "weights_saved": False,
                    "request": {"pretrained": True},
                },
            }
        )
    )
    (folder / "config.toml").write_text('seed = 0\n[data]\npath = "data/<b>reviews</b>.csv"\nlimit = 0\n')
    (folder / "history.csv").write_text(
        "phase,epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds\n"
        "head,1,0.9,0.5,0.8,0.5,1\nhead,2,0.5,0.8,0.6,0.7,1\n"
    )
    _png(folder / "history.png", (600, 300), 1)
    _png(folder / "confusion.png", (400, 360), 2)
    images = folder.parent / f"{folder.name}-images"
    images.mkdir()
    with (folder / "predictions.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "true", "predicted", *[f"p_{c}" for c in classes], "probability", "loss", "input"])
        for i, (t, p) in enumerate(zip(y_true, y_pred)):
            right = 0.55 + 0.05 * i if t == p else 0.4 - 0.04 * i
            probs = [right, 1 - right] if t == 0 else [1 - right, right]
            if modality == "text":
                item = f"review {i} {SCRIPT} & more\nsecond line"
            elif i % 2:
                item = f"row{i}"  # an in-memory image: the caller hands it over by id
            else:
                item = str(images / f"img{i}.png")
                _png(Path(item), (40, 30), 10 + i)
            w.writerow(
                [
                    f"row{i}",
                    classes[t],
                    classes[p],
                    *[f"{q:.5f}" for q in probs],
                    f"{max(probs):.5f}",
                    f"{-math.log(probs[t]):.5f}",
                    item,
                ]
            )
    return folder


def _images(page: str) -> list[Any]:
    from PIL import Image

    out = []
    for b64 in DATA_URI.findall(page):
        im = Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))
        im.load()  # decodes every pixel: a truncated PNG fails here
        out.append(im)
    return out


def test_report_has_every_section_and_escapes_user_text(tmp_path: Path) -> None:
    from tlzoo.commands.report import write_report

    run = make_run(tmp_path / "run")
    page_path, card_path = write_report(run)
    page = page_path.read_text(encoding="utf-8")
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in page, sid
    for heading in CARD_HEADINGS:
        assert f"<h3>{heading}</h3>" in page and f"## {heading}" in card_path.read_text(), heading
    # summary with the intervals, per-class rows, the confused pairs, the config
    assert "0.6250" in page and "[0.250, 0.875]" in page and "[0.200, 0.860]" in page
    assert "rot&lt;ten&gt;" in page and "<ten>" not in page
    assert page.count("<tr><td>rot&lt;ten&gt;</td><td>fresh</td>") == 1  # the most-confused pair
    assert "data/&lt;b&gt;reviews&lt;/b&gt;.csv" in page
    # user text: escaped, never markup; and the page holds no script and fetches nothing
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page  # jinja2's autoescape (markupsafe)
    assert "<script" not in page.lower()
    assert not re.search(r'(src|href)="(?!data:|#)', page), "the page refers to something outside itself"
    assert "Content-Security-Policy" in page
    # the two PNGs of the run, inlined, decode to their original size
    sizes = sorted(im.size for im in _images(page))
    assert sizes == [(400, 360), (600, 300)]
    # top losses: highest loss first (row 7 is wrong with the lowest true-class probability)
    section = page.split('<section id="losses">')[1].split("</section>")[0]
    losses = [float(x) for x in re.findall(r'<td class="num">(\d+\.\d{3})</td></tr>', section)]
    assert len(losses) == 8 and losses == sorted(losses, reverse=True) and losses[0] == pytest.approx(2.12)


def test_vision_report_shows_thumbnails_of_files_and_in_memory_images(tmp_path: Path) -> None:
    from tlzoo.commands.report import write_report

    run = make_run(tmp_path / "run", "vision")
    arrays = {f"row{i}": np.full((8, 8), 16 * i, np.uint8) for i in range(1, 8, 2)}
    page = write_report(run, examples=arrays)[0].read_text(encoding="utf-8")
    thumbs = [im for im in _images(page) if max(im.size) <= 96]
    assert len(thumbs) == 8  # 4 image files + 4 in-memory arrays, every test example
    assert all(max(im.size) == 96 for im in thumbs)
    assert "image not readable here" not in page
    # without the arrays (and no data source to reload them from) the page says so instead
    page = write_report(run, reload=False)[0].read_text(encoding="utf-8")
    assert page.count("image not readable here") == 4


def test_model_card_layout(tmp_path: Path) -> None:
    from tlzoo.commands.report import write_report

    run = make_run(tmp_path / "run")
    card = write_report(run, location="runs/my run")[1].read_text(encoding="utf-8")
    front, body = card.split("---\n", 2)[1:]
    assert "library_name: tlzoo" in front and "pipeline_tag: text-classification" in front
    assert "- accuracy" in front and "- f1" in front and "value: 0.6250" in front
    assert "tl predict 'runs/my run' \"a new example text\"" in body
    assert "from tlzoo import Engine" in body and "Engine().predict('runs/my run', ['a new example text'])" in body
    import tlzoo

    assert "Predictor" in tlzoo.__all__
    assert "rot&lt;ten&gt;" in body and "<ten>" not in body
    assert "Small test set: 8 examples" in body and "wide [0.250, 0.875]" in body
    assert "Classes with low F1" not in body  # F1 0.667 and 0.571: none below 0.5
    assert "Every class has fewer than 10 test examples (4 to 4)" in body
    assert "95% CI [0.250, 0.875]" in front


def test_report_refuses_a_folder_without_a_run(tmp_path: Path, run_cli: Callable[..., Any]) -> None:
    res = run_cli("report", tmp_path)
    assert res.exit_code == 2 and "has no metrics.json" in res.stderr and len(res.stderr.splitlines()) == 1


# --------------------------------------------------------------------------- tl errors
def test_tl_errors_lists_pairs_and_worst_examples(
    tmp_path: Path, run_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # the listing fits the terminal; make the width fixed
    run = make_run(tmp_path / "run")
    res = run_cli("errors", run, "--top", "3")
    assert res.exit_code == 0, res
    out = res.stdout
    assert "3 of 8 test examples wrong" in out
    assert "rot<ten> -> fresh: 2 (50%)" in out and "fresh    -> rot<ten>: 1 (25%)" in out
    worst = [line for line in out.splitlines() if line.startswith("  ") and "review" in line]
    assert len(worst) == 3
    assert worst[0].split()[0] == "2.120" and "review 7" in worst[0]  # -log(0.12)
    assert "\nsecond line" not in out and "more second line" in out  # one line per example
    data = json.loads(run_cli("errors", run, "--json", "--top", "2").stdout)
    assert [e["id"] for e in data["top_losses"]] == ["row7", "row6"]
    assert data["most_confused"][0] == {"true": "rot<ten>", "predicted": "fresh", "count": 2, "share": 0.5}


def test_tl_errors_reads_predictions_written_before_loss_and_input(tmp_path: Path, run_cli: Callable[..., Any]) -> None:
    run = tmp_path / "old"
    run.mkdir()
    (run / "predictions.csv").write_text("id,true,predicted,p_a,p_b\nx1,a,b,0.10000,0.90000\nx2,b,b,0.20000,0.80000\n")
    data = json.loads(run_cli("errors", run, "--json").stdout)
    assert data["wrong"] == 1
    assert data["top_losses"][0]["id"] == "x1" and data["top_losses"][0]["loss"] == pytest.approx(-math.log(0.1))
    assert data["top_losses"][0]["input"] == "x1"
    res = run_cli("errors", tmp_path / "missing")
    assert res.exit_code == 2 and "does not exist" in res.stderr  # a missing folder is said as such


def test_tl_errors_does_not_import_torch(tmp_path: Path) -> None:
    import sys

    run = make_run(tmp_path / "run")
    code = (
        "import sys\nfrom tlzoo.cli import cli\n"
        f"try:\n    cli.main(['errors', {str(run)!r}], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "3 of 8 test examples wrong" in out.stdout and out.stdout.strip().endswith("NO-TORCH"), out.stdout


# --------------------------------------------------------------------------- real tiny runs
def _cli(args: list[Any]) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from tlzoo.cli import cli

    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def script_csv(text_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The snippets of text_csv, every one carrying a <script> element and an ampersand."""
    with text_csv.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    path = tmp_path_factory.mktemp("script") / "snippets.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["id", "text", "label"])
        w.writeheader()
        w.writerows({**r, "text": f"{SCRIPT} & {r['text']}"} for r in rows)
    return path


@pytest.fixture(scope="module")
def text_run(tiny_bert_dir: Path, script_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("report-runs") / "text"
    code, stdout, stderr = _cli(
        [
            "run",
            "--plugin",
            "bert",
            "--weights",
            tiny_bert_dir,
            "--data",
            script_csv,
            "--head",
            "logreg",
            "--max-length",
            32,
            "--out",
            out,
            "-q",
        ]
    )
    assert code == 0, stderr
    return out, stdout


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report-runs") / "digits"
    code, _, stderr = _cli(
        [
            "run",
            "--plugin",
            "lenet",
            "--no-pretrained",
            "--data",
            "digits",
            "--limit",
            120,
            "--head",
            "logreg",
            "--out",
            out,
            "-q",
        ]
    )
    assert code == 0, stderr
    return out


@pytest.fixture(scope="module")
def fused_report_run(small_items: Path, tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fused run (picture, title, price): its page has the ablation table, "What each input adds"."""
    from helpers import fused_run_args

    out = tmp_path_factory.mktemp("report-runs") / "fused"
    more = ["--plugin", "image=lenet", "--no-pretrained", "-q"]
    code, _, stderr = _cli([str(a) for a in fused_run_args(small_items, tiny_bert_dir, out, *more)])
    assert code == 0, stderr
    return out


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_predictions_csv_carries_input_probability_and_loss(text_run: tuple[Path, str], script_csv: Path) -> None:
    run, _ = text_run
    texts = {r["id"]: r["text"] for r in _read(script_csv)}
    rows = _read(run / "predictions.csv")
    classes = json.loads((run / "model.json").read_text())["classes"]
    assert list(rows[0]) == ["id", "true", "predicted", *[f"p_{c}" for c in classes], "probability", "loss", "input"]
    for r in rows:
        assert r["input"] == texts[r["id"]]  # the whole text, not an id
        probs = {c: float(r[f"p_{c}"]) for c in classes}
        assert float(r["probability"]) == pytest.approx(probs[r["predicted"]], abs=1e-5)
        assert float(r["probability"]) == pytest.approx(max(probs.values()), abs=1e-5)
        assert float(r["loss"]) == pytest.approx(-math.log(max(probs[r["true"]], 1e-12)), abs=2e-3)


def test_metrics_and_summary_line_carry_the_intervals(text_run: tuple[Path, str]) -> None:
    run, stdout = text_run
    test = json.loads((run / "metrics.json").read_text())["test"]
    for key in ("accuracy", "macro_f1"):
        lo, hi = test[f"{key}_ci"]
        assert 0 <= lo <= test[key] <= hi <= 1
        assert f"[{lo:.3f}, {hi:.3f}]" in stdout
    assert f"n={test['n']}" in stdout


def test_digits_predictions_name_in_memory_images_by_id(digits_run: Path) -> None:
    rows = _read(digits_run / "predictions.csv")
    assert all(r["input"] == r["id"] and r["id"].startswith("digit") for r in rows)


@pytest.mark.parametrize("which", ["text", "digits"])
def test_every_run_writes_its_report(which: str, text_run: tuple[Path, str], digits_run: Path) -> None:
    run = text_run[0] if which == "text" else digits_run
    page = (run / "report.html").read_text(encoding="utf-8")
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in page, sid
    assert "<script" not in page.lower()
    images = _images(page)
    assert all(im.size[0] > 0 for im in images)
    n_thumbs = sum(max(im.size) <= 96 for im in images)
    if which == "text":
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; " in page
        assert n_thumbs == 0 and len(images) == 2  # history.png and confusion.png
    else:  # every test digit (up to 20), from the arrays the runner handed over
        assert n_thumbs == min(20, json.loads((run / "metrics.json").read_text())["test"]["n"]) > 0
    card = (run / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlibrary_name: tlzoo\n") and f"tl predict {run}" in card


def test_a_report_that_fails_does_not_lose_the_run(
    tiny_bert_dir: Path, script_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tlzoo.commands.report as report
    from tlzoo.engine.config import RunConfig
    from tlzoo.facade import Engine

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(report, "write_report", broken)
    cfg = RunConfig()
    cfg.apply_overrides(
        [
            f"data.path={script_csv}",
            "model.plugin=bert",
            f"model.weights={tiny_bert_dir}",
            "model.max_length=32",
            "head.name=logreg",
            f"out={tmp_path / 'run'}",
            "progress=false",
        ]
    )
    log: list[str] = []
    result = Engine(log=log.append).run(cfg)
    assert (result.run_dir / "metrics.json").is_file() and (result.run_dir / "model.safetensors").is_file()
    assert not (result.run_dir / "report.html").exists()
    warning = [line for line in log if "report.html not written" in line]
    assert warning and "disk on fire" in warning[0] and f"tl report {result.run_dir}" in warning[0]


def test_tl_report_rewrites_the_page_with_thumbnails_reloaded(
    digits_run: Path, run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(digits_run, copy)
    (copy / "report.html").unlink()
    res = run_cli("report", copy)
    assert res.exit_code == 0, res
    page = (copy / "report.html").read_text(encoding="utf-8")
    n_test = json.loads((copy / "metrics.json").read_text())["test"]["n"]
    assert sum(max(im.size) <= 96 for im in _images(page)) == min(20, n_test)  # reloaded through the data source
    res = run_cli("errors", copy, "--top", "5")
    assert res.exit_code == 0 and "top 5 losses" in res.stdout


# --------------------------------------------------------------------------- headless Chromium
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.parametrize("which", ["text", "digits", "fused"])
def test_report_renders_in_headless_chromium(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not found: install Debian's package (`make chromium`, as root) to render report.html")
    fixture = {"text": "text_run", "digits": "digits_run", "fused": "fused_report_run"}[which]
    made = request.getfixturevalue(fixture)
    run: Path = made[0] if which == "text" else made
    page = run / "report.html"
    shot = tmp_path / f"report-{which}.png"
    common = [
        browser,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1200,3000",
    ]
    shot_run = subprocess.run(
        [*common, f"--screenshot={shot}", page.resolve().as_uri()], capture_output=True, text=True, timeout=180
    )
    dom_run = subprocess.run(
        [*common, "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True, timeout=180
    )
    # the page has no script and loads nothing: any console line (a CSP refusal, an error) is a fault
    for proc in (shot_run, dom_run):
        console = [
            line
            for line in proc.stderr.splitlines()
            if ":CONSOLE" in line or "Uncaught" in line or "Refused to" in line
        ]
        assert not console, console
    # the browser's DOM holds every section and every image of the file, all inline PNGs
    dom = dom_run.stdout
    source = page.read_text(encoding="utf-8")
    for sid in SECTIONS + (["inputs"] if which == "fused" else []):
        assert f'id="{sid}"' in dom, sid
    if which == "fused":  # the ablation table as the browser built it: each input alone, all but one, all
        table = dom[dom.index('id="inputs"') :]
        assert "What each input adds" in table and table.count("all but one") >= 3, table[:2000]
    assert len(DATA_URI.findall(dom)) == len(DATA_URI.findall(source)) == source.count("<img ") > 0
    # the screenshot exists and shows something: full size, many colours, not one flat page
    from PIL import Image

    assert shot_run.returncode == 0 and shot.is_file(), shot_run.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1200, 3000)
        grey = np.asarray(im.convert("L"))
    assert grey.std() > 20 and len(np.unique(grey)) > 50
    print(f"screenshot: {shot}")
