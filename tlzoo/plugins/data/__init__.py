"""Built-in data sources (``tlzoo_register_data_sources``), grouped by where the data comes from.

* ``files``: files and folders on disk: CSV/TSV/JSONL of texts, CSVs of image paths,
  one sub-folder per class of images or of ``.txt`` files (plugin ``data_files``);
* ``hub``: Hugging Face datasets, ``hf:NAME`` or a folder saved with ``save_to_disk``,
  texts and images (plugin ``data_hub``);
* ``builtin``: named datasets that arrive with the set-up: ``rotten-tomatoes``,
  ``digits``, ``fashion-mnist`` (plugin ``builtin_datasets``).

``_sources`` holds what they share: sources known by suffix or by name, the class-folder walk,
opening Hugging Face datasets.

Until 0.1 these lived in ``data_sources``, ``builtin_datasets``, ``text_data`` and
``vision_data`` (split by modality); those plugin names still work in ``TLZOO_PLUGINS``
(see ``tlzoo.engine.plugins.ALIASES``).
"""
