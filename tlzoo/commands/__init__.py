"""What is built on the engine: predict, export, report, compare, lr-find, seeds, pretraining,
error analysis.  The engine never imports these.
"""
