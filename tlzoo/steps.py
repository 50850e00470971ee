"""The step names for wrappers: ``from tlzoo import steps; @step_wrapper(steps.TRAIN)``.

A re-export of :mod:`tlzoo.api.steps` (see there for the order, the log labels, the Run
state after each step and the names of 0.1).
"""

from __future__ import annotations

from tlzoo.api.steps import (
    BUILD_MODEL,
    COMPILE,
    CONFIGURE_AUGMENTATION,
    CREATE_BACKBONE,
    DEPRECATED,
    ENCODE_LABELS,
    EVALUATE,
    FILES,
    LABELS,
    LOAD_DATASET,
    PLOT_CONFUSION,
    PLOT_HISTORY,
    PROBE_STEPS,
    RESOLVE_PLUGINS,
    SAVE_MODEL,
    SPLIT,
    STATE,
    STEPS,
    TRAIN,
    StepName,
    step_wrapper,
)

__all__ = [
    "BUILD_MODEL",
    "COMPILE",
    "CONFIGURE_AUGMENTATION",
    "CREATE_BACKBONE",
    "DEPRECATED",
    "ENCODE_LABELS",
    "EVALUATE",
    "FILES",
    "LABELS",
    "LOAD_DATASET",
    "PLOT_CONFUSION",
    "PLOT_HISTORY",
    "PROBE_STEPS",
    "RESOLVE_PLUGINS",
    "SAVE_MODEL",
    "SPLIT",
    "STATE",
    "STEPS",
    "TRAIN",
    "StepName",
    "step_wrapper",
]
