"""How a fitted logreg head should standardise fused features (issue 16): the choice behind ``Head.use_blocks``.

Features: the built-in ``flags`` or ``emoji`` set, each picture through EfficientNet-Lite0 and each name
through all-MiniLM-L6-v2 (both packaged, offline), with ``tlzoo.embed(..., normalize=True)`` — the
L2-normalised per-input features a fused ``concat`` run joins — concatenated (no missing inputs in
these sets, so no flag columns).  For each split seed, tlzoo's stratified 70 / 15 / 15 split; tlzoo's
``logreg`` head (C tuned by cross-validation) is fitted on train + validation, as a run fits it, and
scored on the test part, with the features standardised four ways:

* ``column``: each column by its own standard deviation (the head's rule for a single input; the
  fused rule before ``use_blocks``);
* ``block`` (what the head does now, given the blocks): each input's block divided by one number,
  every input the same share of the variance;
* ``block-no-shares``: each block by one number (its root-mean-square column deviation), no equal shares;
* ``column-shares``: each column by its deviation, then each block scaled to an equal share.

Prints one JSON line per scaling: the mean test accuracy and the per-seed figures.

    .venv/bin/python bench/bench_fused_scaling.py --dataset flags --seeds 10
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def features(dataset: str) -> tuple[np.ndarray, list[str], list[str], int]:
    """(features [n, 1280 + 384], ids, labels, width of the image block)."""
    import tlzoo
    from tlzoo.api.interfaces import DataOptions
    from tlzoo.plugins.fusion.emoji import EmojiRecords
    from tlzoo.plugins.fusion.flags import FlagRecords

    source = FlagRecords() if dataset == "flags" else EmojiRecords()
    full = source.load(dataset, DataOptions(fields=("image", "name")))
    images = tlzoo.embed("efficientnet_lite0", [r["image"] for r in full.examples], normalize=True)
    names = tlzoo.embed("bert", [r["name"] for r in full.examples], model="all-MiniLM-L6-v2", normalize=True)
    return np.concatenate([images, names], axis=1), list(full.ids), list(full.labels), images.shape[1]


def head_for(blocks: list[list[int]], how: str):  # type: ignore[no-untyped-def]
    """tlzoo's logreg head standardising by ``how`` (the head itself for ``column`` and ``block``)."""
    from tlzoo.plugins.heads.linear import LogRegHead

    class Scaled(LogRegHead):
        def block_scale(self, variance: np.ndarray) -> np.ndarray:
            out = np.sqrt(np.asarray(variance, np.float64))
            width = sum(len(b) for b in self.blocks)
            for b in self.blocks:
                if how == "block-no-shares":
                    out[b] = np.sqrt(out[b].dot(out[b]) / len(b))
                else:  # column-shares
                    out[b] /= np.sqrt(width / (len(self.blocks) * len(b)))
            out[out < 1e-12] = 1.0
            return out

    head = LogRegHead() if how in ("column", "block") else Scaled()
    if how != "column":
        head.use_blocks([(str(i), b) for i, b in enumerate(blocks)])  # the engine's call in a fused run
    return head


def score(x: np.ndarray, ids: list[str], labels: list[str], blocks: list[list[int]], how: str, seed: int) -> float:
    """Test accuracy of tlzoo's logreg head standardising by ``how``, on split ``seed``."""
    from tlzoo.api.interfaces import Dataset
    from tlzoo.engine.data import stratified_split

    row = {ident: k for k, ident in enumerate(ids)}
    splits = stratified_split(Dataset(list(ids), labels, "text", ids=ids), 0.15, 0.15, seed)
    classes = sorted(set(labels))
    index = {c: i for i, c in enumerate(classes)}
    train = [row[i] for i in splits.train.ids + splits.val.ids]
    test = [row[i] for i in splits.test.ids]
    head = head_for(blocks, how)
    head.fit(x[train], np.array([index[label] for label in splits.train.labels + splits.val.labels]), len(classes))
    predicted = np.asarray(head.predict_proba(x[test])).argmax(1)
    return float((predicted == np.array([index[label] for label in splits.test.labels])).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--dataset", choices=("flags", "emoji"), default="flags")
    ap.add_argument("--seeds", type=int, default=10, help="split seeds 0 .. N-1")
    args = ap.parse_args()
    x, ids, labels, image_width = features(args.dataset)
    blocks = [list(range(image_width)), list(range(image_width, x.shape[1]))]
    for how in ("column", "block", "block-no-shares", "column-shares"):
        accs = [score(x, ids, labels, blocks, how, seed) for seed in range(args.seeds)]
        print(json.dumps({"dataset": args.dataset, "scaling": how, "mean": round(float(np.mean(accs)), 4),
                          "per_seed": [round(a, 4) for a in accs]}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
