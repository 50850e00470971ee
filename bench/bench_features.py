"""Feature-extraction throughput: tlzoo's extractor vs a raw transformers / timm loop.

Prints examples per second for (a) a plain loop written directly against
transformers (tokenizer + AutoModel + mean pooling) or timm (transform + forward),
(b) tlzoo's ``extract()`` with the same backbone, batch size and threads, cold
(features computed and streamed to the cache), and (c) warm (read from the cache).

    .venv/bin/python bench/bench_features.py [--n 1000] [--batch 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure(
    model: str, baseline: str, raw: Callable[[], None], backbone: Any, ds: Any, batch: int
) -> list[tuple[str, float]]:
    """Examples/s of the raw loop, then tlzoo's extract() cold (into a fresh cache) and cached."""
    import torch

    from tlzoo.engine.extraction import extract
    from tlzoo.engine.features import FeatureCache

    cache = FeatureCache(root=Path(tempfile.mkdtemp()))
    quiet = dict(batch_size=batch, device=torch.device("cpu"), progress=False, log=lambda m: None)
    n = len(ds)
    t_raw = timed(raw)
    t_cold = timed(lambda: extract(backbone, ds, cache=cache, **quiet))
    t_warm = timed(lambda: extract(backbone, ds, cache=cache, **quiet), repeat=3)
    return [
        (f"{model} {baseline}", n / t_raw),
        (f"{model} tlzoo extract, cold", n / t_cold),
        (f"{model} tlzoo extract, cached", n / t_warm),
    ]


def bench_text(n: int, batch: int) -> list[tuple[str, float]]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tlzoo.api.interfaces import BackboneRequest, DataOptions
    from tlzoo.engine.data import stratified_limit
    from tlzoo.plugins.data.builtin import RottenTomatoes
    from tlzoo.plugins.text.bert import TransformerBackbone, resolve_source

    ds = stratified_limit(RottenTomatoes().load("rotten-tomatoes", DataOptions()), n, 0)
    texts = ds.examples
    folder, _ = resolve_source("all-MiniLM-L6-v2", None)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()

    @torch.inference_mode()
    def raw() -> None:
        for i in range(0, len(texts), batch):
            enc = tok(texts[i : i + batch], padding=True, truncation=True, max_length=128, return_tensors="pt")
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            _ = (h * m).sum(1) / m.sum(1)

    backbone = TransformerBackbone(BackboneRequest("all-MiniLM-L6-v2", options={"max_length": 128}))
    backbone.plugin = "bert"
    raw()  # warm-up: first call allocates
    return measure("text  all-MiniLM-L6-v2 ", "raw transformers loop", raw, backbone, ds, batch)


def bench_vision(n: int, batch: int) -> list[tuple[str, float]]:
    import timm
    import torch
    from PIL import Image

    from tlzoo.api.interfaces import BackboneRequest, DataOptions
    from tlzoo.engine.data import stratified_limit
    from tlzoo.plugins.data.builtin import Digits
    from tlzoo.plugins.vision.timm_vision import TimmBackbone

    ds = stratified_limit(Digits().load("digits", DataOptions()), n, 0)
    backbone = TimmBackbone(BackboneRequest("efficientnet_lite0"))
    backbone.plugin = "efficientnet"
    model = timm.create_model("tf_efficientnet_lite0", num_classes=0).eval()
    model.load_state_dict(backbone.model.state_dict())
    tf = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))

    @torch.inference_mode()
    def raw() -> None:
        for i in range(0, len(ds), batch):
            x = torch.stack([tf(Image.fromarray(a).convert("RGB")) for a in ds.examples[i : i + batch]])
            _ = model(x)

    return measure("vision efficientnet_lite0 224px", "raw timm loop", raw, backbone, ds, batch)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    rows = bench_text(args.n, args.batch) + bench_vision(min(args.n, 500), args.batch)
    print(f"{'what':<58} examples/s")
    for name, rate in rows:
        print(f"{name:<58} {rate:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
