"""The tree heads: ``tree`` (one CART tree) and ``rf`` (a random forest).  Their trees are saved
as flat arrays and evaluated in numpy, so a saved model loads with any scikit-learn version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tlzoo.lib.lazy import lazy_module

from .fc import Rule, choice, integer, is_int
from .fitted import AUTO, SklearnHead, auto, widen

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")


def _leaf(v: Any) -> bool:
    """sklearn's min_samples_leaf: a count >= 1 or a fraction of the samples in (0, 1)."""
    return is_int(v, 1) or (isinstance(v, float) and 0 < v < 1)


def _max_features(v: Any) -> bool:
    return v in ("sqrt", "log2") if isinstance(v, str) else is_int(v, 1) or (isinstance(v, float) and 0 < v <= 1)


class _Forest:
    """One or more fitted decision trees as flat arrays, evaluated in numpy."""

    KEYS = ("left", "right", "feature", "threshold", "value", "roots")

    def __init__(
        self,
        left: np.ndarray,
        right: np.ndarray,
        feature: np.ndarray,
        threshold: np.ndarray,
        value: np.ndarray,
        roots: np.ndarray,
    ) -> None:
        self.left, self.right, self.feature, self.threshold = left, right, feature, threshold
        self.value, self.roots = value, roots

    @classmethod
    def from_sklearn(cls, trees: list[Any], seen_in_tree: list[np.ndarray], n_seen: int) -> _Forest:
        """Concatenate trees; node ids are offset so children point inside the big arrays."""
        parts: dict[str, list[np.ndarray]] = {k: [] for k in cls.KEYS[:-1]}
        roots, offset = [], 0
        for tree, cols in zip(trees, seen_in_tree):
            t = tree.tree_
            leaf = t.children_left < 0
            parts["left"].append(np.where(leaf, -1, t.children_left + offset))
            parts["right"].append(np.where(leaf, -1, t.children_right + offset))
            parts["feature"].append(np.where(leaf, 0, t.feature))
            parts["threshold"].append(t.threshold)
            v = t.value[:, 0, :].astype(np.float64)
            v = v / np.maximum(v.sum(1, keepdims=True), 1e-12)  # counts or fractions -> fractions
            full = np.zeros((len(v), n_seen))
            full[:, cols] = v  # a bootstrap sample may miss a class
            parts["value"].append(full)
            roots.append(offset)
            offset += t.node_count
        return cls(**{k: np.concatenate(parts[k]) for k in cls.KEYS[:-1]}, roots=np.array(roots, np.int64))

    def proba(self, x: np.ndarray) -> np.ndarray:
        total = np.zeros((len(x), self.value.shape[1]))
        rows = np.arange(len(x))
        for root in self.roots:
            node = np.full(len(x), root, np.int64)
            live = self.left[node] >= 0
            while live.any():  # one level of all samples at a time
                n = node[live]
                go_left = x[rows[live], self.feature[n]] <= self.threshold[n]
                node[live] = np.where(go_left, self.left[n], self.right[n])
                live = self.left[node] >= 0
            total += self.value[node]
        return total / len(self.roots)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.KEYS}


class _TreeHeadBase(SklearnHead):
    def _store(self, trees: list[Any], seen_in_tree: list[np.ndarray], seen: np.ndarray, num_classes: int) -> None:
        self.seen, self.num_classes = seen.astype(np.int64), num_classes
        self.forest = _Forest.from_sklearn(trees, seen_in_tree, len(seen))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return widen(self.forest.proba(np.asarray(x, np.float32)).astype(np.float32), self.seen, self.num_classes)

    def state(self) -> dict[str, np.ndarray]:
        return {**self.forest.arrays(), "seen": self.seen, "num_classes": np.array([self.num_classes])}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self._check_state(arrays, *_Forest.KEYS, "seen", "num_classes")
        self.forest = _Forest(*(arrays[k] for k in _Forest.KEYS))
        self.seen, self.num_classes = arrays["seen"], int(arrays["num_classes"][0])


