"""The contract kit for plugin authors: the same checks tlzoo's built-in plugins pass.

Much like scikit-learn's ``parametrize_with_checks``, a third-party plugin runs these in
its own test suite.  Each check raises ``AssertionError`` with a message saying which
rule of the contract broke and why it matters; each leaves the object as it found it.

A backbone plugin, in its ``tests/test_contract.py``::

    import pytest
    from tlzoo.core.interfaces import BackboneRequest
    from tlzoo.testing import BACKBONE_CHECKS, check_backbone, tiny_examples
    from my_plugin import MyBackbone

    def make():  # small and random-init, so the test runs offline in seconds
        return MyBackbone(BackboneRequest("my-model", pretrained=False, options={"image_size": 64}))

    def test_contract():
        backbone = make()
        check_backbone(backbone, tiny_examples(backbone.modality))

    # or one test per check, so a failure names the rule:
    @pytest.mark.parametrize("check", BACKBONE_CHECKS, ids=lambda c: c.__name__)
    def test_each(check):
        backbone = make()
        check(backbone, tiny_examples(backbone.modality))

The backbone contract (one check each, in :data:`BACKBONE_CHECKS`):

* attributes: ``modality``, ``name``, ``num_features``, ``weights_source`` set; ``spec()`` JSON-able;
* forward: transform + collate + forward give finite ``[B, num_features]`` floats, in both
  modes, deterministic in eval mode; features do not depend on the rest of the batch;
* layer groups: non-empty, disjoint, run input side first, and cover every parameter the
  features use; ``set_trainable(k)`` unfreezes exactly the top ``k`` groups (0, 1, 2, all, -1);
* training: one SGD step through a Linear head moves the head and the top group only,
  and frozen parameters get no gradient; with ``frozen_to_eval`` frozen BatchNorm
  statistics stay put in train mode while unfrozen ones update;
* ``preprocessing()`` is JSON-able and stable; ``fingerprint()`` is stable and changes
  with the weights (it keys the feature cache);
* awkward inputs (empty or over-long texts; grey, RGBA, 1-pixel and numpy images) work.

``check_rebuild(factory, request)`` checks what ``tl predict`` does: rebuild from the
request plus the saved assets and get the same features.
Heads, strategies and data sources have ``check_head(HeadClass)``,
``check_strategy(strategy)`` and ``check_data_source(source, location)``; tiny inputs
come from ``tiny_examples``, ``awkward_examples`` and ``separable_features``.

One module per kind: ``backbones``, ``heads``, ``strategies``, ``data_sources``, plus
``inputs`` for the tiny inputs; every public name is importable from ``tlzoo.testing``.
The kit needs torch and numpy only: never timm, transformers, gensim or scikit-learn.
"""
from __future__ import annotations

from .backbones import (BACKBONE_CHECKS, check_awkward_examples, check_backbone, check_backbone_attributes,
                        check_batch_independence, check_fingerprint, check_forward_shape, check_freezing,
                        check_frozen_batchnorm, check_layer_groups, check_preprocessing, check_rebuild,
                        check_training_step)
from .data_sources import check_data_source
from .heads import check_head
from .inputs import awkward_examples, separable_features, tiny_examples, tiny_images, tiny_texts
from .strategies import check_strategy

__all__ = [
    "BACKBONE_CHECKS", "check_backbone", "check_backbone_attributes", "check_forward_shape",
    "check_batch_independence", "check_layer_groups", "check_freezing", "check_training_step",
    "check_frozen_batchnorm", "check_preprocessing", "check_fingerprint", "check_awkward_examples",
    "check_rebuild", "check_head", "check_strategy", "check_data_source",
    "tiny_examples", "tiny_texts", "tiny_images", "awkward_examples", "separable_features",
]
