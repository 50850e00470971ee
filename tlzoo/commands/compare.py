"""``tl compare``: cheap probes of several backbones on one dataset, before committing to one.

For each backbone a probe run goes through the same steps as ``tl run`` (``steps.PROBE_STEPS``:
resolve plugins, load, split, encode labels, create the backbone, ..., train), through the
``tlzoo_run_step`` hook, so step wrappers apply here too: the data is loaded and split exactly
as ``tl run`` would (same seed, same fractions), the train step extracts features once
through the feature cache and fits the first requested head, and every other fitted head
is then fitted on the same features, on the rows ``tl run --head NAME`` would fit it on (train +
validation for a head that cross-validates its options, as the train step fitted the first); each
is scored on the test split, so a row's figures are those of the ``tl run`` it suggests.  Optionally
each backbone also gets a LogME score (the log marginal evidence of a Bayesian linear model
from its features to the labels, You et al., ICML 2021), which ranks backbones with no head
trained at all; it is shown as a note, never used to rank.  The leaderboard ranks by test
accuracy, each figure with its 95 % bootstrap interval over the test examples (as ``tl run``'s
metrics.json has it), printed and saved as ``leaderboard.csv`` and ``leaderboard.png`` in the
output folder; :mod:`tlzoo.commands.leaderboard` formats it and says what to run next.

``--set head.KEY=VALUE`` gives that option to every probe head that has it (one line when none
has it); the winner's suggested ``tl run`` keeps its head and those options.

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
from tlzoo.commands.leaderboard import (
    COLUMNS,
    LOGME_NOTE,
    csv_row,
    format_leaderboard,
    leaderboard_notes,
    logme,
    next_command,
    plot_leaderboard,
    trainable_groups,
)
from tlzoo.engine.config import RunConfig
from tlzoo.evaluation.metrics import classification_report

__all__ = [  # the leaderboard's names stay importable from here (tests, tl compare's CLI)
    "COLUMNS",
    "LOGME_NOTE",
    "CompareResult",
    "Contestant",
    "compare",
    "format_leaderboard",
    "leaderboard_notes",
    "logme",
    "next_command",
    "plot_leaderboard",
    "zoo_head",
]


@dataclass
class CompareResult:
    rows: list[dict[str, Any]]
    out: Path
    csv_path: Path
    png_path: Path
    winner: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- the probes
@dataclass
class Contestant:
    """One backbone to probe: a plugin (with local weights), or a fused run's inputs under one fusion method."""

    plugin: str
    weights: str = ""
    fusion: str = ""  # concat, late or mlp: a fused run over ``inputs`` and ``tabular``
    inputs: dict[str, str] = field(default_factory=dict)
    tabular: list[str] = field(default_factory=list)


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
    fusions: Sequence[str] = (),
    tabular: Sequence[str] = (),
) -> CompareResult:
    """Probe each backbone in ``plugins`` with each fitted head in ``heads`` on ``data``.

    ``config`` supplies everything else a run would use (limit, seed, split fractions,
    image size, max length, batch size, device); ``plugins`` entries are plugin or
    catalogued model names, as ``tl run --plugin`` takes them, optionally with local
    weights as ``NAME=PATH`` (``tl run --weights``), e.g. to compare your own checkpoints.
    ``seeds``: fit each head with that many training seeds and report mean and sd.
    ``fusions`` (``tl compare --fusion concat,late,mlp``): ``plugins`` are then ``COLUMN=PLUGIN``
    inputs of one fused run (with the ``tabular`` columns), and each fusion method is a contestant;
    the features are extracted once, by the first, and read from the cache by the others.
    """
    from tlzoo.commands.seeds import check_seeds
    from tlzoo.engine.runner import pick_device
    from tlzoo.engine.zoo import Zoo

    check_seeds(seeds)
    log = log or (lambda msg: None)
    heads = [h.strip() for h in heads if h.strip()]
    zoo = zoo or Zoo()
    base = config or RunConfig()
    base.data.path = data
    base.validate()  # ranges and split fractions, before any backbone loads
    head_classes = _head_classes(zoo, heads)
    head_params = _head_params(head_classes, base.head.params)
    contestants = _contestants(zoo, data, plugins, fusions, tabular)
    folder = Path(out) if out else Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    pick_device(base.train.device)  # a bad --device fails before any backbone loads
    rows: list[dict[str, Any]] = []
    for contestant in contestants:
        rows += _probe_contestant(zoo, base, contestant, heads, (head_classes, head_params), use_logme, log, seeds)
    return _leaderboard(rows, folder, data)


