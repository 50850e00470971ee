"""``tl compare``'s leaderboard: LogME, the table, its notes, the plot and the suggested next step.

The probes themselves live in :mod:`tlzoo.commands.compare`; this module turns their rows into
what the user reads: the aligned text table (:func:`format_leaderboard`), what its figures mean
(:func:`leaderboard_notes`), ``leaderboard.png`` (:func:`plot_leaderboard`) and the ``tl run``
that follows from the winner (:func:`advise`).  :func:`logme` scores a backbone's features
with no head trained (You et al., ICML 2021).

The leaderboard ranks by test accuracy, never by LogME: on rt2k LogME ranked three backbones in
exactly the reverse order of their accuracy (issue 17).  LogME is kept as a note, and the notes say
when it orders the backbones differently from the table.  Every figure comes with its 95 % interval
(the percentile bootstrap over the test examples that ``tl run`` writes to metrics.json): the spread
over training seeds (``--seeds``) does not cover the sampling of the test set, which is usually the
larger uncertainty on a few hundred test examples.

The advice keeps the winner: its ``tl run`` has the winning backbone, head and head options.
Fine-tuning is suggested besides only where it applies: not for a fused winner, not for a backbone
with no trainable layer (a hashing or TF-IDF map: nothing to fine-tune), and not where an earlier
fine-tune run of the same backbone on the same data (a folder under ``runs/``) shows it did not help:
its validation loss kept the head phase's weights, or its test accuracy on the same split fell below
the winner's.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.engine.config import RunConfig

COLUMNS = (
    "rank",
    "backbone",
    "plugin",
    "head",
    "accuracy",
    "macro_f1",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "macro_f1_ci_low",
    "macro_f1_ci_high",
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
    "head_params",
    "trainable_groups",
)


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


# --------------------------------------------------------------------------- the table
def trainable_groups(backbone: Any) -> int | None:
    """How many of the backbone's layer groups hold parameters (what fine-tuning could train); None when the
    backbone was not built (every split's features were cached: a factory naming its weight files)."""
    from tlzoo.api.backbone import UnbuiltBackbone

    if isinstance(backbone, UnbuiltBackbone):
        return None
    return sum(1 for group in backbone.layer_groups() if any(p.numel() for p in group.parameters()))


def _ci(interval: Any) -> str:
    """``0.692-0.781`` ('' without an interval)."""
    return f"{interval[0]:.3f}-{interval[1]:.3f}" if interval else ""


def csv_row(row: dict[str, Any]) -> dict[str, Any]:
    """A leaderboard row as leaderboard.csv holds it: the intervals in low/high columns, the head options as JSON."""
    flat = dict(row)
    for metric in ("accuracy", "macro_f1"):
        low_high = row.get(f"{metric}_ci") or (None, None)
        flat[f"{metric}_ci_low"], flat[f"{metric}_ci_high"] = low_high
    flat["head_params"] = json.dumps(row.get("head_params") or {}, sort_keys=True, default=str)
    # names (a backbone's comes from its weights folder) as cells no spreadsheet reads as a formula
    return {k: "" if flat.get(k) is None else _cell(flat[k]) for k in COLUMNS}


def _cell(value: Any) -> Any:
    from tlzoo.infra.safe_text import spreadsheet_cell

    return spreadsheet_cell(value) if isinstance(value, str) else value


def format_leaderboard(rows: list[dict[str, Any]]) -> str:
    """The leaderboard as an aligned text table: test accuracy and macro-F1, each with its 95 % interval."""
    seeded = any(r.get("seeds", 1) > 1 for r in rows)  # mean ± sd over training seeds
    width = 17 if seeded else 8
    acc, f1 = ("accuracy (± sd)", "macro-F1 (± sd)") if seeded else ("accuracy", "macro-F1")
    header = (
        f"{'#':>2}  {'backbone':<24} {'head':<7} {acc:>{width}}  {'95% CI':<11}  {f1:>{width}}  {'95% CI':<11}  "
        f"{'extract s':>9} {'fit s':>6} {'features':>8} {'LogME':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lm = "" if r.get("logme") is None else f"{r['logme']:.3f}"
        a, f = f"{r['accuracy']:.4f}", f"{r['macro_f1']:.4f}"
        if seeded and r.get("seeds", 1) > 1:
            a, f = f"{a} ± {r['accuracy_sd']:.4f}", f"{f} ± {r['macro_f1_sd']:.4f}"
        lines.append(
            f"{r['rank']:>2}  {r['backbone']:<24} {r['head']:<7} {a:>{width}}  {_ci(r.get('accuracy_ci')):<11}  "
            f"{f:>{width}}  {_ci(r.get('macro_f1_ci')):<11}  "
            f"{r['extract_seconds']:>9.1f} {r['fit_seconds']:>6.1f} {r['features']:>8} {lm:>8}"
        )
    return "\n".join(lines)


LOGME_NOTE = (
    "LogME: log evidence per example of a linear model from the features to the labels (You et al. 2021); "
    "higher is better; compare it between backbones on this dataset only; a note, not a ranking: the table "
    "ranks by test accuracy"
)
CI_NOTE = (
    "95% CI: percentile bootstrap over the test examples, stratified by class, as tl run's metrics.json; "
    "where two intervals overlap, this test set does not tell the two apart"
)


def leaderboard_notes(rows: list[dict[str, Any]]) -> list[str]:
    """What the leaderboard's figures mean: the test size, the intervals, the seconds, the LogME scale, and
    whether LogME ordered the backbones otherwise than their test accuracy."""
    n_test = sorted({r["n_test"] for r in rows if r.get("n_test")})
    notes = [
        f"test set: {', '.join(map(str, n_test))} examples, the same split for every backbone"
        if n_test
        else "test set: size unknown",
    ]
    if any(r.get("accuracy_ci") for r in rows):
        notes.append(CI_NOTE)
        if any(r.get("seeds", 1) > 1 for r in rows):
            notes.append("± sd: over training seeds on the same split; the interval is the first seed's fit")
    notes.append(
        "extract s: feature extraction for all splits (shared by a backbone's heads; ~0 from the cache); "
        "fit s: the head's fit, as in the log"
    )
    if any(r.get("logme") is not None for r in rows):
        notes.append(LOGME_NOTE)
        disagreement = logme_disagreement(rows)
        if disagreement:
            notes.append(disagreement)
    return notes


def logme_disagreement(rows: list[dict[str, Any]]) -> str:
    """A note when LogME orders the backbones otherwise than their best test accuracy does ('' when it agrees)."""
    best: dict[str, float] = {}
    score: dict[str, float] = {}
    for r in rows:
        if r.get("logme") is not None:
            best[r["backbone"]] = max(best.get(r["backbone"], -1.0), float(r["accuracy"]))
            score[r["backbone"]] = float(r["logme"])
    by_accuracy = sorted(best, key=lambda b: -best[b])  # stable: the leaderboard's order breaks ties
    by_logme = sorted(score, key=lambda b: -score[b])
    if len(by_logme) < 2 or by_logme == by_accuracy:
        return ""
    return (
        f"LogME ranked the backbones differently: {' > '.join(by_logme)} (by test accuracy: "
        f"{' > '.join(by_accuracy)}); the table ranks by test accuracy"
    )


def plot_leaderboard(rows: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Grouped bars: test accuracy per backbone, one bar per head, its 95 % interval as the error bar;
    LogME (a note) under each group."""
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
        found = [next((r for r in rows if r["backbone"] == b and r["head"] == h), None) for b in backbones]
        vals = [np.nan if r is None else r["accuracy"] for r in found]
        lows, highs = _error_bars(found)
        bars = ax.bar(x + (j - (len(heads) - 1) / 2) * width, vals, width, label=h, yerr=[lows, highs], capsize=3)
        for bar, v, up, r in zip(bars, vals, highs, found):
            if r is not None:
                sd = f"±{r['accuracy_sd']:.3f}" if r.get("seeds", 1) > 1 else ""
                ax.annotate(
                    f"{v:.3f}{sd}",
                    (bar.get_x() + bar.get_width() / 2, v + up),  # above the error bar
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
    ax.set_ylim(0, 1.1)
    ax.set_title(title or "tl compare")
    ax.legend(title="head", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    ax.grid(axis="y", alpha=0.3)
    footer = ["bars: 95% bootstrap interval over the test examples"] if any(r.get("accuracy_ci") for r in rows) else []
    if any(r.get("logme") is not None for r in rows):
        footer.append("LogME: a note, not a ranking (higher is better; comparable on this dataset only)")
    if footer:
        fig.text(0.01, 0.01, "\n".join(footer), fontsize=7)
    fig.tight_layout(rect=(0, 0.03 * max(1, len(footer)), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _error_bars(found: list[dict[str, Any] | None]) -> tuple[list[float], list[float]]:
    """Each bar's distance down and up to its 95 % interval (± sd over seeds for a row without one)."""
    lows, highs = [], []
    for r in found:
        ci = (r or {}).get("accuracy_ci")
        if r is not None and ci:
            lows.append(max(0.0, r["accuracy"] - ci[0]))
            highs.append(max(0.0, ci[1] - r["accuracy"]))
        else:
            sd = float((r or {}).get("accuracy_sd") or 0.0)
            lows.append(sd)
            highs.append(sd)
    return lows, highs


# --------------------------------------------------------------------------- what to run next
@dataclass
class Advice:
    """What ``tl compare`` suggests: ``keep``, the winner as a ``tl run`` (its backbone, head and head options);
    ``fine_tune``, a fine-tune run of its backbone only where that applies ('' otherwise); ``reason``: why."""

    keep: str
    fine_tune: str = ""
    reason: str = ""


def advise(config: RunConfig, winner: dict[str, Any], runs: Sequence[Path] = (Path("runs"),)) -> Advice:
    """The next step after a comparison (see the module docstring); ``runs``: folders holding earlier runs."""
    keep = next_command(config, winner)
    if winner.get("fusion"):
        return Advice(keep)
    name = winner.get("backbone", winner.get("plugin", "the backbone"))
    if winner.get("trainable_groups") == 0:
        return Advice(keep, reason=f"{name} has no layer with parameters to train, so fine-tuning does not apply")
    if winner.get("accuracy", 0) >= 1.0:
        return Advice(keep, reason=f"{name} with {winner.get('head')} already classifies every test example right")
    against = fine_tune_evidence(config, winner, runs)
    if against:
        return Advice(keep, reason=against)
    reason = (
        f"it trains {name} too, with an fc head in place of {winner.get('head', 'the fitted head')}; keep it only "
        f"if it beats {winner.get('accuracy', 0):.3f} on this test split (same --seed and fractions)"
    )
    return Advice(keep, fine_tune_command(config, winner), reason)


def advice_lines(winner: dict[str, Any], advice: Advice) -> list[str]:
    """The advice as ``tl compare`` prints it after the table: the winner, its run, and fine-tuning or why not."""
    ci = winner.get("accuracy_ci")
    ci_text = f", 95% CI {ci[0]:.3f}-{ci[1]:.3f}" if ci else ""
    lines = [
        f"winner: {winner['backbone']} with {winner['head']} (test accuracy {winner['accuracy']:.4f}{ci_text}); "
        "a full run of it (report, model card, export) with",
        f"  {advice.keep}",
    ]
    if advice.fine_tune:
        lines += [f"to try fine-tuning as well: {advice.reason}:", f"  {advice.fine_tune}"]
    elif advice.reason:
        lines.append(f"no fine-tuning suggested: {advice.reason}")
    return lines


def next_command(config: RunConfig, winner: dict[str, Any]) -> str:
    """The ``tl run`` that keeps ``winner``: its backbone, head and head options on the same data, with every
    data and model option the comparison used (``--text-column``, ``--limit``, ``--seed``, ``--set`` keys ...),
    ready to paste.  A fitted head's "auto" options are chosen again by that run's cross-validation."""
    import shlex

    if winner.get("fusion"):  # a fused run: its inputs, the fusion method and the probe head
        inputs = [w for column, plugin in winner["inputs"].items() for w in ("--plugin", f"{column}={plugin}")]
        head = "fc" if winner["fusion"] == "mlp" else winner["head"]
        fused = ["tl", "run", *inputs, "--fusion", winner["fusion"], "--head", head, "--data", config.data.path]
        return " ".join(shlex.quote(p) for p in fused)
    parts = _run_words(config, winner)
    if winner.get("head"):
        parts += ["--head", winner["head"]]
        parts += [f"--set=head.{k}={_toml_literal(v)}" for k, v in (winner.get("head_params") or {}).items()]
    return " ".join(shlex.quote(p) for p in parts)


def fine_tune_command(config: RunConfig, winner: dict[str, Any]) -> str:
    """The ``tl run`` that fine-tunes ``winner``'s backbone (fine-tuning trains an fc head: a fitted head cannot
    learn with the backbone), with the same data and model options as :func:`next_command`."""
    import shlex

    return " ".join(shlex.quote(p) for p in [*_run_words(config, winner), "--head", "fc", "--strategy", "fine-tune"])


def _run_words(config: RunConfig, winner: dict[str, Any]) -> list[str]:
    """``tl run --plugin .. --model .. [--weights ..] --data ..`` and every option that differs from its default."""
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
    return parts


def _toml_literal(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


SPLIT_KEYS = (("data", "limit"), ("data", "val_fraction"), ("data", "test_fraction"))


def fine_tune_evidence(config: RunConfig, winner: dict[str, Any], runs: Sequence[Path]) -> str:
    """Why not to fine-tune, from an earlier fine-tune run of the winner's backbone on the same data under
    ``runs``: validation kept its head phase, or its test accuracy on the same split is below the winner's."""
    seen: set[Path] = set()
    for root in runs:
        if not root.is_dir() or root.resolve() in seen:
            continue
        seen.add(root.resolve())
        for folder in sorted(root.iterdir())[:1000]:
            found = _past_fine_tune(folder, config, winner)
            if found is None:
                continue
            metrics, same_split = found
            name = winner.get("backbone", winner["plugin"])
            if _head_phase_won(folder, metrics):
                return (
                    f"fine-tuning did not help {name} before: {folder} kept its head-phase weights "
                    "(the joint phase did not lower the validation loss)"
                )
            accuracy = (metrics.get("test") or {}).get("accuracy")
            if same_split and isinstance(accuracy, (int, float)) and accuracy < winner.get("accuracy", 0):
                return (
                    f"{folder} fine-tuned {name} to test accuracy {accuracy:.3f} on the same split, "
                    f"below {winner['accuracy']:.3f} here"
                )
    return ""


def _past_fine_tune(folder: Path, config: RunConfig, winner: dict[str, Any]) -> tuple[dict[str, Any], bool] | None:
    """(metrics.json, whether its split is the comparison's) of a fine-tune run of the winner's backbone on the
    same data in ``folder``; None for anything else (another run, a folder that is not a run, unreadable files)."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        saved = tomllib.loads((folder / "config.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    run = metrics.get("run") if isinstance(metrics, dict) else None
    if not isinstance(run, dict) or run.get("strategy") != "fine-tune" or run.get("plugin") != winner["plugin"]:
        return None
    if run.get("model") not in (winner.get("backbone_name"), winner.get("model")):
        return None
    data, model = saved.get("data") or {}, saved.get("model") or {}
    if not _same_path(data.get("path"), config.data.path):
        return None
    if winner.get("weights_path") and not _same_path(model.get("weights"), winner["weights_path"]):
        return None
    same = saved.get("seed", 0) == config.seed and all(
        (saved.get(section) or {}).get(key) == getattr(getattr(config, section), key) for section, key in SPLIT_KEYS
    )
    return metrics, same


def _same_path(a: Any, b: Any) -> bool:
    if not a or not b:
        return False
    return a == b or Path(str(a)).expanduser().resolve() == Path(str(b)).expanduser().resolve()


def _head_phase_won(folder: Path, metrics: dict[str, Any]) -> bool:
    """Whether the run ended on its head phase's weights: metrics.json's ``validation_kept``, or for a run
    that predates it, history.csv's best validation loss per phase."""
    kept = metrics.get("validation_kept")
    if isinstance(kept, dict) and kept.get("phase"):
        return kept["phase"] == "head"
    import csv

    try:
        with (folder / "history.csv").open(newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if r.get("val_loss") not in (None, "")]
    except OSError:
        return False
    best: dict[bool, float] = {}
    for r in rows:
        try:
            loss = float(r["val_loss"])
        except ValueError:
            continue
        is_head = r.get("phase") == "head"
        best[is_head] = min(best.get(is_head, float("inf")), loss)
    return True in best and False in best and best[True] <= best[False]
