"""``tl compare``: cheap probes of several backbones on one dataset, before committing to one.

For each backbone a probe run goes through the same steps as ``tl run`` (``steps.PROBE_STEPS``:
resolve plugins, load, split, encode labels, create the backbone, ..., train), through the
``tlzoo_run_step`` hook, so step wrappers apply here too: the data is loaded and split exactly
as ``tl run`` would (same seed, same fractions), the train step extracts features once
through the feature cache and fits the first requested head, and every other fitted head
is then trained on the same training features; each is scored on the test split.  Optionally
each backbone also gets a LogME score (the log marginal evidence of a Bayesian linear model
from its features to the labels, You et al., ICML 2021), which ranks backbones with no head
trained at all.  The result is a leaderboard printed and saved as ``leaderboard.csv`` and
``leaderboard.png`` in the output folder.

``seeds=N`` (``tl compare --seeds N``) fits each head with N training seeds on the same
features and split (see ``seeds.py`` for why the split stays fixed): accuracy and macro-F1
are then the means, with their sample standard deviations beside them.  Only heads with a
``random_state`` (svm, rf, tree) vary; the others are fitted once, their sd is 0.
"""

from __future__ import annotations

import copy
import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import FittedHead
from tlzoo.api.steps import CREATE_BACKBONE, PROBE_STEPS
from tlzoo.engine.config import RunConfig
from tlzoo.evaluation.metrics import classification_report

COLUMNS = (
    "rank",
    "backbone",
    "plugin",
    "head",
    "accuracy",
    "macro_f1",
    "accuracy_sd",
    "macro_f1_sd",
    "seeds",
    "seconds",
    "extract_seconds",
    "fit_seconds",
    "features",
    "n_test",
    "logme",
    "weights",
)


@dataclass
class CompareResult:
    rows: list[dict[str, Any]]
    out: Path
    csv_path: Path
    png_path: Path
    winner: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- LogME
def logme(features: np.ndarray, labels: np.ndarray, iterations: int = 100, tol: float = 1e-3) -> float:
    """Mean per-class log evidence (per example) of a Bayesian linear regression f -> one-hot y.

    ``y = F w + e``, ``w ~ N(0, 1/alpha)``, ``e ~ N(0, 1/beta)``; alpha and beta are set by
    MacKay's fixed-point updates, everything in the basis of F's singular vectors so
    one SVD serves every class.  Higher is better; only the ranking across backbones on
    the same data means anything.
    """
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > s.max() * 1e-10 if len(s) else s > 0
    u, s = u[:, keep], s[:, None][keep][:, 0]
    sigma = s**2
    scores = []
    for k in np.unique(labels):
        y = (labels == k).astype(np.float64)
        z = u.T @ y  # y's coordinates on F's left singular vectors
        rest = float(y @ y - z @ z)  # the part of y that no linear map of F can reach
        alpha, beta = 1.0, 1.0
        for _ in range(iterations):
            shrink = beta * sigma / (alpha + beta * sigma)
            gamma = float(shrink.sum())
            m2 = float(((beta * s * z / (alpha + beta * sigma)) ** 2).sum())  # |m|^2
            resid = float((((1 - shrink) * z) ** 2).sum()) + rest  # |F m - y|^2
            new_alpha = gamma / max(m2, 1e-12)
            new_beta = max(n - gamma, 1e-12) / max(resid, 1e-12)
            done = abs(new_alpha - alpha) / alpha < tol and abs(new_beta - beta) / beta < tol
            alpha, beta = new_alpha, new_beta
            if done:
                break
        shrink = beta * sigma / (alpha + beta * sigma)
        m2 = float(((beta * s * z / (alpha + beta * sigma)) ** 2).sum())
        resid = float((((1 - shrink) * z) ** 2).sum()) + rest
        log_det = float(np.log(alpha + beta * sigma).sum()) + (d - len(s)) * np.log(alpha)
        evidence = (
            n / 2 * np.log(beta)
            + d / 2 * np.log(alpha)
            - n / 2 * np.log(2 * np.pi)
            - beta / 2 * resid
            - alpha / 2 * m2
            - log_det / 2
        )
        scores.append(evidence / n)
    return float(np.mean(scores))


