"""The steps of ``tl pretrain`` before any pretrainer runs, and the gensim pretrainer's held-out split."""

from __future__ import annotations

import numpy as np
import pytest

from tlzoo.api.errors import TlzooError
from tlzoo.commands.pretraining import _pretrainer_options, _read_texts
from tlzoo.plugins.text.gensim_pretrain import _split


def test_texts_given_as_a_list_drop_blanks_and_keep_at_most_limit() -> None:
    texts, where = _read_texts(["a b", "", "  ", "c d", "e f"], 2, 0, None, None)
    assert texts == ["a b", "c d"] and where == "<2 texts>"
    assert _read_texts(["a b", "c"], 0, 0, None, None)[0] == ["a b", "c"]  # 0: no limit
    with pytest.raises(TlzooError, match="no text"):
        _read_texts(["", " \n"], 0, 0, None, None)


def test_pretrainer_options_add_epochs_and_seed_without_overriding_a_given_seed() -> None:
    given = {"dim": 8}
    assert _pretrainer_options(given, 3, 7) == {"dim": 8, "epochs": 3, "seed": 7}
    assert given == {"dim": 8}  # the caller's dict is left alone
    assert _pretrainer_options({"seed": 1}, None, 7) == {"seed": 1}
    with pytest.raises(TlzooError, match="--epochs must be at least 1, got 0"):
        _pretrainer_options(None, 0, 0)


@pytest.mark.parametrize(("n", "held"), [(5, 0), (19, 0), (20, 1), (39, 1), (40, 2), (100, 5)])
def test_gensim_split_holds_out_five_percent_from_twenty_sentences_on(n: int, held: int) -> None:
    sentences = [[f"w{i}"] for i in range(n)]
    train, val = _split(sentences, np.random.default_rng(0))
    assert len(val) == held and len(train) == n - held
    assert sorted(train + val) == sorted(sentences)
    assert train == [s for s in sentences if s in train]  # training keeps the corpus order
