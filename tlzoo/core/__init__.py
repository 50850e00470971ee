"""tlzoo's engine: interfaces, plugin manager, registry, config and the twelve-step runner.

Nothing here imports timm, transformers, gensim or scikit-learn; plugins do.
"""
