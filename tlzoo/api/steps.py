"""The runner's steps: their names, order, log labels, the Run state each one sets, and wrappers.

A plugin changes what a step does by wrapping it (the ``tlzoo_run_step`` hook).  The names
are constants here (``tlzoo.steps.TRAIN`` is ``"train"``), and :func:`step_wrapper` checks the
names it is given when the plugin module is imported: a misspelt name makes the plugin fail
to load (``tl plugins`` shows it, with the closest name) instead of silently matching nothing::

    from tlzoo import step_wrapper, steps

    @step_wrapper(steps.TRAIN)
    def time_training(run):
        started = time.perf_counter()
        yield  # the step (and any inner wrapper) runs here; an exception it raises comes out of the yield
        run.log(f"  training took {time.perf_counter() - started:.1f}s")

The log keeps the twelve numbered lines of the user guide (``[ 1/12] import libraries``);
``save_model`` is part of line 9 (train) and prints no header line of its own.  The names of
0.1 (``import_libraries``, ``augment``, ``create_base_model``, ``predict``) still work, with
a deprecation warning, until tlzoo 2.0 (:data:`DEPRECATED`).

No torch here: ``import tlzoo`` loads this module for ``tlzoo.hookimpl``.
"""

from __future__ import annotations

import inspect
import sys
import warnings
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from tlzoo.api.errors import TlzooError, suggest

RESOLVE_PLUGINS = "resolve_plugins"
LOAD_DATASET = "load_dataset"
SPLIT = "split"
ENCODE_LABELS = "encode_labels"
CONFIGURE_AUGMENTATION = "configure_augmentation"
CREATE_BACKBONE = "create_backbone"
BUILD_MODEL = "build_model"
COMPILE = "compile"
TRAIN = "train"
SAVE_MODEL = "save_model"
PLOT_HISTORY = "plot_history"
EVALUATE = "evaluate"
PLOT_CONFUSION = "plot_confusion"

#: every step of ``tl run``, in order; each is the ``Run`` method of the same name
STEPS: tuple[str, ...] = (
    RESOLVE_PLUGINS,
    LOAD_DATASET,
    SPLIT,
    ENCODE_LABELS,
    CONFIGURE_AUGMENTATION,
    CREATE_BACKBONE,
    BUILD_MODEL,
    COMPILE,
    TRAIN,
    SAVE_MODEL,
    PLOT_HISTORY,
    EVALUATE,
    PLOT_CONFUSION,
)

#: the steps ``tl compare`` runs for each backbone (feature extraction and its first probe head
#: fitted in ``train``); the other probe heads are then fitted on ``run.features``
PROBE_STEPS: tuple[str, ...] = STEPS[: STEPS.index(TRAIN) + 1]

#: the numbered log line of each step: the user guide's twelve names (save_model belongs to 9)
LABELS: dict[str, tuple[int, str]] = {
    RESOLVE_PLUGINS: (1, "import libraries"),
    LOAD_DATASET: (2, "load dataset"),
    SPLIT: (3, "split"),
    ENCODE_LABELS: (4, "encode labels"),
    CONFIGURE_AUGMENTATION: (5, "augment"),
    CREATE_BACKBONE: (6, "create base model"),
    BUILD_MODEL: (7, "build model"),
    COMPILE: (8, "compile"),
    TRAIN: (9, "train"),
    PLOT_HISTORY: (10, "plot history"),
    EVALUATE: (11, "predict"),
    PLOT_CONFUSION: (12, "plot confusion"),
}

#: 0.1 step name -> its name now; wrappers comparing with an old name still match, with a warning
DEPRECATED: dict[str, str] = {
    "import_libraries": RESOLVE_PLUGINS,
    "augment": CONFIGURE_AUGMENTATION,
    "create_base_model": CREATE_BACKBONE,
    "predict": EVALUATE,
}
_OLD = {new: old for old, new in DEPRECATED.items()}

