"""Plumbing the engine and the commands share: network access, process lifecycle (locks,
signals, atomic writes), memory, weight-file digests, run folders.
"""
