"""The contracts between the engine and plugins: Backbone, Head, Strategy, DataSource, Pretrainer.

Everything concrete (timm models, transformers encoders, scikit-learn estimators, file
formats) lives in plugins that implement these.  The engine only ever talks to these
types, which is what lets the same twelve-step runner drive image and text jobs.

Heads come in two kinds, told apart by type: a :class:`TorchHead` builds a torch module
trained by gradient descent, a :class:`FittedHead` is fitted once on extracted features.
A strategy's ``before_training`` receives a :class:`StrategyContext`, not the Run; a
backbone that is a language model declares it structurally (:class:`LanguageModelBackbone`).

Backbones: a :class:`BackboneRequest` carries the engine's settings as typed fields and the
plugin's own options in ``options``; the :class:`BackboneFactory` checks those against its
``defaults()`` (:func:`check_options`, one check for every backbone) and sets the backbone's
``plugin``.  A backbone whose state is learnt from the training split (TF-IDF, PCA, a
vocabulary) is a :class:`FittableBackbone`: the engine fits it once after the split and
restores it from the run's assets at predict time.

Options: every extension kind answers ``defaults() -> dict[str, Any]``, called on what is
registered (the Head class, the factory, strategy, data source or pretrainer object): the
options it takes and their default values (JSON-able).  A head's are ``--set
head.KEY=VALUE``, a pretrainer's ``tl pretrain --set KEY=VALUE``, a backbone factory's
``model.options``; a strategy or data source without options of its own returns ``{}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

# the contract's pieces, one module each; this module is their one documented import path
from tlzoo.api.data import (
    MODALITIES as MODALITIES,
    DataOptions as DataOptions,
    Dataset as Dataset,
    DataSource as DataSource,
)
from tlzoo.api.factories import (
    _DEFAULTS as _DEFAULTS,
    ENGINE_SETTINGS as ENGINE_SETTINGS,
    BackboneFactory as BackboneFactory,
    BackboneRequest as BackboneRequest,
    Pretrainer as Pretrainer,
    check_options as check_options,
    merge_options as merge_options,
    typed_like as typed_like,
)
from tlzoo.api.heads import FittedHead as FittedHead, Head as Head, TorchHead as TorchHead, head_class as head_class
from tlzoo.api.strategies import (
    LanguageModelBackbone as LanguageModelBackbone,
    Phase as Phase,
    Plan as Plan,
    Strategy as Strategy,
    StrategyContext as StrategyContext,
)

if TYPE_CHECKING:  # pragma: no cover
    from tlzoo.api.backbone import (
        Backbone as Backbone,
        FittableBackbone as FittableBackbone,
        fit_backbone as fit_backbone,
    )

# Backbone subclasses nn.Module, so it lives in tlzoo.api.backbone and loads (with torch) on
# first use: everything else here imports without torch, which keeps `tl heads`, `tl plugins`
# and the other listing commands fast.  `from tlzoo.api.interfaces import Backbone` still works.
_IN_BACKBONE_MODULE = ("Backbone", "FittableBackbone", "fit_backbone", "_restore_fitted")


def __getattr__(name: str) -> Any:
    if name in _IN_BACKBONE_MODULE:
        from tlzoo.api import backbone

        return getattr(backbone, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Modality = Literal["vision", "text", "multimodal"]
