"""``tl lr-find``: the learning-rate range test (Smith 2017; fastai's ``lr_find``).

Train for a few dozen mini-batches while the learning rate grows exponentially, from
``start_lr`` (1e-7) to ``end_lr`` (10) over ``steps`` (100) batches, and record the loss
after each.  The raw losses are noisy.  While sweeping, an exponential moving average
(beta 0.98, bias-corrected as Adam's moments are, fastai's choice) decides when to stop:
once it exceeds 4 times its best (the rate is far too high from there on, and the rest of
the plot would only squash the useful part) or the loss stops being finite.  But an EMA
lags: on a rising rate its curve trails the raw losses by about beta / (1 - beta) = 49
batches, half a 100-step sweep, four decades of rate (on MiniLM features of Rotten
Tomatoes its minimum sat at 1.3 where the raw losses had bottomed out near 0.01-0.1).
So the curve plotted and used for the suggestion is a centred moving average over
+-5 % of the sweep (11 batches of 100), which smooths as much without the shift.

What is swept is what the first phase of ``tl run`` would train with the same options:
the head alone on cached features (``feature-extraction``, and the head phase of
``fine-tune``), or the trainable layer groups of the first phase with their
discriminative rates (the sweep scales every group's rate by the same factor, so the
reported rate is the phase's ``lr``: the head's and the top group's).  The data is
loaded, split and augmented exactly as ``tl run`` does (the run's own steps, as a probe
without a run folder).  The weights are restored afterwards: the sweep trains nothing.
What a strategy does before training (ulmfit's language-model fine-tuning) is not run.

The suggestion is the rate of steepest descent of the smoothed loss (the most negative
slope against log10(lr) over a window, before the minimum): there the loss falls fastest,
so training is quick, and the rate is still below where the loss turns up.  But never
above the rate at the minimum divided by 10 (fastai's older rule): the minimum itself is
at the edge of divergence, and on short or noisy curves the steepest stretch often ends
right there (a sweep of a tiny head found its steepest point 2.5x below the minimum).
So the suggestion is the smaller of the two, and the method says which; where the curve
has no descending stretch (fewer than 5 points before its minimum, or no negative slope)
it is the minimum / 10.  All three rates are in ``lr_find.json``.

Fitted (scikit-learn) heads have no learning rate; asking for one is a one-line error.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tlzoo.api.errors import TlzooError
from tlzoo.engine.config import RunConfig
from tlzoo.engine.loop.events import Callback, FitState, StopFit

START_LR = 1e-7
END_LR = 10.0
STEPS = 100
BETA = 0.98  # smoothing of the loss curve
DIVERGE = 4.0  # stop once the smoothed loss exceeds this many times its best
MIN_DESCENT = 5  # points before the minimum needed to trust a slope


@dataclass
class Sweep:
    """The rates tried and the loss after each (raw, the online EMA, and centred-smoothed), in order;
    why it stopped."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)  # centred moving average: the curve to read
    ema: list[float] = field(default_factory=list)  # the bias-corrected EMA the stop rule watches
    stopped: str = "end of the range"


@dataclass
class LRFindResult:
    sweep: Sweep
    suggestion: float
    method: str  # "steepest descent" or "minimum / 10"
    steepest: float | None
    minimum: float
    option: str  # the tl run option the rate goes to: --lr or --finetune-lr
    target: str  # what was swept
    png: Path | None = None
    json_path: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "suggestion": self.suggestion,
            "method": self.method,
            "steepest_descent": self.steepest,
            "minimum": self.minimum,
            "minimum_over_10": self.minimum / 10,
            "option": self.option,
            "target": self.target,
            "stopped": self.sweep.stopped,
            "smoothing": f"centred moving average over {2 * _half(len(self.sweep.lrs)) + 1} batches",
            "stop_rule": f"EMA (beta {BETA}) above {DIVERGE:g}x its best",
            "lrs": self.sweep.lrs,
            "losses": self.sweep.losses,
            "smoothed": self.sweep.smoothed,
            "ema": self.sweep.ema,
        }


def check_range(start_lr: float, end_lr: float, steps: int) -> None:
    if not (0 < start_lr < end_lr) or not math.isfinite(end_lr):
        raise TlzooError(
            f"The learning-rate range must satisfy 0 < --start-lr < --end-lr, got {start_lr:g} .. {end_lr:g}."
        )
    if steps < 10:
        raise TlzooError(f"--steps must be at least 10 (batches in the sweep), got {steps}.")


