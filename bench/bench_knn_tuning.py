"""The knn head's tuning time: tlzoo 0.2, 0.3's GridSearchCV, and one neighbour query per fold.

0.2 scored each of the 15 (k, weights) settings on one shuffle of 3 stratified folds (45 fits and
predictions); 0.3 moved the search to ``GridSearchCV`` over repeated stratified folds (about 9
folds: 135 fits and neighbour queries, hence 3-4.5x slower).  The head now asks scikit-learn for
each fold's nearest neighbours once, at the largest k searched, and lets every setting vote from
them (``KNNHead._fold_predict``): the same folds, scores and rule as GridSearchCV.

Each task's rows are split as a run splits them (15 % validation, 15 % test, stratified, seed 0);
the head is fitted on train + validation (a head that cross-validates needs no validation split)
and predicts the test rows.  Every fit runs in a fresh process (imports warmed before the clock
starts), the three contestants alternating round by round; each figure is the best of the rounds.
The script checks that the GridSearchCV path and the per-fold path choose the same settings and
give identical test probabilities.

    .venv/bin/python bench/bench_knn_tuning.py [--rounds 3] [--tasks rt-minilm,digits-lite0]

``0.2`` and ``0.3`` run the head of commits 120b267 and bb4d88c (``git archive`` into temporary
folders); ``grid`` is this tree's head with the per-fold query switched off (GridSearchCV) and
``folds`` this tree's head as it runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OLD = {"0.2": "120b267", "0.3": "bb4d88c"}  # 0.2's last state; 0.3 before the per-fold query
IMPLS = ("0.2", "0.3", "grid", "folds")


def _fit_rows(y: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train + validation and test indices, split as the runner splits."""
    from tlzoo.api.interfaces import Dataset
    from tlzoo.engine.data import stratified_split

    ds = Dataset([str(i) for i in range(len(y))], [str(v) for v in y], modality="text")
    parts = stratified_split(ds, 0.15, 0.15, seed)
    fit = [int(i) for i in (*parts.train.examples, *parts.val.examples)]
    return np.array(fit), np.array([int(i) for i in parts.test.examples])


def worker(impl: str, data: Path) -> dict[str, Any]:
    """One timed ``KNNHead.fit`` (this process): seconds, what was chosen, a digest of the test probabilities."""
    with np.load(data, allow_pickle=False) as z:
        x, y, xt = z["x"], z["y"], z["xt"]
    import sklearn.metrics  # noqa: F401  (imports before the clock starts, in every contestant)
    import sklearn.model_selection  # noqa: F401
    import sklearn.neighbors  # noqa: F401

    if impl == "0.2":  # one module then
        from tlzoo.plugins.heads.sklearn_heads import KNNHead  # type: ignore[attr-defined]
    else:
        from tlzoo.plugins.heads.neighbours import KNNHead
    head = KNNHead()
    if impl == "grid":
        head._fold_predict = None  # type: ignore[assignment,method-assign]  # fit falls back to GridSearchCV
    start = time.perf_counter()
    head.fit(x, y, int(y.max()) + 1)
    seconds = time.perf_counter() - start
    proba = head.predict_proba(xt)
    return {
        "seconds": seconds,
        "chosen": {"n_neighbors": head.k, "weights": head.weights},
        "tuned": head.tuned,
        "proba": hashlib.sha256(np.ascontiguousarray(proba).tobytes()).hexdigest()[:16],
    }


def _spawn(impl: str, data: Path, work: Path) -> dict[str, Any]:
    env = dict(os.environ)
    if impl in OLD:
        env["PYTHONPATH"] = str(work / impl)  # that commit's tlzoo package comes first on the path
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", impl, "--data", str(data)], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"{impl} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tasks", default="rt-minilm,digits-lite0,digits-pixels,breast-cancer,wine")
    ap.add_argument("--features", type=Path, default=Path("/tmp/bench-heads"), help="bench_fitted_heads' .npz")
    ap.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data)))
        return 0
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_fitted_heads import features

    work = Path(tempfile.mkdtemp(prefix="tlzoo-knn-"))
    for impl, commit in OLD.items():
        (work / impl).mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "tlzoo"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(work / impl)], input=archive.stdout, check=True)
    ok = True
    print(f"load average {os.getloadavg()[0]:.1f}; best of {args.rounds} rounds, contestants interleaved", flush=True)
    for task in args.tasks.split(","):
        x, y = features(task, args.features)
        fit, test = _fit_rows(y)
        data = work / f"{task}.npz"
        np.savez(data, x=x[fit], y=y[fit], xt=x[test])
        runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in IMPLS}
        for _ in range(args.rounds):
            for impl in IMPLS:
                runs[impl].append(_spawn(impl, data, work))
        best = {impl: min(r["seconds"] for r in rs) for impl, rs in runs.items()}
        ref = runs["0.3"][0]
        same = all(r["chosen"] == ref["chosen"] and r["proba"] == ref["proba"] for i in IMPLS[1:] for r in runs[i])
        ok &= same
        print(
            f"{task:14s} {len(fit):5d} rows x {x.shape[1]:4d}: 0.2 {best['0.2']:6.2f} s  "
            f"0.3 {best['0.3']:6.2f} s ({best['0.3'] / best['0.2']:.1f}x 0.2)  "
            f"GridSearchCV now {best['grid']:6.2f} s  per-fold query {best['folds']:6.2f} s "
            f"({best['folds'] / best['0.2']:.2f}x 0.2, {best['0.3'] / best['folds']:.1f}x faster than 0.3)  "
            f"chosen {runs['folds'][0]['chosen']} (0.2: {runs['0.2'][0]['chosen']})  "
            f"{'same choice and probabilities as 0.3' if same else 'DIFFERENT from 0.3'}",
            flush=True,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
