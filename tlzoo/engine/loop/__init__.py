"""The parts of tlzoo's one training loop, :meth:`tlzoo.engine.training.Trainer.fit`.

* ``events``: the :class:`~tlzoo.engine.loop.events.Callback` base class (one method per named
  event), the :class:`~tlzoo.engine.loop.events.FitState` a callback reads and changes, and
  :class:`~tlzoo.engine.loop.events.StopFit`, which ends a fit early;
* ``callbacks``: what a training phase is made of besides the optimizer steps: resume,
  DistributedDataParallel, frozen layers kept in eval mode, best weights, early stopping,
  the progress bar, the epoch log, the divergence guard and the per-epoch checkpoint.

fastai's ``Learner`` is the model: one loop with named events, and everything else is a
callback on it (the learning-rate finder of ``tl lr-find`` and the language-model loop of
``tlzoo.lib.text.lm`` included).
"""