# --------------------------------------------------------------------------- the probes
def compare(
    plugins: Sequence[str],
    data: str,
    heads: Sequence[str] = ("logreg", "knn"),
    out: str | Path | None = None,
    *,
    config: RunConfig | None = None,
    use_logme: bool = True,
    zoo: Any = None,
    log: Callable[[str], None] | None = print,
    seeds: int = 1,
) -> CompareResult:
    """Probe each backbone in ``plugins`` with each fitted head in ``heads`` on ``data``.

    ``config`` supplies everything else a run would use (limit, seed, split fractions,
    image size, max length, batch size, device); ``plugins`` entries are plugin or
    catalogued model names, as ``tl run --plugin`` takes them, optionally with local
    weights as ``NAME=PATH`` (``tl run --weights``), e.g. to compare your own checkpoints.
    ``seeds``: fit each head with that many training seeds and report mean and sd.
    """
    from tlzoo.commands.seeds import check_seeds
    from tlzoo.engine.runner import Run, pick_device, seed_everything

    check_seeds(seeds)
    from tlzoo.engine.zoo import Zoo

    log = log or (lambda msg: None)
    plugins = [p.strip() for p in plugins if p.strip()]
    heads = [h.strip() for h in heads if h.strip()]
    if len(plugins) < 1:
        raise TlzooError("tl compare needs backbones to compare; pass --plugins A,B (see `tl list`).")
    if not heads:
        raise TlzooError("tl compare needs at least one head; pass --heads logreg,knn (see `tl heads`).")
    zoo = zoo or Zoo()
    base = config or RunConfig()
    base.data.path = data
    base.validate()  # ranges and split fractions, before any backbone loads
    head_classes = {h: zoo.heads.get(h) for h in heads}
    trainable = [h for h, cls in head_classes.items() if not issubclass(cls, FittedHead)]
    if trainable:
        raise TlzooError(
            f"tl compare probes with fitted heads; '{trainable[0]}' is trained by gradient descent. "
            "Use logreg, svm, rf, knn, tree or nb."
        )
    specs = [_spec(p) for p in plugins]
    for name, weights in specs:  # every name and path checked before any heavy work
        zoo.resolve_backbone(name, "")
        if weights and not Path(weights).exists():
            raise TlzooError(f"Weights '{weights}' given for {name} in --plugins do not exist; pass an existing path.")
    folder = Path(out) if out else Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    pick_device(base.train.device)  # a bad --device fails before any backbone loads

    rows: list[dict[str, Any]] = []
    for plugin, weights in specs:
        seed_everything(base.seed)
        cfg = copy.deepcopy(base)
        cfg.model.plugin, cfg.model.name = plugin, ""
        if weights:
            cfg.model.weights = weights
        # a probe is a run of the first steps (wrappers apply), features extracted and the first head fitted
        cfg.train.strategy, cfg.head.name, cfg.head.params = "feature-extraction", heads[0], {}
        run = Run(cfg, zoo, log=_probe_log(log), probe=True)
        try:
            row_group = _probe(run, heads[0], head_classes, weights, use_logme, log, seeds)
        except BaseException as exc:
            run.after_failure(exc)  # labels the error with the step and the plugin, as `tl run` does
            raise
        rows += row_group
        del run

    rows.sort(key=lambda r: (-r["accuracy"], -r["macro_f1"], r["seconds"]))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    csv_path, png_path = folder / "leaderboard.csv", folder / "leaderboard.png"
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS} for r in rows)
    n_test = rows[0].get("n_test") if rows else None
    plot_leaderboard(
        rows, png_path, title=f"tl compare on {Path(data).name}" + (f" (test n={n_test})" if n_test else "")
    )
    return CompareResult(rows=rows, out=folder, csv_path=csv_path, png_path=png_path, winner=rows[0] if rows else {})


def _probe_log(log: Callable[[str], None]) -> Callable[[str], None]:
    """A probe's log: only its feature-cache lines and warnings (the step lines would repeat per backbone)."""
    return lambda msg: log(msg) if msg.lstrip().startswith(("features for", "warning:")) else None


