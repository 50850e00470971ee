"""The fully connected head: optional hidden layers, dropout, a softmax output layer."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tlzoo.api.errors import TlzooError, suggest
from tlzoo.api.hookspecs import hookimpl
from tlzoo.api.interfaces import Head, TorchHead

if TYPE_CHECKING:  # torch loads in build(): listing heads (`tl heads`) must not wait for it
    from torch import nn

# --------------------------------------------------------------------------- option checking
NULLS = ("", "none", "null")  # how None reads back from TOML (written as "") or from --set


class Rule:
    """What one head option accepts: checked when the head is built (step 1 of a run), so a bad
    value fails at once instead of after feature extraction."""

    def __init__(
        self,
        allowed: str,
        test: Callable[[Any], bool],
        example: str,
        nullable: bool = False,
        words: tuple[str, ...] = (),
    ) -> None:
        self.allowed, self.test, self.example, self.nullable = allowed, test, example, nullable
        self.words = words  # the accepted strings, for did-you-mean

    def parse(self, value: Any) -> Any:
        """The value to use (None for a null spelling when allowed); ValueError if not allowed."""
        if self.nullable and (value is None or (isinstance(value, str) and value.strip().lower() in NULLS)):
            return None
        try:
            ok = self.test(value)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(self.allowed)
        return value


def is_int(value: Any, lo: int | None = None, hi: int | None = None) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (lo is None or value >= lo)
        and (hi is None or value <= hi)
    )


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(lo: int, example: str, hi: int | None = None, nullable: bool = False, also: str = "") -> Rule:
    bound = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
    return Rule(bound + (" or null" if nullable else "") + also, lambda v: is_int(v, lo, hi), example, nullable)


def number(allowed: str, test: Callable[[float], bool], example: str, words: tuple[str, ...] = ()) -> Rule:
    """A finite number passing ``test``, or one of ``words``."""
    return Rule(allowed, lambda v: v in words if isinstance(v, str) else is_number(v) and test(v), example, words=words)


def choice(*values: Any, example: str = "", nullable: bool = False) -> Rule:
    names = ", ".join(repr(v) if isinstance(v, str) else str(v).lower() for v in values)
    return Rule(
        f"one of {names}" + (" or null" if nullable else ""),
        lambda v: any(v == x and type(v) is type(x) for x in values),
        example or str(values[0]),
        nullable,
        words=tuple(v for v in values if isinstance(v, str)),
    )


def check_params(head: Head, rules: dict[str, Rule]) -> None:
    """Check and normalise ``head.params`` against ``rules``: one line naming the key and what it takes."""
    for key, rule in rules.items():
        value = head.params.get(key)
        try:
            head.params[key] = rule.parse(value)
        except ValueError:
            hint = suggest(value, rule.words) if isinstance(value, str) and rule.words else ""
            raise TlzooError(
                f"head.{key} of the {head.name} head must be {rule.allowed}, got {value!r}.{hint} "
                f"E.g. --set head.{key}={rule.example}."
            ) from None


# --------------------------------------------------------------------------- the head
ACTIVATIONS = ("relu", "gelu", "tanh")  # names of torch.nn modules: ReLU, GELU, Tanh


def _widths(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    return all(is_int(h, 0) for h in items)


class FCHead(TorchHead):
    """``hidden``: a width or a list of widths (0 or [] = a single linear layer)."""

    name = "fc"
    option_help = {
        "hidden": "widths of hidden layers between the features and the classes ([] = one linear layer)",
        "dropout": "dropout before each linear layer (0 = none)",
        "activation": "the non-linearity after each hidden layer",
    }
    RULES = {
        "hidden": Rule("a width (an integer >= 0) or a list of widths", _widths, "[256]"),
        "dropout": number("a number in [0, 1)", lambda v: 0 <= v < 1, "0.2"),
        "activation": choice(*ACTIVATIONS),
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        check_params(self, self.RULES)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"hidden": [], "dropout": 0.1, "activation": "relu"}

    def build(self, num_features: int, num_classes: int) -> nn.Module:
        from torch import nn

        hidden = self.params["hidden"]
        hidden = [h for h in (hidden if isinstance(hidden, list) else [hidden]) if h]
        dropout = float(self.params["dropout"])
        acts = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}
        layers: list[nn.Module] = []
        width = num_features
        for h in hidden:
            layers += [nn.Dropout(dropout), nn.Linear(width, h), acts[self.params["activation"]]()]
            width = h
        layers += [nn.Dropout(dropout), nn.Linear(width, num_classes)]
        return nn.Sequential(*layers)


@hookimpl
def tlzoo_register_heads(register: Any) -> None:
    register(FCHead)
