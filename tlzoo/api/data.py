"""The data contract: :class:`Dataset` (labelled examples, or records of named fields), :class:`DataSource`
and :class:`DataOptions`.  Re-exported by :mod:`tlzoo.api.interfaces`."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
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


MODALITIES: tuple[str, ...] = ("vision", "text", "multimodal")  # multimodal: records with named fields


# --------------------------------------------------------------------------- data
@dataclass
class Dataset:
    """A labelled collection of raw examples.

    ``examples`` hold what a backbone's ``transform`` accepts: strings for text,
    image file paths or PIL images for vision.  Images are decoded lazily.
    """

    examples: list[Any]
    labels: list[str]
    modality: str
    ids: list[str] = field(default_factory=list)
    name: str = ""
    notes: list[str] = field(default_factory=list)  # what loading dropped or doubts, logged as run warnings

    def __post_init__(self) -> None:
        if not self.ids:
            self.ids = [str(i) for i in range(len(self.examples))]
        if not (len(self.examples) == len(self.labels) == len(self.ids)):
            raise ValueError("examples, labels and ids must have the same length")

    def __len__(self) -> int:
        return len(self.examples)

    def subset(self, index: Sequence[int]) -> Dataset:
        return Dataset(
            examples=[self.examples[i] for i in index],
            labels=[self.labels[i] for i in index],
            ids=[self.ids[i] for i in index],
            modality=self.modality,
            name=self.name,
        )

    def fingerprint(self) -> str:
        """Content hash used to key cached features."""
        h = hashlib.sha256()
        for ident, ex in zip(self.ids, self.examples):
            h.update(ident.encode())
            h.update(_example_bytes(ex))
        return h.hexdigest()[:20]


def _example_bytes(ex: Any) -> bytes:
    if isinstance(ex, str):
        import os

        if os.path.isfile(ex) and not ex.endswith(("\n",)):
            st = os.stat(ex)
            return f"{ex}:{st.st_size}:{st.st_mtime_ns}".encode()
        return ex.encode("utf-8", "surrogatepass")
    tobytes = getattr(ex, "tobytes", None)
    return tobytes() if callable(tobytes) else repr(ex).encode()


class DataSource(ABC):
    """Turns a ``--data`` argument into a :class:`Dataset`."""

    name: str = ""
    modality: str = ""  # "vision", "text" or "" for either
    description: str = ""

    def defaults(self) -> dict[str, Any]:
        """Options of this source beyond :class:`DataOptions` and their defaults (none so far)."""
        return {}

    @abstractmethod
    def can_load(self, location: str) -> bool:
        """Whether this source understands ``location`` (a path or a scheme like hf:)."""

    @abstractmethod
    def load(self, location: str, options: DataOptions) -> Dataset:
        """Load every labelled example; raise TlzooError for bad input."""


@dataclass
class DataOptions:
    """What a data source may need from the run configuration."""

    text_column: str = "text"
    label_column: str = "label"
    encoding: str = "utf-8"
    # False (tl embed, tl predict --data): labels are optional; a table without the label column is read,
    # and a row with a blank label is kept with the label "" (unlabelled), never dropped
    require_labels: bool = True
    # the named fields each record must hold (a fused run: one per input column, BackboneFactory.fields);
    # empty: one input per record, from text_column (or the source's own layout)
    fields: tuple[str, ...] = ()