def _probe(
    run: Any,
    first: str,
    head_classes: dict[str, Any],
    weights: str,
    use_logme: bool,
    log: Callable[[str], None],
    seeds: int = 1,
) -> list[dict[str, Any]]:
    """Run ``steps.PROBE_STEPS`` (train extracts the features and fits ``first``), then fit the other heads."""
    upto = PROBE_STEPS.index(CREATE_BACKBONE) + 1
    run.run_steps(PROBE_STEPS[:upto])
    weights_note = f" @ {Path(weights).name}" if weights else ""
    label = run.backbone.name + weights_note
    log(
        f"{run.config.model.plugin}: {label}, {run.backbone.num_features} features "
        f"({len(run.splits.train)} train / {len(run.splits.test)} test examples)"
    )
    started = time.perf_counter()
    run.run_steps(PROBE_STEPS[upto:])
    first_fit = float(run.history.rows[-1]["seconds"]) if run.history.rows else 0.0
    extract_seconds = max(0.0, time.perf_counter() - started - first_fit)
    feats = run.features
    y_train = run.encoder.encode(run.splits.train.labels)
    y_test = run.encoder.encode(run.splits.test.labels)
    n_classes = len(run.encoder.classes)
    score = logme(feats["train"], y_train) if use_logme else None
    rows = []
    for name, cls in head_classes.items():
        t0 = time.perf_counter()
        spread: dict[str, Any] = {}
        if seeds > 1:
            report, spread = _seeded_reports(cls, feats, y_train, y_test, run.encoder.classes, run.config.seed, seeds)
        else:
            if name == first:
                head = run.head  # fitted by the train step
            else:
                head = cls()  # each head's defaults ("auto" options cross-validated)
                head.fit(feats["train"], y_train, n_classes)
            proba = head.predict_proba(feats["test"])
            report = classification_report(y_test, proba.argmax(1), run.encoder.classes)
        fit_seconds = time.perf_counter() - t0 + (first_fit if name == first else 0.0)
        rows.append(
            {
                "backbone": label,
                "plugin": run.factory.name,
                "model": run.model_name,
                "weights_path": weights,
                "head": name,
                "accuracy": report["accuracy"],
                "macro_f1": report["macro_f1"],
                **spread,
                "seconds": round(extract_seconds + fit_seconds, 2),
                "extract_seconds": round(extract_seconds, 2),
                "fit_seconds": round(fit_seconds, 2),
                "features": run.backbone.num_features,
                "n_test": len(run.splits.test),
                "logme": None if score is None else round(score, 4),
                "weights": run.backbone.weights_source,
            }
        )
        sd = f" ± {spread['accuracy_sd']:.4f} over {seeds} seeds" if spread else ""
        log(
            f"  {name:<7} accuracy {report['accuracy']:.4f}{sd}  macro-F1 {report['macro_f1']:.4f}  "
            f"({fit_seconds:.1f}s fit)"
        )
    return rows


