"""Text building blocks: tokenizer and vocabularies, the language-model loop, word-vector files.

See :mod:`tlzoo.lib` for the list of modules.
"""
