"""Fitted heads (svm, knn, tree, rf, nb, logreg) against scikit-learn's defaults and the majority class.

Tasks (features computed once, kept as ``.npz`` under ``--out``):

* ``rt-minilm`` / ``rt-glove``: the built-in ``rotten-tomatoes`` snippets, 3,000 (stratified
  limit, seed 0; 3 classes), pooled all-MiniLM-L6-v2 or GloVe 6B-50d features;
* ``digits-lite0`` / ``digits-pixels``: the built-in ``digits`` (1,797 images, 10 classes),
  EfficientNet-Lite0 ImageNet features, or the 64 raw pixels;
* ``wine`` / ``breast-cancer``: scikit-learn's bundled tables, their columns as features.

For each task and split seed (0, 1, 2) the runner's split (70 / 15 / 15, stratified); each head
is fitted on train + validation as a run fits a head that cross-validates, and scored on the test part: accuracy and
macro-F1, beside scikit-learn's estimator at its default settings (on standardised features
for svm and logreg, as those heads standardise) and the majority class.  A head is
*degenerate* on a split when its test predictions are (nearly) one class (the most predicted
class takes 90 % of the distance from the majority share to 1).

    .venv/bin/python bench/bench_fitted_heads.py --out /tmp/bench-heads [--only rt-minilm,wine] [--json rows.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

TASKS = ("rt-minilm", "rt-glove", "digits-lite0", "digits-pixels", "wine", "breast-cancer")
HEADS = ("svm", "knn", "tree", "rf", "nb", "logreg")
SEEDS = (0, 1, 2)


def _dataset(task: str) -> Any:
    from tlzoo.api.interfaces import DataOptions
    from tlzoo.engine.data import stratified_limit
    from tlzoo.plugins.data.builtin import Digits, RottenTomatoes

    if task.startswith("rt-"):
        return stratified_limit(RottenTomatoes().load("rotten-tomatoes", DataOptions()), 3000, 0)
    return Digits().load("digits", DataOptions())


def _extract(task: str) -> tuple[np.ndarray, list[str]]:
    """Pooled backbone features for every example (no cache: the script keeps its own .npz)."""
    import torch

    from tlzoo.api.interfaces import BackboneRequest
    from tlzoo.engine.extraction import extract
    from tlzoo.engine.zoo import Zoo

    ds = _dataset(task)
    plugin = {"rt-minilm": "bert", "rt-glove": "glove", "digits-lite0": "efficientnet_lite0"}[task]
    factory, model = Zoo().resolve_backbone(plugin)
    backbone = factory.create(BackboneRequest(model=model, pretrained=True))
    feats = extract(backbone, ds, batch_size=64, device=torch.device("cpu"), cache=None, progress=False)
    return np.asarray(feats, np.float32), list(ds.labels)


def features(task: str, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """``task``'s features and class indices, from ``out/<task>.npz`` when there."""
    path = out / f"{task}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return z["x"], z["y"]
    if task in ("wine", "breast-cancer"):
        from sklearn.datasets import load_breast_cancer, load_wine

        bunch = load_wine() if task == "wine" else load_breast_cancer()
        x, labels = bunch.data.astype(np.float32), [str(t) for t in bunch.target]
    elif task == "digits-pixels":
        from sklearn.datasets import load_digits

        d = load_digits()
        x, labels = d.data.astype(np.float32), [str(t) for t in d.target]
    else:
        x, labels = _extract(task)
    classes = sorted(set(labels))
    y = np.array([classes.index(v) for v in labels], np.int64)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x, y=y)
    return x, y


