"""The seven classic heads: each trains on cached features, beats chance on a held-out
CSV, saves without pickle and predicts the same after loading; options via head.*.

Data: ``topics_csv`` and ``word_bert_dir`` from conftest (three separable topics, tiny BERT)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tlzoo.api.errors import TlzooError
from tlzoo.commands.predict import Predictor
from tlzoo.engine.config import RunConfig
from tlzoo.facade import Engine

HEADS = ("fc", "logreg", "svm", "rf", "knn", "tree", "nb")


def _config(tiny_bert_dir: Path, data: Path, out: Path, head: str, **params: Any) -> RunConfig:
    cfg = RunConfig()
    cfg.model.plugin, cfg.model.weights, cfg.model.max_length = "bert", str(tiny_bert_dir), 16
    cfg.data.path, cfg.head.name, cfg.head.params = str(data), head, dict(params)
    cfg.train.device, cfg.seed, cfg.progress, cfg.out = "cpu", 3, False, str(out)
    cfg.train.lr = 0.02  # fc: the tiny model's features are small; 30 epochs on cached features
    return cfg


def test_every_head_beats_chance_on_cached_features(word_bert_dir: Path, topics_csv: Path, tmp_path: Path) -> None:
    logs: dict[str, list[str]] = {}
    for i, head in enumerate(HEADS):
        lines: list[str] = []
        result = Engine(log=lines.append).run(_config(word_bert_dir, topics_csv, tmp_path / head, head))
        logs[head] = lines
        acc = result.metrics["test"]["accuracy"]
        assert acc >= 0.6, f"head {head}: test accuracy {acc} on 3 balanced classes (chance 0.33)"
        if i > 0:  # features came from the cache: the backbone never ran for heads 2..7
            assert sum("read from cache" in m for m in lines) == 3, (head, lines)
            assert not any("extracted and cached" in m for m in lines)
        # the saved head (safetensors + model.json) reproduces the run's test probabilities
        with (result.run_dir / "predictions.csv").open() as f:
            rows = list(csv.DictReader(f))
        texts = _texts_by_id(topics_csv)
        proba = Predictor.load(result.run_dir).predict_proba([texts[r["id"]] for r in rows])
        classes = [k[2:] for k in rows[0] if k.startswith("p_")]
        assert classes == Predictor.load(result.run_dir).classes
        saved = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
        np.testing.assert_allclose(proba, saved, atol=2e-4, err_msg=head)
    assert "extracted and cached" in " ".join(logs[HEADS[0]])


def _texts_by_id(path: Path) -> dict[str, str]:
    with path.open() as f:
        return {str(i): row["text"] for i, row in enumerate(csv.DictReader(f))}


def test_head_options_reach_the_estimator(word_bert_dir: Path, topics_csv: Path, tmp_path: Path) -> None:
    cfg = _config(word_bert_dir, topics_csv, tmp_path / "knn1", "knn")
    cfg.apply_overrides(["head.n_neighbors=1", "head.metric=euclidean"])
    result = Engine(log=None).run(cfg)
    import json

    saved = json.loads((result.run_dir / "model.json").read_text())["head"]["params"]
    assert saved["n_neighbors"] == 1 and saved["metric"] == "euclidean"
    # 1-NN on its own training features is perfect (5-NN with distance weights is too, so
    # compare with 5 uniform neighbours on the validation split instead): the option is used
    with (result.run_dir / "history.csv").open() as f:
        fit = next(csv.DictReader(f))
    assert float(fit["train_accuracy"]) == 1.0
    cfg5 = _config(word_bert_dir, topics_csv, tmp_path / "knn15", "knn")
    cfg5.apply_overrides(["head.n_neighbors=15", "head.weights=uniform", "head.metric=euclidean"])
    with (Engine(log=None).run(cfg5).run_dir / "history.csv").open() as f:
        assert float(next(csv.DictReader(f))["train_accuracy"]) < 1.0


@pytest.mark.parametrize(
    "head,params,fragment",
    [
        ("rf", {"n_estimators": 0}, "n_estimators"),
        ("svm", {"kernel": "poly"}, "kernel"),
        ("knn", {"n_neighbors": 0}, "n_neighbors"),
        ("tree", {"depth": 3}, "head.depth"),
    ],
)
def test_bad_head_options_are_one_line_errors(head: str, params: dict[str, Any], fragment: str) -> None:
    from tlzoo.engine.zoo import Zoo

    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    y = np.arange(30) % 3
    with pytest.raises(TlzooError, match=fragment) as info:
        Zoo().heads.get(head)(**params).fit(x, y, 3)
    assert "\n" not in str(info.value)


def test_rf_and_tree_arrays_predict_like_scikit_learn() -> None:
    from sklearn.ensemble import RandomForestClassifier

    from tlzoo.plugins.heads.sklearn_heads import RandomForestHead

    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1)
    head = RandomForestHead(n_estimators=15, max_depth=None, max_features="sqrt")  # as the reference: no search
    head.fit(x[:150], y[:150], 4)  # class 3 never seen: its column stays 0
    ref = RandomForestClassifier(n_estimators=15, random_state=0).fit(x[:150], y[:150])
    p = head.predict_proba(x[150:])
    np.testing.assert_allclose(p[:, :3], ref.predict_proba(x[150:]), atol=1e-6)
    assert p.shape == (50, 4) and np.all(p[:, 3] == 0)


def test_third_party_head_registers_through_the_hook(word_bert_dir: Path, topics_csv: Path, tmp_path: Path) -> None:
    from tlzoo.api.hookspecs import hookimpl
    from tlzoo.api.interfaces import FittedHead
    from tlzoo.engine.plugins import PluginManager
    from tlzoo.engine.zoo import Zoo

    class Centroid(FittedHead):
        """Nearest class mean: a fitted head from outside tlzoo."""

        name = "centroid"

        def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
            self.means = np.stack([x[y == k].mean(0) for k in range(num_classes)])

        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            d = -((x[:, None, :] - self.means[None]) ** 2).sum(2)
            e = np.exp(d - d.max(1, keepdims=True))
            return e / e.sum(1, keepdims=True)

        def state(self) -> dict[str, np.ndarray]:
            return {"means": self.means}

        def load_state(self, arrays: dict[str, np.ndarray]) -> None:
            self.means = arrays["means"]

    class Plugin:
        @hookimpl
        def tlzoo_register_heads(self, register: Any) -> None:
            register(Centroid)

    zoo = Zoo(PluginManager(extra=[Plugin()]))
    result = Engine(zoo=zoo, log=None).run(_config(word_bert_dir, topics_csv, tmp_path / "centroid", "centroid"))
    assert result.metrics["test"]["accuracy"] >= 0.6
    assert Predictor.load(result.run_dir, zoo).predict(["funny comedy clever"])[0]["label"] == "comedy"


# --------------------------------------------------------------------------- two kinds of head
def test_head_kinds_are_types_and_trainable_follows_them() -> None:
    from tlzoo.api.interfaces import FittedHead, Head, TorchHead
    from tlzoo.plugins.heads.fc import FCHead
    from tlzoo.plugins.heads.sklearn_heads import HEADS, LogRegHead

    assert issubclass(FCHead, TorchHead) and FCHead.trainable is True and FCHead().trainable is True
    assert all(issubclass(h, FittedHead) and h.trainable is False for h in HEADS)
    head = LogRegHead()
    assert isinstance(head, Head) and not isinstance(head, TorchHead)
    with pytest.raises(AttributeError, match="read-only"):
        head.trainable = True  # type: ignore[misc]

    class Incomplete(FittedHead):
        name = "incomplete"

        def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None: ...

        def predict_proba(self, x: np.ndarray) -> np.ndarray: ...

    with pytest.raises(TypeError, match="abstract"):  # a fitted head must save and restore its state
        Incomplete()
    with pytest.raises(TypeError, match="contradicts its base"):

        class Confused(TorchHead):
            name, trainable = "confused", False


def test_a_head_with_the_old_trainable_flag_still_registers_with_a_warning() -> None:
    """0.1 heads subclass Head and set `trainable`: adapted to FittedHead/TorchHead, the plugin warned."""
    from torch import nn

    from tlzoo.api.hookspecs import hookimpl
    from tlzoo.api.interfaces import FittedHead, Head, TorchHead
    from tlzoo.engine.plugins import PluginManager
    from tlzoo.engine.zoo import Zoo

    with pytest.warns(DeprecationWarning, match="subclass FittedHead instead"):

        class OldFitted(Head):
            name, trainable = "old-fitted", False

            def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
                self.prior = np.bincount(y, minlength=num_classes) / len(y)

            def predict_proba(self, x: np.ndarray) -> np.ndarray:
                return np.tile(self.prior, (len(x), 1))

    class OldTorch(Head):  # no flag: the 0.1 default was trainable
        name = "old-torch"

        def build(self, num_features: int, num_classes: int) -> nn.Module:
            return nn.Linear(num_features, num_classes)

    class Plugin:
        @hookimpl
        def tlzoo_register_heads(self, register: Any) -> None:
            register(OldFitted)
            register(OldTorch)

    zoo = Zoo(PluginManager(load_entry_points=False, extra=[Plugin()]))
    fitted, torch_head = zoo.heads.get("old-fitted")(), zoo.heads.get("old-torch")()
    assert isinstance(fitted, FittedHead) and isinstance(fitted, OldFitted) and not fitted.trainable
    assert isinstance(torch_head, TorchHead) and torch_head.trainable
    fitted.fit(np.zeros((4, 2)), np.array([0, 0, 1, 1]), 2)
    assert fitted.predict_proba(np.zeros((1, 2))).tolist() == [[0.5, 0.5]] and fitted.state() == {}
    assert torch_head.build(3, 2).out_features == 2
    warnings = next(i for i in zoo.plugins.plugins() if i.name == "Plugin").warnings
    assert any("head 'old-fitted'" in w and "tlzoo.FittedHead" in w for w in warnings), warnings
    assert any("head 'old-torch'" in w and "tlzoo.TorchHead" in w for w in warnings), warnings
