"""tlzoo-example: a complete third-party tlzoo plugin package, written as a user would write one.

* ``tfidf`` (text): TF-IDF of word n-grams reduced by a truncated SVD, both fitted on the
  run's training texts (a :class:`tlzoo.FittableBackbone`): ``tfidf.py``.
* ``pixels`` (vision): the image resized and flattened, nothing learnt (a parameter-free
  backbone): ``pixels.py``.
* ``ridge`` (head): scikit-learn's ridge classifier on the features (a :class:`tlzoo.FittedHead`):
  ``ridge.py``.
* catalogue entries for its models (``tl list``) and the hooks: ``plugin.py``, the module the
  ``tlzoo`` entry point names.  It stays light, so ``tl list`` and ``tl --help`` stay fast.
"""

from __future__ import annotations

__version__ = "0.1.0"
