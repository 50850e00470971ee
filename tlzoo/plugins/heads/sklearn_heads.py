"""Classic heads fitted on extracted features with scikit-learn: the plugin that registers them.

``logreg``, ``svm`` (:mod:`.linear`), ``rf``, ``tree`` (:mod:`.trees`), ``knn`` and ``nb``
(Gaussian naive Bayes, :mod:`.neighbours`).  Each is fitted with scikit-learn, then exported
as plain numpy arrays (``state()``) that the runner saves in ``model.safetensors``: no pickle,
so a trained model loads with any scikit-learn version.  Prediction from those arrays is done
in numpy, so ``tl predict`` does not even need scikit-learn for most heads.  Every
hyper-parameter is reachable as ``--set head.<param>=...``.  Third-party heads register
through the same ``tlzoo_register_heads`` hook.

Every head tunes its main hyper-parameters by cross-validation on the training features
(``"auto"``, the default; a value set with ``--set`` skips the search for that option):
tree depth and leaf size, the forest's depth and ``max_features``, k and the weighting of
k-NN, C (and gamma for ``kernel=rbf``) of the SVM, naive Bayes' ``var_smoothing``, logistic
regression's C.  Untuned defaults can fall below the majority-class baseline on weak
features (a depth-12 tree on a 3-class text task whose majority class is 40.5 % scored 39 %).

The search is scikit-learn's ``GridSearchCV`` on repeated stratified folds, with a ``refit``
callable holding the selection rule (:mod:`.tuning`): the grids run from the most
regularised setting to the least, and the first whose mean accuracy is within one standard
error of the best is kept, among the settings whose predictions do not collapse to (nearly)
one class while another setting's macro-F1 is clearly above chance.  Where the family can
say it, the first setting is the class prior (a single leaf, a vote of half the rows, huge
variances): features without usable signal give the majority class, not fitted noise.
Folds: stratified, k = 5 (3 above 500 rows, and for the forest), never more than the
smallest class has examples, repeated 3 times (the forest 2; logistic regression one
shuffle of 3 folds, choosing by log loss); the search sees at most 3,000 rows (a stratified
sample), then the chosen setting is fitted on every training row.  The fits run in this
process (``n_jobs=1``): they are small, a process pool costs more to start than it saves on
two cores, and the forest's own ``n_jobs`` still applies.  What was chosen, with its
cross-validated accuracy and macro-F1, is in ``head.tuned`` (logged, and saved in
metrics.json and model.json).
"""

from __future__ import annotations

from typing import Any

from tlzoo.api.hookspecs import hookimpl
from tlzoo.api.interfaces import FittedHead

from .fitted import AUTO, SklearnHead
from .linear import LogRegHead, SVMHead
from .neighbours import KNN_METRICS, GaussianNBHead, KNNHead
from .trees import RandomForestHead, TreeHead
from .tuning import SEARCH_ROWS, cv_folds

__all__ = [
    "AUTO",
    "HEADS",
    "KNN_METRICS",
    "SEARCH_ROWS",
    "GaussianNBHead",
    "KNNHead",
    "LogRegHead",
    "RandomForestHead",
    "SVMHead",
    "SklearnHead",
    "TreeHead",
    "cv_folds",
]

HEADS: tuple[type[FittedHead], ...] = (LogRegHead, SVMHead, RandomForestHead, KNNHead, TreeHead, GaussianNBHead)


@hookimpl
def tlzoo_register_heads(register: Any) -> None:
    for cls in HEADS:
        register(cls)
