"""``tl config --plugin HEAD`` / ``--head HEAD`` print a head's options with help, what each takes and its
default (issue 17 §6: a head's name answered "Did you mean 'xception'?"); every built-in head documents
every option."""

from __future__ import annotations

import json

import pytest

from tlzoo.engine.zoo import Zoo


def _built_in_heads() -> list[tuple[str, type]]:
    return [(n, c) for n, c in Zoo().heads.items() if c.__module__.startswith("tlzoo.plugins.heads.")]


def test_every_built_in_head_documents_every_option() -> None:
    heads = _built_in_heads()
    assert {"fc", "logreg", "svm", "knn", "nb", "tree", "rf"} <= {n for n, _ in heads}
    for name, cls in heads:
        missing = set(cls.defaults()) - {k for k, v in cls.option_help.items() if v.strip()}
        assert not missing, f"head {name} has no help for {sorted(missing)}"
        assert set(cls.option_help) <= set(cls.defaults()), f"head {name} documents options it lacks"


@pytest.mark.parametrize("flag", ["--plugin", "--head"])
def test_config_of_a_head_lists_its_options(run_cli, flag: str) -> None:
    res = run_cli("config", flag, "svm")
    assert res.exit_code == 0, res
    assert "Did you mean" not in res.output and "Options of the svm head" in res.stdout
    line = next(x for x in res.stdout.splitlines() if x.startswith("head.kernel "))
    assert "linear" in line and "takes one of 'linear', 'rbf'" in line and "random Fourier features" in line
    keys = [x.split()[0] for x in res.stdout.splitlines()[1:]]
    assert keys == [f"head.{k}" for k in Zoo().heads.get("svm").defaults()]
    assert "train.lr" not in res.stdout  # the head's options only


def test_config_of_a_head_as_json_and_unknown_heads(run_cli) -> None:
    from helpers import one_line_error

    res = run_cli("config", "--head", "nb", "--json")
    assert res.exit_code == 0, res
    (row,) = json.loads(res.stdout)
    assert row["key"] == "head.var_smoothing" and row["default"] == "auto" and "naive Bayes" in row["meaning"]
    one_line_error(run_cli("config", "--head", "svn"), "Unknown head 'svn'", "Did you mean 'svm'")
    one_line_error(run_cli("config", "--plugin", "nosuchthing"), "Unknown plugin, model or head 'nosuchthing'")
    one_line_error(run_cli("config", "--plugin", "knm"), "Did you mean 'knn'", "tl heads")  # heads are candidates
