"""The faster extraction path (issue 10 goals 1-3) computes the same features.

Length-sorted batches (``Backbone.extraction_order``) come back in the dataset's order and equal
the one-at-a-time features; the opt-in ONNX Runtime (``model.options.runtime=onnx``) agrees with
PyTorch, never serves a backbone in training, and keys the feature cache apart.  Tiny random
models only; speed itself is measured by bench/peers_extract.py, never asserted here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import BackboneRequest, Dataset
from tlzoo.engine import extraction as features_module
from tlzoo.engine.extraction import extract
from tlzoo.engine.features import FeatureCache, cache_key

CPU = torch.device("cpu")
TEXTS = [
    "the film",
    "a good film and a bad film and the end of the film",
    "bad",
    "the the the the the the the the the the the the the the the the the the the the the the",
    "good end",
    "",
    "a film",
    "the good the bad",
]


def _bert(folder: Path, **options: Any) -> Any:
    from tlzoo.plugins.text.bert import TransformerBackbone

    backbone = TransformerBackbone(BackboneRequest("tiny", weights=str(folder), options=options))
    backbone.plugin = "bert"
    return backbone.eval()


def _one_at_a_time(backbone: Any, examples: list[Any]) -> np.ndarray:
    with torch.inference_mode():
        rows = [backbone(backbone.collate([backbone.transform(e, False)])).float().numpy() for e in examples]
    return np.concatenate(rows)


def test_sorted_batches_come_back_in_the_datasets_order(tiny_bert_dir: Path) -> None:
    backbone = _bert(tiny_bert_dir)
    order = list(backbone.extraction_order(TEXTS))
    assert sorted(order) == list(range(len(TEXTS))) and order != list(range(len(TEXTS)))
    assert order[0] == 3 and order[-1] == 5  # longest first, the empty text last
    ds = Dataset(TEXTS * 3, ["x"] * 24, "text")
    got = extract(backbone, ds, batch_size=4, device=CPU, progress=False)
    np.testing.assert_allclose(got, _one_at_a_time(backbone, ds.examples), rtol=0, atol=1e-5)


def test_order_is_restored_across_chunks(tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features_module, "SORT_CHUNK", 5)  # 24 examples: five chunks, the last one short
    backbone = _bert(tiny_bert_dir)
    ds = Dataset(TEXTS * 3, ["x"] * 24, "text")
    got = extract(backbone, ds, batch_size=2, device=CPU, progress=False)
    np.testing.assert_allclose(got, _one_at_a_time(backbone, ds.examples), rtol=0, atol=1e-5)


def test_a_backbone_order_that_is_no_permutation_is_refused(tiny_bert_dir: Path) -> None:
    backbone = _bert(tiny_bert_dir)
    backbone.extraction_order = lambda examples: [0] * len(examples)
    with pytest.raises(ValueError, match="permutation"):
        extract(backbone, Dataset(TEXTS, ["x"] * 8, "text"), batch_size=4, device=CPU, progress=False)


def test_an_error_while_preparing_a_batch_reaches_the_caller(tiny_bert_dir: Path) -> None:
    backbone = _bert(tiny_bert_dir)

    def broken(example: Any, train: bool) -> str:
        if example == "bad":
            raise RuntimeError("cannot read this one")
        return str(example)

    backbone.transform = broken
    with pytest.raises(RuntimeError, match="cannot read this one"):
        extract(backbone, Dataset(TEXTS, ["x"] * 8, "text"), batch_size=2, device=CPU, progress=False)


def test_onnx_runtime_matches_torch_and_keys_the_cache_apart(tiny_bert_dir: Path, tmp_path: Path) -> None:
    plain, onnx = _bert(tiny_bert_dir), _bert(tiny_bert_dir, runtime="onnx")
    ds = Dataset(TEXTS, ["x"] * 8, "text")
    cache = FeatureCache(tmp_path)
    a = extract(plain, ds, batch_size=4, device=CPU, progress=False, cache=cache, log=lambda m: None)
    b = extract(onnx, ds, batch_size=4, device=CPU, progress=False, cache=cache, log=lambda m: None)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
    assert onnx._onnx_forward is not None and onnx._onnx_forward._session is not None  # ONNX Runtime ran
    assert onnx.preprocessing()["runtime"] == "onnx" and "runtime" not in plain.preprocessing()
    assert cache_key(plain, ds) != cache_key(onnx, ds)
    assert len(list((tmp_path / "features").iterdir())) == 2


def test_onnx_runtime_never_serves_training_and_follows_weight_updates(tiny_bert_dir: Path) -> None:
    backbone = _bert(tiny_bert_dir, runtime="onnx")
    batch = backbone.collate(TEXTS[:3])
    with torch.no_grad():
        before = backbone(batch)
    onnx = backbone._onnx_forward
    backbone.train()
    out = backbone(batch)
    assert out.requires_grad  # PyTorch ran: gradients flow while fine-tuning
    out.sum().backward()
    with torch.no_grad():
        for p in backbone.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    backbone.eval()
    with torch.no_grad():
        after = backbone(batch)
        reference = backbone._pooled(batch)
    assert onnx is backbone._onnx_forward
    np.testing.assert_allclose(after.numpy(), reference.numpy(), rtol=0, atol=1e-4)  # exported again
    assert not np.allclose(before.numpy(), after.numpy())


def test_vision_onnx_runtime_matches_torch() -> None:
    from tlzoo.plugins.vision.timm_vision import TimmBackbone

    def build(**options: Any) -> Any:
        request = BackboneRequest("mobilenetv3_small_100", pretrained=False, image_size=64, options=options)
        torch.manual_seed(0)
        backbone = TimmBackbone(request)
        backbone.plugin = "mobilenet"
        return backbone

    plain, onnx = build(), build(runtime="onnx")
    images = [np.random.RandomState(i).randint(0, 255, (12, 12, 3), dtype=np.uint8) for i in range(5)]
    ds = Dataset(images, ["x"] * 5, "vision")
    a = extract(plain, ds, batch_size=2, device=CPU, progress=False)
    b = extract(onnx, ds, batch_size=2, device=CPU, progress=False)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
    np.testing.assert_allclose(a, _one_at_a_time(plain, images), rtol=0, atol=1e-5)
    assert cache_key(plain, ds) != cache_key(onnx, ds)


def test_an_unknown_runtime_is_one_line_with_the_choices(tiny_bert_dir: Path) -> None:
    with pytest.raises(TlzooError, match=r"Unknown runtime 'onx' for bert\. Did you mean 'onnx'\?.*torch, onnx"):
        _bert(tiny_bert_dir, runtime="onx")
