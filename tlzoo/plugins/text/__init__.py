"""Built-in text backbones and pretrainers: transformers encoders, static word vectors,
a small MLM Transformer and the ELMo / ULMFiT LSTM language models.

Their shared tokenizer, vocabularies, pooling, batching and language-model training
loop live in :mod:`tlzoo.lib.text`.
"""