class LRSweep(Callback):
    """The range test as a callback on the training loop (fastai's ``LRFinder`` idea): before each
    batch the rate grows by a constant factor (every group keeps its ratio to the first group's);
    a loss that is not finite stops before its backward pass, a smoothed loss above ``DIVERGE``
    times its best after the step; the weights and BatchNorm statistics are put back at the end."""

    def __init__(self, start_lr: float, end_lr: float, steps: int, factors: list[float]) -> None:
        self.start_lr, self.end_lr, self.steps, self.factors = start_lr, end_lr, steps, factors
        self.result = Sweep()
        self.average, self.best = 0.0, math.inf

    def on_fit_begin(self, state: FitState) -> None:
        from tlzoo.engine.checkpoint import state_dict_copy

        self.saved = state_dict_copy(state.model)  # weights and buffers (BatchNorm statistics)
        self.was_training = state.model.training

    def on_batch_begin(self, state: FitState) -> None:
        i = state.batch_index - 1
        self.lr = self.start_lr * (self.end_lr / self.start_lr) ** (i / (self.steps - 1))
        for g, f in zip(state.optimizer.param_groups, self.factors):
            g["lr"] = self.lr * f

    def on_loss(self, state: FitState) -> None:
        assert state.loss is not None
        self.value = float(state.loss.detach())
        if not math.isfinite(self.value):
            self.result.stopped = f"the loss stopped being finite at lr {self.lr:.3g}"
            raise StopFit

    def on_batch_end(self, state: FitState) -> None:
        self.average = BETA * self.average + (1 - BETA) * self.value
        smooth = self.average / (1 - BETA**state.batch_index)
        self.result.lrs.append(self.lr)
        self.result.losses.append(self.value)
        self.result.ema.append(smooth)
        self.best = min(self.best, smooth)
        if state.batch_index > 1 and smooth > DIVERGE * self.best:
            self.result.stopped = f"the smoothed loss passed {DIVERGE:g}x its best at lr {self.lr:.3g}"
            raise StopFit

    def on_fit_end(self, state: FitState) -> None:
        state.model.load_state_dict(self.saved)
        state.model.train(self.was_training)


def sweep(
    model: nn.Module,
    groups: list[dict[str, Any]],
    batches: Iterable[Any],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device,
    *,
    start_lr: float = START_LR,
    end_lr: float = END_LR,
    steps: int = STEPS,
    weight_decay: float = 0.0,
    on_train: Callable[[], None] | None = None,
) -> Sweep:
    """Train ``model`` on ``batches`` (cycled as needed) with exponentially growing rates; restore its weights.

    ``groups``: optimizer parameter groups; their rates keep their ratios to the first
    group's, whose rate is the one swept.  ``on_train`` runs after ``model.train()`` (to
    keep frozen BatchNorm layers in eval mode, as training does).  One epoch of ``steps``
    batches of :meth:`tlzoo.engine.training.Trainer.fit` with an :class:`LRSweep` callback
    (float32 and the usual memory layout, as the sweep always ran)."""
    import itertools

    from tlzoo.engine.loop.callbacks import OnTrain
    from tlzoo.engine.training import History, Trainer

    check_range(start_lr, end_lr, steps)
    base = float(groups[0]["lr"])
    finder = LRSweep(start_lr, end_lr, steps, [float(g["lr"]) / base for g in groups])
    trainer = Trainer(
        device=device,
        loss=loss_fn,
        history=History(None),
        weight_decay=weight_decay,
        progress=False,
        log=lambda msg: None,
        amp=False,
        channels_last=False,
    )
    callbacks: list[Callback] = [finder] + ([OnTrain(on_train)] if on_train is not None else [])
    trainer.fit(model, groups, itertools.islice(_cycle(batches), steps), epochs=1, callbacks=callbacks)
    result = finder.result
    result.smoothed = centred(result.losses)
    if len(result.lrs) < 2:
        raise TlzooError(
            f"The learning-rate sweep stopped after {len(result.lrs)} batch(es) ({result.stopped}); lower --start-lr."
        )
    return result


def _half(n: int) -> int:
    return max(1, round(0.05 * n))


def centred(values: list[float]) -> list[float]:
    """A centred moving average over +-5 % of the points (shorter windows at the ends): no lag."""
    a = np.asarray(values, dtype=float)
    half = _half(len(a))
    c = np.concatenate([[0.0], np.cumsum(a)])
    lo = np.maximum(np.arange(len(a)) - half, 0)
    hi = np.minimum(np.arange(len(a)) + half + 1, len(a))
    return [float(v) for v in (c[hi] - c[lo]) / (hi - lo)]


