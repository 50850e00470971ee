"""The engine: configuration, plugin loading and the catalogue, the one data path, features
and their cache, the training loop, checkpoints, artifacts and the twelve-step run.

It imports nothing from ``tlzoo.commands`` or the CLI: those are built on it.
"""
