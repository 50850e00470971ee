"""The static-vector backbone's building blocks: settings checks, embedding rows, SIF statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tlzoo.api.errors import TlzooError
from tlzoo.plugins.text.static_vectors import SIF_A, UNK, _check_settings, _embedding_rows, sif_statistics
from tlzoo.plugins.text.static_vectors_hooks import DEFAULTS


@pytest.mark.parametrize(
    ("change", "max_length", "message"),
    [
        ({}, 0, "model.max_length must be at least 1, got 0"),
        ({"encoder": "gru"}, 8, "Unknown encoder 'gru' for glove; use one of bilstm, cnn"),
        ({"hidden": 0}, 8, "model.options.hidden must be a positive integer, got 0"),
        ({"dim": 2.5}, 8, "model.options.dim must be a positive integer, got 2.5"),
    ],
)
def test_bad_settings_are_one_line_errors(change: dict[str, object], max_length: int, message: str) -> None:
    with pytest.raises(TlzooError, match=message.replace("(", r"\(")):
        _check_settings("glove", {**DEFAULTS, **change}, max_length)


def test_without_vectors_the_rows_are_hashed_and_the_same_every_time() -> None:
    o = {**DEFAULTS, "vocab_size": 40, "dim": 6}
    words, rows, source = _embedding_rows(None, o, pretrained=True)
    assert words == [] and rows.shape == (40, 6) and "hashed into 40 rows" in source
    assert torch.equal(rows, _embedding_rows(None, o, pretrained=True)[1])  # tl predict rebuilds the same rows


def test_sif_weights_follow_zipf_without_counts_and_skip_the_common_direction_when_hashed() -> None:
    n = 5
    weight = torch.randn(n + 2, 3)
    w, common = sif_statistics(weight, n, None, hashed=True)
    p = 1.0 / (np.arange(1, n + 1) * (np.log(n) + 0.5772))
    assert common is None and w[UNK] == 1.0 and w.shape == (n + 2,)
    np.testing.assert_allclose(w[2:], SIF_A / (SIF_A + p), rtol=1e-6)
    assert all(w[2:][i] < w[2:][i + 1] for i in range(n - 1))  # frequent words weigh less


def test_sif_common_direction_is_the_top_singular_vector_of_the_weighted_rows() -> None:
    counts = [50, 30, 10, 5]
    weight = torch.zeros(6, 2, dtype=torch.float32)
    weight[2:] = torch.tensor([[1.0, 0.1], [2.0, -0.1], [3.0, 0.05], [4.0, 0.0]])
    w, common = sif_statistics(weight, 4, counts, hashed=False)
    np.testing.assert_allclose(w[2:], SIF_A / (SIF_A + np.array(counts) / 95), rtol=1e-6)
    assert common is not None and abs(abs(float(common[0])) - 1.0) < 1e-2  # the rows point along the first axis
