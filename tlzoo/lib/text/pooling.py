"""Masked pooling: token vectors ``[B, T, D]`` and a mask of real tokens ``[B, T]`` -> ``[B, D]``.

One implementation for every text backbone (transformers encoders, static vectors, the
MLM transformer, ELMo, ULMFiT):

* ``mean``: the mean over real tokens (a row without any counts 1 token, so it is 0);
* ``max``: the element-wise maximum over real tokens.  Padding is filled with the
  dtype's lowest finite value, not ``-inf``: a row with no real token would otherwise
  come out as ``-inf``, and ``-inf`` turns into NaN at the first ``0 * x`` or ``x - x``
  (standardising features, a head's matmul, a gradient), so such rows are set to 0;
  the lowest finite value also stays representable under float16 / bfloat16 autocast;
* ``cls``: the first position (the ``[CLS]`` / ``<cls>`` token);
* ``last``: the last real token (ULMFiT's "last state"; needs right padding).

``pool(h, mask, ("last", "max", "mean"))`` concatenates several along the feature axis;
``choose_pooling`` checks a backbone's ``--pooling`` against the ones it offers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tlzoo.api.errors import TlzooError

METHODS: tuple[str, ...] = ("mean", "max", "cls", "last")


def choose_pooling(requested: str | None, allowed: Sequence[str], plugin: str) -> str:
    """A backbone's pooling: ``requested`` (``--pooling``), or the first of ``allowed``; else a one-line error."""
    pooling = requested or allowed[0]
    if pooling not in allowed:
        raise TlzooError(f"Unknown pooling '{pooling}' for {plugin}; use one of {', '.join(allowed)}.")
    return pooling


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``h`` ``[B, T, D]`` over the positions where ``mask`` ``[B, T]`` is true."""
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Maximum of ``h`` ``[B, T, D]`` over the positions where ``mask`` is true; 0 for an empty row."""
    keep = mask.bool()
    out = h.masked_fill(~keep.unsqueeze(-1), torch.finfo(h.dtype).min).max(1).values
    return torch.where(keep.any(1, keepdim=True), out, torch.zeros_like(out))


def last_token(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The vector of the last real token of each right-padded row (the first one for an empty row)."""
    last = (mask.long().sum(1) - 1).clamp(min=0)
    return h[torch.arange(h.size(0), device=h.device), last.to(h.device)]


def pool(h: torch.Tensor, mask: torch.Tensor, methods: str | Sequence[str]) -> torch.Tensor:
    """``h`` pooled by one method, or by several concatenated in the order given."""
    if isinstance(methods, str):
        methods = (methods,)
    parts = []
    for method in methods:
        if method == "mean":
            parts.append(masked_mean(h, mask))
        elif method == "max":
            parts.append(masked_max(h, mask))
        elif method == "cls":
            parts.append(h[:, 0])
        elif method == "last":
            parts.append(last_token(h, mask))
        else:
            raise ValueError(f"unknown pooling method {method!r}; use one of {', '.join(METHODS)}")
    return parts[0] if len(parts) == 1 else torch.cat(parts, 1)