def _cycle(batches: Iterable[Any]) -> Iterator[Any]:
    """The batches again and again (a small training set has fewer batches than the sweep's steps)."""
    while True:
        empty = True
        for b in batches:
            empty = False
            yield b
        if empty:
            raise TlzooError("The training split is empty; lr-find needs training examples (check --limit).")


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float, str, float | None, float]:
    """(suggested rate, method, the steepest-descent rate or None, the rate at the minimum).

    The slope at a point is taken across a window of +-4 % of the sweep (a central
    difference against log10(lr)), so one noisy batch cannot make a steepest point; the
    first points, where the centred window is cut short, are skipped."""
    s = np.asarray(smoothed, dtype=float)  # centred: no lag to undo
    log_lr = np.log10(np.asarray(lrs, dtype=float))
    n = len(s)
    lowest = int(np.argmin(s))
    minimum = float(lrs[lowest])
    skip, half = _half(n), max(1, round(0.04 * n))
    steepest = None
    if lowest - skip + 1 >= MIN_DESCENT:
        best_slope, best_at = 0.0, -1
        for i in range(skip, lowest + 1):
            lo, hi = max(skip, i - half), min(lowest, i + half)
            if hi > lo:
                slope = (s[hi] - s[lo]) / (log_lr[hi] - log_lr[lo])
                if slope < best_slope:
                    best_slope, best_at = slope, i
        if best_at >= 0:
            steepest = float(lrs[best_at])
    tenth = max(minimum / 10, float(lrs[0]))  # never below the swept range
    if steepest is not None and steepest <= tenth:
        return steepest, "steepest descent", steepest, minimum
    return tenth, "minimum / 10", steepest, minimum