#: the fields each step sets (every earlier step's are there too), as a wrapper reads them; the wrapper's
#: ``run`` is a read-only view (``tlzoo.engine.run.state.RunView``): it may set only ``run.extras`` (a
#: dict for the plugin's own values, there from the start) and add to ``run.metrics``
STATE: dict[str, tuple[tuple[str, str], ...]] = {
    RESOLVE_PLUGINS: (
        ("factory", "the BackboneFactory of --plugin"),
        ("model_name", "the model it builds"),
        ("head", "the Head instance (TorchHead or FittedHead)"),
        ("strategy", "the Strategy"),
        ("plan", "the strategy's Plan of phases"),
        ("device", "the torch.device"),
        ("final_dir", "the run folder once complete (not for tl compare)"),
        ("dir", "the folder written now, <out>.incomplete (not for tl compare)"),
        ("checkpointer", "saves and loads epoch checkpoints (not for tl compare)"),
    ),
    LOAD_DATASET: (("dataset", "every labelled example (Dataset), after --limit"),),
    SPLIT: (("splits", "train / val / test Datasets (Splits)"),),
    ENCODE_LABELS: (("encoder", "the LabelEncoder (classes)"), ("targets", "one-hot targets per split")),
    CONFIGURE_AUGMENTATION: (("augment_train", "whether training examples are augmented"),),
    CREATE_BACKBONE: (
        ("backbone", "the Backbone"),
        ("request", "the BackboneRequest it was built from"),
        ("weights_fingerprint", "hash of the transferred weights"),
    ),
    BUILD_MODEL: (("model", "backbone + torch head (TransferModel), None for a FittedHead"),),
    COMPILE: (
        ("loss", "the loss function"),
        ("history", "epoch rows (History, history.csv)"),
        ("trainer", "the Trainer that runs phases"),
    ),
    TRAIN: (
        ("features", "cached features per split ({} once the backbone trained)"),
        ("best_across_phases", "phase, epoch and val loss of the weights kept, or None"),
        ("trained_on", "the splits and rows the saved model learnt from, and why"),
        ("cross_validation", "--cv K: accuracy and macro-F1 per fold, mean, sd, 95% interval; or None"),
    ),
    SAVE_MODEL: (),
    PLOT_HISTORY: (),
    EVALUATE: (
        ("test_proba", "test-set probabilities [n, classes]"),
        ("metrics", "test report, run description (metrics.json)"),
    ),
    PLOT_CONFUSION: (),
}


#: the files each step writes into ``run.dir`` (rank 0 only under torchrun; none for tl compare)
FILES: dict[str, str] = {
    RESOLVE_PLUGINS: "config.toml",
    CREATE_BACKBONE: "augment.png (augmented images)",
    COMPILE: "history.csv",
    TRAIN: "checkpoint.pt (removed when the run completes)",
    SAVE_MODEL: "model.safetensors, model.json, assets/",
    PLOT_HISTORY: "history.png",
    EVALUATE: "predictions.csv",
    PLOT_CONFUSION: "confusion.png",
}


def state_table() -> str:
    """``STATE`` and ``FILES`` as the text table of the ``tlzoo_run_step`` docstring."""
    width = max(len(a) for attrs in STATE.values() for a, _ in attrs) + len("run.")
    lines = [
        "(any step)",
        f"    {'run.extras':<{width}}  a plugin's own values between steps (a dict; the one field a wrapper sets)",
        f"    {'run.config':<{width}}  the RunConfig; run.log(msg) prints a line",
    ]
    for step in STEPS:
        lines.append(step)
        lines += [f"    {'run.' + a:<{width}}  {what}" for a, what in STATE[step]]
        if step in FILES:
            lines.append(f"    {'writes':<{width}}  {FILES[step]}")
    return "\n".join(lines)


def canonical(name: str, where: str = "step name") -> str:
    """The step's name now for ``name`` (an old name warns); an unknown name is a TlzooError."""
    if name in STEPS:
        return name
    if name in DEPRECATED:
        new = DEPRECATED[name]
        warnings.warn(
            f"step '{name}' is now '{new}' (tlzoo.steps.{new.upper()}); the old name works until tlzoo 2.0",
            DeprecationWarning,
            stacklevel=3,
        )
        return new
    raise TlzooError(
        f"Unknown step '{name}' in {where}.{suggest(str(name), STEPS)} "
        f"Steps: {', '.join(STEPS)} (constants in tlzoo.steps)."
    )


