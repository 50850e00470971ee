"""Multimodal runs: one backbone per input column (image, text, tabular), features fused (``fusion``)."""
