"""The contract kit for plugin authors: the same checks tlzoo's built-in plugins pass.

As with scikit-learn's ``parametrize_with_checks``, a third-party plugin runs these in its
own test suite, one pytest test per object and rule.  In the plugin's
``tests/test_contract.py``::

    from tlzoo import BackboneRequest
    from tlzoo.testing import BackboneCase, CommandCase, DataSourceCase, PretrainerCase
    from tlzoo.testing import parametrize_with_checks, uncovered

    CASES = [
        # a registered factory name (or "my_plugin.backbones:make", or a BackboneFactory) and a small,
        # offline request: random init or a tiny checkpoint, so each check takes a moment
        BackboneCase("my-plugin", BackboneRequest("my-model", pretrained=False, options={"dim": 16})),
        MyHead,                                               # a head class
        MyStrategy(),                                         # a strategy
        DataSourceCase(MySource(), "tests/data/tiny.csv"),    # a data source and a location it loads
        PretrainerCase("my-plugin", options={"epochs": 1}),   # a pretrainer with tiny options
        CommandCase("my-command"),                            # a command the plugin adds to tl
    ]

    @parametrize_with_checks(CASES)
    def test_contract(case, check):      # ids: my-model-check_forward_shape, ...
        check(case)

    def test_every_registered_thing_has_a_case():  # also commands, catalogue entries, step wrappers
        assert not any(uncovered(CASES, plugin="my-plugin").values())

Every failure is an ``AssertionError`` whose message starts with the rule it broke
(``[check_cross_process_determinism] features differ between processes: ...``); a check
that cannot apply raises :class:`unittest.SkipTest` saying why.  Each check leaves the
object as it found it.  The checks, by kind:

* backbones (:data:`BACKBONE_CHECKS`, each ``check(backbone, examples)``): attributes set
  and ``spec()`` JSON-able; forward gives finite ``[B, num_features]`` floats; two eval
  forwards agree (no dropout or noise left on); ``transform(train=False)`` is not
  random; features do not depend on the rest of the batch; layer groups disjoint,
  covering, input side first; ``set_trainable(k)`` freezes exactly; a training step
  moves only what is unfrozen; frozen BatchNorm keeps its statistics; preprocessing
  JSON-able and stable; the fingerprint follows the weights; awkward inputs work; two
  fresh builds with the same weights agree (no unseeded random map); features recomputed
  in a fresh process agree (no ``hash()``); plus :func:`check_rebuild`, what ``tl predict``
  does.  A rule that does not apply skips, saying why (the fit protocol for a backbone
  that fits nothing, frozen BatchNorm for one without BatchNorm), so "passed" counts only
  what was checked; a parameter-free backbone passes the freezing rules (nothing trains).
* heads (:data:`HEAD_CHECKS`, ``check(head_cls, params)``): options, learning, round trip,
  for trainable (torch) and fitted heads alike.
* strategies (:data:`STRATEGY_CHECKS`), data sources (:data:`DATA_SOURCE_CHECKS`,
  ``check(source, location)``), pretrainers (:data:`PRETRAINER_CHECKS`: output folder and
  history, no pickles, the folder loads back as ``--weights``), commands
  (:data:`COMMAND_CHECKS`, :class:`CommandCase`: ``tl NAME --help`` works and says what it does).

``check_backbone``, ``check_head``, ``check_strategy``, ``check_data_source`` and
``check_pretrainer`` run every check of their kind in one call; ``checks_for(obj)``
yields the ``(case, check)`` pairs behind ``parametrize_with_checks``.  Tiny inputs come
from ``tiny_examples``, ``tiny_texts``, ``tiny_images``, ``tiny_corpus``,
``awkward_examples`` and ``separable_features``; a backbone that declares ``fields`` (a fused
one) is checked with records of them (``tiny_records``, ``awkward_records``, ``examples_for``).

One module per kind (``backbones``, ``heads``, ``strategies``, ``data_sources``,
``pretrainers``), ``parametrize`` for the test generation, ``inputs`` for the tiny inputs;
every public name is importable from ``tlzoo.testing``.  The kit needs torch, numpy and
safetensors only, never timm, transformers, gensim or scikit-learn; pytest only for
``parametrize_with_checks``.
"""