def plot(result: LRFindResult, path: Path, title: str = "") -> None:
    """Loss against learning rate (log x-axis): raw losses faint, the smoothed curve bold, the suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sw = result.sweep
    fig, ax = plt.subplots(figsize=(7, 4.4))
    ax.plot(sw.lrs, sw.losses, color="#9db7d5", lw=0.8, label="loss per batch")
    window = 2 * _half(len(sw.lrs)) + 1
    ax.plot(sw.lrs, sw.smoothed, color="#1f4e8c", lw=2, label=f"smoothed (centred, {window} batches)")
    ax.set_xscale("log")
    at = float(np.interp(np.log10(result.suggestion), np.log10(sw.lrs), sw.smoothed))
    ax.axvline(result.suggestion, color="#c0392b", ls="--", lw=1)
    ax.plot([result.suggestion], [at], "o", color="#c0392b", ms=8, label=f"suggested {result.suggestion:.2g}")
    ax.annotate(
        f"{result.method}\n{result.option} {result.suggestion:.2g}",
        (result.suggestion, at),
        xytext=(10, 18),
        textcoords="offset points",
        color="#c0392b",
        fontsize=9,
    )
    if result.steepest is not None and result.steepest != result.suggestion:  # the other candidate, for reference
        at_steep = float(np.interp(np.log10(result.steepest), np.log10(sw.lrs), sw.smoothed))
        label = f"steepest descent {result.steepest:.2g}"
        ax.plot([result.steepest], [at_steep], "D", color="#e67e22", ms=6, label=label)
    low = min(sw.smoothed)
    ax.plot([result.minimum], [low], "v", color="#555555", ms=7, label=f"minimum at {result.minimum:.2g}")
    top = max(sw.smoothed[0], low) * 1.3  # the start of the curve in view; a diverging tail runs off the top
    span = max(top - low, 1e-6)
    ax.set_ylim(low - 0.1 * span, top)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(title or "learning-rate finder")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def find_lr(
    config: RunConfig,
    out: str | Path | None = None,
    *,
    start_lr: float = START_LR,
    end_lr: float = END_LR,
    steps: int = STEPS,
    zoo: Any = None,
    log: Callable[[str], None] | None = None,
) -> LRFindResult:
    """Sweep the learning rate of the first phase ``tl run`` would train with ``config``;
    write ``lr_find.png`` and ``lr_find.json`` into ``out`` (and ``augment.png`` where the run
    would: augmented vision training)."""
    import shutil
    import tempfile

    from tlzoo.engine.runner import Run, seed_everything
    from tlzoo.engine.zoo import Zoo

    check_range(start_lr, end_lr, steps)
    folder = Path(out) if out else Path("runs") / f"lr-find-{time.strftime('%Y%m%d-%H%M%S')}"
    if folder.exists() and not folder.is_dir():
        raise TlzooError(f"--out '{folder}' is an existing file; choose a folder path.")
    say = log or (lambda msg: None)
    seed_everything(config.seed)
    # the run's own lines, without the numbered step lines ("[ 9/12] train"): no run is made
    run = Run(
        config, Zoo() if zoo is None else zoo, log=lambda msg: None if msg.startswith("[") else say(msg), probe=True
    )
    # a probe has no run folder, but a step may write into it (the augmentation preview): a scratch
    # folder stands in, and what it holds moves to ``folder`` once the sweep has worked
    scratch = Path(tempfile.mkdtemp(prefix="tlzoo-lr-find-"))
    run.dir, run.final_dir = scratch, folder
    try:
        try:
            phase, target, swept = _sweep_first_phase(run, start_lr, end_lr, steps, say)
        except BaseException as exc:
            run.after_failure(exc)  # labels the error with the step and plugin, as tl run does
            raise
        rate, method, steepest, minimum = suggest(swept.lrs, swept.smoothed)
        t = config.train
        option = "--finetune-lr" if phase.lr == t.finetune_lr and phase.lr != t.lr else "--lr"
        result = LRFindResult(swept, rate, method, steepest, minimum, option, target)
        folder.mkdir(parents=True, exist_ok=True)
        for made in sorted(scratch.iterdir()) if scratch.is_dir() else []:
            shutil.move(str(made), str(folder / made.name))
        result.png, result.json_path = folder / "lr_find.png", folder / "lr_find.json"
        plot(result, result.png, title=f"lr-find: {run.backbone.name} · {run.strategy.name} · head {run.head.name}")
        result.json_path.write_text(json.dumps(result.as_dict(), indent=2) + "\n", encoding="utf-8")
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _sweep_first_phase(
    run: Any, start_lr: float, end_lr: float, steps: int, log: Callable[[str], None]
) -> tuple[Any, str, Sweep]:
    """The run's steps up to training, then the sweep of its first phase: (phase, what was swept, sweep)."""
    from tlzoo.api.interfaces import FittedHead
    from tlzoo.api.steps import PROBE_STEPS, RESOLVE_PLUGINS, TRAIN
    from tlzoo.engine.training import set_trainable

    run.run_steps((RESOLVE_PLUGINS,))
    if isinstance(run.head, FittedHead):
        raise TlzooError(
            f"The '{run.head.name}' head is fitted by scikit-learn and has no learning rate; "
            "lr-find works with a trained head such as --head fc."
        )
    if not run.plan.phases:
        raise TlzooError(f"Strategy '{run.strategy.name}' plans no training phase; there is no rate to find.")
    run.run_steps(PROBE_STEPS[1 : PROBE_STEPS.index(TRAIN)])
    assert run.model is not None
    phase = run.plan.phases[0]
    model, groups, batches, on_train, target = _what_to_sweep(run, phase)
    if batches is None:
        raise TlzooError("The training split is empty; lr-find needs training examples (check --limit).")
    log(f"  sweeping {target}: lr {start_lr:g} .. {end_lr:g} over at most {steps} batches")
    swept = sweep(
        model,
        groups,
        batches,
        run.loss,
        run.device,
        start_lr=start_lr,
        end_lr=end_lr,
        steps=steps,
        weight_decay=run.config.train.weight_decay,
        on_train=on_train,
    )
    set_trainable(run.backbone, 0)
    return phase, target, swept


def _what_to_sweep(run: Any, phase: Any) -> tuple[nn.Module, list[dict[str, Any]], Any, Any, str]:
    """(model, parameter groups, batches, on_train, description) of the first phase's training."""
    import functools

    from tlzoo.engine.loaders import example_loader
    from tlzoo.engine.training import frozen_to_eval, param_groups, set_trainable

    t = run.config.train
    if phase.train_groups == 0:  # the head alone, on features extracted once (the cache)
        run.extract_cached_features()
        head: nn.Module = run.model.head
        groups = [{"params": [p for p in head.parameters() if p.requires_grad], "lr": phase.lr}]
        target = f"the {run.head.name} head on cached {run.backbone.name} features (phase {phase.name})"
        return head, groups, run.feature_loader("train", True), None, target
    live = set_trainable(run.backbone, phase.train_groups)
    batches = example_loader(
        run.splits.train.examples,
        run.backbone,
        train=run.augment_train,
        batch_size=t.batch_size,
        num_workers=t.num_workers,
        shuffle=True,
        targets=run.targets["train"],
        seed=run.train_seed,
    )
    target = (
        f"{run.backbone.name} + {run.head.name} head, {len(live)} of "
        f"{len(run.backbone.layer_groups())} layer groups training (phase {phase.name})"
    )
    on_train = functools.partial(frozen_to_eval, run.backbone, live)
    return run.model, param_groups(run.model, live, phase), batches, on_train, target