class TreeHead(_TreeHeadBase):
    """One decision tree (CART); ``max_depth`` keeps it readable and regularised.

    ``max_depth="auto"`` and ``min_samples_leaf="auto"`` (the defaults) are chosen by
    cross-validated accuracy over depths 1, 2, 4, 8, 16 and leaves of 20 or 5 examples:
    a depth-12 tree on weak features scored below the majority class."""

    name = "tree"
    DEPTH_GRID = (1, 2, 4, 8, 16)
    LEAF_GRID = (20, 5)  # leaves of 1-2 examples fit noise, and deep trees of them cost most of a search
    option_help = {
        "max_depth": "deepest level of the decision tree (null: unlimited); 'auto' tunes it",
        "min_samples_leaf": "fewest training examples in a leaf (a count, or a share of the examples); 'auto' tunes it",
        "criterion": "how a split's quality is measured",
        "random_state": "seed of the tree's tie-breaking (tl run --seeds sets it)",
    }
    RULES = {
        "max_depth": auto(integer(1, "12", nullable=True)),
        "min_samples_leaf": auto(Rule("an integer >= 1 or a fraction in (0, 1)", _leaf, "2")),
        "criterion": choice("gini", "entropy", "log_loss"),
        "random_state": integer(0, "0", hi=2**32 - 1, nullable=True),
    }

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"max_depth": AUTO, "min_samples_leaf": AUTO, "criterion": "gini", "random_state": 0}

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        from sklearn.tree import DecisionTreeClassifier

        p = self.params

        def tree(values: dict[str, Any]) -> Any:
            return self._make(
                DecisionTreeClassifier,
                max_depth=values["max_depth"],
                criterion=p["criterion"],
                min_samples_leaf=values["min_samples_leaf"],
                random_state=p["random_state"],
            )

        x = x.astype(np.float32)
        grid = {"max_depth": self.DEPTH_GRID, "min_samples_leaf": self.LEAF_GRID}
        single_leaf = {"max_depth": 1, "min_samples_leaf": max(1, len(y))}  # no split: the class prior
        chosen = self._tune(x, y, grid, tree, {"max_depth": 12, "min_samples_leaf": 2}, prior=single_leaf)
        m = self.searched if self.searched is not None else self._fit(tree(chosen), x, y)
        self._store([m], [np.arange(len(m.classes_))], m.classes_, num_classes)


class RandomForestHead(_TreeHeadBase):
    """A random forest; its trees are saved as arrays and averaged in numpy.

    ``max_depth="auto"`` and ``max_features="auto"`` (the defaults) are chosen by 3-fold
    cross-validated accuracy (repeated twice) over depths 4, 8 and unlimited and ``log2`` /
    ``sqrt`` features per split, with forests of at most 50 trees during the search (the final forest has
    ``n_estimators``)."""

    name = "rf"
    DEPTH_GRID = (4, 8, None)
    MAX_FEATURES_GRID = ("log2", "sqrt")
    SEARCH_TREES = 50
    CV_SPLITS = 6  # the costliest search: 3 folds, twice
    option_help = {
        "n_estimators": "trees in the forest",
        "max_depth": "deepest level of each tree (null: unlimited); 'auto' tunes it",
        "min_samples_leaf": "fewest training examples in a leaf (a count, or a share of the examples)",
        "max_features": "features each split considers ('sqrt', 'log2', a count, a share, null: all); 'auto' tunes it",
        "class_weight": "'balanced' or 'balanced_subsample' weigh classes inversely to their frequency; null: equal",
        "random_state": "seed of the bootstrap samples and feature choices (tl run --seeds sets it)",
        "n_jobs": "processes that grow trees (-1: every core)",
    }
    RULES = {
        "n_estimators": integer(1, "200"),
        "max_depth": auto(integer(1, "12", nullable=True)),
        "min_samples_leaf": Rule("an integer >= 1 or a fraction in (0, 1)", _leaf, "1"),
        "max_features": auto(
            Rule("'sqrt', 'log2', null, an integer >= 1 or a fraction in (0, 1]", _max_features, "sqrt", nullable=True)
        ),
        "class_weight": choice("balanced", "balanced_subsample", nullable=True),
        "random_state": integer(0, "0", hi=2**32 - 1, nullable=True),
        "n_jobs": Rule(
            "a number of processes (-1 = every core) or null", lambda v: is_int(v) and v != 0, "1", nullable=True
        ),
    }

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {
            "n_estimators": 200,
            "max_depth": AUTO,
            "min_samples_leaf": 1,
            "max_features": AUTO,
            "class_weight": None,
            "random_state": 0,
            "n_jobs": 1,
        }

    def fit(self, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
        from sklearn.ensemble import RandomForestClassifier

        p = self.params

        def forest(values: dict[str, Any], trees: int) -> Any:
            return self._make(
                RandomForestClassifier,
                n_estimators=trees,
                max_depth=values["max_depth"],
                min_samples_leaf=p["min_samples_leaf"],
                max_features=values["max_features"],
                class_weight=p["class_weight"],
                random_state=p["random_state"],
                n_jobs=p["n_jobs"],
            )

        x = x.astype(np.float32)
        search = min(int(p["n_estimators"]), self.SEARCH_TREES)
        chosen = self._tune(
            x,
            y,
            {"max_depth": self.DEPTH_GRID, "max_features": self.MAX_FEATURES_GRID},
            lambda v: forest(v, search),
            {"max_depth": None, "max_features": "sqrt"},
            most_folds=3,
        )
        if self.searched is not None and search == int(p["n_estimators"]):
            m = self.searched  # the search's forest, refitted on every row, is the final one
        else:
            m = self._fit(forest(chosen, int(p["n_estimators"])), x, y)
        # every tree of a forest reports probabilities over the forest's classes_
        self._store(list(m.estimators_), [np.arange(len(m.classes_))] * len(m.estimators_), m.classes_, num_classes)
