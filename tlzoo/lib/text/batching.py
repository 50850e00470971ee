"""Right-padding a batch of token sequences: the ``collate`` of every text backbone that tokenizes itself.

``pad_sequences`` turns a list of sequences (of ids, or of fixed-size rows such as a
word's character ids) into one zero-padded tensor plus the lengths; ``length_mask``
gives the ``[B, T]`` mask of real positions that pooling and attention need.  Padding
goes on the right, so a left-to-right LSTM never reads padding before a real token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def pad_sequences(
    seqs: Sequence[Sequence[Any]], dtype: torch.dtype = torch.long, min_length: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """(``[B, T, ...]`` zero-padded on the right, lengths ``[B]``), ``T`` = the longest (at least ``min_length``)."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    t = max(min_length, int(lengths.max()) if len(seqs) else 0)
    rows = [torch.tensor(s, dtype=dtype) if len(s) else None for s in seqs]
    inner = next((tuple(r.shape[1:]) for r in rows if r is not None), ())
    out = torch.zeros(len(seqs), t, *inner, dtype=dtype)
    for i, row in enumerate(rows):
        if row is not None:
            out[i, : len(row)] = row
    return out, lengths


def length_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    """``[B, t]`` bool: True at the first ``lengths[b]`` positions of each row."""
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]
