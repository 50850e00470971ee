"""Building blocks for plugin authors: what tlzoo's own plugins share, documented and importable.

Nothing here registers anything; plugins (built-in or third-party) import these to avoid
writing them again.  ``tlzoo.lib`` may use ``tlzoo.api``, ``tlzoo.infra`` and ``tlzoo.engine``
but never ``tlzoo.plugins``.

Text (:mod:`tlzoo.lib.text`):

* ``tlzoo.lib.text.vocab``: the deterministic word tokenizer, ``Vocab`` (token <-> id, JSON files) and
  ``HashedVocab`` (a vocabulary plus CRC32 hash buckets for the words outside it);
* ``tlzoo.lib.text.pooling``: masked mean / max / first / last pooling of token vectors;
* ``tlzoo.lib.text.batching``: right-padding a batch of token sequences (the ``collate`` of a
  text backbone) and the mask of real positions;
* ``tlzoo.lib.text.lm``: the language-model training loop (``LanguageModelTask``,
  ``run_language_model``; AWD-LSTM's and BERT's optimizer recipes) and the held-out split of
  a pretraining corpus;
* ``tlzoo.lib.text.pretrained``: the ``tl pretrain`` weights folder, and the base classes of a
  backbone built from it (``PretrainedLMBackbone``) and of its pretrainer (``LMPretrainer``);
* ``tlzoo.lib.text.vector_files``: word-vector files (GloVe, word2vec, fastText; safetensors + JSON).

Vision (:mod:`tlzoo.lib.vision`):

* ``tlzoo.lib.vision.images``: image decoding, timm-style transforms, the ``ImageBackbone`` base;
* ``tlzoo.lib.vision.weights``: where pretrained weights come from (a file, the local cache,
  a package, the hub) and the ``$TLZOO_HOME/weights`` cache.
"""
