#!/usr/bin/env bash
# Issue 10, goal 9: tlzoo on one GPU against the same peers as goals 1, 2 and 6 (under 5 minutes).
#
#   bench/gpu_check.sh            # from the repository root, on a machine with a CUDA GPU
#
# Prints, with the GPU's name:
#   goal 1  text extraction: tlzoo extract (bert, all-MiniLM-L6-v2, defaults: bf16 autocast, pinned
#           batches) vs sentence-transformers encode (same folder, batch, device), 2,000 RT snippets
#   goal 2  image extraction: tlzoo extract (efficientnet_lite0, 224 px) vs a plain timm loop
#           (create_transform + forward, the model in eval on the GPU), 1,000 digit images
#   goal 6  a fine-tune epoch: bench/peers_train.py --device cuda (tlzoo's Trainer with bf16
#           autocast vs a hand-written float32 loop; the same with --no-amp in the note)
# Interleaved rounds, best of 3, examples/s.  Paste the output into BENCHMARKS.md with the GPU named.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible: nothing to check')"
"$PY" - <<'EOF'
import sys, tempfile, time
from pathlib import Path

import torch

sys.path.insert(0, ".")
from tlzoo.engine.data import stratified_limit
from tlzoo.engine.extraction import extract
from tlzoo.engine.features import FeatureCache
from tlzoo.api.interfaces import BackboneRequest, DataOptions
from tlzoo.engine.training import autocast, inference_batch_size

dev = torch.device("cuda")
print(f"GPU: {torch.cuda.get_device_name(dev)}, torch {torch.__version__}, bf16 {torch.cuda.is_bf16_supported()}")
BATCH = inference_batch_size(dev, 32)  # what tl run picks for extraction when --batch-size is not given


def best(fns, rounds=3):
    for f in fns.values():
        f()  # warm-up: kernels, cudnn autotuning
    out = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            torch.cuda.synchronize()
            t = time.perf_counter()
            f()
            torch.cuda.synchronize()
            out[k] = min(out[k], time.perf_counter() - t)
    return out


def tl_extract(backbone, ds):
    def run():
        with autocast(dev, True):  # as tl run does on a GPU by default
            extract(backbone, ds, batch_size=BATCH, device=dev, cache=FeatureCache(Path(tempfile.mkdtemp())),
                    progress=False, log=lambda m: None)
    return run


# goal 1
from sentence_transformers import SentenceTransformer

from tlzoo.plugins.data.builtin import RottenTomatoes
from tlzoo.plugins.text.bert import TransformerBackbone, resolve_source

ds = stratified_limit(RottenTomatoes().load("rotten-tomatoes", DataOptions()), 2000, 0)
bb = TransformerBackbone(BackboneRequest("all-MiniLM-L6-v2"))
bb.plugin = "bert"
st = SentenceTransformer(resolve_source("all-MiniLM-L6-v2", None)[0], device="cuda")
t = best({"tlzoo": tl_extract(bb, ds), "st": lambda: st.encode(ds.examples, batch_size=BATCH)})
n = len(ds)
print(f"goal 1 text extraction, {n} snippets, batch {BATCH}: tlzoo {n / t['tlzoo']:.0f}/s, "
      f"sentence-transformers encode {n / t['st']:.0f}/s, ratio {t['st'] / t['tlzoo']:.2f} (bar >= 1.3)")
del st, bb

# goal 2
import timm
from PIL import Image

from tlzoo.plugins.data.builtin import Digits
from tlzoo.plugins.vision.timm_vision import TimmBackbone

ds = stratified_limit(Digits().load("digits", DataOptions()), 1000, 0)
bb = TimmBackbone(BackboneRequest("efficientnet_lite0"))
bb.plugin = "efficientnet"
net = timm.create_model("tf_efficientnet_lite0", num_classes=0)
net.load_state_dict(bb.model.state_dict())
net = net.eval().to(dev)
cfg = timm.data.resolve_data_config({}, model=net)
cfg.update(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
tf = timm.data.create_transform(**cfg)


@torch.inference_mode()
def timm_loop():
    for i in range(0, len(ds), BATCH):
        x = torch.stack([tf(Image.fromarray(a).convert("RGB")) for a in ds.examples[i:i + BATCH]])
        net(x.to(dev)).cpu()


t = best({"tlzoo": tl_extract(bb, ds), "timm": timm_loop})
n = len(ds)
print(f"goal 2 image extraction, {n} digits at 224 px, batch {BATCH}: tlzoo {n / t['tlzoo']:.0f}/s, "
      f"timm loop {n / t['timm']:.0f}/s, ratio {t['timm'] / t['tlzoo']:.2f} (bar >= 1.3)")
EOF
echo "goal 6 fine-tune epoch (ratio = tlzoo epoch time / peer epoch time, bar <= 1.1):"
"$PY" bench/peers_train.py --device cuda
