"""Built-in image backbones: timm families, torchvision's classic networks, and LeNet-5.

Their shared image decoding, transforms and weights handling live in :mod:`tlzoo.lib.vision`.
"""
