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


def test_fitted_heads_scale_each_input_as_a_whole_and_give_inputs_equal_variance() -> None:
    """A fused run's logreg/svm standardise per input block, not per column (one input: per column, as before)."""
    from tlzoo.plugins.heads.linear import SVMHead

    rng = np.random.default_rng(0)
    wide = rng.normal(0, 1, (200, 6)) * np.array([1.0, 2.0, 0.5, 0.1, 1.0, 3.0])  # input a: six columns
    narrow = rng.normal(0, 5, (200, 2))  # input b: two columns of larger variance
    x = np.hstack([wide, narrow]).astype(np.float32)
    y = (wide[:, 0] + narrow[:, 0] > 0).astype(int)
    blocks = [("a", [0, 1, 2, 3, 4, 5]), ("b", [6, 7])]
    head = LogRegHead(C=1.0)
    assert head.blocks == []  # until the engine gives a fused run's blocks
    head.use_blocks(blocks)
    z = x / head.block_scale(x.var(0))
    totals = [z[:, cols].var(0).sum() for _, cols in blocks]
    assert np.allclose(totals, [4.0, 4.0], rtol=1e-5)  # 8 columns, two inputs: half the variance each
    ratios = z[:, :6].std(0) / x[:, :6].std(0)
    assert np.allclose(ratios, ratios[0], rtol=1e-5)  # one divisor per input: the shape inside it stays
    head.fit(x, y, 2)
    assert np.allclose(head.scaler.scale_, head.block_scale(head.scaler.var_))
    single = LogRegHead(C=1.0)
    single.use_blocks(blocks[:1])  # one input: nothing to balance
    single.fit(x, y, 2)
    assert not single.blocks and np.allclose(single.scaler.scale_, x.std(0), rtol=1e-4)
    svm = SVMHead(C=1.0)
    svm.use_blocks(blocks)
    svm.fit(x, y, 2)
    assert np.allclose(svm.scale, svm.block_scale(x.var(0)))


def test_subset_blocks_follow_the_columns_a_head_on_some_inputs_sees() -> None:
    from tlzoo.engine.run.model import subset_blocks, subset_columns

    assert subset_columns(BLOCKS, ["b"]) == [3, 4, 5, 7]
    assert subset_blocks(BLOCKS, ["a", "b"]) == BLOCKS
    three = [*BLOCKS, ("c", [8, 9])]
    assert subset_blocks(three, ["a", "c"]) == [("a", [0, 1, 2, 3]), ("c", [4, 5])]
