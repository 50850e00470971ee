"""Issue 17 §2: a library's warning raised inside plugin code (scikit-learn's ConvergenceWarning in a
fitted head) is one log line per step, and nothing at all under -q; never raw on stderr."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def noisy_logreg(monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    real = LogisticRegression.fit

    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        warnings.warn("lbfgs failed to converge (status=1)", ConvergenceWarning, stacklevel=2)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", fit)


@pytest.mark.usefixtures("noisy_logreg")
def test_a_library_warning_in_plugin_code_is_one_log_line_and_silent_under_q(
    run_cli: Any, tiny_bert_dir: Path, text_csv: Path, tmp_path: Path
) -> None:
    args = ["run", "--plugin", "bert", "--weights", tiny_bert_dir, "--data", text_csv, "--head", "logreg"]
    loud = run_cli(*args, "--set", "head.C=1", "--out", tmp_path / "loud")
    assert loud.exit_code == 0, loud
    lines = [line for line in loud.stderr.splitlines() if "lbfgs failed to converge" in line]
    assert lines == ["  warning (ConvergenceWarning): lbfgs failed to converge (status=1)"], loud.stderr
    quiet = run_cli(*args, "--set", "head.C=1", "-q", "--out", tmp_path / "quiet")
    assert quiet.exit_code == 0, quiet
    assert "converge" not in quiet.stderr and "Warning" not in quiet.stderr and quiet.stdout.startswith("test accuracy")
