"""What builds a backbone: :class:`BackboneRequest`, :class:`BackboneFactory`, the option checks
(:func:`check_options`, :func:`typed_like`, :func:`merge_options`) and :class:`Pretrainer`.  Re-exported by
:mod:`tlzoo.api.interfaces`."""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from tlzoo.api.backbone import (
        Backbone as Backbone,
        FittableBackbone as FittableBackbone,
        fit_backbone as fit_backbone,
    )

# Backbone subclasses nn.Module, so it lives in tlzoo.api.backbone and loads (with torch) on
# first use: everything else here imports without torch, which keeps `tl heads`, `tl plugins`
# and the other listing commands fast.  `from tlzoo.api.interfaces import Backbone` still works.


# --------------------------------------------------------------------------- backbone
#: The engine's settings: typed fields of :class:`BackboneRequest`, never keys of its ``options``
#: (a plugin's own options may not take these names).
ENGINE_SETTINGS: tuple[str, ...] = ("pooling", "max_length", "image_size", "augment", "train_backbone", "assets")


def _engine_value(key: str, value: Any) -> Any:
    """An engine setting read from a 0.1 ``options`` dict (or model.json) as its field's type."""
    if key == "pooling":
        return str(value) if value else ""
    if key in ("max_length", "image_size"):
        if isinstance(value, bool):
            raise ValueError(f"{key} is a bool")
        return int(value or 0)
    if key == "assets":
        return str(value) if value else None
    return bool(value)


@dataclass
class BackboneRequest:
    """What the user asked for; a backbone factory turns it into a :class:`Backbone`.

    The engine's settings are typed fields (``--pooling``, ``--max-length``, ``--image-size``,
    augmentation, whether the backbone trains, and at predict time the run's ``assets`` folder);
    ``options`` holds the plugin's own keys only (``--set model.options.KEY=VALUE``), which the
    factory checks against its ``defaults()`` before ``create`` runs (:func:`check_options`).
    A request built the 0.1 way, with engine settings inside ``options``, still works: they
    move to their fields, with a DeprecationWarning.
    """

    model: str
    weights: str | None = None  # a local file or folder overriding the default source
    pretrained: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # the plugin's own options only
    pooling: str = ""  # text: token vectors -> one vector ('' = the backbone's default)
    max_length: int = 0  # text: tokens per example (0 = the backbone's default, 128 for the built-ins)
    image_size: int = 0  # vision: input size in pixels (0 = from the weights' own configuration)
    augment: bool = False  # transform(example, train=True) may augment (only when raw examples train the backbone)
    train_backbone: bool = False  # some phase updates the backbone's weights (static vectors then add an encoder)
    assets: str | None = None  # tl predict: the run's assets/ folder (what save_assets wrote); None during a run

    def __post_init__(self) -> None:
        engine = [k for k in ENGINE_SETTINGS if k in self.options]
        if engine:
            warnings.warn(
                f"BackboneRequest: {', '.join(engine)} inside options is deprecated; pass "
                f"{'it' if len(engine) == 1 else 'them'} as BackboneRequest field"
                f"{'' if len(engine) == 1 else 's'} ({', '.join(f'{k}=...' for k in engine)})",
                DeprecationWarning,
                stacklevel=3,
            )
            self._take_engine_settings()

    def _take_engine_settings(self) -> None:
        """Move engine settings found in ``options`` (0.1 requests, old model.json) to their fields."""
        options = dict(self.options)
        for key in ENGINE_SETTINGS:
            if key in options:
                value = options.pop(key)
                if getattr(self, key) == _DEFAULTS[key]:  # a field given explicitly wins
                    setattr(self, key, _engine_value(key, value))
        self.options = options

    def to_json(self) -> dict[str, Any]:
        """``backbone.request`` in model.json: every field but ``assets`` (at predict time always the run's own)."""
        return {
            "model": self.model,
            "weights": self.weights,
            "pretrained": self.pretrained,
            "options": dict(self.options),
            "pooling": self.pooling,
            "max_length": self.max_length,
            "image_size": self.image_size,
            "augment": self.augment,
            "train_backbone": self.train_backbone,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], **override: Any) -> BackboneRequest:
        """What :meth:`to_json` wrote, or a 0.1 model.json's request (engine settings inside ``options``,
        moved to their fields silently); ``override`` sets fields (``assets=``, ``weights=``)."""
        options = dict(data.get("options") or {})
        old = {k: options.pop(k) for k in ENGINE_SETTINGS if k in options}
        request = cls(
            model=str(data["model"]),
            weights=data.get("weights"),
            pretrained=bool(data.get("pretrained", True)),
            options=options,
        )
        for key in ENGINE_SETTINGS:
            if key in data or key in old:
                setattr(request, key, _engine_value(key, data[key] if key in data else old[key]))
        for key, value in override.items():
            setattr(request, key, value)
        return request