class StepName(str):
    """A step's name as ``tlzoo_run_step`` receives it.

    It equals the name, and also the step's 0.1 name (``"create_base_model" == step`` for
    ``create_backbone``), so old wrappers keep working: such a match warns (a
    DeprecationWarning, and ``on_old(old, new, module)`` for the run's log).  ``hash`` is the
    new name's, so only ``==`` (and ``in`` a list or tuple) know the old names, not set or dict
    look-ups.
    """

    old: str | None
    on_old: Callable[[str, str, str], None] | None

    def __new__(cls, name: str, on_old: Callable[[str, str, str], None] | None = None) -> StepName:
        obj = super().__new__(cls, name)
        obj.old = _OLD.get(name)
        obj.on_old = on_old
        return obj

    def __eq__(self, other: object) -> bool:
        if str.__eq__(self, other) is True:
            return True
        if self.old is None or not isinstance(other, str) or str(other) != self.old:
            return False
        module = str(sys._getframe(1).f_globals.get("__name__", "?"))  # the plugin doing the comparison
        new = str.__str__(self)
        warnings.warn(
            f"step '{self.old}' is now '{new}' (tlzoo.steps.{new.upper()}); the old name works until tlzoo 2.0",
            DeprecationWarning,
            stacklevel=2,
        )
        if self.on_old is not None:
            self.on_old(self.old, new, module)
        return True

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = str.__hash__


F = TypeVar("F", bound=Callable[..., Generator[None, Any, Any]])


def step_wrapper(*names: str) -> Callable[[F], F]:
    """Wrap the named steps with a generator function ``f(run)`` (or ``f(step, run)``).

    ``f`` runs up to its ``yield``, the step runs, then ``f`` continues (an exception of the
    step is raised at the ``yield``).  The names are checked when the decorator runs, at the
    plugin's import: an unknown name raises TlzooError naming the closest step, so the plugin
    fails to load and ``tl plugins`` says why.  Works on module functions and on methods
    (``f(self, run)``) of a plugin object.  Returns the ``tlzoo_run_step`` hook implementation.
    """
    if not names:
        raise TlzooError("@step_wrapper needs at least one step name, e.g. @step_wrapper(tlzoo.steps.TRAIN).")
    for name in names:
        if not isinstance(name, str):
            raise TlzooError(
                f"@step_wrapper takes step names (strings), got {name!r}; "
                "write @step_wrapper(steps.TRAIN), not @step_wrapper."
            )
    wanted = frozenset(canonical(name, "@step_wrapper") for name in names)

    def decorate(fn: F) -> F:
        from tlzoo.api.markers import hookimpl

        if not inspect.isgeneratorfunction(fn):
            raise TlzooError(
                f"@step_wrapper function '{fn.__name__}' must be a generator: `yield` once, where the step runs."
            )
        params = list(inspect.signature(fn).parameters)
        method = bool(params) and params[0] == "self"
        args = params[1:] if method else params
        if not set(args) <= {"step", "run"}:
            raise TlzooError(
                f"@step_wrapper function '{fn.__name__}' takes {', '.join(args)}; it may take only `run` and `step`."
            )

        def kwargs(step: str, run: Any) -> dict[str, Any]:
            return {k: v for k, v in (("step", step), ("run", run)) if k in args}

        if method:

            def impl(self: Any, step: str, run: Any) -> Generator[None, Any, Any]:
                if step not in wanted:
                    return (yield)
                return (yield from fn(self, **kwargs(step, run)))
        else:
            # ignore[misc]: the two variants differ by `self` on purpose (pluggy reads impl's signature)
            def impl(step: str, run: Any) -> Generator[None, Any, Any]:  # type: ignore[misc]
                if step not in wanted:
                    return (yield)
                return (yield from fn(**kwargs(step, run)))

        # no functools.wraps: pluggy reads the argument names from impl's own signature
        impl.__name__, impl.__qualname__ = fn.__name__, fn.__qualname__
        impl.__module__, impl.__doc__ = fn.__module__, fn.__doc__
        impl.tlzoo_steps = tuple(sorted(wanted))  # type: ignore[attr-defined]  # a mark on the function object
        # ignore[return-value]: the hook implementation stands in for the decorated function (see the docstring)
        return hookimpl(wrapper=True, specname="tlzoo_run_step")(impl)  # type: ignore[return-value]

    return decorate
