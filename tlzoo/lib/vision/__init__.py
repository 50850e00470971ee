"""Vision building blocks: image decoding and transforms, pretrained weights and their cache.

See :mod:`tlzoo.lib` for the list of modules.
"""