def _head_classes(zoo: Any, heads: list[str]) -> dict[str, Any]:
    """The probe heads by name: fitted heads only, one line otherwise."""
    if not heads:
        raise TlzooError("tl compare needs at least one head; pass --heads logreg,knn (see `tl heads`).")
    head_classes = {h: zoo.heads.get(h) for h in heads}
    trainable = [h for h, cls in head_classes.items() if not issubclass(cls, FittedHead)]
    if trainable:
        raise TlzooError(
            f"tl compare probes with fitted heads; '{trainable[0]}' is trained by gradient descent. "
            "Use logreg, svm, rf, knn, tree or nb."
        )
    return head_classes


def _head_params(head_classes: dict[str, Any], given: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each probe head's share of ``--set head.KEY=VALUE``: the options it has; one line for an option none has."""
    taken = {name: {k: v for k, v in given.items() if k in cls.defaults()} for name, cls in head_classes.items()}
    unused = sorted(set(given) - {k for params in taken.values() for k in params})
    if unused:
        raise TlzooError(
            f"--set head.{unused[0]}: none of the probe heads ({', '.join(head_classes)}) has that option; "
            "see `tl config --head NAME` for a head's options."
        )
    return taken


def _contestants(
    zoo: Any, data: str, plugins: Sequence[str], fusions: Sequence[str], tabular: Sequence[str]
) -> list[Contestant]:
    """What to probe, every name, path and modality checked against the data before any heavy work."""
    names = [p.strip() for p in plugins if p.strip()]
    methods = [f.strip().lower() for f in fusions if f.strip()]
    columns = [c.strip() for c in tabular if c.strip()]
    if not names and not columns:
        raise TlzooError("tl compare needs backbones to compare; pass --plugins A,B (see `tl list`).")
    if methods or columns:
        return _fused_contestants(zoo, data, names, methods or ["concat"], columns)
    specs = [_spec(p) for p in names]
    for name, weights in specs:
        factory, _ = zoo.resolve_backbone(name, "")
        if weights and not Path(weights).exists():
            raise TlzooError(f"Weights '{weights}' given for {name} in --plugins do not exist; pass an existing path.")
        try:
            zoo.data_source_for(data, factory.modality)  # an image backbone on texts: one line, now
        except TlzooError as exc:
            raise TlzooError(f"--plugins {name}: {exc}") from None
    return [Contestant(name, weights) for name, weights in specs]


def _fused_contestants(
    zoo: Any, data: str, names: list[str], methods: list[str], columns: list[str]
) -> list[Contestant]:
    """``--fusion``: one fused run per method over the ``COLUMN=PLUGIN`` inputs of ``--plugins``."""
    fusion = zoo.resolve_backbone("fusion", "")[0]
    inputs: dict[str, str] = {}
    for pair in names:
        column, sep, plugin = pair.partition("=")
        if not sep or not column.strip() or not plugin.strip():
            raise TlzooError(
                f"--plugins {pair}: with --fusion every entry is COLUMN=PLUGIN, "
                "e.g. --plugins image=efficientnet_lite0,title=bert."
            )
        factory, _ = zoo.resolve_backbone(plugin.strip().partition(":")[0], "")
        if factory.modality not in ("text", "vision"):
            raise TlzooError(f"--plugins {pair}: '{factory.name}' is a {factory.modality} backbone; a fused run takes "
                             "an image or a text backbone per column.")  # fmt: skip
        inputs[column.strip()] = plugin.strip()
    for method in dict.fromkeys(methods):  # an unknown method: one line with a did-you-mean, from the plugin
        fusion.head({"fusion": method}, zoo.heads.get("fc" if method == "mlp" else "logreg")())
    zoo.data_source_for(data, fusion.modality)  # the records of a fused run: one line if the data has none
    return [Contestant("fusion", fusion=m, inputs=inputs, tabular=columns) for m in dict.fromkeys(methods)]


def _probe_head(contestant: Contestant, first: str) -> str:
    """The head a probe run trains first: fc for the mlp fusion (it trains a torch head), else the first probe head."""
    return "fc" if contestant.fusion == "mlp" else first


def _probe_contestant(
    zoo: Any,
    base: RunConfig,
    contestant: Contestant,
    heads: list[str],
    probe_heads: tuple[dict[str, Any], dict[str, dict[str, Any]]],
    use_logme: bool,
    log: Callable[[str], None],
    seeds: int,
) -> list[dict[str, Any]]:
    """A probe run of the first steps (wrappers apply): features extracted, the first head fitted; then the rest."""
    from tlzoo.engine.runner import Run, seed_everything

    seed_everything(base.seed)
    cfg = copy.deepcopy(base)
    if contestant.fusion:
        cfg.use_inputs(contestant.inputs, contestant.tabular)
        cfg.model.options["fusion"] = contestant.fusion
    else:
        cfg.model.plugin, cfg.model.name = contestant.plugin, ""
        if contestant.weights:
            cfg.model.weights = contestant.weights
    first = _probe_head(contestant, heads[0])
    head_classes, head_params = probe_heads
    cfg.train.strategy, cfg.head.name = "feature-extraction", first
    cfg.head.params = dict(head_params.get(first, {}))
    run = Run(cfg, zoo, log=_probe_log(log), probe=True)
    try:
        return _probe(run, first, probe_heads, contestant.weights, use_logme, log, seeds)
    except BaseException as exc:
        run.after_failure(exc)  # labels the error with the step and the plugin, as `tl run` does
        raise
    finally:
        del run


def _leaderboard(rows: list[dict[str, Any]], folder: Path, data: str) -> CompareResult:
    """Rank the rows; write leaderboard.csv and leaderboard.png."""
    rows.sort(key=lambda r: (-r["accuracy"], -r["macro_f1"], r["seconds"]))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    csv_path, png_path = folder / "leaderboard.csv", folder / "leaderboard.png"
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(csv_row(r) for r in rows)
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
    probe_heads: tuple[dict[str, Any], dict[str, dict[str, Any]]],
    weights: str,
    use_logme: bool,
    log: Callable[[str], None],
    seeds: int = 1,
) -> list[dict[str, Any]]:
    """Run ``steps.PROBE_STEPS`` (train extracts the features and fits ``first``), then fit the other heads."""
    upto = PROBE_STEPS.index(CREATE_BACKBONE) + 1
    run.run_steps(PROBE_STEPS[:upto])
    fusion = _fusion_of(run)
    label = f"{fusion} fusion" if fusion else run.backbone.name + (f" @ {Path(weights).name}" if weights else "")
    log(
        f"{run.config.model.plugin}: {label}, {run.backbone.num_features} features "
        f"({len(run.splits.train)} train / {len(run.splits.test)} test examples)"
    )
    started = time.perf_counter()
    if fusion == "mlp":  # the mlp head trains on the loop here: a probe has no run folder to checkpoint into
        run.run_steps(PROBE_STEPS[upto:-1])
        first_fit = _train_head_on_features(run)
    else:
        run.run_steps(PROBE_STEPS[upto:])
        first_fit = float(run.history.rows[-1]["seconds"]) if run.history.rows else 0.0
    extract_seconds = max(0.0, time.perf_counter() - started - first_fit)
    common = _common_columns(run, label, weights, use_logme)
    head_classes, head_params = probe_heads
    if fusion == "mlp":
        head_classes = {"mlp": None}  # one row: the trained mlp fusion head
    rows = []
    for name, cls in head_classes.items():
        t0 = time.perf_counter()
        params = dict(head_params.get(name, {}))
        report, spread = _score_head(run, name, (cls, params), first, seeds)
        fit_seconds = time.perf_counter() - t0 + (first_fit if name in (first, "mlp") else 0.0)
        rows.append(
            {
                **common,
                "head": name,
                "head_params": params,
                "accuracy": report["accuracy"],
                "macro_f1": report["macro_f1"],
                "accuracy_ci": report["accuracy_ci"],
                "macro_f1_ci": report["macro_f1_ci"],
                **spread,
                "seconds": round(extract_seconds + fit_seconds, 2),
                "extract_seconds": round(extract_seconds, 2),
                "fit_seconds": round(fit_seconds, 2),
            }
        )
        sd = f" ± {spread['accuracy_sd']:.4f} over {seeds} seeds" if spread else ""
        lo, hi = report["accuracy_ci"]
        log(
            f"  {name:<7} accuracy {report['accuracy']:.4f}{sd} (95% CI {lo:.3f}-{hi:.3f})  "
            f"macro-F1 {report['macro_f1']:.4f}  ({fit_seconds:.1f}s fit)"
        )
    return rows