def split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fit and test indices as the runner splits (15 % validation, 15 % test, stratified): a fitted head
    that tunes itself by cross-validation learns from train + validation in a run (issue 17 §3), so both
    contestants fit on those rows."""
    from tlzoo.api.interfaces import Dataset
    from tlzoo.engine.data import stratified_split

    ds = Dataset([str(i) for i in range(len(y))], [str(v) for v in y], modality="text")
    parts = stratified_split(ds, 0.15, 0.15, seed)
    fit = [int(i) for i in [*parts.train.examples, *parts.val.examples]]
    return np.array(fit), np.array([int(i) for i in parts.test.examples])


def sklearn_default(name: str) -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC
    from sklearn.tree import DecisionTreeClassifier

    scaled = {"svm": LinearSVC, "logreg": lambda: LogisticRegression(max_iter=2000)}
    if name in scaled:
        return make_pipeline(StandardScaler(), scaled[name]())
    if name in ("nb", "knn"):
        return GaussianNB() if name == "nb" else KNeighborsClassifier()
    return {"tree": DecisionTreeClassifier, "rf": RandomForestClassifier}[name](random_state=0)


def scores(pred: np.ndarray, y: np.ndarray, majority_share: float) -> dict[str, Any]:
    from sklearn.metrics import f1_score

    top = np.bincount(pred).max() / len(pred)
    return {
        "accuracy": float((pred == y).mean()),
        "macro_f1": float(f1_score(y, pred, average="macro")),
        "degenerate": bool(top >= majority_share + 0.9 * (1 - majority_share)),
    }


def run_task(task: str, out: Path, heads: tuple[str, ...], module: str) -> list[dict[str, Any]]:
    import importlib

    x, y = features(task, out)
    classes = {c.name: c for c in importlib.import_module(module).HEADS}
    rows: list[dict[str, Any]] = []
    for seed in SEEDS:
        tr, te = split(y, seed)
        share = float(np.bincount(y[tr]).max() / len(tr))
        maj = np.full(len(te), np.bincount(y[tr]).argmax())
        rows.append({"task": task, "seed": seed, "head": "majority", "who": "-", **scores(maj, y[te], share)})
        for name in heads:
            start = time.perf_counter()
            head = classes[name]()
            head.fit(x[tr], y[tr], int(y.max()) + 1)
            pred = head.predict_proba(x[te]).argmax(1)
            took = time.perf_counter() - start
            tuned = {k: v for k, v in getattr(head, "tuned", {}).items()}
            mine = scores(pred, y[te], share)
            rows.append({"task": task, "seed": seed, "head": name, "who": "tlzoo", "seconds": round(took, 2)})
            rows[-1].update(tuned=tuned, **mine)
            ref = sklearn_default(name).fit(x[tr], y[tr])
            theirs = scores(ref.predict(x[te]), y[te], share)
            rows.append({"task": task, "seed": seed, "head": name, "who": "sklearn", **theirs})
            print(
                f"{task} seed {seed} {name}: tlzoo {mine['accuracy']:.3f}/{mine['macro_f1']:.3f} "
                f"sklearn {theirs['accuracy']:.3f}/{theirs['macro_f1']:.3f} ({took:.1f} s) {tuned}",
                flush=True,
            )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """One markdown row per task and head: mean accuracy and macro-F1 over the seeds, tlzoo | sklearn | majority."""
    lines = [
        "| task | head | tlzoo accuracy | tlzoo macro-F1 | sklearn default accuracy | macro-F1 "
        "| majority accuracy | macro-F1 | degenerate (tlzoo / sklearn) | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        maj = [r for r in mine if r["head"] == "majority"]
        for name in dict.fromkeys(r["head"] for r in mine if r["head"] != "majority"):
            t = [r for r in mine if r["head"] == name and r["who"] == "tlzoo"]
            s = [r for r in mine if r["head"] == name and r["who"] == "sklearn"]

            def m(rs: list[dict[str, Any]], k: str) -> str:
                return f"{np.mean([r[k] for r in rs]):.3f}"

            deg = f"{sum(r['degenerate'] for r in t)}/{len(t)} / {sum(r['degenerate'] for r in s)}/{len(s)}"
            lines.append(
                f"| {task} | {name} | {m(t, 'accuracy')} | {m(t, 'macro_f1')} | {m(s, 'accuracy')} "
                f"| {m(s, 'macro_f1')} | {m(maj, 'accuracy')} | {m(maj, 'macro_f1')} | {deg} | {m(t, 'seconds')} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/tmp/bench-heads")
    ap.add_argument("--only", default=",".join(TASKS))
    ap.add_argument("--heads", default=",".join(HEADS))
    ap.add_argument("--features-only", action="store_true")
    ap.add_argument("--module", default="tlzoo.plugins.heads.sklearn_heads", help="where HEADS come from")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    out = Path(args.out)
    rows: list[dict[str, Any]] = []
    for task in args.only.split(","):
        if args.features_only:
            x, y = features(task, out)
            print(task, x.shape, np.bincount(y), flush=True)
            continue
        rows += run_task(task, out, tuple(args.heads.split(",")), args.module)
    if rows:
        print(table(rows))
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