def _seeded_reports(
    cls: Any,
    feats: dict[str, np.ndarray],
    y_train: np.ndarray,
    y_test: np.ndarray,
    classes: list[str],
    first_seed: int,
    seeds: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit ``cls`` with training seeds ``first_seed ..``; (mean figures, their sds and the per-seed figures).

    A head without a ``random_state`` option is fitted once: on fixed features its result
    does not depend on a seed."""
    from tlzoo.commands.seeds import seeded_head_params, summarise

    per_seed: list[dict[str, Any]] = []
    for seed in range(first_seed, first_seed + seeds):
        params = seeded_head_params(cls, {}, seed)
        if per_seed and "random_state" not in params:
            per_seed.append({**per_seed[-1], "train_seed": seed})
            continue
        head = cls(**params)
        head.fit(feats["train"], y_train, len(classes))
        report = classification_report(y_test, head.predict_proba(feats["test"]).argmax(1), classes)
        per_seed.append({"train_seed": seed, "accuracy": report["accuracy"], "macro_f1": report["macro_f1"]})
    stats = summarise(per_seed)
    mean = {m: stats[m]["mean"] for m in stats}
    spread = {
        "accuracy_sd": stats["accuracy"]["sd"],
        "macro_f1_sd": stats["macro_f1"]["sd"],
        "seeds": seeds,
        "per_seed": per_seed,
    }
    return mean, spread


def _spec(text: str) -> tuple[str, str]:
    """``bert`` or ``resnet50`` -> (name, ""); ``bert=./my-checkpoint`` -> (name, local weights)."""
    name, _, weights = text.partition("=")
    return name.strip(), weights.strip()


def format_leaderboard(rows: list[dict[str, Any]]) -> str:
    """The leaderboard as an aligned text table."""
    header = (
        f"{'#':>2}  {'backbone':<24} {'head':<7} {'accuracy':>8} {'macro-F1':>8} {'extract s':>9} {'fit s':>6} "
        f"{'features':>8} {'LogME':>8}"
    )
    if any(r.get("seeds", 1) > 1 for r in rows):  # mean ± sd over training seeds
        header = header.replace(f"{'accuracy':>8} {'macro-F1':>8}", f"{'accuracy (± sd)':>17} {'macro-F1 (± sd)':>17}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lm = "" if r.get("logme") is None else f"{r['logme']:.3f}"
        figures = f"{r['accuracy']:>8.4f} {r['macro_f1']:>8.4f}"
        if r.get("seeds", 1) > 1:
            acc = f"{r['accuracy']:.4f} ± {r['accuracy_sd']:.4f}"
            f1 = f"{r['macro_f1']:.4f} ± {r['macro_f1_sd']:.4f}"
            figures = f"{acc:>17} {f1:>17}"  # 15 wide: two spaces between the columns
        lines.append(
            f"{r['rank']:>2}  {r['backbone']:<24} {r['head']:<7} {figures} "
            f"{r['extract_seconds']:>9.1f} {r['fit_seconds']:>6.1f} {r['features']:>8} {lm:>8}"
        )
    return "\n".join(lines)


def next_command(config: RunConfig, winner: dict[str, Any]) -> str:
    """The ``tl run`` that fine-tunes ``winner`` on the same data, with every data and model option the
    comparison used (``--text-column``, ``--limit``, ``--seed``, ``--set`` keys ...), ready to paste."""
    import shlex

    from tlzoo.engine.config import OPTION_NAMES

    parts = ["tl", "run", "--plugin", winner["plugin"], "--model", winner["model"]]
    if winner.get("weights_path"):
        parts += ["--weights", winner["weights_path"]]
    parts += ["--data", config.data.path]
    skip = {"data.path", "model.plugin", "model.name", "model.weights", "train.strategy", "out", "progress"}
    given, default = config.as_dict(), RunConfig().as_dict()
    for section in ("data", "model", "train", "seed"):
        values = given[section] if isinstance(given[section], dict) else {"": given[section]}
        defaults = default[section] if isinstance(default[section], dict) else {"": default[section]}
        for key, value in values.items():
            dotted = f"{section}.{key}" if key else section
            if dotted in skip or value == defaults.get(key):
                continue
            if dotted == "model.options":
                parts += [f"--set=model.options.{k}={_toml_literal(v)}" for k, v in value.items()]
            elif dotted == "data.augment":
                parts.append("--no-augment")
            elif dotted == "model.pretrained":
                parts.append("--no-pretrained")
            elif dotted in OPTION_NAMES:
                parts += [OPTION_NAMES[dotted], str(value)]
            else:
                parts.append(f"--set={dotted}={_toml_literal(value)}")
    parts += ["--strategy", "fine-tune"]
    return " ".join(shlex.quote(p) for p in parts)


def _toml_literal(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


LOGME_NOTE = (
    "LogME: log evidence per example of a linear model from the features to the labels (You et al. 2021); "
    "higher is better; compare it between backbones on this dataset only"
)


def leaderboard_notes(rows: list[dict[str, Any]]) -> list[str]:
    """What the leaderboard's figures mean: the test size, the seconds, the LogME scale."""
    n_test = sorted({r["n_test"] for r in rows if r.get("n_test")})
    notes = [
        f"test set: {', '.join(map(str, n_test))} examples, the same split for every backbone"
        if n_test
        else "test set: size unknown",
        "extract s: feature extraction for all splits (shared by a backbone's heads; ~0 from the cache); "
        "fit s: the head's fit, as in the log",
    ]
    if any(r.get("logme") is not None for r in rows):
        notes.append(LOGME_NOTE)
    return notes


def plot_leaderboard(rows: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Grouped bars: test accuracy per backbone, one bar per head; LogME under each group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backbones = list(dict.fromkeys(r["backbone"] for r in rows))
    heads = list(dict.fromkeys(r["head"] for r in rows))
    width = 0.8 / max(1, len(heads))
    # + 1.3 inches on the right for the legend, outside the axes so that it covers no bar or value
    fig, ax = plt.subplots(figsize=(max(5.5, 1.6 * len(backbones) * max(1, len(heads)) ** 0.5 + 2) + 1.3, 4.4))
    x = np.arange(len(backbones))
    for j, h in enumerate(heads):
        vals = [next((r["accuracy"] for r in rows if r["backbone"] == b and r["head"] == h), np.nan) for b in backbones]
        sds = [
            next((r.get("accuracy_sd") for r in rows if r["backbone"] == b and r["head"] == h), None) for b in backbones
        ]
        yerr = [sd or 0.0 for sd in sds] if any(sd is not None for sd in sds) else None  # ± sd over seeds
        bars = ax.bar(x + (j - (len(heads) - 1) / 2) * width, vals, width, label=h, yerr=yerr, capsize=3)
        for bar, v, sd in zip(bars, vals, sds):
            if not np.isnan(v):
                ax.annotate(
                    f"{v:.3f}",
                    (bar.get_x() + bar.get_width() / 2, v + (sd or 0.0)),  # above the error bar
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
    labels = []
    for b in backbones:
        r = next(r for r in rows if r["backbone"] == b)
        extra = f"\nLogME {r['logme']:.3f}" if r.get("logme") is not None else ""
        labels.append(f"{b}\n{r['features']} features{extra}")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.08)
    ax.set_title(title or "tl compare")
    ax.legend(title="head", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    ax.grid(axis="y", alpha=0.3)
    if any(r.get("logme") is not None for r in rows):
        fig.text(0.01, 0.01, "LogME: higher is better; comparable between backbones on this dataset only", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
