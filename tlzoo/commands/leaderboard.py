"""``tl compare``'s leaderboard: LogME, the table, its notes, the plot and the suggested next step.

The probes themselves live in :mod:`tlzoo.commands.compare`; this module turns their rows into
what the user reads: the aligned text table (:func:`format_leaderboard`), what its figures mean
(:func:`leaderboard_notes`), ``leaderboard.png`` (:func:`plot_leaderboard`) and the ``tl run``
that follows from the winner (:func:`next_command`).  :func:`logme` scores a backbone's features
with no head trained (You et al., ICML 2021).
"""

from __future__ import annotations

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

    if winner.get("fusion"):  # a fused run: its inputs, the fusion method and the probe head
        inputs = [w for column, plugin in winner["inputs"].items() for w in ("--plugin", f"{column}={plugin}")]
        head = "fc" if winner["fusion"] == "mlp" else winner["head"]
        fused = ["tl", "run", *inputs, "--fusion", winner["fusion"], "--head", head, "--data", config.data.path]
        return " ".join(shlex.quote(p) for p in fused)
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