_DEFAULTS: dict[str, Any] = {f: getattr(BackboneRequest(""), f) for f in ENGINE_SETTINGS}


_TRUE_WORDS = ("true", "1", "yes", "on")
_FALSE_WORDS = ("false", "0", "no", "off")


def typed_like(want: Any, value: Any, loose: bool = False) -> tuple[bool, Any]:
    """Whether ``value`` has the type of the default ``want`` (bool; int; float, which takes an
    int and returns it as a float; str; a default of None takes anything), and the value to use.

    ``loose`` is for values typed by hand (``--set``, a TOML file, a command-line option): a string
    is parsed too (true/false, yes/no, on/off, 1/0 for a bool; a number for an int or a float), an
    integral float is a fine int, and a number a fine str.  The run configuration uses it for every
    engine setting, so plugin options and engine settings follow one set of rules.
    """
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(want, bool):
        if loose and isinstance(value, str) and value.lower() in _TRUE_WORDS + _FALSE_WORDS:
            return True, value.lower() in _TRUE_WORDS
        return isinstance(value, bool), value
    if isinstance(want, (int, float)) and loose and isinstance(value, str):
        try:
            return True, type(want)(value)
        except ValueError:
            return False, value
    if isinstance(want, int):
        if loose and isinstance(value, float) and value.is_integer():
            return True, int(value)
        return isinstance(value, int) and not isinstance(value, bool), value
    if isinstance(want, float):
        return number, float(value) if number else value
    if isinstance(want, str):
        if loose and number:
            return True, str(value)
        return isinstance(value, str), value
    return True, value


def check_options(
    owner: str, options: Mapping[str, Any], defaults: Mapping[str, Any], where: str = "model.options"
) -> dict[str, Any]:
    """``defaults`` updated by ``options``: the one check every backbone's options go through.

    ``BackboneFactory.create`` calls it before the plugin's code runs, so a backbone never sees
    an unknown key; a plugin calls it (or ``factory.check_options``) again where it wants the
    merged values.  An unknown key is a one-line TlzooError with "did you mean" and the list of
    options; a value whose type differs from its default's (bool; int; float, which takes an
    int; str) names the key and the type expected.  A default of None takes anything, and a
    value of None means the default.
    """
    from tlzoo.api.errors import TlzooError, suggest

    merged = dict(defaults)
    for key, value in options.items():
        if key not in defaults:
            if key in ENGINE_SETTINGS:
                hint = f" It is an engine setting: BackboneRequest.{key} (--{key.replace('_', '-')} or model.{key})."
            else:
                hint = suggest(key, defaults)
            listing = ", ".join(f"{k}={v!r}" for k, v in sorted(defaults.items())) or "none"
            raise TlzooError(f"Unknown option {where}.{key} for {owner}.{hint} Options: {listing}.")
        if value is None:
            continue
        want = defaults[key]
        ok, value = typed_like(want, value)
        if not ok:
            raise TlzooError(
                f"{where}.{key} of {owner} expects {type(want).__name__} (like its default {want!r}), got {value!r}."
            )
        merged[key] = value
    return merged


