"""tlzoo's built-in plugins, registered through the same hooks a third-party plugin uses.

One folder per kind of thing they register:

* ``vision/``: image backbones (``timm_vision``, ``torchvision_models``, ``lenet``);
* ``text/``: text backbones and their pretrainers (``bert``, ``static_vectors``,
  ``gensim_pretrain``, ``mini_transformer``, ``elmo``, ``ulmfit``);
* ``heads/``: the trainable ``fc`` head and the fitted scikit-learn heads;
* ``strategies/``: feature extraction and fine-tuning (``ulmfit`` brings its own);
* ``data/``: data sources for files on disk, Hugging Face datasets and the built-in datasets.

Building blocks several plugins share (pooling, vocabularies, the language-model
training loop, image transforms, weight files) are not plugins: they live in
:mod:`tlzoo.lib`, where third-party plugins can use them too.  Each plugin's name (what
``TLZOO_PLUGINS`` and ``tl plugins`` show) is fixed in ``tlzoo.engine.plugins.BUILTIN_PLUGINS``.
"""