from __future__ import annotations

from .backbones import (
    BACKBONE_CHECKS,
    BackboneCase,
    check_awkward_examples,
    check_backbone,
    check_backbone_attributes,
    check_backbone_factory,
    check_batch_independence,
    check_build_determinism,
    check_cross_process_determinism,
    check_eval_determinism,
    check_eval_transform,
    check_fingerprint,
    check_fit_protocol,
    check_forward_shape,
    check_freezing,
    check_frozen_batchnorm,
    check_layer_groups,
    check_preprocessing,
    check_rebuild,
    check_training_step,
    tiny_fit_data,
)
from .commands import COMMAND_CHECKS, CommandCase, check_command_help
from .data_sources import (
    DATA_SOURCE_CHECKS,
    DataSourceCase,
    check_data_source,
    check_data_source_is_stable,
    check_data_source_loads,
    check_data_source_recognises,
)
from .heads import (
    HEAD_CHECKS,
    HeadCase,
    check_head,
    check_head_learns,
    check_head_options,
    check_head_round_trip,
)
from .inputs import (
    awkward_examples,
    awkward_records,
    examples_for,
    separable_features,
    tiny_corpus,
    tiny_examples,
    tiny_images,
    tiny_records,
    tiny_texts,
)
from .parametrize import (
    all_checks,
    as_case,
    checks_for,
    parametrize_with_checks,
    uncovered,
)
from .pretrainers import (
    PRETRAINER_CHECKS,
    PretrainerCase,
    check_pretrainer,
    check_pretrainer_attributes,
    check_pretrainer_no_pickles,
    check_pretrainer_output,
    check_pretrainer_weights_load,
)
from .strategies import (
    STRATEGY_CHECKS,
    StrategyCase,
    check_strategy,
    check_strategy_attributes,
    check_strategy_plans,
)

__all__ = [  # constants, classes, functions; the module docstring groups them by kind
    "BACKBONE_CHECKS",
    "COMMAND_CHECKS",
    "DATA_SOURCE_CHECKS",
    "HEAD_CHECKS",
    "PRETRAINER_CHECKS",
    "STRATEGY_CHECKS",
    "BackboneCase",
    "CommandCase",
    "DataSourceCase",
    "HeadCase",
    "PretrainerCase",
    "StrategyCase",
    "all_checks",
    "as_case",
    "awkward_examples",
    "check_awkward_examples",
    "check_backbone",
    "check_backbone_attributes",
    "check_backbone_factory",
    "check_batch_independence",
    "check_build_determinism",
    "check_command_help",
    "check_cross_process_determinism",
    "check_data_source",
    "check_data_source_is_stable",
    "check_data_source_loads",
    "check_data_source_recognises",
    "check_eval_determinism",
    "check_eval_transform",
    "check_fingerprint",
    "check_fit_protocol",
    "check_forward_shape",
    "check_freezing",
    "check_frozen_batchnorm",
    "check_head",
    "check_head_learns",
    "check_head_options",
    "check_head_round_trip",
    "check_layer_groups",
    "check_preprocessing",
    "check_pretrainer",
    "check_pretrainer_attributes",
    "check_pretrainer_no_pickles",
    "check_pretrainer_output",
    "check_pretrainer_weights_load",
    "check_rebuild",
    "check_strategy",
    "check_strategy_attributes",
    "check_strategy_plans",
    "check_training_step",
    "checks_for",
    "parametrize_with_checks",
    "separable_features",
    "awkward_records",
    "examples_for",
    "tiny_records",
    "tiny_corpus",
    "tiny_examples",
    "tiny_fit_data",
    "tiny_images",
    "tiny_texts",
    "uncovered",
]
