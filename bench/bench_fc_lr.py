"""The fc head's learning rate under feature extraction, measured (issue 17 §5).

For each built-in task's cached features (``bench_fitted_heads.features``: rotten-tomatoes with
all-MiniLM-L6-v2, digits with EfficientNet-Lite0), each split seed (the runner's split: 15 %
validation, 15 % test) and each rate, the fc head trains as ``tl run --head fc`` does (the
engine's Trainer, AdamW with weight decay 0.01, 10 % warm-up then cosine, batch 32, 30 epochs,
the best val-loss weights kept), and the script prints validation and test accuracy and the
epoch kept.  A kept epoch near 30 means the head was still improving when training stopped.

    .venv/bin/python bench/bench_fc_lr.py [--out /tmp/bench-heads] [--rates 0.001,0.003,...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

TASKS = ("rt-minilm", "digits-lite0")
RATES = (0.001, 0.003, 0.01, 0.03, 0.1)
SEEDS = (0, 1, 2)


def _parts(y: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    from tlzoo.api.interfaces import Dataset
    from tlzoo.engine.data import stratified_split

    ds = Dataset([str(i) for i in range(len(y))], [str(v) for v in y], modality="text")
    s = stratified_split(ds, 0.15, 0.15, seed)
    return {k: np.array([int(i) for i in getattr(s, k).examples]) for k in ("train", "val", "test")}


def fit_fc(x: np.ndarray, y: np.ndarray, parts: dict[str, np.ndarray], lr: float, seed: int) -> dict[str, Any]:
    """One fc head trained as a feature-extraction run trains it; its val/test accuracy and kept epoch."""
    import torch

    from tlzoo.api.interfaces import Phase
    from tlzoo.engine.run.refit import FeatureRows, _as_batch
    from tlzoo.engine.training import History, Trainer, soft_cross_entropy
    from tlzoo.plugins.heads.fc import FCHead

    n = int(y.max()) + 1
    eye = np.eye(n, dtype=np.float32)
    torch.manual_seed(seed)
    head = FCHead().build(x.shape[1], n)

    def loader(split: str, shuffle: bool) -> Any:
        g = torch.Generator()
        g.manual_seed(seed)
        rows = FeatureRows(x[parts[split]], eye[y[parts[split]]])
        return torch.utils.data.DataLoader(rows, batch_size=32, shuffle=shuffle, generator=g, collate_fn=_as_batch)

    history = History(None)
    trainer = Trainer(
        device=torch.device("cpu"), loss=soft_cross_entropy(0.0), history=history, progress=False, log=lambda m: None
    )
    phase = Phase("head", epochs=30, lr=lr, warmup_fraction=0.1, schedule="cosine")
    trainer.run_phase(
        head, phase, [{"params": list(head.parameters()), "lr": lr}], loader("train", True), loader("val", False)
    )
    best = min(history.rows, key=lambda r: (float(r["val_loss"]), int(r["epoch"])))
    with torch.inference_mode():
        pred = head.eval()(torch.from_numpy(x[parts["test"]])).argmax(1).numpy()
    return {
        "val_accuracy": float(best["val_accuracy"]),
        "test_accuracy": float((pred == y[parts["test"]]).mean()),
        "kept_epoch": int(best["epoch"]),
    }


def main() -> None:
    from bench_fitted_heads import features

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-heads"), help="where the features are kept")
    ap.add_argument("--rates", default=",".join(map(str, RATES)))
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    results: dict[str, Any] = {}
    for task in TASKS:
        x, y = features(task, args.out)
        for lr in rates:
            runs = [fit_fc(x, y, _parts(y, s), lr, s) for s in SEEDS]
            mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
            results[f"{task} lr={lr:g}"] = {"mean": mean, "seeds": runs}
            print(
                f"{task:14s} lr {lr:<6g} val {mean['val_accuracy']:.3f}  test {mean['test_accuracy']:.3f}  "
                f"kept epoch {mean['kept_epoch']:.1f} / 30",
                flush=True,
            )
    (args.out / "fc_lr.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