@dataclass
class BackboneFactory:
    """A family of backbones a plugin offers, e.g. ``bert`` or ``efficientnet``.

    ``create(request)`` is called through the factory: the request's ``options`` are checked
    against ``options`` (:func:`check_options`: unknown keys and wrong types are one-line
    errors) before the plugin's callable runs, the backbone it returns gets ``plugin`` set
    to the factory's name, and a :class:`FittableBackbone` built with ``request.assets``
    restores its fitted state from there (``load_fitted``).  ``options`` may not use the names of the engine's settings
    (:data:`ENGINE_SETTINGS`): those are typed fields of the request.

    ``weights_files(request)`` (optional) names the files the request's pretrained weights (and
    tokenizer or other files that decide the features) are read from, cheaply and without building
    the backbone; None when they cannot be named so (the hub, random init).  Declare it only when
    the request and those files alone decide the features (not for a :class:`FittableBackbone`, nor
    for one whose assets ``tl predict`` needs): the feature cache then keys by the request and a
    digest of the files, and a run whose every split is cached skips building the backbone.
    """

    name: str
    modality: str
    create: Callable[[BackboneRequest], Backbone]
    default_model: str
    models: tuple[str, ...] = ()
    accepts_any_model: bool = False  # e.g. any Hugging Face hub id
    description: str = ""
    plugin: str = ""  # the plugin that registered it, filled in by the plugin manager
    options: dict[str, Any] = field(default_factory=dict)  # the plugin's own model.options and their defaults
    option_help: dict[str, str] = field(default_factory=dict)  # one line per option, for `tl config`
    # the files a request's weights come from, found without building the backbone (None: not known
    # without building, e.g. the hub or random init); see the class docstring
    weights_files: Callable[[BackboneRequest], list[str] | None] | None = None
    # the named fields a record must hold for a backbone built from these model.options (a fused backbone:
    # its input columns); None: one input per record.  The run asks the data source for exactly these.
    fields: Callable[[dict[str, Any]], tuple[str, ...]] | None = None
    # a backbone over several inputs may put a head of its own on the run (the fusion backbone's
    # --fusion late|mlp): given the model.options and the head the config names, the head to use
    # (checked at step 1); None: the configured head
    head: Callable[[dict[str, Any], Any], Any] | None = None

    def __post_init__(self) -> None:
        clash = sorted(set(self.options) & set(ENGINE_SETTINGS))
        if clash:
            raise TypeError(
                f"backbone factory '{self.name}': option '{clash[0]}' is an engine setting "
                f"(BackboneRequest.{clash[0]}); read it from the request's field and drop the option"
            )
        make = getattr(self.create, "_tlzoo_create", self.create)  # dataclasses.replace passes the wrapper

        def create(request: BackboneRequest) -> Backbone:
            from tlzoo.api.backbone import FittableBackbone, _restore_fitted

            self.check_options(request.options)
            backbone = make(request)
            backbone.plugin = self.name
            if request.assets is not None and isinstance(backbone, FittableBackbone):
                _restore_fitted(backbone, request.assets)
            return backbone

        create._tlzoo_create = make  # type: ignore[attr-defined]  # a mark on the function object
        create.__doc__ = getattr(make, "__doc__", None)
        self.create = create

    def defaults(self) -> dict[str, Any]:
        """The plugin's own options (``model.options``, ``--set model.options.KEY=VALUE``) and their defaults."""
        return dict(self.options)

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``defaults()`` updated by ``options``, or a one-line TlzooError (see :func:`check_options`)."""
        return check_options(self.name, options, self.defaults())


# --------------------------------------------------------------------------- pretraining
class Pretrainer(ABC):
    """Source-task training on an unlabelled corpus (``tl pretrain --plugin NAME``).

    ``pretrain`` writes into ``out`` everything ``tl run --plugin NAME --weights out``
    needs: weights (safetensors or the library's native format), the vocabulary or
    tokenizer, a small JSON/TOML description and a loss curve PNG.
    """

    name: str = ""  # the backbone plugin whose weights this produces
    description: str = ""

    def defaults(self) -> dict[str, Any]:
        """Every option (``tl pretrain --set KEY=VALUE``) and its default; include ``epochs`` and ``seed``,
        which the engine always passes.  Check options with ``tlzoo.api.interfaces.merge_options``."""
        return {}

    @abstractmethod
    def pretrain(
        self, corpus: list[str], out: str, options: dict[str, Any], log: Callable[[str], None]
    ) -> dict[str, Any]:
        """Train on ``corpus`` and write to ``out``; return a summary (final loss, perplexity...)."""


def merge_options(plugin: str, options: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` updated by ``options``; an unknown key or a wrong type is a one-line error.

    For pretrainers: ``opts = merge_options(self.name, options, self.defaults())``.
    ``epochs`` and ``seed`` always arrive from the engine, so include them in ``defaults``.
    """
    from tlzoo.api.errors import TlzooError, suggest

    merged = dict(defaults)
    for key, value in options.items():
        if key not in defaults:
            raise TlzooError(
                f"Unknown option '{key}' for pretrainer '{plugin}'.{suggest(key, defaults)} "
                f"Options: {', '.join(f'{k}={v!r}' for k, v in sorted(defaults.items()))}."
            )
        want = defaults[key]
        ok, value = typed_like(want, value)
        if not ok:
            raise TlzooError(f"Pretrainer option '{key}' expects {type(want).__name__}, got {value!r}.")
        merged[key] = value
    return merged