def _common_columns(run: Any, label: str, weights: str, use_logme: bool) -> dict[str, Any]:
    """The leaderboard columns a probe's heads share: the backbone, its features, LogME."""
    score = logme(run.features["train"], run.encoder.encode(run.splits.train.labels)) if use_logme else None
    fusion = _fusion_of(run)
    return {
        "backbone": label,
        "plugin": run.factory.name,
        "model": run.model_name,
        "backbone_name": run.backbone.name,  # as metrics.json's run.model has it (a past run of it: leaderboard.advise)
        "trainable_groups": trainable_groups(run.backbone),
        "weights_path": weights,
        "features": run.backbone.num_features,
        "n_test": len(run.splits.test),
        "logme": None if score is None else round(score, 4),
        "weights": run.backbone.weights_source,
        **({"fusion": fusion, "inputs": dict(run.config.model.options.get("inputs") or {})} if fusion else {}),
    }


def _fusion_of(run: Any) -> str:
    """The fusion method of a fused probe ('' for a plain backbone)."""
    if run.factory.head is None:
        return ""
    return str(run.config.model.options.get("fusion") or "concat")


def _score_head(
    run: Any, name: str, head: tuple[Any, dict[str, Any]], first: str, seeds: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The test report of probe head ``name`` (``head``: its class and options) on the run's features, with
    95 % bootstrap intervals (``accuracy_ci``, ``macro_f1_ci``, as ``tl run``'s), and its spread over seeds."""
    from tlzoo.evaluation.uncertainty import bootstrap_ci

    classes, y_test = run.encoder.classes, run.encoder.encode(run.splits.test.labels)
    if seeds > 1 and _fusion_of(run) in ("", "concat"):
        report, spread, y_pred = _seeded_reports(run, head, y_test, classes, seeds)
    else:
        y_pred, spread = np.asarray(_probe_proba(run, name, head, first)).argmax(1), {}
        report = classification_report(y_test, y_pred, classes)
    ci = bootstrap_ci(y_test, y_pred, len(classes), seed=run.config.seed)  # seeds: the first seed's predictions
    return {**report, "accuracy_ci": ci["accuracy"], "macro_f1_ci": ci["macro_f1"]}, spread


def _probe_proba(run: Any, name: str, head: tuple[Any, dict[str, Any]], first: str) -> Any:
    """Test-split class probabilities of probe head ``name`` fitted on the run's training features."""
    feats, classes = run.features, run.encoder.classes
    y_train = run.encoder.encode(run.splits.train.labels)
    fusion = _fusion_of(run)
    cls, params = head
    if name in (first, "mlp") and fusion == "mlp":
        proba = _torch_head_proba(run, feats["test"])
    elif name == first:
        proba = run.head.predict_proba(feats["test"])  # fitted by the train step
    elif fusion == "late":  # the same late fusion over another probe head, weights chosen on validation
        late = zoo_head(run, "late-fusion", head=name, head_params=params)
        late.member_class = cls
        late.use_blocks(run.backbone.feature_blocks())
        late.fit(feats["train"], y_train, len(classes))
        late.choose(feats["val"], run.encoder.encode(run.splits.val.labels))
        proba = late.predict_proba(feats["test"])
    else:
        fitted = cls(**params)  # each head's defaults ("auto" options cross-validated) and --set head.KEY
        _fit_as_a_run_would(run, fitted)
        proba = fitted.predict_proba(feats["test"])
    return proba


def _fit_as_a_run_would(run: Any, head: Any) -> None:
    """Fit a probe head on the rows ``tl run --head NAME`` fits it on (as the train step fitted the first
    head): train + validation for a head that cross-validates its options, else train.  So every head of
    the leaderboard learns from what its suggested run would, and none from more than another would."""
    from tlzoo.engine.run.model import give_blocks
    from tlzoo.engine.run.refit import NOT_TEST, rows

    splits = NOT_TEST if getattr(head, "cross_validates", False) and len(run.features.get("val", ())) else ("train",)
    x, y = rows(run, splits)
    give_blocks(run, head)  # a fused run's input blocks, as the run's head got them
    head.fit(x, y, len(run.encoder.classes))


def zoo_head(run: Any, name: str, **params: Any) -> Any:
    """A head of the run's zoo by name (a plugin's head: the commands never import plugins)."""
    return run.zoo.heads.get(name)(**params)


def _train_head_on_features(run: Any) -> float:
    """Extract (or read from the cache) the features and train the run's torch head on them with the
    engine's training loop, the plan's head phase; the seconds the training took."""
    from tlzoo.engine.run.fit import feature_loader
    from tlzoo.engine.run.model import extract_cached_features

    extract_cached_features(run)
    started = time.perf_counter()
    head = run.model.head
    for phase in run.plan.phases:
        train, val = feature_loader(run, "train", True), feature_loader(run, "val", False)
        run.trainer.run_phase(head, phase, [{"params": list(head.parameters()), "lr": phase.lr}], train, val)
    return time.perf_counter() - started


def _torch_head_proba(run: Any, x: np.ndarray) -> np.ndarray:
    """Class probabilities of the run's trained torch head on features ``x``."""
    import torch

    head = run.model.head.eval()
    with torch.inference_mode():
        logits = head(torch.from_numpy(np.array(x)).to(next(head.parameters()).device)).float().cpu()
    return torch.softmax(logits, 1).numpy()


def _seeded_reports(
    run: Any,
    head_spec: tuple[Any, dict[str, Any]],
    y_test: np.ndarray,
    classes: list[str],
    seeds: int,
) -> tuple[dict[str, Any], dict[str, Any], np.ndarray]:
    """Fit the head (class, options) with training seeds ``--seed ..``; (mean figures, their sds and the
    per-seed figures, the first seed's test predictions).

    A head without a ``random_state`` option is fitted once: on fixed features its result
    does not depend on a seed."""
    from tlzoo.commands.seeds import seeded_head_params, summarise

    cls, given = head_spec
    per_seed: list[dict[str, Any]] = []
    first_pred = np.zeros(0, dtype=np.int64)
    for seed in range(run.config.seed, run.config.seed + seeds):
        params = seeded_head_params(cls, given, seed)
        if per_seed and "random_state" not in params:
            per_seed.append({**per_seed[-1], "train_seed": seed})
            continue
        head = cls(**params)
        _fit_as_a_run_would(run, head)
        y_pred = np.asarray(head.predict_proba(run.features["test"])).argmax(1)
        first_pred = y_pred if not per_seed else first_pred
        report = classification_report(y_test, y_pred, classes)
        per_seed.append({"train_seed": seed, "accuracy": report["accuracy"], "macro_f1": report["macro_f1"]})
    stats = summarise(per_seed)
    mean = {m: stats[m]["mean"] for m in stats}
    spread = {
        "accuracy_sd": stats["accuracy"]["sd"],
        "macro_f1_sd": stats["macro_f1"]["sd"],
        "seeds": seeds,
        "per_seed": per_seed,
    }
    return mean, spread, first_pred


def _spec(text: str) -> tuple[str, str]:
    """``bert`` or ``resnet50`` -> (name, ""); ``bert=./my-checkpoint`` -> (name, local weights)."""
    name, _, weights = text.partition("=")
    return name.strip(), weights.strip()
