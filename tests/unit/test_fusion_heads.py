"""The late and mlp fusion heads (tlzoo/plugins/fusion/fusion_heads.py) on hand-made features."""

from __future__ import annotations

import numpy as np
import pytest

from tlzoo.api.errors import TlzooError
from tlzoo.plugins.fusion.fusion_heads import (
    LateFusionHead,
    MLPFusionHead,
    choose_weights,
    encode_blocks,
    simplex_grid,
)
from tlzoo.plugins.fusion.fusion_hooks import fusion_head, fusion_method
from tlzoo.plugins.heads.linear import LogRegHead

BLOCKS = [("a", [0, 1, 2, 6]), ("b", [3, 4, 5, 7])]  # two inputs of three features, then their missing flags


def _features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Input a tells the class apart; input b is noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    a = np.eye(3)[y] * 3 + rng.normal(0, 0.3, (n, 3))
    b = rng.normal(0, 1, (n, 3))
    return np.hstack([a, b, np.zeros((n, 2))]).astype(np.float32), y


def test_blocks_are_stored_as_ranges() -> None:
    assert encode_blocks(BLOCKS) == {"a": [[0, 3], [6, 7]], "b": [[3, 6], [7, 8]]}


def test_the_simplex_grid_sums_to_one() -> None:
    grid = simplex_grid(3, 0.05)
    assert len(grid) == 231 and np.allclose(grid.sum(1), 1) and (grid >= 0).all()


def test_validation_weights_favour_the_informative_input_and_survive_a_reload() -> None:
    x, y = _features(120, 0)
    xv, yv = _features(60, 1)
    head = LateFusionHead(head="logreg", head_params={"C": 1.0})
    head.use_blocks(BLOCKS)
    head.fit(x, y, 3)
    assert np.allclose(head.weights, [0.5, 0.5])  # equal until validation chooses
    head.choose(xv, yv)
    assert head.weights[0] > head.weights[1] and abs(head.weights.sum() - 1) < 1e-9
    probas = head.input_probabilities(xv)
    best, loss = choose_weights(probas, yv)
    assert np.allclose(best, head.weights) and head.tuned["val_log_loss"] == round(loss, 5)
    again = LateFusionHead(**head.params)
    again.load_state(head.state())
    assert np.allclose(again.predict_proba(xv), head.predict_proba(xv))


def test_mlp_modality_dropout_zeroes_whole_inputs_in_training_only() -> None:
    import torch

    head = MLPFusionHead(width=4, modality_dropout=0.5, dropout=0.0)
    head.use_blocks(BLOCKS)
    module = head.build(8, 3)
    x = torch.from_numpy(_features(256, 2)[0])
    module.eval()
    assert torch.equal(module(x), module(x))  # no dropout at prediction
    module.train()
    torch.manual_seed(0)
    assert not torch.equal(module(x), module(x))


def test_the_fusion_option_is_checked_with_a_did_you_mean() -> None:
    assert fusion_method({}) == "concat" and fusion_method({"fusion": "MLP"}) == "mlp"
    with pytest.raises(TlzooError, match="Unknown fusion 'lat'. Did you mean 'late'"):
        fusion_method({"fusion": "lat"})
    logreg = LogRegHead()
    assert fusion_head({"fusion": "concat"}, logreg) is logreg
    assert isinstance(fusion_head({"fusion": "late"}, logreg), LateFusionHead)
    with pytest.raises(TlzooError, match="--fusion mlp trains its own head"):
        fusion_head({"fusion": "mlp"}, logreg)
